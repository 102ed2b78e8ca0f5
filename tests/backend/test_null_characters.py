"""A NUL character anywhere a client can put one is a 400 with a reason, never a 500 from PostgreSQL."""
import uuid

import pytest
from rest_framework.test import APIClient

from surveys.models import ParticipantEvent, Response

pytestmark = pytest.mark.django_db

PARTICIPANT_ENDPOINTS = [("post", "consent"), ("get", "trials"), ("get", "next"), ("post", "responses"),
                         ("post", "events"), ("post", "heartbeat"), ("post", "return"), ("post", "abort"),
                         ("post", "complete")]


@pytest.fixture
def session(live_survey):
    client = APIClient()
    token = client.post(f"/api/p/surveys/{live_survey.slug}/enroll", {}, format="json").json()["token"]
    client.post(f"/api/p/sessions/{token}/consent")
    return client, token


@pytest.mark.parametrize("method,endpoint", PARTICIPANT_ENDPOINTS)
def test_a_session_token_with_a_nul_is_refused(method, endpoint):
    refused = getattr(APIClient(), method)(f"/api/p/sessions/a%00b/{endpoint}")

    assert refused.status_code == 400
    assert refused.json()["message"] == "Null characters are not allowed in the URL."


def test_a_query_string_with_a_nul_is_refused(live_survey):
    refused = APIClient().post(f"/api/p/surveys/{live_survey.slug}/enroll?pilot=x%00y", {}, format="json")

    assert refused.status_code == 400
    assert "Null characters" in refused.json()["message"]


def test_an_event_whose_data_hides_a_nul_is_refused_and_nothing_is_stored(session):
    client, token = session
    event = {"id": str(uuid.uuid4()), "type": "blur", "data": {"note": ["fine", "not\u0000fine"]}}

    refused = client.post(f"/api/p/sessions/{token}/events", {"events": [event]}, format="json")

    assert refused.status_code == 400
    assert "Null characters are not allowed" in refused.json()["message"]
    assert not ParticipantEvent.objects.exists()


def test_an_answer_posted_as_a_form_with_a_nul_in_its_trial_is_refused(session):
    client, token = session
    trial = client.get(f"/api/p/sessions/{token}/trials").json()["trials"][0]
    answer = {"trial": trial["id"] + "\x00", "choice": 0, "rt_ms": 400, "idempotency_key": str(uuid.uuid4())}

    refused = client.post(f"/api/p/sessions/{token}/responses", answer)  # multipart, as a plain form would send

    assert refused.status_code == 400
    assert refused.json()["extra"]["fields"]["trial"] == ["Null characters are not allowed."]
    assert not Response.objects.exists()
