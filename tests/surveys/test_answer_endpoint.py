"""The answer endpoint, the hot path of every survey: lean, but with the same contract as every other API."""
import uuid

import pytest
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from backend.throttles import ParticipantRateThrottle
from surveys.models import Response
from tests.conftest import new_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(live_survey):
    """A consented participant and the first trial waiting for an answer."""
    client = APIClient()
    token = client.post(f"/api/p/surveys/{live_survey.slug}/enroll", {}, format="json").json()["token"]
    client.post(f"/api/p/sessions/{token}/consent")
    trial = client.get(f"/api/p/sessions/{token}/next").json()["trial"]["id"]
    return client, token, trial


def answer(client, token, body, **kwargs):
    return client.post(f"/api/p/sessions/{token}/responses", body, format="json", **kwargs)


def test_an_answer_is_saved_once_and_a_replay_stores_nothing_new(session):
    client, token, trial = session
    body = {"trial": trial, "choice": 1, "rt_ms": 812.5, "idempotency_key": new_key()}

    first, replay = answer(client, token, body), answer(client, token, body)

    assert (first.status_code, first.json()) == (201, {"saved": True})
    assert (replay.status_code, replay.json()) == (200, {"saved": True})
    assert first["Content-Type"] == "application/json"
    assert Response.objects.get().rt_ms == 812.5


@pytest.mark.parametrize(
    "change, message",
    [
        ({"trial": None}, "trial: This field may not be null."),
        ({"trial": "   "}, "trial: This field may not be blank."),
        ({"trial": "x" * 41}, "trial: Ensure this field has no more than 40 characters."),
        ({"trial": ["a"]}, "trial: Not a valid string."),
        ({"choice": 3}, "choice: this trial has 2 options."),
        ({"choice": 256}, 'choice: "256" is not a valid choice.'),
        ({"timing": {"shown_ms": 300}}, "timing: image_onset_ms: A finite number of 0 or more is required."),
        ({"timing": "fast"}, "timing: Expected an object with image_onset_ms, image_offset_ms, shown_ms, refresh_hz, frames."),
        ({"choice": "left"}, 'choice: "left" is not a valid choice.'),
        ({"rt_ms": -1}, "rt_ms: Ensure this value is greater than or equal to 0."),
        ({"rt_ms": 24 * 3600 * 1000 + 1}, "rt_ms: Ensure this value is less than or equal to 86400000."),
        ({"rt_ms": "soon"}, "rt_ms: A valid number is required."),
        ({"rt_ms": "NaN"}, "rt_ms: A valid number is required."),
        ({"idempotency_key": "not-a-uuid"}, "idempotency_key: Must be a valid UUID."),
    ],
)
def test_a_bad_field_gets_400_with_the_field_named(session, change, message):
    client, token, trial = session
    body = {"trial": trial, "choice": 0, "rt_ms": 500, "idempotency_key": new_key(), **change}

    response = answer(client, token, body)

    assert response.status_code == 400
    assert response.json()["message"] == message
    assert list(response.json()["extra"]["fields"]) == [message.split(":")[0]]
    assert not Response.objects.exists()


def test_missing_fields_are_all_listed_in_field_order(session):
    client, token, _ = session

    response = answer(client, token, {"rt_ms": 400})

    assert response.status_code == 400
    assert response.json()["message"] == "trial: This field is required."
    assert list(response.json()["extra"]["fields"]) == ["trial", "choice", "idempotency_key"]


def test_bodies_that_are_not_an_answer_object_are_refused_without_a_server_error(session):
    client, token, _ = session
    url = f"/api/p/sessions/{token}/responses"

    not_json = client.post(url, "{oops", content_type="application/json")
    a_list = client.post(url, "[1, 2]", content_type="application/json")
    plain_text = client.post(url, "choice=1", content_type="text/plain")
    wrong_method = client.get(url)

    assert not_json.status_code == 400 and not_json.json()["message"].startswith("JSON parse error")
    assert a_list.status_code == 400 and a_list.json()["message"] == "Invalid data. Expected a dictionary, but got list."
    assert plain_text.status_code == 415
    assert wrong_method.status_code == 405 and wrong_method.json()["message"] == 'Method "GET" not allowed.'


def test_a_form_encoded_answer_is_read_like_json(session):
    client, token, trial = session
    form = {"trial": trial, "choice": "1", "rt_ms": "300", "idempotency_key": new_key()}

    response = client.post(f"/api/p/sessions/{token}/responses", form)

    assert response.status_code == 201
    assert Response.objects.get().shown_position == 1


def test_the_session_rate_limit_applies_with_retry_after(session, monkeypatch):
    client, token, trial = session
    cache.clear()
    monkeypatch.setattr(ParticipantRateThrottle, "THROTTLE_RATES", {"participant_session": "2/min"})
    body = {"trial": trial, "choice": 0, "rt_ms": 500, "idempotency_key": new_key()}

    statuses = [answer(client, token, body).status_code for _ in range(3)]
    limited = answer(client, token, body)

    assert statuses == [201, 200, 429]
    assert int(limited["Retry-After"]) > 0 and "throttled" in limited.json()["message"].lower()
    cache.clear()


def test_participant_calls_carry_no_session_cookie(session):
    client, token, trial = session
    client.cookies.clear()

    response = answer(client, token, {"trial": trial, "choice": 0, "rt_ms": 500, "idempotency_key": new_key()})

    assert response.status_code == 201
    assert "Set-Cookie" not in response and "Cookie" not in response.get("Vary", "")


def test_the_answer_endpoint_stays_in_the_api_schema(researcher_client):
    schema = researcher_client.get("/api/schema/", {"format": "json"}).json()

    operation = schema["paths"]["/api/p/sessions/{token}/responses"]["post"]
    assert "requestBody" in operation


def test_a_dead_kept_database_connection_costs_no_failed_answer(transactional_db, live_survey):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    client = APIClient()
    token = client.post(f"/api/p/surveys/{live_survey.slug}/enroll", {}, format="json").json()["token"]
    client.post(f"/api/p/sessions/{token}/consent")
    trial = client.get(f"/api/p/sessions/{token}/next").json()["trial"]["id"]
    connection.ensure_connection()
    connection.connection.pgconn.finish()  # what a PostgreSQL restart leaves behind: a kept connection that is gone

    response = answer(client, token, {"trial": trial, "choice": 0, "rt_ms": 500, "idempotency_key": str(uuid.uuid4())})

    assert response.status_code == 201
    assert Response.objects.count() == 1
