"""Faults survived: the disk fills up while a worker stores its images.

The fault is real: the worker processes get a file-size limit (RLIMIT_FSIZE, set from outside with prlimit), so
every write past it fails with EFBIG ("File too large") as on a full disk, and the limit is lifted the same way.
"""
import hashlib
import resource
import subprocess
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.db import connection

from backend.celery import app as celery_app
from iri_worker.demo_photos import bundled_photos
from iri_worker.models import IriChunk, IriJob, StoredImage
from iri_worker.services import MAX_ATTEMPTS, iri_job_create, iri_job_retry, photo_png_bytes, stored_image_save
from tests.conftest import TINY_SPEC, wait_for
from tests.iri_worker.test_worker import finished, start_worker, stop_worker

# Seeds no other test uses: images already on disk are reused, not written, so they would not meet the fault.
FRESH_SPEC = {**TINY_SPEC, "rng_seed": 9001}


def disk_limit(worker: subprocess.Popen, limit: int) -> None:
    """Set the largest file every process of the worker (main and pool) may write. Python ignores SIGXFSZ, so a
    write past it raises OSError(EFBIG) instead of killing the process."""
    pids = subprocess.run(["pgrep", "-g", str(worker.pid)], capture_output=True, text=True).stdout.split()
    assert len(pids) >= 2, "the worker and its pool process"
    for pid in map(int, pids):
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def assert_every_image_file_whole(media_root: Path) -> None:
    """No row points to a missing or partial file, and no partial file is left on disk."""
    for image in StoredImage.objects.all():
        with default_storage.open(image.file.name, "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == image.sha256, image.file.name
    for path in (media_root / "img").rglob("*.png"):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name[:64], f"partial file {path}"


@pytest.fixture
def worker(transactional_db, settings):
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("needs PostgreSQL and Redis: run through `make test` (DATABASE_URL, CELERY_BROKER_URL)")
    with celery_app.connection_for_write() as conn:
        for queue in ("gpu", "celery"):
            conn.default_channel.queue_purge(queue)
    proc = start_worker(settings)
    yield proc
    stop_worker(proc)


def test_a_full_disk_fails_the_chunk_cleanly_and_its_retry_stores_every_image_once(worker, photos, media_root):
    disk_limit(worker, 100)  # the disk is full: PNGs (a few kB) are cut off after 100 bytes
    job = iri_job_create(targets=photos, spec=FRESH_SPEC, name="full disk", chunk_size=3)

    chunk = wait_for(lambda: IriChunk.objects.filter(job=job, error__contains="File too large").first())

    assert chunk.status == IriChunk.Status.QUEUED and chunk.attempts == 1, "queued again, to retry after a pause"
    assert "attempt 1 of 3, will retry: Could not store an image" in chunk.error
    assert not job.images.exists()
    assert_every_image_file_whole(media_root)

    disk_limit(worker, resource.RLIM_INFINITY)  # room again
    wait_for(lambda: finished(job), timeout=120)

    assert job.status == IriJob.Status.DONE, job.error
    assert sorted(job.images.values_list("target_id", flat=True)) == sorted(p.pk for p in photos)
    chunk.refresh_from_db()
    assert chunk.status == IriChunk.Status.DONE and chunk.attempts == 2 and chunk.error == ""
    assert_every_image_file_whole(media_root)


def test_a_disk_that_stays_full_fails_the_job_clearly_and_retrying_it_later_completes_it(worker, photos, media_root):
    disk_limit(worker, 100)
    job = iri_job_create(targets=photos, spec={**FRESH_SPEC, "rng_seed": 9002}, name="still full", chunk_size=3)

    wait_for(lambda: finished(job), timeout=120)  # three attempts, 5 s and 10 s apart

    assert job.status == IriJob.Status.FAILED
    assert f"File too large (gave up after {MAX_ATTEMPTS} attempts; retry the failed chunks" in job.error
    assert not job.images.exists()
    assert_every_image_file_whole(media_root)

    disk_limit(worker, resource.RLIM_INFINITY)
    job = iri_job_retry(job=job)
    wait_for(lambda: finished(job), timeout=120)

    assert job.status == IriJob.Status.DONE, job.error
    assert sorted(job.images.values_list("target_id", flat=True)) == sorted(p.pk for p in photos)
    assert_every_image_file_whole(media_root)


def test_a_partial_file_left_by_a_killed_worker_is_never_trusted(db, media_root):
    data, width, height = photo_png_bytes(data=next(iter(bundled_photos().values())))
    sha256 = hashlib.sha256(data).hexdigest()
    partial = media_root / "img" / sha256[:2] / f"{sha256}.png"
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(data[:100])  # what a worker killed mid-write leaves
    try:
        image = stored_image_save(png_bytes=data, width=width, height=height)

        with default_storage.open(image.file.name, "rb") as fh:
            assert fh.read() == data, "the row points to a whole file, written beside the partial one"
        assert image.file.name != f"img/{sha256[:2]}/{sha256}.png"
    finally:
        partial.unlink()
