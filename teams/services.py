from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.authtoken.models import Token

from backend.exceptions import ApplicationError

from .actors import Actor
from .models import AuditEntry, Membership, Role, Team

LAST_OWNER = "Team '{team}' would be left without an owner: make another member owner first."
ACTOR_MISSING = (
    "{action} is audited: say who does it with actor= (teams.actors.Actor.of_request(request) in an API or the "
    "admin, Actor.command(name) in a command, Actor.task(name) in a task)."
)


def audit_record(
    *, actor: Actor | None, action: str, obj=None, team=None, details: dict | None = None
) -> AuditEntry | None:
    """One line in the audit log, written by the service that does the write, inside its transaction: a write
    whose audit entry cannot be written does not happen. Without an actor nothing is written, and outside a
    test's setup (settings.AUDIT_ACTOR_REQUIRED, off in tests/conftest.py) the write is refused."""
    if actor is None:
        if settings.AUDIT_ACTOR_REQUIRED:
            raise TypeError(ACTOR_MISSING.format(action=action))
        return None
    if team is None and obj is not None:
        team = getattr(obj, "team", None)
    return AuditEntry.objects.create(
        team=team,
        user=actor.user,
        username=actor.name,
        action=action,
        object_type=obj._meta.label if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        details=details or {},
        client_ip=actor.client_ip,
    )


@transaction.atomic
def team_create(*, name: str, owner=None, actor: Actor | None = None) -> Team:
    team = Team.objects.create(name=name)
    if owner is not None:
        Membership.objects.create(team=team, user=owner, role=Role.OWNER)
    audit_record(actor=actor, action="team.create", obj=team, team=team)
    return team


@transaction.atomic
def membership_set(*, team: Team, user, role: str, actor: Actor | None = None) -> Membership:
    """The user joins the team with `role`, or their role there changes; the last owner is never demoted."""
    if Role(role) != Role.OWNER:
        _owner_remains_check(team=team, leaving=user)
    membership, _ = Membership.objects.update_or_create(team=team, user=user, defaults={"role": Role(role)})
    audit_record(actor=actor, action="membership.set", obj=membership, team=team,
                 details={"user": user.get_username(), "role": membership.role})
    return membership


@transaction.atomic
def membership_remove(*, team: Team, user, actor: Actor | None = None) -> bool:
    """The user leaves the team (False: they were not in it); the last owner never leaves."""
    _owner_remains_check(team=team, leaving=user)
    membership = Membership.objects.filter(team=team, user=user).first()
    if membership is None:
        return False
    audit_record(actor=actor, action="membership.delete", obj=membership, team=team,
                 details={"user": user.get_username()})
    membership.delete()
    return True


def _owner_remains_check(*, team: Team, leaving) -> None:
    # A team whose last owner left could never manage its members again. The team's row is locked so that two
    # owners who leave at once do not each see the other still there.
    Team.objects.select_for_update().filter(pk=team.pk).first()
    owners = Membership.objects.filter(team=team, role=Role.OWNER)
    if owners.filter(user=leaving).exists() and not owners.exclude(user=leaving).exists():
        raise ApplicationError(LAST_OWNER.format(team=team.name))


@transaction.atomic
def api_token_issue(*, user, actor: Actor | None = None) -> Token:
    """A new API token for the user; the one they had, if any, stops working."""
    # One issue at a time per user: two at once would both delete, then collide on the one-token-per-user key.
    get_user_model().objects.select_for_update().get(pk=user.pk)
    Token.objects.filter(user=user).delete()
    token = Token.objects.create(user=user)
    api_token_audit(actor=actor, action="token.issue", user=user)
    return token


@transaction.atomic
def api_token_revoke(*, user, actor: Actor | None = None) -> bool:
    """The user's API token stops working; False when they had none."""
    deleted, _ = Token.objects.filter(user=user).delete()
    api_token_audit(actor=actor, action="token.revoke", user=user, details={"had_token": bool(deleted)})
    return bool(deleted)


def api_token_audit(*, actor: Actor | None, action: str, user, details: dict | None = None) -> None:
    """A token event in the audit log of every team the token's user belongs to (the token reaches them all),
    so each team's owners read it; for a user in no team, one entry without a team (superusers read it)."""
    teams = list(Team.objects.filter(memberships__user=user)) or [None]
    details = {"user": user.get_username(), **(details or {})}  # never the token itself
    for team in teams:
        audit_record(actor=actor, action=action, team=team, details=details)
