from rest_framework.permissions import BasePermission

from .messages import NO_TEAM


class TeamMember(BasePermission):
    """The research API: logged in (401 otherwise) and a member of at least one team (403 otherwise).
    What a user may do to one object is decided by teams.selectors.team_object_get."""

    message = NO_TEAM

    def has_permission(self, request, view) -> bool:
        from .selectors import team_is_member  # DRF imports this module while backend.exceptions is loading

        return team_is_member(user=request.user)
