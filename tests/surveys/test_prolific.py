"""Prolific from the admin, end to end against a local fake of Prolific's API (tests/surveys/fake_prolific.py;
never the network): a draft study with the survey's link and codes, places that only grow once published and
follow the forecast, a pause when collection stops, and submissions approved or asked to return by outcome."""
import pytest
from django.test import Client

from backend.exceptions import ApplicationError
from results.planning import survey_forecast
from surveys.models import Participant, ProlificStudy
from surveys.prolific import NOT_CONFIGURED, prolific_enabled
from surveys.services import survey_create, survey_publish
from surveys.services.prolific import (
    URL_PARAMETERS,
    prolific_places_from_forecast,
    prolific_places_set,
    prolific_study_create,
)
from surveys.tasks import prolific_study_pause_when_done
from teams.models import AuditEntry, Role
from teams.services import membership_set, team_create
from tests.conftest import free_port
from tests.surveys.fake_prolific import FakeProlific

pytestmark = pytest.mark.django_db

TOKEN = "test-token-123"
CHANGELIST = "/admin/surveys/survey/"


@pytest.fixture
def fake(settings):
    with FakeProlific(token=TOKEN) as server:
        settings.PROLIFIC_API_TOKEN = TOKEN
        settings.PROLIFIC_API_URL = server.url
        yield server


@pytest.fixture
def admin_client(researcher):
    client = Client()
    client.force_login(researcher)
    return client


def act(client, action: str, survey, **fields) -> list[str]:
    """Run an admin action on one survey; the messages it left."""
    response = client.post(CHANGELIST, {"action": action, "_selected_action": [survey.pk], **fields}, follow=True)
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def draft(client, survey, places=20) -> ProlificStudy:
    messages = act(client, "prolific_create", survey, apply="1", reward_pence=150, minutes=10, places=places)
    assert any("draft study" in m for m in messages), messages
    return ProlificStudy.objects.get(survey=survey)


def session(survey, pid: str, status: str) -> Participant:
    return Participant.objects.create(survey=survey, prolific_pid=pid, status=status)


def test_the_story_from_a_draft_to_approvals(fake, admin_client, live_survey, researcher, settings):
    form = admin_client.post(CHANGELIST, {"action": "prolific_create", "_selected_action": [live_survey.pk]})
    assert form.status_code == 200 and b"reward" in form.content and not fake.requests

    study = draft(admin_client, live_survey, places=20)

    (body,) = fake.bodies("POST", "studies/")
    assert body["external_study_url"] == f"{settings.SITE_URL}/s/{live_survey.slug}/?{URL_PARAMETERS}"
    assert "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}" in body["external_study_url"]
    assert body["prolific_id_option"] == "url_parameters"
    s = live_survey
    assert [(c["code"], c["code_type"]) for c in body["completion_codes"]] == [
        (s.completion_code, "COMPLETED"), (s.code_failed_attention, "FAILED_ATTENTION_CHECK"),
        (s.code_timed_out, "OTHER"), (s.code_technical, "OTHER")]
    assert (body["total_available_places"], body["reward"], body["estimated_completion_time"]) == (20, 150, 10)
    assert (study.status, study.places, study.reward) == ("UNPUBLISHED", 20, 150)

    fake.publish(study.study_id)  # the researcher publishes it on Prolific's site
    prolific_places_set(survey=live_survey, places=30, user=researcher)
    with pytest.raises(ApplicationError, match="only lets places grow once a study is published") as refused:
        prolific_places_set(survey=live_survey, places=25, user=researcher)

    assert fake.studies[study.study_id]["total_available_places"] == 30
    assert "30 places, so 25 would be a decrease" in refused.value.message
    assert [b["total_available_places"] for b in fake.bodies("PATCH", r"studies/\w+/")] == [30]

    assert act(admin_client, "prolific_pause", live_survey) == [f"{live_survey.slug}: the Prolific study is paused."]
    assert act(admin_client, "prolific_pause", live_survey) == [f"{live_survey.slug}: the Prolific study is already PAUSED."]
    assert fake.studies[study.study_id]["status"] == "PAUSED"

    seeded = {
        "done": (session(s, "P-done", "completed"), s.completion_code),
        "no-session": (None, s.completion_code),
        "timed-out": (session(s, "P-late", "timed_out"), s.code_timed_out),
        "attention": (session(s, "P-attn", "failed_attention"), s.code_failed_attention),
        "code-but-failed": (session(s, "P-sly", "failed_attention"), s.completion_code),  # the shared code proves less
        "technical": (session(s, "P-tech", "technical"), s.code_technical),
    }
    ids = {name: fake.seed_submission(study.study_id, participant_id=p.prolific_pid if p else f"P-{name}", study_code=code)
           for name, (p, code) in seeded.items()}
    reviewed_before = fake.seed_submission(study.study_id, participant_id="P-old", study_code=s.completion_code, status="APPROVED")

    messages = act(admin_client, "prolific_review", live_survey)

    assert messages == [f"{s.slug}: 2 approved, 1 asked to return, 2 failed the attention check and 1 other(s) left "
                        "for you to review on Prolific."]
    status = {name: fake.submissions[i]["status"] for name, i in ids.items()}
    assert status == {"done": "APPROVED", "no-session": "APPROVED", "timed-out": "AWAITING REVIEW",
                      "attention": "AWAITING REVIEW", "code-but-failed": "AWAITING REVIEW", "technical": "AWAITING REVIEW"}
    assert fake.submissions[ids["timed-out"]]["return_reasons"] == ["Didn't finish the study"]
    assert [n for n, i in ids.items() if fake.submissions[i]["return_requested"]] == ["timed-out"]
    assert fake.submissions[reviewed_before]["status"] == "APPROVED"
    assert not fake.bodies("POST", rf"submissions/{reviewed_before}/transition/")

    entries = AuditEntry.objects.filter(team=s.team, user=researcher, action__startswith="prolific_study.")
    assert list(entries.order_by("id").values_list("action", flat=True)) == [
        "prolific_study.create", "prolific_study.places", "prolific_study.pause", "prolific_study.review"]
    review = entries.get(action="prolific_study.review")
    assert review.details["approved"] == 2 and "P-done" not in str(review.details), "counts only, no participant IDs"
    page = admin_client.get(f"{CHANGELIST}{s.pk}/change/")
    assert study.study_id in page.content.decode() and "PAUSED" in page.content.decode()


def test_places_follow_the_forecast_and_only_grow_once_published(fake, admin_client, live_survey, researcher):
    study = draft(admin_client, live_survey, places=50)
    session(live_survey, "P-1", "completed")
    session(live_survey, "P-2", "failed_attention")
    session(live_survey, "P-3", "timed_out")  # its place is free again on Prolific

    on_draft = prolific_places_from_forecast(survey=live_survey, user=researcher, forecast={"participants_still_needed": 7})
    fake.publish(study.study_id)
    grown = prolific_places_from_forecast(survey=live_survey, user=researcher, forecast={"participants_still_needed": 40})
    kept = prolific_places_from_forecast(survey=live_survey, user=researcher, forecast={"participants_still_needed": 3})

    assert on_draft == {"places": 9, "target": 9, "changed": True}, "a draft may shrink: 2 finished + 7 needed"
    assert grown == {"places": 42, "target": 42, "changed": True}
    assert kept == {"places": 42, "target": 5, "changed": False}
    assert fake.studies[study.study_id]["total_available_places"] == 42


def test_without_a_goal_the_places_are_the_live_quota(fake, admin_client, live_survey):
    study = draft(admin_client, live_survey, places=3)
    slots = live_survey.slots.filter(is_pilot=False).count()  # trial lists x N

    all_lists = act(admin_client, "prolific_places", live_survey)
    live_survey.max_participants = slots - 2
    live_survey.save()
    fake.publish(study.study_id)
    capped = act(admin_client, "prolific_places", live_survey)

    assert all_lists == [f"{live_survey.slug}: the Prolific study now has {slots} places."]
    assert capped == [f"{live_survey.slug}: the Prolific study keeps its {slots} places (the forecast needs {slots - 2})."]
    assert fake.studies[study.study_id]["total_available_places"] == slots


def test_without_a_token_prolific_is_off_and_every_action_says_so(fake, admin_client, live_survey, settings):
    settings.PROLIFIC_API_TOKEN = ""
    ProlificStudy.objects.create(survey=live_survey, study_id="abc123", status="ACTIVE", places=5, reward=100)

    assert not prolific_enabled()
    for action in ("prolific_places", "prolific_pause", "prolific_review"):
        assert act(admin_client, action, live_survey) == [f"{live_survey.slug}: {NOT_CONFIGURED}"]
    created = act(admin_client, "prolific_create", live_survey, apply="1", reward_pence=150, minutes=10, places=5)
    assert created == [f"{live_survey.slug}: Prolific is not configured: set PROLIFIC_API_TOKEN."]
    assert prolific_study_pause_when_done(live_survey.pk) is None
    assert not fake.requests


def test_prolific_refusals_and_outages_are_messages_not_500s(fake, admin_client, live_survey, settings):
    study = draft(admin_client, live_survey)

    paused_draft = act(admin_client, "prolific_pause", live_survey)
    fake.fail_next = (500, {"error": {"title": "Server error", "detail": "Try again later."}})
    failed = act(admin_client, "prolific_review", live_survey)
    study.refresh_from_db()
    last_error = study.last_error
    settings.PROLIFIC_API_TOKEN = "a-revoked-token"
    unauthorised = act(admin_client, "prolific_places", live_survey)
    settings.PROLIFIC_API_URL = f"http://127.0.0.1:{free_port()}/api/v1/"
    unreachable = act(admin_client, "prolific_pause", live_survey)

    slug = live_survey.slug
    assert paused_draft == [f"{slug}: The Prolific study {study.study_id} is still a draft (UNPUBLISHED): there is nothing to pause."]
    assert failed == [f"{slug}: Prolific answered 500: Server error Try again later."]
    assert last_error == "Prolific answered 500: Server error Try again later."
    assert unauthorised == [f"{slug}: Prolific answered 401: Unauthorized Authentication credentials were not provided."]
    assert unreachable == [f"{slug}: Prolific did not answer (ConnectionError); nothing was changed here, try again."]


def test_a_study_is_created_once_and_with_distinct_codes(fake, admin_client, live_survey, researcher):
    study_id = draft(admin_client, live_survey).study_id

    again = act(admin_client, "prolific_create", live_survey, apply="1", reward_pence=150, minutes=10, places=5)
    live_survey.prolific_study.delete()
    live_survey.code_technical = live_survey.code_timed_out
    live_survey.save()
    with pytest.raises(ApplicationError, match="code_timed_out and code_technical share one"):
        prolific_study_create(survey=live_survey, reward_pence=150, minutes=10, places=5, user=researcher)

    assert again == [f"{live_survey.slug}: {live_survey.slug} already has a Prolific study ({study_id})."]
    assert len(fake.studies) == 1 and not ProlificStudy.objects.exists()


def test_the_task_pauses_the_study_when_collection_stops(fake, admin_client, live_survey):
    study = draft(admin_client, live_survey)
    fake.publish(study.study_id)

    result = prolific_study_pause_when_done(live_survey.pk)
    again = prolific_study_pause_when_done(live_survey.pk)

    assert result == {"paused": True, "status": "PAUSED"} and again == {"paused": False, "status": "PAUSED"}
    assert fake.studies[study.study_id]["status"] == "PAUSED"
    entry = AuditEntry.objects.get(action="prolific_study.pause")
    assert entry.user is None and entry.team == live_survey.team
    assert prolific_study_pause_when_done(live_survey.pk + 1000) is None, "a survey without a study: nothing to do"


def test_another_team_cannot_act_on_the_study(fake, admin_client, live_survey, django_user_model):
    study = draft(admin_client, live_survey)
    fake.publish(study.study_id)
    lab_b = team_create(name="Lab B")
    outsider = django_user_model.objects.create_user(username="bob", password="pw-bob-123", is_staff=True)
    membership_set(team=lab_b, user=outsider, role=Role.RESEARCHER)
    client = Client()
    client.force_login(outsider)
    seen = len(fake.requests)

    for action in ("prolific_create", "prolific_places", "prolific_pause", "prolific_review"):
        response = client.post(CHANGELIST, {"action": action, "_selected_action": [live_survey.pk], "apply": "1",
                                            "reward_pence": 1, "minutes": 1, "places": 1})
        assert response.status_code in (200, 302)
    page = client.get(f"{CHANGELIST}{live_survey.pk}/change/")

    assert page.status_code in (302, 404)
    assert len(fake.requests) == seen, "nothing reached Prolific"
    assert fake.studies[study.study_id]["status"] == "ACTIVE"
    assert not AuditEntry.objects.filter(user=outsider).exists()


def test_with_a_goal_the_places_come_from_the_planners_forecast(fake, admin_client, iri_set):
    survey = survey_publish(survey=survey_create(slug="adaptive", title="t", iri_jobs=[iri_set], precision_goal=0.25))
    study = draft(admin_client, survey, places=1)
    session(survey, "P-1", "completed")
    needed = survey_forecast(survey=survey)["participants_still_needed"]

    messages = act(admin_client, "prolific_places", survey)

    assert needed >= 1 and messages == [f"adaptive: the Prolific study now has {1 + needed} places."]
    assert fake.studies[study.study_id]["total_available_places"] == 1 + needed
