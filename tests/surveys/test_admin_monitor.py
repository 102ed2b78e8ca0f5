"""Researchers: the survey builder's new fields in the API, and the live monitor in the admin and API."""
import pytest

from surveys.models import Survey
from surveys.services import participant_consent, participant_enroll
from tests.conftest import survey_posted

pytestmark = pytest.mark.django_db


def test_the_builder_takes_every_setting_and_the_monitor_shows_states_and_fill(researcher_client, client, researcher, iri_set):
    body = {"slug": "b", "title": "t", "iri_jobs": [iri_set.pk], "trials_per_participant": 1, "ratings_per_list": 2,
            "catch_trials": 1, "practice_trials": 1, "resume_policy": "block", "time_limit_minutes": 20,
            "code_failed_attention": "FAILCODE", "max_participants": 5}
    created = survey_posted(researcher_client, body)
    assert created["trial_lists"] == 3 and created["resume_policy"] == "block"
    survey = Survey.objects.get(slug="b")
    assert survey.code_failed_attention == "FAILCODE" and survey.trials.filter(kind="catch").count() == 3
    researcher_client.post("/api/surveys/b/publish")
    survey.refresh_from_db()
    p, _ = participant_enroll(survey=survey, prolific_pid="X")
    participant_consent(participant=p)
    participant_enroll(survey=survey, pilot=True)

    monitor = researcher_client.get("/api/surveys/b/monitor").json()

    assert monitor["states"] == {"consented": 1} and monitor["n"] == 2
    assert sorted(l["reserved"] for l in monitor["lists"]) == [0, 0, 1]
    assert researcher_client.get("/api/surveys/b/monitor?mode=pilot").json()["states"] == {"arrived": 1}
    client.force_login(researcher)
    page = client.get(f"/admin/surveys/survey/{survey.pk}/monitor/")
    assert page.status_code == 200 and b"monitor-lists" in page.content and b"consented" in page.content
    assert client.get("/admin/surveys/survey/add/").status_code == 200


def test_a_pilot_link_works_on_a_draft_and_its_data_stays_apart(client, iri_set):
    from surveys.services import survey_create

    survey = survey_create(slug="d", title="t", iri_jobs=[iri_set])
    assert client.get("/s/d/").status_code == 404
    page = client.get(f"/s/d/?pilot={survey.pilot_key}")
    assert page.status_code == 200
    enrolled = client.post("/api/p/surveys/d/enroll", {"pilot": survey.pilot_key}, content_type="application/json")
    assert enrolled.status_code == 201
    assert client.post("/api/p/surveys/d/enroll", {"pilot": "wrong"}, content_type="application/json").status_code == 404
    assert survey.participants.get().is_pilot


def test_the_run_bots_action_hands_the_bots_to_a_worker_and_the_survey_page_shows_their_summary(
        researcher, live_survey, monkeypatch, django_capture_on_commit_callbacks):
    from django.test import Client

    from operations.models import OperationRun
    from operations.tasks import operation_run_execute
    from teams.models import AuditEntry

    asked = []
    monkeypatch.setattr("surveys.bots.bots_run", lambda **kw: asked.append(kw) or {"completed": 7, "lost": 0, "errors": 0})
    client = Client()
    client.force_login(researcher)

    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        client.post("/admin/surveys/survey/", {"action": "run_bots", "_selected_action": [live_survey.pk]})

    run = OperationRun.objects.get(subject_id=live_survey.pk, kind="bots")
    assert run.status == OperationRun.Status.QUEUED and len(enqueued) == 1 and not asked  # not inside the request
    operation_run_execute(run.pk)  # what the worker does
    run.refresh_from_db()
    assert run.status == OperationRun.Status.DONE and asked[0]["slug"] == live_survey.slug and asked[0]["participants"] == 10
    page = client.get(f"/admin/surveys/survey/{live_survey.pk}/change/").content.decode()
    assert "completed 7" in page and "Done" in page
    assert AuditEntry.objects.filter(action="survey.bots", team=live_survey.team).exists()
