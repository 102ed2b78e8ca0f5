"""Chunks, run on workers: claim, heartbeat, fail, split on out-of-memory, run and generate (inversion, proxies,
validity, then the images stored in one transaction); the worker's device; running a whole job in one process
and sending orphaned chunks again."""
import logging
import math
import platform
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from ..models import IriChunk, IriImage, IriJob, StoredImage, TargetPhoto
from ..validity_record import ValidityRecord
from .checkpoints import _checkpoint_local_path
from .jobs import iri_job_chunks_create, iri_job_enqueue, iri_job_refresh
from .storage import ImageStorageError, _read_rgb, _save_tensor, _save_tensor_once
from .validity import iri_proxy_compute, iri_validity_compute

logger = logging.getLogger(__name__)

CHUNK_GAVE_UP = "Gave up after {n} attempts: the worker running this chunk was lost each time."
CHUNK_OOM_SPLIT = "Out of memory with {n} targets on {device}; split into chunks {a} and {b}."
CHUNK_OOM_SINGLE = (
    "Out of memory on {device} even for one image at {size} px: lower the image size, turn on mixed "
    "precision or use a device with more memory."
)
CHUNK_STORAGE_RETRY = "attempt {n} of {max}, will retry: {error}"
CHUNK_STORAGE_GAVE_UP = "{error} (gave up after {n} attempts; retry the failed chunks once the storage is fixed)"
PROGRESS_EVERY_S = 1.0
MAX_ATTEMPTS = 3
STORAGE_RETRY_S = 5  # first pause before a chunk whose images could not be stored runs again; doubles each time


class ChunkStopped(Exception):
    """Raised from the engine's progress callback: the chunk was cancelled or taken over."""


def iri_chunk_start(*, chunk_id: int, worker: str = "") -> str:
    """Claim a chunk for this worker. Returns "run", "skip" (finished, cancelled, job over) or "busy"
    (another worker holds it and is alive: try again later). A RUNNING chunk whose worker stopped sending
    heartbeats (it was killed) is taken over; a chunk is given up after MAX_ATTEMPTS claims."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.IRI_CHUNK_STALE_S)
    live_jobs = IriJob.objects.filter(status__in=[IriJob.Status.QUEUED, IriJob.Status.RUNNING]).values("pk")
    silent = Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True)
    claimable = Q(status=IriChunk.Status.QUEUED) | (Q(status=IriChunk.Status.RUNNING) & silent)
    claimed = IriChunk.objects.filter(claimable, pk=chunk_id, job_id__in=live_jobs).update(
        status=IriChunk.Status.RUNNING, attempts=F("attempts") + 1, worker=worker[:255], started_at=now,
        heartbeat_at=now, progress=0.0, error="",
    )
    chunk = IriChunk.objects.filter(pk=chunk_id).select_related("job").first()
    if chunk is None:
        return "skip"
    if not claimed:
        if chunk.status == IriChunk.Status.QUEUED and chunk.job.status == IriJob.Status.CANCELLED:
            IriChunk.objects.filter(pk=chunk_id, status=IriChunk.Status.QUEUED).update(
                status=IriChunk.Status.CANCELLED, finished_at=now)
        live = chunk.job.status in (IriJob.Status.QUEUED, IriJob.Status.RUNNING)
        return "busy" if chunk.status == IriChunk.Status.RUNNING and live else "skip"
    if chunk.attempts > MAX_ATTEMPTS:
        iri_chunk_fail(chunk_id=chunk_id, worker=worker, error=CHUNK_GAVE_UP.format(n=MAX_ATTEMPTS))
        return "skip"
    IriJob.objects.filter(pk=chunk.job_id, status=IriJob.Status.QUEUED).update(
        status=IriJob.Status.RUNNING, started_at=now)
    return "run"


def iri_chunk_heartbeat(*, chunk_id: int, worker: str, progress: float) -> None:
    """Record progress; raise ChunkStopped when the chunk is no longer this worker's to run."""
    still_mine = IriChunk.objects.filter(pk=chunk_id, status=IriChunk.Status.RUNNING, worker=worker[:255]).update(
        progress=min(1.0, max(0.0, progress)), heartbeat_at=timezone.now()
    )
    if not still_mine:
        raise ChunkStopped(f"chunk {chunk_id} was cancelled or taken over")
    iri_job_refresh(job_id=IriChunk.objects.values_list("job_id", flat=True).get(pk=chunk_id))


def iri_chunk_fail(*, chunk_id: int, error: str, worker: str | None = None) -> None:
    chunks = IriChunk.objects.filter(pk=chunk_id, status__in=[IriChunk.Status.QUEUED, IriChunk.Status.RUNNING])
    if worker is not None:
        chunks = chunks.filter(worker=worker[:255])
    chunks.update(status=IriChunk.Status.FAILED, error=error[:5000], finished_at=timezone.now())
    job_id = IriChunk.objects.filter(pk=chunk_id).values_list("job_id", flat=True).first()
    if job_id is not None:
        iri_job_refresh(job_id=job_id)


def iri_chunk_storage_failed(*, chunk_id: int, worker: str, error: str) -> str:
    """Its images could not be stored (nothing of the run was kept): queue the chunk again and return "retry",
    or, after MAX_ATTEMPTS, fail it for good and return "failed"."""
    attempts = IriChunk.objects.filter(pk=chunk_id).values_list("attempts", flat=True).first() or 0
    if attempts >= MAX_ATTEMPTS:
        iri_chunk_fail(chunk_id=chunk_id, worker=worker, error=CHUNK_STORAGE_GAVE_UP.format(error=error, n=attempts))
        return "failed"
    requeued = IriChunk.objects.filter(pk=chunk_id, status=IriChunk.Status.RUNNING, worker=worker[:255]).update(
        status=IriChunk.Status.QUEUED, progress=0.0, heartbeat_at=None,
        error=CHUNK_STORAGE_RETRY.format(n=attempts, max=MAX_ATTEMPTS, error=error)[:5000],
    )
    iri_job_refresh(job_id=IriChunk.objects.values_list("job_id", flat=True).get(pk=chunk_id))
    return "retry" if requeued else "stopped"


def iri_chunk_split(*, chunk_id: int, worker: str, device: str) -> list[int]:
    """Out of memory: replace a RUNNING chunk by two halves (new chunks, queued after the commit)."""
    with transaction.atomic():
        chunk = IriChunk.objects.select_related("job").select_for_update().get(pk=chunk_id)
        IriJob.objects.select_for_update().get(pk=chunk.job_id)  # one index allocation at a time
        if chunk.status != IriChunk.Status.RUNNING or chunk.worker != worker[:255]:
            return []
        if chunk.size <= 1:
            size = chunk.job.spec.get("image_size")
            iri_chunk_fail(chunk_id=chunk_id, worker=worker, error=CHUNK_OOM_SINGLE.format(device=device, size=size))
            return []
        start = (IriChunk.objects.filter(job_id=chunk.job_id).aggregate(m=Max("index"))["m"] or 0) + 1
        half = (chunk.size + 1) // 2
        parts = [chunk.target_ids[:half], chunk.target_ids[half:]]
        new = IriChunk.objects.bulk_create(
            IriChunk(job_id=chunk.job_id, index=start + i, target_ids=ids, size=len(ids)) for i, ids in enumerate(parts)
        )
        IriChunk.objects.filter(pk=chunk_id).update(
            status=IriChunk.Status.SPLIT, finished_at=timezone.now(),
            error=CHUNK_OOM_SPLIT.format(n=chunk.size, device=device, a=start, b=start + 1),
        )
        ids = [c.pk for c in new]
        transaction.on_commit(lambda: iri_job_enqueue(job_id=chunk.job_id, chunk_ids=ids))
    return ids


def iri_chunk_run(*, chunk_id: int, worker: str = "", device: str | None = None) -> str:
    """Claim and run one chunk, storing its IRIs. Returns "done", "skip", "busy", "stopped", "split", "retry"
    (its images could not be stored; run it again later) or "failed". Safe to call any number of times for one
    chunk: images are stored once per (job, target)."""
    outcome = iri_chunk_start(chunk_id=chunk_id, worker=worker)
    if outcome != "run":
        return outcome
    device = device or iri_worker_device()
    try:
        _chunk_generate(chunk_id=chunk_id, worker=worker, device=device)
    except ChunkStopped:
        logger.info("IRI chunk %s stopped (cancelled or taken over)", chunk_id)
        return "stopped"
    except ImageStorageError as exc:
        logger.warning("IRI chunk %s could not store its images: %s", chunk_id, exc)
        return iri_chunk_storage_failed(chunk_id=chunk_id, worker=worker, error=str(exc))
    except Exception as exc:
        if _is_out_of_memory(exc):
            _free_device_memory()
            logger.warning("IRI chunk %s ran out of memory on %s; splitting it", chunk_id, device)
            return "split" if iri_chunk_split(chunk_id=chunk_id, worker=worker, device=device) else "failed"
        logger.exception("IRI chunk %s failed", chunk_id)
        iri_chunk_fail(chunk_id=chunk_id, worker=worker, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    return "done"


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "CUDA out of memory" in str(exc)


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def iri_worker_device() -> str:
    """CUDA when this process sees a GPU (one worker process per GPU via CUDA_VISIBLE_DEVICES), else CPU: the
    engine's host_device_type, which also decides which precisions a spec may name here."""
    from ..engine import host_device_type

    return host_device_type()


def iri_worker_process_init() -> None:
    """Once per worker process: the C allocator keeps freed memory for the next step (see
    engine.keep_freed_memory; IRI_KEEP_FREED_MEMORY=false leaves glibc's defaults), and the CPU thread count
    (IRI_TORCH_THREADS, 0 = torch's default)."""
    import torch

    from iri_worker import engine

    if settings.IRI_KEEP_FREED_MEMORY:
        engine.keep_freed_memory()
    threads = settings.IRI_TORCH_THREADS
    if threads > 0 and not torch.cuda.is_available():
        torch.set_num_threads(threads)


def iri_job_engine_spec(*, job: IriJob):
    """The job's engine spec, pointing at this machine's copy of the job's checkpoint (if any)."""
    import dataclasses

    from iri_worker import engine

    spec = engine.InversionSpec.from_dict(job.spec)
    if job.checkpoint_id:
        spec = dataclasses.replace(spec, weights_path=_checkpoint_local_path(job.checkpoint))
    return spec


def iri_job_backbone(*, spec, device: str):
    """The spec's backbone from the engine's per-process cache: a worker loads each model once."""
    from iri_worker import engine

    return engine.load_backbone(spec.backbone, weights_path=spec.weights_path, device=device)


def _chunk_batch(*, target_ids: list[int], size: int):
    """The chunk's target photos (in order; any deleted since are skipped) and their (B, 3, S, S) tensor,
    preprocessed as every target is (photo_to_tensor: resize the shorter side, centre crop)."""
    import torch

    from iri_worker import engine

    photos = TargetPhoto.objects.select_related("image").in_bulk(target_ids)
    targets = [photos[i] for i in target_ids if i in photos]
    return targets, torch.stack([engine.photo_to_tensor(_read_rgb(t.image), size) for t in targets])


def iri_job_adaptive_c(*, job_id: int, spec, backbone, device: str, seeds=None, first_batch=None) -> float | None:
    """The job's adaptive adversarial weight c, measured once for the whole job; None without one.

    The paper measures c "on the first batch at the first step, then frozen for all later batches". Chunks
    run in parallel on several workers, so whichever starts first locks the job row; if c is not stored yet
    it measures c on chunk 0's targets (the job's first batch; ``first_batch`` when the caller holds it) with
    the job's seed, and stores it. The others wait on the lock and then read it."""
    from iri_worker import engine

    recipe = spec.recipe_terms if spec.recipe_terms is not None else spec.recipe
    if not engine.recipe_has_adaptive_c(recipe):
        return None
    stored = IriJob.objects.filter(pk=job_id).values_list("adaptive_c", flat=True).first()
    if stored is not None:
        return stored
    with transaction.atomic():
        job = IriJob.objects.select_for_update().get(pk=job_id)
        if job.adaptive_c is None:
            if first_batch is None:
                first = IriChunk.objects.filter(job_id=job_id).order_by("index").first()
                _, first_batch = _chunk_batch(target_ids=first.target_ids, size=spec.image_size)
            job.adaptive_c = engine.measure_adaptive_c(spec, first_batch, backbone=backbone, seeds=seeds, device=device)
            IriJob.objects.filter(pk=job_id).update(adaptive_c=job.adaptive_c)
            logger.info("IRI job %s: adaptive c = %s, measured on its first batch", job_id, job.adaptive_c)
    return job.adaptive_c


def _run_details(result, spec) -> dict:
    """What the engine's run reports for the chunk's record: the steps it ran, the adversarial weight it used, and
    the layout and precision this worker chose (timed on its host, or named by the spec), why, and what timing cost."""
    return {"steps_run": int(getattr(result, "steps_run", spec.steps) or spec.steps),
            "adversarial_c": getattr(result, "adversarial_c", None),
            "layout_calibration": getattr(result, "layout_calibration", None),
            "precision_calibration": getattr(result, "precision_calibration", None)}


def _chunk_generate(*, chunk_id: int, worker: str, device: str) -> None:
    import dataclasses

    from iri_worker import engine

    chunk = IriChunk.objects.select_related("job", "job__checkpoint", "job__seed_photo__image").get(pk=chunk_id)
    job = chunk.job
    spec = iri_job_engine_spec(job=job)
    targets, batch = _chunk_batch(target_ids=chunk.target_ids, size=spec.image_size)
    seeds = None
    if job.seed_photo_id:
        seeds = engine.photo_to_tensor(_read_rgb(job.seed_photo.image), spec.image_size)
    backbone = iri_job_backbone(spec=spec, device=device)
    c = iri_job_adaptive_c(job_id=job.pk, spec=spec, backbone=backbone, device=device, seeds=seeds,
                           first_batch=batch if chunk.index == 0 else None)
    if c is not None:  # every chunk runs with the job's one c
        recipe = spec.recipe_terms if spec.recipe_terms is not None else spec.recipe
        spec = dataclasses.replace(spec, recipe_terms=engine.with_adversarial_c(recipe, c))

    last = [time.monotonic()]
    curve_at = frozenset(engine.validity.loss_curve_steps(spec.steps))
    curve: list[tuple[int, object]] = []  # (step, the (B,) loss tensor the loop passed): no host read per step

    def on_step(step: int, losses) -> None:
        if step in curve_at:
            curve.append((step, losses))
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            iri_chunk_heartbeat(chunk_id=chunk_id, worker=worker, progress=(step + 1) / spec.steps)

    started = time.monotonic()
    result = engine.invert(spec, batch, backbone=backbone, seeds=seeds, device=device, on_step=on_step)
    iri_chunk_heartbeat(chunk_id=chunk_id, worker=worker, progress=1.0)
    proxies = iri_proxy_compute(iris=result.images, targets=batch, seeds=result.seeds.clamp(0, 1))
    seconds = time.monotonic() - started
    checked = time.monotonic()
    try:
        validity, null_cached = iri_validity_compute(job=job, spec=spec, backbone=backbone, device=device,
                                                     iris=result.images, targets=batch, curve=curve)
    except Exception as exc:  # the IRIs stand without their proof: say why instead of losing the run
        if _is_out_of_memory(exc):
            _free_device_memory()
        logger.exception("IRI chunk %s: validity record failed", chunk_id)
        validity, null_cached = [ValidityRecord(error=f"{type(exc).__name__}: {exc}"[:500]) for _ in targets], None
    details = {"device": device, "device_name": _device_name(device), "seconds": round(seconds, 2),
               "worker": worker, **_run_details(result, spec),
               "validity_seconds": round(time.monotonic() - checked, 3), "null_cached": null_cached}
    nan_mask = getattr(result, "nan_mask", None)
    # Files first, then rows, in one transaction: if a file cannot be written, no row of this run is kept. Whole
    # files already written stay (named by their hash, the retry finds and reuses them).
    with transaction.atomic():
        seed_cache: dict[int, StoredImage] = {}
        for i, target in enumerate(targets):
            seed = _save_tensor_once(result.seeds[i], seed_cache)
            IriImage.objects.update_or_create(
                job=job,
                target=target,
                defaults=dict(
                    seed=seed,
                    image=_save_tensor(result.images[i]),
                    target_image=_save_tensor(batch[i]),
                    initial_loss=finite_loss(result.initial_losses[i]),
                    final_loss=finite_loss(result.losses[i], fallback=result.initial_losses[i]),
                    best_step=int(result.best_step[i]),
                    proxy=proxies[i],
                    nan_loss=bool(nan_mask[i]) if nan_mask is not None else False,
                    validity=validity[i].to_dict(),
                ),
            )
        finished = IriChunk.objects.filter(pk=chunk_id, status=IriChunk.Status.RUNNING, worker=worker[:255]).update(
            status=IriChunk.Status.DONE, progress=1.0, finished_at=timezone.now(), details=details
        )
        if not finished:  # cancelled or taken over while we stored: keep nothing of this run
            transaction.set_rollback(True)
            raise ChunkStopped(f"chunk {chunk_id} was cancelled or taken over")
    iri_job_refresh(job_id=job.pk)


def finite_loss(value, fallback=None) -> float:
    """A loss as a float for the database (JSON has no NaN): a NaN/inf loss falls back (then 0.0);
    the image is marked ``nan_loss`` instead."""
    number = float(value)
    if math.isfinite(number):
        return number
    return finite_loss(fallback) if fallback is not None else 0.0


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def iri_job_run(*, job_id: int, device: str | None = None) -> None:
    """Run every queued chunk of a job in this process (tests, scripts). Creates the chunks if missing."""
    job = IriJob.objects.get(pk=job_id)
    iri_job_chunks_create(job=job)
    seen: set[int] = set()
    # Chunks split on out-of-memory appear as new queued chunks; they run here too (each id once).
    while pending := [pk for pk in job.chunks.filter(status=IriChunk.Status.QUEUED).order_by("index")
                      .values_list("id", flat=True) if pk not in seen]:
        for chunk_id in pending:
            seen.add(chunk_id)
            if iri_chunk_run(chunk_id=chunk_id, device=device) == "retry":  # in process: again at once, up to its limit
                seen.discard(chunk_id)
    iri_job_refresh(job_id=job_id)


def iri_chunk_requeue_orphans(*, alive_workers: set[str] | None = None) -> list[int]:
    """Send a task again for every RUNNING chunk whose worker is gone (killed without a goodbye); the task
    takes the chunk over once its heartbeat is stale. Called when a worker starts."""
    from ..tasks import iri_chunk_run_task

    running = IriChunk.objects.filter(
        status=IriChunk.Status.RUNNING, job__status__in=[IriJob.Status.QUEUED, IriJob.Status.RUNNING]
    )
    orphans = [(pk, w) for pk, w in running.values_list("id", "worker") if alive_workers is None or w not in alive_workers]
    for chunk_id, _ in orphans:
        iri_chunk_run_task.apply_async((chunk_id,))
    return [pk for pk, _ in orphans]
