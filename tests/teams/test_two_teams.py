"""Two labs share one server. Every research endpoint in the OpenAPI schema and every admin page (both found by
walking what the server itself publishes, never a hand list) is tried by people who must be refused: a member
of the other lab, a viewer of the owning lab, a user in no team, a participant's session token and nobody.

A new endpoint or admin page is tried automatically; one whose path needs a value this story does not know
fails with a sentence saying which value to add here, so nothing slips through untried."""
import io
import re

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver
from PIL import Image
from rest_framework.test import APIClient

from iri_worker.models import Checkpoint, IriJob, TargetPhoto
from iri_worker.services import checkpoint_create
from surveys.models import Participant, Survey
from surveys.services import survey_create
from teams.models import AuditEntry, Membership, Role
from teams.services import membership_set, team_create
from tests.conftest import finished_iri_set, new_key
from tests.iri_worker.test_checkpoints import tiny_weights

pytestmark = pytest.mark.django_db

# Research endpoints that hold no team's objects: any team member may use them.
PERSONAL = {"/api/tokens"}  # one's own API token
REFERENCE = {"/api/iri/backbones/{name}/layers", "/api/schema/"}  # the engine's registry, the API's description
PARTICIPANT_PREFIX = "/api/p/"  # open by design; a session token is the only key (tests/surveys)
# Path parameters naming an object of a team: another team's member must get 404 for them.
OBJECT_PARAMS = {"job_id", "checkpoint_id", "slug"}


@pytest.fixture
def labs(django_user_model, team, photos):
    """Lab A owns photos, a checkpoint, an IRI set, a live survey with one participant and a draft survey;
    Lab B has a researcher of its own. Plus a viewer of Lab A and a user who belongs to no team."""
    lab_b = team_create(name="Lab B")
    users = {}
    for name, lab, role in [("a_owner", team, Role.OWNER), ("a_viewer", team, Role.VIEWER), ("b_researcher", lab_b, Role.RESEARCHER)]:
        users[name] = django_user_model.objects.create_user(username=name, password=f"pw-{name}-123", is_staff=True)
        membership_set(team=lab, user=users[name], role=role)
    users["nobody_team"] = django_user_model.objects.create_user(username="loner", password="pw-loner-123", is_staff=True)
    job = finished_iri_set(photos)
    live = survey_create(slug="a-live", title="t", iri_jobs=[job])
    live.status = Survey.Status.LIVE
    live.save()
    draft = survey_create(slug="a-draft", title="t", iri_jobs=[job])
    enrolled = Client().post(f"/api/p/surveys/{live.slug}/enroll", {"prolific_pid": "P-A"}, content_type="application/json")
    participant = Participant.objects.get(token=enrolled.json()["token"])
    checkpoint = checkpoint_create(team=team, name="w", backbone="tiny_cnn", data=tiny_weights())
    return {"a": team, "b": lab_b, "users": users, "job": job, "live": live, "draft": draft,
            "participant": participant, "checkpoint": checkpoint, "photo": photos[0]}


def snapshot(labs) -> dict:
    """What a refused request must leave as it was."""
    job, draft = labs["job"], labs["draft"]
    job.refresh_from_db()
    draft.refresh_from_db()
    return {
        "photos": TargetPhoto.objects.count(), "checkpoints": Checkpoint.objects.count(), "jobs": IriJob.objects.count(),
        "surveys": Survey.objects.count(), "job": (job.status, job.name), "draft": (draft.status, draft.title),
        "memberships": Membership.objects.count(), "participants": Participant.objects.count(),
    }


# --------------------------------------------------------------------------------------------- the API


def schema_operations(labs) -> list[tuple[str, str, str, dict]]:
    """(method, path template, content type, path values) for every operation the schema publishes."""
    client = APIClient()
    client.force_authenticate(labs["users"]["a_owner"])
    schema = client.get("/api/schema/?format=json").json()
    operations = []
    for template, methods in schema["paths"].items():
        if template.startswith(PARTICIPANT_PREFIX):
            continue
        for method, operation in methods.items():
            content = next(iter((operation.get("requestBody") or {}).get("content", {})), "application/json")
            params = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
            operations.append((method.upper(), template, content, params))
    assert len(operations) >= 12, "the schema lists the research API"
    return operations


def path_values(labs, template: str, params: list[str]) -> dict:
    values = {"job_id": labs["job"].pk, "checkpoint_id": labs["checkpoint"].pk}
    values["slug"] = labs["draft"].slug if template.endswith("/publish") else labs["live"].slug
    values["name"] = "answers.csv" if "/export/" in template else "tiny_cnn"
    unknown = [p for p in params if p not in values]
    assert not unknown, f"{template}: tell this story which Lab A value to try for the path parameter(s) {unknown}"
    return {p: values[p] for p in params}


def request_body(labs, content: str):
    """A body that names Lab A's objects everywhere a request could: whoever is refused must not reach them."""
    body = {
        "team": labs["a"].pk, "targets": [labs["photo"].pk], "seed_photo": labs["photo"].pk, "iri_jobs": [labs["job"].pk],
        "checkpoint": labs["checkpoint"].pk, "spec": {"backbone": "tiny_cnn", "steps": 1}, "backbone": "tiny_cnn",
        "slug": "stolen", "title": "t", "name": "n",
    }
    if content.startswith("multipart"):
        png = io.BytesIO()
        Image.new("RGB", (8, 8), (1, 2, 3)).save(png, format="PNG")
        png.seek(0)
        png.name = "x.png"
        body = {k: v for k, v in body.items() if not isinstance(v, (list, dict))}
        body["file"] = png
        return body, "multipart"
    return body, "json"


def call(client: APIClient, labs, method: str, template: str, content: str, params: list[str]):
    path = template.format(**path_values(labs, template, params))
    body, fmt = request_body(labs, content)
    if method in ("GET", "DELETE"):
        return getattr(client, method.lower())(path)
    return getattr(client, method.lower())(path, body, format=fmt)


def client_as(user=None, *, header: str | None = None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    return client


def assert_refused(response, status: int, who: str, method: str, template: str):
    assert response.status_code == status, f"{who} {method} {template}: {response.status_code}, expected {status}"
    if response["Content-Type"].startswith("application/json"):
        assert response.json().get("message"), f"{who} {method} {template}: the refusal says why"


def test_nobody_and_a_participant_token_get_401_on_every_research_endpoint(labs):
    operations = schema_operations(labs)
    before = snapshot(labs)

    for who, client in [("anonymous", client_as()), ("participant token", client_as(header=f"Token {labs['participant'].token}"))]:
        for method, template, content, params in operations:
            assert_refused(call(client, labs, method, template, content, params), 401, who, method, template)

    assert snapshot(labs) == before


def test_a_user_in_no_team_gets_403_everywhere_and_the_schema_too(labs):
    client = client_as(labs["users"]["nobody_team"])
    before = snapshot(labs)

    for method, template, content, params in schema_operations(labs):
        if template in PERSONAL:
            continue
        assert_refused(call(client, labs, method, template, content, params), 403, "no team", method, template)
    assert client.get("/api/schema/").status_code == 403

    assert snapshot(labs) == before


def test_the_other_lab_gets_404_for_every_object_and_cannot_create_with_them(labs):
    client = client_as(labs["users"]["b_researcher"])
    before = snapshot(labs)
    tried = 0

    for method, template, content, params in schema_operations(labs):
        if template in PERSONAL | REFERENCE:
            continue
        response = call(client, labs, method, template, content, params)
        if OBJECT_PARAMS & set(params):
            assert_refused(response, 404, "Lab B", method, template)
        else:  # a create that names Lab A's photos, sets, checkpoint or the team itself
            assert response.status_code in (400, 404), f"Lab B {method} {template}: {response.status_code} {response.content[:300]}"
            assert response.json()["message"]
        tried += 1

    assert tried >= 10
    assert snapshot(labs) == before
    assert not AuditEntry.objects.filter(team=labs["a"]).exists(), "nothing was done to Lab A"


def test_a_viewer_reads_every_object_but_every_write_is_403(labs):
    client = client_as(labs["users"]["a_viewer"])
    before = snapshot(labs)

    for method, template, content, params in schema_operations(labs):
        if template in PERSONAL:
            continue
        response = call(client, labs, method, template, content, params)
        if method == "GET":
            assert response.status_code == 200, f"viewer GET {template}: {response.status_code}"
        else:
            assert_refused(response, 403, "viewer", method, template)

    assert snapshot(labs) == before


def test_the_owning_lab_may_do_what_the_others_may_not(labs):
    client = client_as(labs["users"]["a_owner"])

    published = client.post(f"/api/surveys/{labs['draft'].slug}/publish")
    job = client.post("/api/iri/jobs", {"targets": [labs["photo"].pk], "spec": {"backbone": "tiny_cnn", "steps": 1},
                                         "checkpoint": labs["checkpoint"].pk}, format="json")

    assert published.status_code == 200 and published.json()["status"] == "LIVE"
    assert job.status_code == 201 and job.json()["team"] == labs["a"].pk
    actions = set(AuditEntry.objects.filter(team=labs["a"], user=labs["users"]["a_owner"]).values_list("action", flat=True))
    assert {"survey.publish", "iri_job.create"} <= actions


def test_a_researcher_in_two_teams_must_say_which_one_owns_a_new_photo(labs):
    user = labs["users"]["b_researcher"]
    membership_set(team=labs["a"], user=user, role=Role.RESEARCHER)
    client = client_as(user)
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    png.name = "p.png"

    png.seek(0)
    ambiguous = client.post("/api/iri/photos", {"file": png}, format="multipart")
    png.seek(0)
    chosen = client.post("/api/iri/photos", {"file": png, "team": labs["b"].pk}, format="multipart")

    assert ambiguous.status_code == 400 and "several teams" in ambiguous.json()["message"]
    assert chosen.status_code == 201 and TargetPhoto.objects.get(pk=chosen.json()["id"]).team == labs["b"]


# --------------------------------------------------------------------------------------------- the admin


def admin_patterns(patterns=None, prefix=""):
    """(route, URL name, model admin) for every admin URL, walked from the admin site's own resolvers."""
    if patterns is None:
        for model, model_admin in admin.site._registry.items():
            for route, name, _ in admin_patterns(model_admin.urls, f"{model._meta.app_label}/{model._meta.model_name}/"):
                yield route, name, model_admin
        return
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from admin_patterns(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield prefix + str(pattern.pattern), pattern.name, None


def lab_a_object(labs, model):
    """The Lab A object a model's admin pages are tried with."""
    from django.contrib.auth.models import Group, User
    from django.contrib.contenttypes.models import ContentType
    from rest_framework.authtoken.models import Token, TokenProxy

    from operations.models import OperationRun
    from results.models import SurveyReport
    from surveys.models import Response
    from teams.models import Team

    owner = labs["users"]["a_owner"]
    Token.objects.get_or_create(user=owner)
    AuditEntry.objects.get_or_create(team=labs["a"], action="story.seen", defaults={"username": "a_owner"})
    objects = {
        TargetPhoto: labs["photo"], Checkpoint: labs["checkpoint"], IriJob: labs["job"], Survey: labs["live"],
        SurveyReport: SurveyReport.objects.get(pk=labs["live"].pk), Participant: labs["participant"], Team: labs["a"],
        Membership: Membership.objects.filter(team=labs["a"]).first(), AuditEntry: AuditEntry.objects.filter(team=labs["a"]).first(),
        TokenProxy: TokenProxy.objects.get(user=owner), User: owner, Group: Group.objects.get_or_create(name="lab-a-group")[0],
        Response: Response.objects.filter(participant__survey__team=labs["a"]).first(),
        OperationRun: OperationRun.objects.get_or_create(team=labs["a"], kind="bots", subject_id=labs["live"].pk,
                                                         subject_type=ContentType.objects.get_for_model(Survey))[0],
    }
    assert model in objects, f"tell this story which Lab A object to try the {model.__name__} admin pages with"
    assert objects[model] is not None, f"the story has no Lab A {model.__name__} yet"
    return objects[model]


ROUTE_VALUE = {"name": "answers.csv", "fmt": "png"}


def admin_url(route: str, obj) -> str:
    def value(match):
        name = match.group(2)
        if name in ("object_id", "pk", "id"):
            return str(obj.pk)
        assert name in ROUTE_VALUE, f"admin route {route}: tell this story a value for <{name}>"
        return ROUTE_VALUE[name]

    return "/admin/" + re.sub(r"<(?:(\w+):)?(\w+)>", value, route).replace("^", "").replace("$", "")


def test_every_admin_page_of_a_lab_a_object_refuses_lab_b_and_nobody(labs):
    ensure_answer(labs)
    b_staff, anonymous = Client(), Client()
    b_staff.force_login(labs["users"]["b_researcher"])
    before = snapshot(labs)
    tried = 0

    for route, name, model_admin in admin_patterns():
        if "<" not in route:
            continue  # list and add pages: checked below
        obj = lab_a_object(labs, model_admin.model)
        url = admin_url(route, obj)
        for who, client in [("Lab B", b_staff), ("anonymous", anonymous)]:
            response = client.get(url)
            if who == "anonymous":
                assert response.status_code == 302 and "/admin/login/" in response["Location"], f"{who} {url}"
            else:
                assert response.status_code in (302, 403, 404, 405), f"{who} GET {url}: {response.status_code}"
                if response.status_code == 302:  # Django's "doesn't exist" redirect to the admin index
                    assert response["Location"] in ("/admin/", "/admin/login/?next=" + url) or obj.pk not in re.findall(r"\d+", response["Location"])
            posted = client.post(url, {"post": "yes"})
            assert posted.status_code in (302, 403, 404, 405), f"{who} POST {url}: {posted.status_code}"
        tried += 1

    assert tried >= 15
    assert snapshot(labs) == before
    assert not AuditEntry.objects.filter(user=labs["users"]["b_researcher"]).exists(), "Lab B did nothing anywhere"


def test_lab_b_lists_and_choices_show_none_of_lab_a(labs):
    ensure_answer(labs)
    client = Client()
    client.force_login(labs["users"]["b_researcher"])

    for route, name, model_admin in admin_patterns():
        if not name.endswith("_changelist"):
            continue
        response = client.get("/admin/" + route)
        if response.status_code != 200:
            assert response.status_code in (302, 403), f"{route}: {response.status_code}"
            continue
        listed = set(response.context["cl"].result_list.values_list("pk", flat=True))
        obj = lab_a_object(labs, model_admin.model)
        assert obj.pk not in listed, f"Lab B's list {route} shows Lab A's {obj}"


def test_a_viewer_may_look_in_the_admin_but_not_change_anything(labs):
    client = Client()
    client.force_login(labs["users"]["a_viewer"])
    before = snapshot(labs)

    job_page = client.get(f"/admin/iri_worker/irijob/{labs['job'].pk}/change/")
    adding = client.get("/admin/iri_worker/irijob/add/")
    renaming = client.post(f"/admin/surveys/survey/{labs['draft'].pk}/change/", {"title": "renamed"})
    publishing = client.post("/admin/surveys/survey/", {"action": "publish", "_selected_action": [labs["draft"].pk]})

    assert job_page.status_code == 200
    assert adding.status_code == 403 and renaming.status_code == 403
    assert publishing.status_code in (200, 302, 403)
    assert snapshot(labs) == before


def ensure_answer(labs):
    """One answer in Lab A's live survey, so the answer admin has a row to try."""
    client = Client()
    token = labs["participant"].token
    client.post(f"/api/p/sessions/{token}/consent")
    trial = client.get(f"/api/p/sessions/{token}/trials").json()["trials"][0]
    client.post(f"/api/p/sessions/{token}/responses", {"trial": trial["id"], "choice": 0, "rt_ms": 700,
                                                       "idempotency_key": new_key()}, content_type="application/json")
