"""The research API's base (every team-scoped endpoint), and one's own API token, for scripts:
`Authorization: Token <token>`."""
from django.core.exceptions import ImproperlyConfigured
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from .models import Role, Team
from .selectors import team_for_new_object, team_object_get, team_role_check
from .actors import Actor
from .services import api_token_issue, api_token_revoke

MISSING_ROLES = (
    "{view} implements {methods} without saying which team role each needs: add "
    "roles = {{{example}}} (Role.VIEWER reads, Role.RESEARCHER writes, Role.OWNER manages members)."
)
TEAM_UNCHECKED = (
    "{view}.{method} answered without loading a team-owned object or its team: call self.get_object() "
    "(an object the URL names) or self.get_team() (a list or a create) before answering."
)


class TeamScopedApi(APIView):
    """A research endpoint whose objects belong to a team.

    `roles` names the least team role each HTTP method needs (a class that implements a method without one
    fails when it is defined). `get_object()` loads the object the URL names through teams.selectors (another
    team's object: 404, as for one that does not exist; a role too weak: 403); a view that names no object (a
    list, a create) gets its team from `get_team()`. An answer given without either is a programming error."""

    roles: dict[str, Role] = {}
    queryset = None  # the team-owned objects the URL's lookup picks from
    lookup_field = "pk"
    lookup_url_kwarg: str | None = None  # default: lookup_field
    team_path = "team"  # how an object reaches its team, e.g. "survey__team"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        implemented = [m.upper() for m in cls.http_method_names if m != "options" and hasattr(cls, m)]
        missing = [m for m in implemented if m not in cls.roles]
        if missing:
            example = ", ".join(f'"{m}": Role.{"VIEWER" if m in ("GET", "HEAD") else "RESEARCHER"}' for m in implemented)
            raise ImproperlyConfigured(MISSING_ROLES.format(view=cls.__name__, methods=", ".join(missing), example=example))

    @property
    def role(self) -> Role:
        """The least role the current request's method needs."""
        method = "GET" if self.request.method == "HEAD" else self.request.method
        return self.roles[method]

    def initial(self, request, *args, **kwargs):
        self.team_id: int | None = None
        super().initial(request, *args, **kwargs)

    def get_queryset(self):
        return self.queryset.all()

    def get_object(self):
        """The object the URL names, if the caller's role in its team is at least this method's role."""
        lookup = {self.lookup_field: self.kwargs[self.lookup_url_kwarg or self.lookup_field]}
        obj = team_object_get(user=self.request.user, queryset=self.get_queryset(), min_role=self.role,
                              path=self.team_path, **lookup)
        self.team_id = obj.pk if isinstance(obj, Team) else _team_id(obj, self.team_path)
        return obj

    def get_team(self, *, team_id: int | None = None) -> Team:
        """The team a new object goes to (the one asked for, else the caller's only team where this method's role
        is held), or the team that owns what the request names (team_id)."""
        team = team_for_new_object(user=self.request.user, team_id=team_id, min_role=self.role)
        self.team_id = team.pk
        return team

    def require_role(self, min_role: Role) -> None:
        """A part of the request that needs more than the method's role (403 otherwise), in the team already
        loaded by get_object() or get_team()."""
        team_role_check(user=self.request.user, team_id=self.team_id, min_role=min_role)

    def finalize_response(self, request, response, *args, **kwargs):
        answered = response.status_code < 400 and request.method != "OPTIONS"
        if answered and getattr(self, "team_id", None) is None:
            raise ImproperlyConfigured(TEAM_UNCHECKED.format(view=type(self).__name__, method=request.method.lower()))
        return super().finalize_response(request, response, *args, **kwargs)


def _team_id(obj, path: str) -> int:
    *through, last = path.split("__")
    for part in through:
        obj = getattr(obj, part)
    return getattr(obj, f"{last}_id")


class ApiTokenApi(APIView):
    """Personal, not team-scoped: the token reaches every team its user belongs to."""

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField(help_text="shown only in this response")
        created = serializers.DateTimeField()

    @extend_schema(responses={201: OutputSerializer})
    def post(self, request):
        """A new API token for the caller; the one they had stops working."""
        token = api_token_issue(user=request.user, actor=Actor.of_request(request))
        return Response(self.OutputSerializer({"token": token.key, "created": token.created}).data, status=status.HTTP_201_CREATED)

    def delete(self, request):
        """The caller's API token stops working."""
        api_token_revoke(user=request.user, actor=Actor.of_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
