"""Who does a write. Every audited service takes `actor=` and records its own audit entry, in its own transaction,
so a write made through the API, the admin, a command or a task is audited the same way."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """A person (from a request: with the client's address), or a part of the system acting on its own: a
    management command or a Celery task, named so that the audit log says which."""

    user: object | None = None
    system: str = ""  # "command:reproduce", "task:participant_ids_expire"
    client_ip: str | None = None

    @classmethod
    def of_request(cls, request) -> "Actor":
        """The logged-in user of an API or admin request, from the client's address."""
        user = getattr(request, "user", None)
        return cls(user=user if getattr(user, "is_authenticated", False) else None, client_ip=client_ip(request))

    @classmethod
    def of_user(cls, user) -> "Actor":
        """A user acting without a request: work they started that a worker finishes, a script's call."""
        return cls(user=user if getattr(user, "is_authenticated", False) else None)

    @classmethod
    def command(cls, name: str) -> "Actor":
        """A management command (whoever runs it has the server's shell)."""
        return cls(system=f"command:{name}")

    @classmethod
    def task(cls, name: str) -> "Actor":
        """A Celery task nobody started by hand (the beat's schedule, a follow-up the server queues itself)."""
        return cls(system=f"task:{name}")

    @property
    def name(self) -> str:
        """What the audit log shows as who: the username, else the system part's name."""
        return self.user.get_username() if self.user is not None else self.system


def client_ip(request) -> str | None:
    """The client's address as the rate limits see it (X-Forwarded-For only behind DJANGO_TRUSTED_PROXIES)."""
    from rest_framework.settings import api_settings

    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    remote = request.META.get("REMOTE_ADDR")
    proxies = api_settings.NUM_PROXIES
    if proxies and forwarded:
        addresses = [a.strip() for a in forwarded.split(",")]
        return addresses[-min(proxies, len(addresses))] or remote
    return remote
