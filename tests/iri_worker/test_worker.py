"""IRI jobs run by real Celery worker processes over Redis, against PostgreSQL."""
import os
import signal
import socket
import subprocess
import sys
import uuid

import pytest
from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.db import connection

from backend.celery import app as celery_app
from iri_worker.models import IriChunk, IriJob
from iri_worker.services import iri_job_create
from tests.conftest import TINY_SPEC, database_url, wait_for


def finished(job):
    job.refresh_from_db()
    return job.status in (IriJob.Status.DONE, IriJob.Status.FAILED)


def test_a_worker_runs_a_job_to_done_and_stores_its_images(celery_worker_process, photos):
    job = iri_job_create(targets=photos, spec={**TINY_SPEC, "steps": 40}, name="worker test")
    assert job.status == IriJob.Status.QUEUED

    wait_for(lambda: finished(job))

    assert job.status == IriJob.Status.DONE, job.error
    assert job.progress == 1.0 and job.started_at and job.finished_at
    assert job.versions["torch"]
    images = list(job.images.all())
    assert len(images) == len(photos)
    for iri in images:
        for stored in (iri.image, iri.seed, iri.target_image):
            assert default_storage.exists(stored.file.name)
            assert stored.file.name == f"img/{stored.sha256[:2]}/{stored.sha256}.png"
        assert iri.final_loss <= iri.initial_loss


def test_a_crashing_job_ends_failed_with_its_error_and_the_worker_takes_the_next(celery_worker_process, photos):
    broken_photo = photos[0]
    default_storage.delete(broken_photo.image.file.name)  # the job will not find its target's file
    broken = iri_job_create(targets=[broken_photo], spec=TINY_SPEC, name="broken")
    healthy = iri_job_create(targets=photos[1:], spec=TINY_SPEC, name="healthy")

    wait_for(lambda: finished(broken) and finished(healthy))

    assert broken.status == IriJob.Status.FAILED
    assert "No such file" in broken.error or "FileNotFoundError" in broken.error
    assert broken.images.count() == 0
    assert healthy.status == IriJob.Status.DONE
    assert healthy.images.count() == 2


# --------------------------------------------------------------------------- chunks on real workers


def start_worker(settings, **env_extra) -> subprocess.Popen:
    """A worker in its own process group (so the whole group can be SIGKILLed), on the test database."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        **env_extra,
    }
    name = f"kill-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "backend", "worker", "-Q", "gpu,celery", "-c", "1", "-n", name,
         "--loglevel", "INFO"],
        cwd=django_settings.BASE_DIR, env=env, start_new_session=True,
    )
    wait_for(lambda: proc.poll() is not None or celery_app.control.ping(destination=[name], timeout=1.0), timeout=90)
    assert proc.poll() is None, "the worker did not start"
    return proc


CHUNK_SECONDS = 8  # how long the killed chunk would take on the worker


def worker_seconds_per_step(photos) -> float:
    """Time a step of the tiny spec takes on the running worker, as the worker itself timed a 400-step job."""
    job = iri_job_create(targets=photos, spec={**TINY_SPEC, "steps": 400}, name="timing", chunk_size=len(photos))
    wait_for(lambda: finished(job), timeout=120)
    return max(job.chunks.get().details["seconds"] / 400, 1e-4)


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_job_split_into_chunks_completes_with_one_image_per_target(celery_worker_process, photos):
    job = iri_job_create(targets=photos, spec={**TINY_SPEC, "steps": 20}, name="chunks", chunk_size=1)

    wait_for(lambda: finished(job))

    assert job.status == IriJob.Status.DONE, job.error
    assert sorted(job.images.values_list("target_id", flat=True)) == sorted(p.pk for p in photos)
    assert list(job.chunks.values_list("status", "attempts")) == [(IriChunk.Status.DONE, 1)] * 3
    assert all(chunk.worker.startswith("test-") for chunk in job.chunks.all())


def test_a_job_whose_worker_is_killed_mid_chunk_completes_on_a_new_worker(transactional_db, settings, photos):
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("needs PostgreSQL and Redis: run through `make test` (DATABASE_URL, CELERY_BROKER_URL)")
    stale_s = "3"
    with celery_app.connection_for_write() as conn:
        for queue in ("gpu", "celery"):
            conn.default_channel.queue_purge(queue)
    first = start_worker(settings, IRI_CHUNK_STALE_S=stale_s)
    second = None
    try:
        # Long enough that the chunk still runs when its first heartbeat (after 1 s) is seen, on any machine; the
        # wait for the end below is scaled from the same measurement instead of a fixed number of seconds.
        steps = max(500, round(CHUNK_SECONDS / worker_seconds_per_step(photos[:2])))
        job = iri_job_create(targets=photos, spec={**TINY_SPEC, "steps": steps}, name="killed", chunk_size=2)
        running = wait_for(lambda: IriChunk.objects.filter(job=job, status=IriChunk.Status.RUNNING, progress__gt=0).first())

        os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool child, no goodbye
        first.wait(timeout=30)
        second = start_worker(settings, IRI_CHUNK_STALE_S=stale_s)
        # Both chunks again (2 + 1 images, 1.5 chunks' worth), after a worker start and the stale heartbeat:
        wait_for(lambda: finished(job), timeout=90 + 10 * 1.5 * CHUNK_SECONDS)
    finally:
        stop_worker(first)
        if second is not None:
            stop_worker(second)

    assert job.status == IriJob.Status.DONE, job.error
    assert sorted(job.images.values_list("target_id", flat=True)) == sorted(p.pk for p in photos)
    running.refresh_from_db()
    assert running.status == IriChunk.Status.DONE and running.attempts == 2


def test_cancel_stops_a_running_job_and_frees_the_worker(celery_worker_process, photos, researcher_client):
    job = iri_job_create(targets=photos, spec={**TINY_SPEC, "steps": 100_000}, name="long", chunk_size=3)
    wait_for(lambda: IriChunk.objects.filter(job=job, status=IriChunk.Status.RUNNING, progress__gt=0).exists())

    response = researcher_client.post(f"/api/iri/jobs/{job.pk}/cancel")

    assert response.status_code == 200 and response.json()["status"] == "CANCELLED"
    next_job = iri_job_create(targets=photos[:1], spec=TINY_SPEC, name="after")
    wait_for(lambda: finished(next_job), timeout=60)  # the worker left the cancelled chunk
    assert next_job.status == IriJob.Status.DONE
    job.refresh_from_db()
    assert job.status == IriJob.Status.CANCELLED and not job.images.exists()
    assert job.chunks.get().status == IriChunk.Status.CANCELLED


def test_a_worker_process_keeps_freed_memory_unless_told_not_to(settings, monkeypatch):
    from iri_worker import engine
    from iri_worker.services import iri_worker_process_init

    calls = []
    monkeypatch.setattr(engine, "keep_freed_memory", lambda: calls.append(True) or True)
    iri_worker_process_init()
    settings.IRI_KEEP_FREED_MEMORY = False
    iri_worker_process_init()
    assert calls == [True]
