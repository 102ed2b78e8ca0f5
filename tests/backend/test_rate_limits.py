"""Rate limits on the open participant endpoints: 429 with Retry-After, and never a blocker when the cache is down."""
import pytest
from django.core.cache import cache
from rest_framework.test import APIClient, APIRequestFactory

from backend.throttles import EnrollRateThrottle, ParticipantRateThrottle
from tests.conftest import new_key

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def tight_limits(monkeypatch):
    cache.clear()
    monkeypatch.setattr(EnrollRateThrottle, "THROTTLE_RATES", {"participant_enroll": "3/min"})
    monkeypatch.setattr(ParticipantRateThrottle, "THROTTLE_RATES", {"participant_session": "5/min"})
    yield
    cache.clear()


def test_enrollment_is_limited_per_ip_with_retry_after(live_survey):
    client = APIClient()
    statuses = [client.post(f"/api/p/surveys/{live_survey.slug}/enroll", {}, format="json").status_code for _ in range(4)]

    assert statuses == [201, 201, 201, 429]
    limited = client.post(f"/api/p/surveys/{live_survey.slug}/enroll", {}, format="json", REMOTE_ADDR="127.0.0.1")
    assert int(limited["Retry-After"]) > 0
    assert "throttled" in limited.json()["message"].lower()
    other_ip = client.post(f"/api/p/surveys/{live_survey.slug}/enroll", {}, format="json", REMOTE_ADDR="10.0.0.9")
    assert other_ip.status_code == 201


def test_a_client_sent_forwarded_for_header_does_not_change_its_ip(live_survey, settings):
    client = APIClient()
    statuses = [
        client.post(f"/api/p/surveys/{live_survey.slug}/enroll", {}, format="json", HTTP_X_FORWARDED_FOR=f"10.1.1.{k}").status_code
        for k in range(4)
    ]

    assert statuses == [201, 201, 201, 429]  # no trusted proxy: the limit counts REMOTE_ADDR, whatever the header says


def test_behind_one_trusted_proxy_the_forwarded_address_is_the_client(live_survey, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    client = APIClient()
    statuses = [
        client.post(f"/api/p/surveys/{live_survey.slug}/enroll", {}, format="json", HTTP_X_FORWARDED_FOR=f"10.1.1.{k}").status_code
        for k in range(4)
    ]

    assert statuses == [201, 201, 201, 201]  # four clients behind the proxy, each with its own budget


def test_each_session_has_its_own_budget(live_survey):
    client = APIClient()
    one = client.post(f"/api/p/surveys/{live_survey.slug}/enroll", {}, format="json").json()["token"]
    two = client.post(f"/api/p/surveys/{live_survey.slug}/enroll", {}, format="json").json()["token"]

    first = [client.get(f"/api/p/sessions/{one}/next").status_code for _ in range(6)]

    assert first[-1] == 429 and first[:5] == [200] * 5
    assert client.get(f"/api/p/sessions/{two}/next").status_code == 200


def test_researchers_are_not_limited(researcher_client, live_survey):
    statuses = {researcher_client.get(f"/api/results/surveys/{live_survey.slug}/alignment").status_code for _ in range(8)}
    assert statuses == {200}


def test_a_broken_cache_lets_participants_through(live_survey, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("cache is down")

    monkeypatch.setattr(cache, "get", broken)
    client = APIClient()
    token = client.post(f"/api/p/surveys/{live_survey.slug}/enroll", {}, format="json").json()["token"]
    client.post(f"/api/p/sessions/{token}/consent")
    trial = client.get(f"/api/p/sessions/{token}/next").json()["trial"]
    answer = {"trial": trial["id"], "choice": 0, "rt_ms": 300, "idempotency_key": new_key()}
    assert client.post(f"/api/p/sessions/{token}/responses", answer, format="json").status_code == 201


def test_a_session_key_is_safe_for_every_cache_whatever_the_url_holds():
    from django.core.cache.backends.base import memcache_key_warnings

    class View:
        kwargs = {"token": "ünïcode token with spaces " * 20}

    request = APIRequestFactory().get("/api/p/sessions/x/next")
    key = ParticipantRateThrottle().get_cache_key(request, View())

    assert key is not None and list(memcache_key_warnings(key)) == []
