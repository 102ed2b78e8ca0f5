"""Faults survived: the broker goes away and comes back."""
import shutil
import socket
import subprocess
import time

import pytest
from rest_framework.test import APIClient

from backend.celery import app as celery_app
from iri_worker.models import IriJob
from surveys.models import Response
from tests.conftest import TINY_SPEC, new_key, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
def private_broker(settings):
    redis = PrivateRedis()
    redis.start()
    original = settings.CELERY_BROKER_URL, celery_app.conf.broker_url, celery_app.conf.broker_write_url
    settings.CELERY_BROKER_URL = celery_app.conf.broker_url = celery_app.conf.broker_write_url = redis.url
    celery_app.pool.force_close_all()
    yield redis
    redis.stop()
    settings.CELERY_BROKER_URL, celery_app.conf.broker_url, celery_app.conf.broker_write_url = original
    celery_app.pool.force_close_all()


def test_without_redis_participants_carry_on_and_job_submission_says_the_queue_is_down(
    transactional_db, private_broker, live_survey, photos, researcher_client, request
):
    private_broker.stop()

    participant = APIClient()
    token = participant.post(f"/api/p/surveys/{live_survey.slug}/enroll", {}, format="json").json()["token"]
    participant.post(f"/api/p/sessions/{token}/consent")
    for trial in participant.get(f"/api/p/sessions/{token}/trials").json()["trials"]:
        answer = {"trial": trial["id"], "choice": 1, "rt_ms": 500, "idempotency_key": new_key()}
        assert participant.post(f"/api/p/sessions/{token}/responses", answer, format="json").status_code == 201
    assert participant.post(f"/api/p/sessions/{token}/complete").status_code == 200
    assert Response.objects.count() == 3

    started = time.monotonic()
    refused = researcher_client.post("/api/iri/jobs", {"targets": [photos[0].pk], "spec": TINY_SPEC}, format="json")

    assert refused.status_code == 503
    assert "unavailable" in refused.json()["message"]
    assert time.monotonic() - started < 15, "the refusal must not hang the request"
    assert not IriJob.objects.exists(), "nothing is queued half-way"

    private_broker.start()
    worker = request.getfixturevalue("celery_worker_process")
    accepted = researcher_client.post("/api/iri/jobs", {"targets": [photos[0].pk], "spec": TINY_SPEC}, format="json")
    assert accepted.status_code == 201
    job = IriJob.objects.get()
    wait_for(lambda: IriJob.objects.get(pk=job.pk).status == IriJob.Status.DONE, timeout=120)
    assert worker.poll() is None
