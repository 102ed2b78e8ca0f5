from rest_framework import serializers

from .selectors import team_scoped


class TeamScopedPrimaryKeyField(serializers.PrimaryKeyRelatedField):
    """The id of an object in one of the requesting user's teams: another team's object is as unknown as one
    that does not exist (a 400 that names the id), so nobody learns which ids other teams hold."""

    def get_queryset(self):
        return team_scoped(user=self.context["request"].user, queryset=super().get_queryset())
