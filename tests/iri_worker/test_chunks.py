"""A job is split into chunks; chunks run once, can be retried, cancelled, split when memory runs out."""
import pytest
import torch
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from backend.exceptions import ApplicationError
from iri_worker import engine, services
from iri_worker.models import IriChunk, IriImage, IriJob
from iri_worker.selectors import iri_job_proxy_summary, iri_job_record
from iri_worker.services import (
    iri_chunk_run,
    iri_job_cancel,
    iri_job_create,
    iri_job_retry,
    iri_job_run,
)
from iri_worker.services.chunks import _chunk_batch
from tests.conftest import TINY_SPEC

pytestmark = pytest.mark.django_db


def make_job(photos, *, chunk_size=2, **spec):
    return iri_job_create(targets=photos, spec={**TINY_SPEC, **spec}, name="chunked", chunk_size=chunk_size)


def test_a_job_is_split_into_chunks_of_its_chunk_size(photos):
    job = make_job(photos, chunk_size=2)

    chunks = list(job.chunks.all())
    assert [c.size for c in chunks] == [2, 1]
    assert sum((c.target_ids for c in chunks), []) == sorted(p.pk for p in photos)
    assert all(c.status == IriChunk.Status.QUEUED for c in chunks)


def test_the_default_chunk_size_is_eight_at_224_px_and_more_for_small_images(photos):
    assert services.iri_spec_default_chunk_size(image_size=224) == 8
    assert services.iri_spec_default_chunk_size(image_size=32) == 64
    assert make_job(photos, chunk_size=None).chunk_size == 64


def test_a_chunked_job_completes_with_one_image_per_target_and_its_proxy(photos):
    job = make_job(photos, chunk_size=2)

    iri_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == IriJob.Status.DONE and job.progress == 1.0, job.error
    assert sorted(job.images.values_list("target_id", flat=True)) == sorted(p.pk for p in photos)
    assert set(job.chunks.values_list("status", flat=True)) == {IriChunk.Status.DONE}
    if hasattr(engine, "proxy"):
        for iri in job.images.all():
            for metric in ("ssim", "ms_ssim"):
                d = iri.proxy[metric]
                assert 0 <= d["to_target"] <= 2 and 0 <= d["to_seed"] <= 2
                assert d["aligned"] == (d["to_target"] <= d["to_seed"])
        summary = iri_job_proxy_summary(job=job)
        assert summary["ssim"]["n"] == 3 and 0 <= summary["ssim"]["share"] <= 1


def test_a_chunk_delivered_again_stores_nothing_twice(photos, settings):
    job = make_job(photos, chunk_size=3)
    chunk = job.chunks.get()
    iri_job_run(job_id=job.pk)
    first = dict(IriImage.objects.filter(job=job).values_list("target_id", "pk"))

    assert iri_chunk_run(chunk_id=chunk.pk) == "skip"  # a redelivered message of a finished chunk
    # a worker died while running it: the chunk is RUNNING with a stale heartbeat and gets taken over
    settings.IRI_CHUNK_STALE_S = 0
    IriChunk.objects.filter(pk=chunk.pk).update(status=IriChunk.Status.RUNNING, worker="dead@host")
    IriJob.objects.filter(pk=job.pk).update(status=IriJob.Status.RUNNING)
    assert iri_chunk_run(chunk_id=chunk.pk, worker="new@host") == "done"

    chunk.refresh_from_db()
    assert chunk.attempts == 2 and chunk.worker == "new@host"
    assert dict(IriImage.objects.filter(job=job).values_list("target_id", "pk")) == first  # same rows, updated


def test_a_running_chunk_of_a_live_worker_is_not_run_twice(photos):
    job = make_job(photos, chunk_size=3)
    chunk = job.chunks.get()
    assert services.iri_chunk_start(chunk_id=chunk.pk, worker="a@host") == "run"

    assert iri_chunk_run(chunk_id=chunk.pk, worker="b@host") == "busy"
    assert not IriImage.objects.filter(job=job).exists()


def test_a_chunk_that_keeps_losing_its_worker_is_given_up(photos, settings):
    settings.IRI_CHUNK_STALE_S = 0
    job = make_job(photos, chunk_size=3)
    chunk = job.chunks.get()
    IriChunk.objects.filter(pk=chunk.pk).update(status=IriChunk.Status.RUNNING, attempts=services.MAX_ATTEMPTS)
    IriJob.objects.filter(pk=job.pk).update(status=IriJob.Status.RUNNING)

    assert iri_chunk_run(chunk_id=chunk.pk, worker="w@host") == "skip"

    chunk.refresh_from_db()
    job.refresh_from_db()
    assert chunk.status == IriChunk.Status.FAILED and "Gave up" in chunk.error
    assert job.status == IriJob.Status.FAILED and "chunk 0: Gave up" in job.error


def test_retry_runs_only_the_failed_chunks(photos):
    job = make_job(photos, chunk_size=1)
    broken = photos[0].image.file.name
    data = default_storage.open(broken).read()
    default_storage.delete(broken)
    iri_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == IriJob.Status.FAILED
    assert job.error.startswith("chunk 0: FileNotFoundError")
    done_before = dict(job.chunks.filter(status=IriChunk.Status.DONE).values_list("pk", "finished_at"))
    images_before = set(job.images.values_list("pk", flat=True))
    assert len(done_before) == 2 and len(images_before) == 2

    default_storage.save(broken, ContentFile(data))
    job = iri_job_retry(job=job)
    assert job.status == IriJob.Status.RUNNING and job.error == ""
    assert job.chunks.get(index=0).status == IriChunk.Status.QUEUED
    iri_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == IriJob.Status.DONE and job.images.count() == 3
    assert dict(job.chunks.filter(pk__in=done_before).values_list("pk", "finished_at")) == done_before
    assert images_before < set(job.images.values_list("pk", flat=True))
    with pytest.raises(ApplicationError, match="no failed chunks"):
        iri_job_retry(job=job)


def test_a_cancelled_job_skips_its_queued_chunks(photos):
    job = make_job(photos, chunk_size=1)

    job = iri_job_cancel(job=job)
    iri_job_run(job_id=job.pk)

    assert job.status == IriJob.Status.CANCELLED
    assert set(job.chunks.values_list("status", flat=True)) == {IriChunk.Status.CANCELLED}
    assert not job.images.exists()
    with pytest.raises(ApplicationError, match="only queued or running"):
        iri_job_cancel(job=job)


def test_a_running_chunk_stops_at_its_next_progress_report_when_cancelled(photos, monkeypatch):
    monkeypatch.setattr("iri_worker.services.chunks.PROGRESS_EVERY_S", 0.0)
    job = make_job(photos, chunk_size=3, steps=50)
    real_invert = engine.invert

    def invert_then_cancel(spec, targets, **kwargs):
        on_step = kwargs["on_step"]

        def cancelling(step, losses):
            if step == 3:
                iri_job_cancel(job=job)
            on_step(step, losses)

        return real_invert(spec, targets, **{**kwargs, "on_step": cancelling})

    monkeypatch.setattr(engine, "invert", invert_then_cancel)
    assert iri_chunk_run(chunk_id=job.chunks.get().pk) == "stopped"
    assert not job.images.exists()
    assert job.chunks.get().status == IriChunk.Status.CANCELLED


def test_out_of_memory_halves_the_chunk_until_it_fits(photos, monkeypatch):
    real_invert = engine.invert

    def small_memory(spec, targets, **kwargs):
        if targets.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_invert(spec, targets, **kwargs)

    monkeypatch.setattr(engine, "invert", small_memory)
    job = make_job(photos, chunk_size=3)

    iri_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == IriJob.Status.DONE, job.error
    assert job.images.count() == 3
    statuses = list(job.chunks.order_by("index").values_list("size", "status"))
    assert statuses[0] == (3, IriChunk.Status.SPLIT)
    assert sorted(s for s, st in statuses if st == IriChunk.Status.DONE) == [1, 1, 1]
    assert "split into chunks 1 and 2" in job.chunks.get(index=0).error


def test_out_of_memory_for_a_single_image_fails_with_advice(photos, monkeypatch):
    def no_memory(spec, targets, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(engine, "invert", no_memory)
    job = make_job(photos[:1], chunk_size=1)

    iri_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == IriJob.Status.FAILED
    assert "even for one image at 32 px" in job.error


def test_an_unreachable_broker_fails_the_job_with_a_clear_message(photos, monkeypatch, django_capture_on_commit_callbacks):
    from kombu.exceptions import OperationalError

    from iri_worker.tasks import iri_chunk_run_task

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    monkeypatch.setattr(iri_chunk_run_task, "apply_async", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        job = make_job(photos, chunk_size=1)

    job.refresh_from_db()
    assert job.status == IriJob.Status.FAILED
    assert "queue (broker) is unavailable" in job.error and "Connection refused" in job.error
    assert set(job.chunks.values_list("status", flat=True)) == {IriChunk.Status.FAILED}


def test_the_job_records_what_reproduces_its_images(photos):
    seed_photo = photos[2]
    job = iri_job_create(targets=photos[:2], spec={**TINY_SPEC, "rng_seed": 7}, seed_photo=seed_photo, chunk_size=1)

    iri_job_run(job_id=job.pk)

    job.refresh_from_db()
    record = iri_job_record(job=job)
    spec = record["spec"]
    for key in ("backbone", "layer", "recipe", "seed_kind", "steps", "step_size", "image_size", "rng_seed"):
        assert key in spec
    assert spec["rng_seed"] == 7 and spec["layer"] == "pool"
    assert record["seed_photo"]["sha256"] == seed_photo.image.sha256
    assert record["versions"]["torch"] == torch.__version__
    assert [c["device"] for c in record["chunks"]] == [services.iri_worker_device()] * 2
    assert record["chunk_size"] == 1 and spec["precision"] == "fp32" and spec["seed_kind"] == "photo"
    # every IRI of the job started from the seed photo
    seeds = set(job.images.values_list("seed__sha256", flat=True))
    assert len(seeds) == 1


def test_each_chunk_records_the_layout_its_worker_measured_and_a_second_chunk_reuses_it(photos):
    engine.layout_cache_clear()
    job = make_job(photos[:2], chunk_size=1, steps=6)  # enough steps to time both layouts on the job's own

    iri_job_run(job_id=job.pk)

    job.refresh_from_db()
    record = iri_job_record(job=job)
    assert record["spec"]["channels_last"] is None  # not named: left to the worker's measurement
    first, second = (c["layout_calibration"] for c in record["chunks"])
    assert first["source"] == "calibrated" and not first["cached"] and first["timed_steps"] in (1, 2)
    assert set(first["ms_per_step"]) == {"nchw", "channels_last"} and first["layout"] in first["ms_per_step"]
    assert first["run_steps"] == 2 * (1 + first["timed_steps"])  # the job's own steps were the timed ones
    assert second["cached"] and second["layout"] == first["layout"] and second["cost_ms"] == 0
    engine.load_backbone("tiny_cnn").set_channels_last(False)


def test_a_layout_named_in_the_spec_is_recorded_as_such(photos):
    job = make_job(photos[:1], chunk_size=1, channels_last=False)

    iri_job_run(job_id=job.pk)

    job.refresh_from_db()
    (chunk,) = iri_job_record(job=job)["chunks"]
    assert chunk["layout_calibration"]["source"] == "named by the spec"
    assert chunk["layout_calibration"]["layout"] == "nchw" and chunk["layout_calibration"]["timed_steps"] == 0


def test_a_job_with_precision_auto_records_each_chunks_choice_and_a_second_chunk_reuses_it(photos):
    engine.precision_cache_clear()
    job = make_job(photos[:2], chunk_size=1, precision="auto", channels_last=False)

    iri_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == IriJob.Status.DONE, job.error
    record = iri_job_record(job=job)
    assert record["spec"]["precision"] == "auto"  # left to the worker's measurement
    first, second = (c["precision_calibration"] for c in record["chunks"])
    assert first["source"] == "calibrated" and not first["cached"] and first["precision"] in ("fp32", "bf16")
    assert set(first["ms_per_step"]) == {"fp32", "bf16"} and first["reason"] and first["cost_ms"] > 0
    assert second["cached"] and second["precision"] == first["precision"] and second["cost_ms"] == 0


def test_the_adaptive_weight_is_measured_once_on_the_first_batch_whichever_chunk_starts_first(photos, monkeypatch):
    measured = []
    real = engine.measure_adaptive_c

    def counting(spec, targets, **kwargs):
        measured.append(targets.shape[0])
        return real(spec, targets, **kwargs)

    monkeypatch.setattr(engine, "measure_adaptive_c", counting)
    job = make_job(photos[:2], chunk_size=1, recipe="adv_ssim", steps=3)
    first, second = job.chunks.order_by("index")

    assert iri_chunk_run(chunk_id=second.pk) == "done"  # the second chunk happens to start first
    assert iri_chunk_run(chunk_id=first.pk) == "done"

    job.refresh_from_db()
    assert measured == [1]  # once, for the whole job
    # ... on the first batch (chunk 0's target), as the paper does: the value a run on it alone measures
    alone = engine.invert(services.iri_job_engine_spec(job=job), _chunk_batch(
        target_ids=first.target_ids, size=32)[1], backbone=engine.load_backbone("tiny_cnn"))
    assert job.adaptive_c == alone.adversarial_c
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.details["adversarial_c"] == second.details["adversarial_c"] == job.adaptive_c
    assert iri_job_record(job=job)["adaptive_c"] == job.adaptive_c


def test_a_recipe_without_an_adaptive_weight_measures_nothing(photos, monkeypatch):
    monkeypatch.setattr(engine, "measure_adaptive_c", lambda *a, **k: pytest.fail("measured"))
    job = make_job(photos[:2], chunk_size=1)

    iri_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == IriJob.Status.DONE and job.adaptive_c is None


@pytest.mark.django_db(transaction=True)
def test_chunks_starting_at_once_on_two_workers_wait_for_the_one_measurement(photos, monkeypatch):
    import threading
    import time

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    measured = []

    def slow(spec, targets, **kwargs):
        measured.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the other worker to arrive while the job row is locked
        return 0.25

    monkeypatch.setattr(engine, "measure_adaptive_c", slow)
    job = make_job(photos[:2], chunk_size=1, recipe="adv_ssim")
    spec = services.iri_job_engine_spec(job=job)
    backbone = engine.load_backbone("tiny_cnn")
    seen = []

    def worker():
        try:
            seen.append(services.iri_job_adaptive_c(job_id=job.pk, spec=spec, backbone=backbone, device="cpu"))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(measured) == 1 and seen == [0.25, 0.25]
    job.refresh_from_db()
    assert job.adaptive_c == 0.25
