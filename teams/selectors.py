"""The one place that decides what a user may see and change: every API, admin page, export and command
reads team-owned objects through these functions."""
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from rest_framework import status

from backend.exceptions import ApplicationError

from .models import ROLE_RANK, Membership, Role, Team
from .messages import NO_TEAM

ROLE_TOO_WEAK = "Your role in team '{team}' is {role}; this needs {needed} or higher."
CHOOSE_TEAM = "You belong to several teams ({teams}); say which one owns the new object (team: its id)."
UNKNOWN_TEAM = "No team with id {id} that you may create in."
NOT_FOUND = "Not found."


def team_list(*, user, min_role: str = Role.VIEWER) -> QuerySet[Team]:
    """The teams where the user holds at least min_role (every team for a superuser)."""
    if not getattr(user, "is_authenticated", False):
        return Team.objects.none()
    if user.is_superuser:
        return Team.objects.all()
    roles = [role for role, rank in ROLE_RANK.items() if rank >= ROLE_RANK[Role(min_role)]]
    return Team.objects.filter(memberships__user=user, memberships__role__in=roles).distinct()


def team_role(*, user, team_id: int) -> str | None:
    """The user's role in the team; a superuser acts as its owner; None: not a member."""
    if not getattr(user, "is_authenticated", False):
        return None
    if user.is_superuser:
        return Role.OWNER
    return Membership.objects.filter(user=user, team_id=team_id).values_list("role", flat=True).first()


def team_is_member(*, user) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and (user.is_superuser or Membership.objects.filter(user=user).exists())


def team_scoped(*, user, queryset: QuerySet, min_role: str = Role.VIEWER, path: str = "team") -> QuerySet:
    """queryset narrowed to objects owned (through `path`) by the teams where the user holds min_role."""
    if getattr(user, "is_superuser", False):
        return queryset
    return queryset.filter(**{f"{path}__in": team_list(user=user, min_role=min_role)})


def team_role_allows(*, user, team_id: int, min_role: str) -> bool:
    """Whether the user holds min_role or a stronger role in the team (a superuser holds every role)."""
    return _role_allows(team_role(user=user, team_id=team_id), min_role)


def _role_allows(role: str | None, min_role: str) -> bool:
    return role is not None and ROLE_RANK[Role(role)] >= ROLE_RANK[Role(min_role)]


def team_role_check(*, user, team_id: int, min_role: str) -> None:
    """403 unless the user holds min_role in the team."""
    role = team_role(user=user, team_id=team_id)
    if not _role_allows(role, min_role):
        team = Team.objects.filter(pk=team_id).values_list("name", flat=True).first()
        raise ApplicationError(
            ROLE_TOO_WEAK.format(team=team, role=role or "none", needed=min_role), status_code=status.HTTP_403_FORBIDDEN
        )


def team_object_get(*, user, queryset: QuerySet, min_role: str = Role.VIEWER, path: str = "team", **lookup):
    """One object the user may see (404 when it does not exist or belongs to another team: the two look the
    same from outside), then 403 when the user's role there is below min_role."""
    obj = team_scoped(user=user, queryset=queryset, path=path).filter(**lookup).first()
    if obj is None:
        raise ApplicationError(NOT_FOUND, status_code=status.HTTP_404_NOT_FOUND)
    team_role_check(user=user, team_id=team_of(obj=obj, path=path).pk, min_role=min_role)
    return obj


def team_of(*, obj, path: str = "team") -> Team | None:
    """The team that owns obj, reached through `path` (e.g. "survey__team")."""
    for part in path.split("__"):
        obj = getattr(obj, part, None)
    return obj


def team_for_new_object(*, user, team_id: int | None = None, min_role: str = Role.RESEARCHER) -> Team:
    """The team a new object goes to: the one asked for, or the user's only team where it may create."""
    if not team_is_member(user=user):
        raise ApplicationError(NO_TEAM, status_code=status.HTTP_403_FORBIDDEN)
    if team_id is not None:
        team = team_list(user=user).filter(pk=team_id).first()
        if team is None:
            raise ApplicationError(UNKNOWN_TEAM.format(id=team_id), status_code=status.HTTP_404_NOT_FOUND)
        team_role_check(user=user, team_id=team.pk, min_role=min_role)
        return team
    teams = list(team_list(user=user, min_role=min_role)[:11])
    if len(teams) == 1:
        return teams[0]
    if not teams:
        member_of = team_list(user=user).first()
        raise ApplicationError(
            ROLE_TOO_WEAK.format(team=member_of, role=team_role(user=user, team_id=member_of.pk), needed=min_role),
            status_code=status.HTTP_403_FORBIDDEN,
        )
    raise ApplicationError(CHOOSE_TEAM.format(teams=", ".join(f"{t.pk}: {t.name}" for t in teams[:10])))


def team_for_command(*, value: str | None) -> Team:
    """A command's --team (a team's id or exact name); without it, the only team there is."""
    if value is None:
        teams = list(Team.objects.all()[:11])
        if len(teams) == 1:
            return teams[0]
        if not teams:
            raise ApplicationError("There is no team yet; create one in the admin (Teams) first.")
        raise ApplicationError(f"There are several teams; choose one with --team ({', '.join(t.name for t in teams[:10])}).")
    team = Team.objects.filter(pk=int(value)).first() if value.isdigit() else Team.objects.filter(name=value).first()
    if team is None:
        raise ApplicationError(f"No team '{value}'; --team takes a team's id or its exact name.")
    return team


def user_find(*, identifier: str):
    """The one active user whose username is exactly `identifier` or whose e-mail it is (in any case); None when
    there is none, or when several share that e-mail. Nobody is listed: who else is on the server stays unknown."""
    users = get_user_model().objects.filter(is_active=True)
    identifier = identifier.strip()
    found = users.filter(username=identifier).first()
    if found is None and "@" in identifier:
        by_email = list(users.filter(email__iexact=identifier)[:2])
        found = by_email[0] if len(by_email) == 1 else None
    return found
