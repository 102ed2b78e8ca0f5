from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.authtoken.models import Token

from backend.exceptions import ApplicationError

from .models import AuditEntry, Membership, Role, Team

LAST_OWNER = "Team '{team}' would be left without an owner: make another member owner first."


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


def audit_record(*, action: str, user=None, request=None, obj=None, team=None, details: dict | None = None) -> AuditEntry:
    """One line in the audit log. With a request, the user and client IP come from it."""
    if request is not None:
        user = user or getattr(request, "user", None)
    user = user if getattr(user, "is_authenticated", False) else None
    if team is None and obj is not None:
        team = getattr(obj, "team", None)
    return AuditEntry.objects.create(
        team=team,
        user=user,
        username=user.get_username() if user else "",
        action=action,
        object_type=obj._meta.label if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        details=details or {},
        client_ip=client_ip(request) if request is not None else None,
    )


@transaction.atomic
def team_create(*, name: str, owner=None) -> Team:
    team = Team.objects.create(name=name)
    if owner is not None:
        Membership.objects.create(team=team, user=owner, role=Role.OWNER)
    return team


@transaction.atomic
def membership_set(*, team: Team, user, role: str) -> Membership:
    """The user joins the team with `role`, or their role there changes; the last owner is never demoted."""
    if Role(role) != Role.OWNER:
        _owner_remains_check(team=team, leaving=user)
    membership, _ = Membership.objects.update_or_create(team=team, user=user, defaults={"role": Role(role)})
    return membership


@transaction.atomic
def membership_remove(*, team: Team, user) -> bool:
    """The user leaves the team (False: they were not in it); the last owner never leaves."""
    _owner_remains_check(team=team, leaving=user)
    deleted, _ = Membership.objects.filter(team=team, user=user).delete()
    return bool(deleted)


def _owner_remains_check(*, team: Team, leaving) -> None:
    # A team whose last owner left could never manage its members again. The team's row is locked so that two
    # owners who leave at once do not each see the other still there.
    Team.objects.select_for_update().filter(pk=team.pk).first()
    owners = Membership.objects.filter(team=team, role=Role.OWNER)
    if owners.filter(user=leaving).exists() and not owners.exclude(user=leaving).exists():
        raise ApplicationError(LAST_OWNER.format(team=team.name))


@transaction.atomic
def api_token_issue(*, user) -> Token:
    """A new API token for the user; the one they had, if any, stops working."""
    # One issue at a time per user: two at once would both delete, then collide on the one-token-per-user key.
    get_user_model().objects.select_for_update().get(pk=user.pk)
    Token.objects.filter(user=user).delete()
    return Token.objects.create(user=user)


def api_token_revoke(*, user) -> bool:
    """The user's API token stops working; False when they had none."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)


def api_token_audit(*, action: str, user, request=None, details: dict | None = None) -> list[AuditEntry]:
    """A token event in the audit log of every team the token's user belongs to (the token reaches them all),
    so each team's owners read it; for a user in no team, one entry without a team (superusers read it)."""
    teams = list(Team.objects.filter(memberships__user=user)) or [None]
    details = {"user": user.get_username(), **(details or {})}  # never the token itself
    return [audit_record(action=action, request=request, team=team, details=details) for team in teams]
