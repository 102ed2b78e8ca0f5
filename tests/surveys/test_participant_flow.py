"""A crowdworker's session over HTTP: enroll, consent, next trial, answer, complete."""
import pytest
from rest_framework.test import APIClient

from surveys.models import Participant, Response
from tests.conftest import new_key

pytestmark = pytest.mark.django_db


def enroll(client, survey, **body):
    return client.post(f"/api/p/surveys/{survey.slug}/enroll", body, format="json")


def test_a_participant_answers_every_trial_and_gets_the_completion_code(live_survey):
    client = APIClient()
    enrolled = enroll(client, live_survey, prolific_pid="PID1", study_id="S1", session_id="X1")
    assert enrolled.status_code == 201
    token = enrolled.json()["token"]
    assert enrolled.json()["total"] == live_survey.trials.count() == 3
    assert client.post(f"/api/p/sessions/{token}/consent").status_code == 200

    for _ in range(3):
        trial = client.get(f"/api/p/sessions/{token}/next").json()["trial"]
        answer = {"trial": trial["id"], "choice": 1, "rt_ms": 812.5, "idempotency_key": new_key()}
        assert client.post(f"/api/p/sessions/{token}/responses", answer, format="json").status_code == 201

    assert client.get(f"/api/p/sessions/{token}/next").json() == {"trial": None, "total": 3, "done": 3}
    done = client.post(f"/api/p/sessions/{token}/complete")
    assert done.status_code == 200
    assert done.json()["completion_code"] == live_survey.completion_code
    assert done.json()["redirect_url"].endswith(f"cc={live_survey.completion_code}")
    assert Participant.objects.get(token=token).completed_at is not None


def test_a_repeated_post_with_the_same_key_stores_one_answer(live_survey):
    client = APIClient()
    token = enroll(client, live_survey).json()["token"]
    client.post(f"/api/p/sessions/{token}/consent")
    trial = client.get(f"/api/p/sessions/{token}/next").json()["trial"]
    answer = {"trial": trial["id"], "choice": 0, "rt_ms": 500, "idempotency_key": new_key()}

    first = client.post(f"/api/p/sessions/{token}/responses", answer, format="json")
    second = client.post(f"/api/p/sessions/{token}/responses", answer, format="json")

    assert (first.status_code, second.status_code) == (201, 200)
    assert Response.objects.count() == 1


def test_a_second_answer_to_the_same_trial_with_a_new_key_is_refused(live_survey):
    client = APIClient()
    token = enroll(client, live_survey).json()["token"]
    client.post(f"/api/p/sessions/{token}/consent")
    trial = client.get(f"/api/p/sessions/{token}/next").json()["trial"]
    answer = {"trial": trial["id"], "choice": 0, "rt_ms": 500}
    client.post(f"/api/p/sessions/{token}/responses", {**answer, "idempotency_key": new_key()}, format="json")

    again = client.post(f"/api/p/sessions/{token}/responses", {**answer, "choice": 1, "idempotency_key": new_key()}, format="json")

    assert again.status_code == 409
    assert Response.objects.get().shown_position == 0  # the first answer stays


def test_an_answer_to_someone_elses_trial_gets_404(live_survey, photos):
    from tests.conftest import finished_iri_set
    from surveys.services import survey_create, survey_publish

    other = survey_publish(survey=survey_create(slug="other", title="x", iri_jobs=[finished_iri_set(photos, rng_seed=7)]))
    client = APIClient()
    token = enroll(client, live_survey).json()["token"]
    client.post(f"/api/p/sessions/{token}/consent")
    foreign_trial = other.trials.first().public_id

    answer = {"trial": foreign_trial, "choice": 0, "rt_ms": 400, "idempotency_key": new_key()}
    response = client.post(f"/api/p/sessions/{token}/responses", answer, format="json")

    assert response.status_code == 404
    assert response.json()["message"] == "This trial is not one of yours."
    assert Response.objects.count() == 0


def test_completing_with_answers_missing_is_refused_with_the_count(live_survey):
    client = APIClient()
    token = enroll(client, live_survey).json()["token"]

    response = client.post(f"/api/p/sessions/{token}/complete")

    assert response.status_code == 409
    assert response.json()["extra"] == {"missing": 3}
    assert "completion_code" not in response.json()


def test_the_same_prolific_id_resumes_its_session_instead_of_starting_again(live_survey):
    client = APIClient()
    first = enroll(client, live_survey, prolific_pid="PID7")
    second = enroll(client, live_survey, prolific_pid="PID7", token=first.json()["token"])  # the browser kept it

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["token"] == second.json()["token"]
    assert Participant.objects.count() == 1


def test_an_anonymous_reload_resumes_by_token(live_survey):
    client = APIClient()
    token = enroll(client, live_survey).json()["token"]

    resumed = enroll(client, live_survey, token=token)

    assert resumed.status_code == 200 and resumed.json()["token"] == token


def test_bad_answers_get_a_clear_400(live_survey):
    client = APIClient()
    token = enroll(client, live_survey).json()["token"]
    client.post(f"/api/p/sessions/{token}/consent")
    trial = client.get(f"/api/p/sessions/{token}/next").json()["trial"]

    response = client.post(
        f"/api/p/sessions/{token}/responses",
        {"trial": trial["id"], "choice": 2, "rt_ms": 10, "idempotency_key": new_key()},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["message"].startswith("choice:")


def test_an_unknown_session_or_closed_survey_gets_404(live_survey):
    client = APIClient()
    assert client.get("/api/p/sessions/not-a-token/next").status_code == 404
    live_survey.status = "CLOSED"
    live_survey.save()
    assert enroll(client, live_survey).status_code == 404
    assert client.get(f"/s/{live_survey.slug}/").status_code == 404
