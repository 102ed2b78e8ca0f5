"""Faults survived: the broker goes away and comes back."""
import os
import shutil
import subprocess
import time

import sys

import pytest
from django.conf import settings

from iri_worker.models import IriJob
from surveys.models import Response
from tests.conftest import TINY_SPEC, database_url, free_port, new_key, wait_for


class PrivateRedis:
    """A Redis server of this test's own, so stopping it disturbs nobody else."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout.strip() == b"PONG", timeout=20)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def private_broker():
    redis = PrivateRedis()
    redis.start()
    yield redis
    redis.stop()


def test_without_redis_participants_carry_on_and_job_submission_says_the_queue_is_down(
    transactional_db, private_broker, live_survey, photos, researcher
):
    # The web and worker processes of this test talk to a Redis of their own, which the test stops and restarts.
    import requests
    from rest_framework.authtoken.models import Token

    from tests.surveys import gunicorn_server

    env = {"CELERY_BROKER_URL": private_broker.url, "RATE_LIMIT_ENROLL": "1000/min"}
    web, url = gunicorn_server.start(workers=2, env=env)
    researcher_headers = {"Authorization": f"Token {Token.objects.create(user=researcher).key}"}
    worker = None
    try:
        private_broker.stop()

        token = requests.post(f"{url}/api/p/surveys/{live_survey.slug}/enroll", json={}).json()["token"]
        requests.post(f"{url}/api/p/sessions/{token}/consent")
        for trial in requests.get(f"{url}/api/p/sessions/{token}/trials").json()["trials"]:
            answer = {"trial": trial["id"], "choice": 1, "rt_ms": 500, "idempotency_key": new_key()}
            assert requests.post(f"{url}/api/p/sessions/{token}/responses", json=answer).status_code == 201
        assert requests.post(f"{url}/api/p/sessions/{token}/complete").status_code == 200
        assert Response.objects.count() == 3

        jobs_before = IriJob.objects.count()  # the survey's own IRI set
        job_request = {"targets": [photos[0].pk], "spec": TINY_SPEC}
        started = time.monotonic()
        refused = requests.post(f"{url}/api/iri/jobs", json=job_request, headers=researcher_headers)

        assert refused.status_code == 503
        assert "unavailable" in refused.json()["message"]
        assert time.monotonic() - started < 15, "the refusal must not hang the request"
        assert IriJob.objects.count() == jobs_before, "nothing is queued half-way"

        private_broker.start()
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backend", "worker", "-Q", "gpu,celery", "-c", "1", "--loglevel", "WARNING"],
            cwd=settings.BASE_DIR,
            env={**os.environ, "CELERY_BROKER_URL": private_broker.url, "DATABASE_URL": database_url(),
                 "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT)},
        )
        accepted = requests.post(f"{url}/api/iri/jobs", json=job_request, headers=researcher_headers)
        assert accepted.status_code == 201, accepted.text
        wait_for(lambda: IriJob.objects.get(pk=accepted.json()["id"]).status == IriJob.Status.DONE, timeout=120)
    finally:
        gunicorn_server.stop(web)
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)


def test_web_workers_killed_mid_request_lose_nothing_and_double_nothing(transactional_db, iri_set):
    """SIGKILL gunicorn workers while participants answer; their retries (same key) store each answer once."""
    import random
    import signal
    import threading
    import uuid

    import requests
    from django.db import connection
    from django.db.models import Count

    from surveys.services import survey_create, survey_publish
    from tests.surveys import gunicorn_server

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: run through `make test`")
    survey = survey_publish(survey=survey_create(slug="kill", title="t", iri_jobs=[iri_set], ratings_per_list=500))
    proc, url = gunicorn_server.start(workers=2, env={"RATE_LIMIT_ENROLL": "1000000/min", "RATE_LIMIT_SESSION": "1000000/min"})
    stop, kills = threading.Event(), []

    def killer():
        while not stop.wait(random.uniform(0.2, 0.5)):
            children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            if len(children) == 2:  # kill one while the other serves, so the server keeps coming back
                os.kill(int(random.choice(children)), signal.SIGKILL)
                kills.append(1)

    def post_until_confirmed(path, body=None, method="post"):
        """What the browser's outbox does: retry the same request until the server answers."""
        failures, deadline = 0, time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                response = requests.request(method, url + path, json=body, timeout=10)
                if response.status_code < 500:
                    return response, failures
            except requests.RequestException:
                pass
            failures += 1
            time.sleep(0.05)
        raise AssertionError(f"{path} got no answer within 60 s")

    threading.Thread(target=killer, daemon=True).start()
    retries, confirmed = 0, {}
    try:
        deadline = time.monotonic() + 90
        while (retries < 3 or len(confirmed) < 30) and time.monotonic() < deadline:
            enrolled, failed = post_until_confirmed(f"/api/p/surveys/{survey.slug}/enroll")
            token = enrolled.json()["token"]
            post_until_confirmed(f"/api/p/sessions/{token}/consent")
            trials = post_until_confirmed(f"/api/p/sessions/{token}/trials", method="get")[0].json()["trials"]
            for trial in trials:
                key = str(uuid.uuid4())
                answer = {"trial": trial["id"], "choice": 0, "rt_ms": 400, "idempotency_key": key}
                response, failed = post_until_confirmed(f"/api/p/sessions/{token}/responses", answer)
                assert response.status_code in (200, 201), response.text
                retries += failed
                confirmed[key] = (token, trial["id"])
    finally:
        stop.set()
        gunicorn_server.stop(proc)

    assert kills and retries >= 3, f"the fault was not exercised: {len(kills)} kills, {retries} retries"
    stored = set(map(str, Response.objects.values_list("idempotency_key", flat=True)))
    assert stored == set(confirmed), "every confirmed answer is stored, and nothing else"
    assert not Response.objects.values("participant", "trial").annotate(n=Count("id")).filter(n__gt=1).exists()
