"""IRI jobs run by a real Celery worker process over Redis, against PostgreSQL."""
import pytest
from django.core.files.storage import default_storage

from iri_worker.models import IriJob
from iri_worker.services import iri_job_create
from tests.conftest import TINY_SPEC, wait_for


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
