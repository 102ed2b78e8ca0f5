"""The research API is team-scoped by construction: every research endpoint is a TeamScopedApi, which says which
role each HTTP method needs and loads what a request names through teams.selectors. A new endpoint that leaves
either out fails before it answers anyone."""
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.views import SpectacularAPIView
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate

from iri_worker.apis import BackboneLayersApi
from surveys.models import Survey
from teams.apis import ApiTokenApi, TeamScopedApi
from teams.models import Role
from teams.services import membership_set, team_create

# Research endpoints that hold no team's objects (tests/teams/test_two_teams.py tries them as PERSONAL / REFERENCE).
NOT_TEAM_SCOPED = {ApiTokenApi: "one's own API token", BackboneLayersApi: "the engine's layer names",
                   SpectacularAPIView: "the API's description"}
PARTICIPANT_PREFIX = "api/p/"  # the participants' API: a session token is its only key (tests/surveys)


def api_views(patterns=None, prefix=""):
    """(route, view class) for every URL the server routes, walked from its own resolvers."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            yield from api_views(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern) and hasattr(pattern.callback, "cls"):
            yield prefix + str(pattern.pattern), pattern.callback.cls


def test_every_research_endpoint_is_team_scoped_or_says_why_not():
    research = [(route, view) for route, view in api_views()
                if route.startswith("api/") and not route.startswith(PARTICIPANT_PREFIX)]

    unscoped = [f"{route} ({view.__name__})" for route, view in research
                if not issubclass(view, TeamScopedApi) and view not in NOT_TEAM_SCOPED]

    assert len(research) >= 15
    assert not unscoped, f"make these teams.apis.TeamScopedApi subclasses (or say here why one holds no team's objects): {unscoped}"


def test_each_team_scoped_endpoint_names_a_role_for_every_method_it_answers():
    for route, view in api_views():
        if issubclass(view, TeamScopedApi):
            methods = {m.upper() for m in view.http_method_names if m != "options" and hasattr(view, m)}
            assert methods and methods == set(view.roles), route
            assert all(role in Role for role in view.roles.values()), route


def test_an_endpoint_that_forgets_a_role_for_a_method_fails_when_it_is_defined():
    with pytest.raises(ImproperlyConfigured) as refused:
        class SurveyCloseApi(TeamScopedApi):
            roles = {"GET": Role.VIEWER}

            def get(self, request, slug):
                return Response()

            def post(self, request, slug):
                return Response()

    assert "SurveyCloseApi implements POST without saying which team role" in str(refused.value)
    assert '"POST": Role.RESEARCHER' in str(refused.value), "the hint shows what to write"


class SurveyTitleApi(TeamScopedApi):
    """A toy endpoint: GET reads the survey the URL names; POST forgets to load it."""

    queryset = Survey.objects
    lookup_field = "slug"
    roles = {"GET": Role.VIEWER, "POST": Role.RESEARCHER}

    def get(self, request, slug):
        return Response({"title": self.get_object().title})

    def post(self, request, slug):
        return Response({"title": Survey.objects.get(slug=slug).title})


def call(user, method: str, slug: str):
    request = getattr(APIRequestFactory(), method)(f"/toy/{slug}")
    force_authenticate(request, user=user)
    return SurveyTitleApi.as_view()(request, slug=slug)


@pytest.mark.django_db
def test_the_base_loads_the_object_through_the_team_scope_with_the_methods_role(django_user_model, team, live_survey):
    survey = live_survey
    viewer = django_user_model.objects.create_user(username="viewer")
    membership_set(team=team, user=viewer, role=Role.VIEWER)
    stranger = django_user_model.objects.create_user(username="stranger")
    membership_set(team=team_create(name="Lab B"), user=stranger, role=Role.RESEARCHER)

    assert call(viewer, "get", survey.slug).data == {"title": survey.title}
    assert call(stranger, "get", survey.slug).status_code == 404, "another team's survey does not exist for them"
    assert call(viewer, "get", "no-such-survey").status_code == 404


@pytest.mark.django_db
def test_an_answer_given_without_loading_the_team_is_refused_as_a_programming_error(researcher, live_survey):
    with pytest.raises(ImproperlyConfigured, match=r"SurveyTitleApi\.post answered without loading"):
        call(researcher, "post", live_survey.slug)
