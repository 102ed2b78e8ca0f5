"""The review of a survey's Prolific submissions is a worker's work: the admin's request queues it and returns
before anything is sent to Prolific; a real Celery worker then lists the submissions and approves or asks to
return them (against the local fake of Prolific's API), and the survey's page shows the run and its outcome."""
from django.test import Client

from operations.models import OperationRun
from surveys.models import Participant
from tests.conftest import wait_for
from tests.surveys.fake_prolific import FakeProlific
from tests.surveys.test_prolific import CHANGELIST, REVIEW_QUEUED, TOKEN, act, draft

WORKER_SETTINGS = {"PROLIFIC_API_TOKEN": TOKEN, "PROLIFIC_CURRENCY": "GBP", "PROLIFIC_PROJECT_ID": "",
                   "PROLIFIC_RETRY_TOTAL": "4", "PROLIFIC_RETRY_BACKOFF_S": "0.001", "PROLIFIC_RETRY_WAIT_MAX_S": "0.01"}


def test_the_review_request_returns_before_prolific_is_asked_and_a_worker_does_the_review(
        celery_worker_starter, researcher, live_survey, settings):
    client = Client()
    client.force_login(researcher)
    with FakeProlific(token=TOKEN) as fake:
        for name, value in {**WORKER_SETTINGS, "PROLIFIC_API_URL": fake.url}.items():
            setattr(settings, name, type(getattr(settings, name))(value))
        study = draft(client, live_survey)
        fake.publish(study.study_id)
        s = live_survey
        Participant.objects.create(survey=s, prolific_pid="P-done", status="completed", session_id="S-done")
        done = fake.seed_submission(study.study_id, participant_id="P-done", study_code=s.completion_code,
                                    submission_id="S-done")
        late = fake.seed_submission(study.study_id, participant_id="P-late", study_code=s.code_timed_out)
        asked_before = len(fake.requests)

        assert act(client, "prolific_review", s) == [f"{s.slug}: {REVIEW_QUEUED}"]
        run = OperationRun.objects.get(kind="prolific_review")
        assert run.status == OperationRun.Status.QUEUED and len(fake.requests) == asked_before, "nothing sent yet"
        assert "Prolific review Queued (0%)" in client.get(f"{CHANGELIST}{s.pk}/change/").content.decode()

        celery_worker_starter(env={**WORKER_SETTINGS, "PROLIFIC_API_URL": fake.url})
        wait_for(lambda: OperationRun.objects.filter(pk=run.pk, status__in=["DONE", "FAILED"]).exists())

        run.refresh_from_db()
        assert run.status == OperationRun.Status.DONE, run.error
        assert fake.approvals == [done] and fake.returns == [late]
        assert {o["id"]: o["outcome"] for o in run.result["submissions"]} == {done: "approved",
                                                                                late: "return_requested"}
        page = client.get(f"{CHANGELIST}{s.pk}/change/").content.decode()
        assert "Prolific review Done (100%) 1 approved, 1 asked to return" in page
