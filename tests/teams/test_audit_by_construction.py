"""Every write is audited by the service that does it: the write services take `actor=` and record their own audit
entry in their own transaction, so the API, the admin, a command and a task are audited alike, and a write that
does not say who does it does not happen (outside a test's setup, which builds a world nobody made).

The commands that build surveys are walked in their own stories: `reproduce --survey`
(tests/iri_worker/test_reproduce_command.py) and `demo` (tests/backend/test_demo_command.py)."""
import ast
import inspect
import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from PIL import Image
from rest_framework.test import APIClient

from iri_worker import services as iri_services
from iri_worker.models import IriJob, TargetPhoto
from operations import services as operation_services
from results import archive, plans
from surveys import services as survey_services
from surveys.models import Participant, Survey
from surveys.services import prolific as prolific_services
from surveys.services import prolific_review
from surveys.services import participant_enroll, survey_create, survey_publish
from surveys.tasks import participant_ids_expire_task
from teams import services as team_services
from teams.actors import Actor
from teams.models import AuditEntry, Membership, Role

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]

# Every service that writes what the audit log keeps. A new one belongs here (and records its entry itself).
AUDITED_SERVICES = [
    team_services.team_create, team_services.membership_set, team_services.membership_remove,
    team_services.api_token_issue, team_services.api_token_revoke,
    iri_services.target_photo_create, iri_services.checkpoint_create, iri_services.checkpoint_upload,
    iri_services.iri_job_create,
    iri_services.iri_sweep_create, iri_services.iri_job_cancel, iri_services.iri_job_retry,
    survey_services.survey_create, survey_services.survey_create_start, survey_services.survey_publish,
    survey_services.survey_pilot_reset,
    survey_services.participant_erase, survey_services.participant_ids_expire,
    survey_services.survey_rehearsal_start, survey_services.survey_rehearsal_erase,
    prolific_services.prolific_study_create, prolific_services.prolific_places_set,
    prolific_services.prolific_places_from_forecast, prolific_services.prolific_study_pause,
    prolific_review.prolific_review_start, prolific_review.prolific_submissions_review,
    prolific_services.prolific_background_failed,
    plans.plan_freeze, plans.plan_change, archive.study_archive_write, operation_services.operation_run_create,
]
SOURCES = ["backend", "teams", "iri_worker", "surveys", "results", "operations", "bench"]  # everything but the tests


@pytest.fixture
def production_rule(settings):
    """The rule outside a test's setup: a write that does not say who does it is refused (asked for after the
    fixtures that build the test's world)."""
    settings.AUDIT_ACTOR_REQUIRED = True


def created(slug: str) -> list[AuditEntry]:
    survey = Survey.objects.get(slug=slug)
    return list(AuditEntry.objects.filter(action="survey.create", object_id=str(survey.pk)))


# --------------------------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("service", AUDITED_SERVICES, ids=lambda s: s.__name__)
def test_every_write_service_takes_an_actor_keyword(service):
    parameter = inspect.signature(service).parameters.get("actor")

    assert parameter is not None and parameter.kind is inspect.Parameter.KEYWORD_ONLY, f"{service.__name__}(*, actor=...)"


def test_every_call_of_a_write_service_outside_the_tests_says_who_does_it():
    names = {service.__name__ for service in AUDITED_SERVICES}
    silent = []
    for package in SOURCES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and _called_name(node) in names:
                    if not any(keyword.arg == "actor" for keyword in node.keywords):
                        silent.append(f"{path.relative_to(ROOT)}:{node.lineno} {_called_name(node)}")

    assert not silent, f"pass actor= (teams.actors.Actor) to: {silent}"


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    return call.func.attr if isinstance(call.func, ast.Attribute) else None


def test_a_write_without_an_actor_is_refused_and_leaves_nothing(iri_set, photos, team, production_rule):
    draft = survey_create(slug="draft", title="t", iri_jobs=[iri_set], actor=Actor.command("test"))
    before = (Survey.objects.count(), TargetPhoto.objects.count(), IriJob.objects.count(), Membership.objects.count(),
              AuditEntry.objects.count())

    with pytest.raises(TypeError, match="survey.create is audited: say who does it with actor="):
        survey_create(slug="nobodys", title="t", iri_jobs=[iri_set])
    with pytest.raises(TypeError, match="survey.plan_freeze is audited"):
        survey_publish(survey=draft)
    with pytest.raises(TypeError, match="photo.create is audited"):
        iri_services.target_photo_create(team=team, name="p", data=png())
    with pytest.raises(TypeError, match="iri_job.create is audited"):
        iri_services.iri_job_create(targets=photos, spec={"backbone": "tiny_cnn", "steps": 1, "image_size": 32})
    with pytest.raises(TypeError, match="membership.set is audited"):
        team_services.membership_set(team=team, user=draft_user(), role=Role.VIEWER)

    draft.refresh_from_db()
    assert draft.status == Survey.Status.DRAFT
    after = (Survey.objects.count(), TargetPhoto.objects.count(), IriJob.objects.count(), Membership.objects.count(),
             AuditEntry.objects.count())
    assert after == before


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(out, format="PNG")
    return out.getvalue()


def draft_user():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username="newcomer")


# --------------------------------------------------------------------------------------------- the write paths


def test_a_survey_created_through_the_api_is_audited_once_as_the_caller(researcher, iri_set, production_rule):
    client = APIClient()
    client.force_authenticate(researcher)

    response = client.post("/api/surveys/", {"slug": "by-api", "title": "t", "iri_jobs": [iri_set.pk]}, format="json",
                           REMOTE_ADDR="203.0.113.7")

    assert response.status_code == 201
    [entry] = created("by-api")
    assert (entry.user, entry.username, entry.client_ip, entry.team) == (researcher, "alice", "203.0.113.7", iri_set.team)


def test_the_api_takes_who_creates_a_survey_from_the_caller_never_from_the_body(researcher, iri_set, production_rule):
    client = APIClient()
    client.force_authenticate(researcher)

    response = client.post("/api/surveys/", {"slug": "forged", "title": "t", "iri_jobs": [iri_set.pk], "actor": "bob"},
                           format="json")

    assert response.status_code == 400 and response.json()["message"].startswith("actor: not a survey option")
    assert not Survey.objects.filter(slug="forged").exists() and not AuditEntry.objects.exists()


def test_a_survey_created_in_the_admin_is_audited_once_as_the_staff_member(researcher, iri_set, production_rule):
    client = Client()
    client.force_login(researcher)
    form = client.get("/admin/surveys/survey/add/").context["adminform"].form
    data = {f.name: f.value() for f in form if f.value() is not None and f.value() is not False}  # as rendered

    response = client.post("/admin/surveys/survey/add/", {**data, "slug": "by-admin", "title": "t", "iri_jobs": [iri_set.pk]})

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    [entry] = created("by-admin")
    assert (entry.user, entry.username, entry.client_ip) == (researcher, "alice", "127.0.0.1")


def test_an_admin_action_is_audited_once_as_the_staff_member(researcher, iri_set, production_rule):
    draft = survey_create(slug="to-publish", title="t", iri_jobs=[iri_set], actor=Actor.command("test"))
    client = Client()
    client.force_login(researcher)

    client.post("/admin/surveys/survey/", {"action": "publish", "_selected_action": [draft.pk]})

    draft.refresh_from_db()
    assert draft.status == Survey.Status.LIVE
    [entry] = AuditEntry.objects.filter(action="survey.publish")
    assert (entry.user, entry.object_id) == (researcher, str(draft.pk))


def test_a_command_is_audited_as_the_command(live_survey, production_rule):
    participant_enroll(survey=live_survey, prolific_pid="P-ASKS", study_id="S", session_id="S1")

    call_command("participant_erase", "--prolific-pid", "P-ASKS", stdout=io.StringIO())

    [entry] = AuditEntry.objects.filter(action="participant.erase")
    assert (entry.user, entry.username, entry.client_ip, entry.team) == (None, "command:participant_erase", None,
                                                                         live_survey.team)


def test_a_task_is_audited_as_the_task(live_survey, production_rule):
    Survey.objects.filter(pk=live_survey.pk).update(retention_days=0)
    person, _ = participant_enroll(survey=live_survey, prolific_pid="P-GONE")
    Participant.objects.filter(pk=person.pk).update(ended_at=live_survey.created_at)

    participant_ids_expire_task()

    [entry] = AuditEntry.objects.filter(action="survey.retention")
    assert (entry.user, entry.username, entry.team) == (None, "task:participant_ids_expire", live_survey.team)
