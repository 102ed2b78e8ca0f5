"""Writes for IRI jobs. The engine is imported lazily so the web process needs torch only to validate."""
import hashlib
import io
import json
import logging
import math
import os
import pickle
import platform
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Count, F, FloatField, Max, Q, Sum
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from backend.exceptions import ApplicationError
from teams.models import Team

from ..models import Checkpoint, IriChunk, IriImage, IriJob, NullDistribution, StoredImage, TargetPhoto

logger = logging.getLogger(__name__)

NOT_AN_IMAGE = "The file is not an image we can read (PNG, JPEG, WebP, GIF, BMP or TIFF)."
IMAGE_TOO_LARGE = "The image is larger than {limit} MB."
NO_TARGETS = "Choose at least one target photo for the job."
TEAMS_MIXED = "A job's target photos, seed photo and checkpoint must all belong to one team."
BROKER_DOWN = "The job queue (broker) is unavailable, so the job was not started: {error}"
JOB_NOT_CANCELLABLE = "Job {id} is {status}: only queued or running jobs can be cancelled."
NOTHING_TO_RETRY = "Job {id} has no failed chunks to retry (it is {status})."
CHUNK_GAVE_UP = "Gave up after {n} attempts: the worker running this chunk was lost each time."
CHUNK_OOM_SPLIT = "Out of memory with {n} targets on {device}; split into chunks {a} and {b}."
CHUNK_OOM_SINGLE = (
    "Out of memory on {device} even for one image at {size} px: lower the image size, turn on mixed "
    "precision or use a device with more memory."
)
BAD_CHUNK_SIZE = "chunk_size must be a positive integer (got {value!r})."
CHECKPOINT_TOO_LARGE = "The checkpoint is larger than {limit} MB."
CHECKPOINT_UNSAFE = (
    "The checkpoint was refused: it is not a plain weights file. It is loaded with torch.load(weights_only=True), "
    "which allows only tensors and plain containers, never arbitrary Python objects ({detail})."
)
CHECKPOINT_MISMATCH = "The checkpoint does not fit backbone '{backbone}': {detail}"
CHECKPOINT_BACKBONE = "The checkpoint is for backbone '{checkpoint}', but the job's spec uses '{spec}'."
CHECKPOINT_UNKNOWN = "No uploaded checkpoint has sha256 {sha256}; upload it first (POST /api/iri/checkpoints)."
CHECKPOINT_SHA_MISMATCH = "spec.checkpoint_sha256 ({spec}) is not the chosen checkpoint's ({checkpoint})."
WEIGHTS_PATH_REFUSED = "weights_path cannot be set through a job: upload the weights as a checkpoint and choose it."
SEED_PHOTO_MISSING = "seed_kind 'photo' needs a seed photo (a target photo or an uploaded image)."
IMAGE_NOT_STORED = "Could not store an image (is the disk full or read-only?): {error}"
CHUNK_STORAGE_RETRY = "attempt {n} of {max}, will retry: {error}"
CHUNK_STORAGE_GAVE_UP = "{error} (gave up after {n} attempts; retry the failed chunks once the storage is fixed)"
MAX_PHOTO_SIDE = 4096
PROGRESS_EVERY_S = 1.0
MAX_ATTEMPTS = 3
STORAGE_RETRY_S = 5  # first pause before a chunk whose images could not be stored runs again; doubles each time


class ImageStorageError(Exception):
    """Writing an image file failed (disk full, quota, read-only, I/O error); often passing, so chunks retry."""


def stored_image_save(*, png_bytes: bytes, width: int, height: int) -> StoredImage:
    """Store PNG bytes once, under a name made of their hash (the name never tells a role). The file is written
    before its row and checked by hash when it exists already, so no row points to a missing or partial file."""
    sha256 = hashlib.sha256(png_bytes).hexdigest()
    existing = StoredImage.objects.filter(sha256=sha256).first()
    if existing is not None:
        return existing
    wanted = f"img/{sha256[:2]}/{sha256}.png"
    name = wanted if _stored_file_holds(name=wanted, sha256=sha256) else _stored_file_write(
        name=wanted, data=png_bytes, sha256=sha256)
    try:
        with transaction.atomic():
            return StoredImage.objects.create(sha256=sha256, file=name, width=width, height=height)
    except IntegrityError:  # another process stored the same bytes first; drop our copy if it is a second one
        if name != wanted:
            default_storage.delete(name)
        return StoredImage.objects.get(sha256=sha256)


def _stored_file_holds(*, name: str, sha256: str) -> bool:
    """Whether the file exists with exactly these bytes (a worker killed mid-write leaves a partial one)."""
    if not default_storage.exists(name):
        return False
    with default_storage.open(name, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest() == sha256


def _stored_file_write(*, name: str, data: bytes, sha256: str) -> str:
    """Write a new file and return its name; if the write fails, remove what it left and raise ImageStorageError."""
    # Beside a partial file rather than over it: it may be another worker's write in progress.
    target = default_storage.get_available_name(name)
    try:
        return default_storage.save(target, ContentFile(data))
    except Exception as exc:
        try:
            if default_storage.exists(target) and not _stored_file_holds(name=target, sha256=sha256):
                default_storage.delete(target)
        except OSError:
            logger.exception("could not remove the partial image file %s", target)
        raise ImageStorageError(IMAGE_NOT_STORED.format(error=exc)) from exc


def photo_png_bytes(*, data: bytes) -> tuple[bytes, int, int]:
    """Decode an upload and re-encode it as a plain RGB PNG: nothing of the original file survives."""
    limit = settings.IRI_MAX_UPLOAD_BYTES
    if len(data) > limit:
        raise ApplicationError(IMAGE_TOO_LARGE.format(limit=limit // (1024 * 1024)))
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        with Image.open(io.BytesIO(data)) as img:
            if max(img.size) > MAX_PHOTO_SIDE:
                img.thumbnail((MAX_PHOTO_SIDE, MAX_PHOTO_SIDE))
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ApplicationError(NOT_AN_IMAGE) from exc
    out = io.BytesIO()
    rgb.save(out, format="PNG")
    return out.getvalue(), rgb.width, rgb.height


def target_photo_create(*, team: Team, name: str, data: bytes, label: str | None = None) -> TargetPhoto:
    png, width, height = photo_png_bytes(data=data)
    with transaction.atomic():
        image = stored_image_save(png_bytes=png, width=width, height=height)
        return TargetPhoto.objects.create(team=team, name=name[:200] or image.sha256[:12], image=image,
                                          label=(label or "").strip() or None)


def iri_spec_validate(spec: dict) -> dict:
    """Check a job spec against the engine and return it with every default filled in."""
    from iri_worker.engine import InversionSpec

    if not isinstance(spec, dict):
        raise ApplicationError("The spec must be a JSON object.")
    try:
        return InversionSpec.from_dict(spec).to_dict()
    except ValueError as exc:
        raise ApplicationError(str(exc)) from exc


# --------------------------------------------------------------------------- checkpoints


def checkpoint_data_check(*, backbone: str, data: bytes) -> None:
    """Everything uploaded weights must pass before they are stored: the size limit, a registered architecture,
    and a load into it with torch.load(weights_only=True) (through the engine), so a pickle that would run code
    is refused and keys that do not fit the architecture are named."""
    limit = settings.IRI_MAX_CHECKPOINT_BYTES
    if len(data) > limit:
        raise ApplicationError(CHECKPOINT_TOO_LARGE.format(limit=limit // (1024 * 1024)))
    iri_spec_validate({"backbone": backbone})  # an unknown architecture gets the registry's hint
    with tempfile.TemporaryDirectory(prefix="iri-ckpt-") as tmp:
        path = os.path.join(tmp, "checkpoint.pt")
        with open(path, "wb") as fh:
            fh.write(data)
        checkpoint_check(backbone=backbone, path=path)


def checkpoint_create(*, team: Team, name: str, backbone: str, data: bytes) -> Checkpoint:
    """Store uploaded weights for a registered architecture once they passed checkpoint_data_check (the same
    file uploaded again to the same team is the checkpoint already stored)."""
    checkpoint_data_check(backbone=backbone, data=data)
    sha256 = hashlib.sha256(data).hexdigest()
    existing = Checkpoint.objects.filter(team=team, sha256=sha256).first()
    if existing is not None:
        if existing.backbone != backbone:
            raise ApplicationError(CHECKPOINT_BACKBONE.format(checkpoint=existing.backbone, spec=backbone))
        return existing
    with transaction.atomic():
        checkpoint = Checkpoint(team=team, name=name[:200] or sha256[:12], backbone=backbone, sha256=sha256, size=len(data))
        checkpoint.file.save(f"{sha256}.pt", ContentFile(data), save=False)
        checkpoint.save()
    return checkpoint


def checkpoint_check(*, backbone: str, path: str) -> None:
    """Load ``path`` into ``backbone`` on the CPU with the engine; raise ApplicationError with the reason."""
    from iri_worker import engine

    try:
        engine.load_backbone(backbone, weights_path=path)
    except pickle.UnpicklingError as exc:
        raise ApplicationError(CHECKPOINT_UNSAFE.format(detail=str(exc).splitlines()[0][:300])) from exc
    except (RuntimeError, ValueError, KeyError, EOFError, OSError) as exc:
        detail = " ".join(str(exc).split())[:2000]
        if "weights_only" in detail.lower() or "unpickl" in detail.lower():
            raise ApplicationError(CHECKPOINT_UNSAFE.format(detail=detail[:300])) from exc
        raise ApplicationError(CHECKPOINT_MISMATCH.format(backbone=backbone, detail=detail)) from exc


def _checkpoint_local_path(checkpoint: Checkpoint) -> str:
    """A local file with the checkpoint's bytes (the storage's own path, or a cached copy by hash)."""
    try:
        return default_storage.path(checkpoint.file.name)
    except NotImplementedError:  # remote storage: keep one local copy per worker machine
        path = os.path.join(tempfile.gettempdir(), "iri-checkpoints", f"{checkpoint.sha256}.pt")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with default_storage.open(checkpoint.file.name, "rb") as src, open(path + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(path + ".part", path)
        return path


# --------------------------------------------------------------------------- jobs


def iri_spec_default_chunk_size(*, image_size: int) -> int:
    """Targets per task: 8 at 224 px, more for smaller images (same pixels per batch), at most 64."""
    return max(1, min(64, int(8 * (224 / max(image_size, 1)) ** 2)))


def iri_job_check(
    *,
    targets: list[TargetPhoto],
    spec: dict,
    checkpoint: Checkpoint | None = None,
    seed_photo: TargetPhoto | None = None,
    seed_upload: bytes | None = None,
    chunk_size: int | None = None,
) -> tuple[dict, Checkpoint | None, int]:
    """Everything that must hold before a job is created (the API, the admin and iri_job_create ask here).

    Returns the engine's resolved spec, the checkpoint (also when named by spec.checkpoint_sha256) and the
    chunk size. An uploaded checkpoint enters the spec as checkpoint_sha256, a seed photo (or the image in
    seed_upload, stored only when the job is) as seed_kind "photo"."""
    if not targets:
        raise ApplicationError(NO_TARGETS)
    team_id = targets[0].team_id
    if any(obj.team_id != team_id for obj in [*targets, checkpoint, seed_photo] if obj is not None):
        raise ApplicationError(TEAMS_MIXED)
    if not isinstance(spec, dict):
        raise ApplicationError("The spec must be a JSON object.")
    spec = dict(spec)
    if spec.get("weights_path") is not None:
        raise ApplicationError(WEIGHTS_PATH_REFUSED)
    spec.pop("weights_path", None)
    sha256 = spec.get("checkpoint_sha256")
    if checkpoint is None and sha256:
        checkpoint = Checkpoint.objects.filter(team_id=team_id, sha256=sha256).first()
        if checkpoint is None:
            raise ApplicationError(CHECKPOINT_UNKNOWN.format(sha256=sha256))
    if checkpoint is not None:
        if sha256 and sha256 != checkpoint.sha256:
            raise ApplicationError(CHECKPOINT_SHA_MISMATCH.format(spec=sha256, checkpoint=checkpoint.sha256))
        if checkpoint.backbone != spec.get("backbone", checkpoint.backbone):
            raise ApplicationError(CHECKPOINT_BACKBONE.format(checkpoint=checkpoint.backbone, spec=spec["backbone"]))
        spec["backbone"] = checkpoint.backbone
        spec["checkpoint_sha256"] = checkpoint.sha256
    if seed_upload is not None:
        photo_png_bytes(data=seed_upload)
    if seed_photo is not None or seed_upload is not None:
        spec["seed_kind"] = "photo"
    elif spec.get("seed_kind") == "photo":
        raise ApplicationError(SEED_PHOTO_MISSING)
    full_spec = iri_spec_validate(spec)
    if chunk_size is None:
        chunk_size = iri_spec_default_chunk_size(image_size=full_spec["image_size"])
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ApplicationError(BAD_CHUNK_SIZE.format(value=chunk_size))
    iri_broker_check()
    return full_spec, checkpoint, chunk_size


def iri_job_create(
    *,
    targets: list[TargetPhoto],
    spec: dict,
    name: str = "",
    checkpoint: Checkpoint | None = None,
    seed_photo: TargetPhoto | None = None,
    seed_upload: bytes | None = None,
    seed_upload_name: str = "",
    chunk_size: int | None = None,
) -> IriJob:
    """Check (iri_job_check), store the job with its chunks, and queue one task per chunk once the transaction
    commits. An uploaded seed image becomes a target photo of the job's team in the same transaction, so a job
    that is refused leaves no photo behind. Device options (amp, channels_last) are spec fields."""
    full_spec, checkpoint, chunk_size = iri_job_check(
        targets=targets, spec=spec, checkpoint=checkpoint, seed_photo=seed_photo, seed_upload=seed_upload,
        chunk_size=chunk_size,
    )
    with transaction.atomic():
        if seed_upload is not None:
            seed_photo = target_photo_create(team=targets[0].team, name=f"seed: {seed_upload_name}", data=seed_upload)
        job = IriJob.objects.create(
            team_id=targets[0].team_id, name=name, spec=full_spec, checkpoint=checkpoint, seed_photo=seed_photo,
            chunk_size=chunk_size,
        )
        job.targets.set(targets)
        iri_job_chunks_create(job=job)
        transaction.on_commit(lambda: iri_job_enqueue(job_id=job.pk))
    return job


def iri_broker_check() -> None:
    """Refuse a job up front when the broker is down: better a clear 503 than a job that can never start."""
    from backend.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        raise ApplicationError(BROKER_DOWN.format(error=exc), status_code=503) from exc


def iri_job_chunks_create(*, job: IriJob) -> list[IriChunk]:
    """Split the job's targets (by id) into chunks of ``job.chunk_size``; nothing if it has chunks already."""
    if job.chunks.exists():
        return list(job.chunks.all())
    ids = list(job.targets.order_by("id").values_list("id", flat=True))
    size = job.chunk_size
    return IriChunk.objects.bulk_create(
        IriChunk(job=job, index=i, target_ids=ids[start:start + size], size=len(ids[start:start + size]))
        for i, start in enumerate(range(0, len(ids), size))
    )


def iri_job_enqueue(*, job_id: int, chunk_ids: list[int] | None = None) -> None:
    """Send one task per queued chunk. With the broker down the job says so and no chunk stays queued."""
    from backend.celery import app

    from ..tasks import iri_chunk_run_task

    chunks = IriChunk.objects.filter(job_id=job_id, status=IriChunk.Status.QUEUED)
    if chunk_ids is not None:
        chunks = chunks.filter(pk__in=chunk_ids)
    ids = list(chunks.values_list("id", flat=True))
    try:
        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=1)  # fail before sending anything
            for chunk_id in ids:
                iri_chunk_run_task.apply_async((chunk_id,), producer=producer)
    except Exception as exc:  # broker down: the job fails with the reason; a chunk already sent skips itself
        logger.exception("could not enqueue IRI job %s", job_id)
        message = BROKER_DOWN.format(error=exc)
        IriChunk.objects.filter(job_id=job_id, status=IriChunk.Status.QUEUED).update(
            status=IriChunk.Status.FAILED, error=message, finished_at=timezone.now()
        )
        iri_job_fail(job_id=job_id, error=message)


def iri_job_fail(*, job_id: int, error: str) -> None:
    IriJob.objects.filter(pk=job_id, status__in=[IriJob.Status.QUEUED, IriJob.Status.RUNNING]).update(
        status=IriJob.Status.FAILED, error=error[:5000], finished_at=timezone.now()
    )


def iri_job_cancel(*, job: IriJob) -> IriJob:
    """QUEUED/RUNNING -> CANCELLED. Queued chunks are skipped; running ones stop at their next step."""
    now = timezone.now()
    with transaction.atomic():
        if not IriJob.objects.filter(pk=job.pk, status__in=[IriJob.Status.QUEUED, IriJob.Status.RUNNING]).update(
            status=IriJob.Status.CANCELLED, finished_at=now
        ):
            job.refresh_from_db()
            raise ApplicationError(JOB_NOT_CANCELLABLE.format(id=job.pk, status=job.status))
        job.chunks.filter(status__in=[IriChunk.Status.QUEUED, IriChunk.Status.RUNNING]).update(
            status=IriChunk.Status.CANCELLED, finished_at=now
        )
    job.refresh_from_db()
    return job


def iri_job_retry(*, job: IriJob) -> IriJob:
    """Queue the FAILED chunks of a FAILED job again; finished chunks keep their images."""
    with transaction.atomic():
        locked = IriJob.objects.select_for_update().get(pk=job.pk)
        failed = list(locked.chunks.filter(status=IriChunk.Status.FAILED).values_list("id", flat=True))
        if locked.status != IriJob.Status.FAILED or not failed:
            raise ApplicationError(NOTHING_TO_RETRY.format(id=job.pk, status=locked.status))
        IriChunk.objects.filter(pk__in=failed).update(
            status=IriChunk.Status.QUEUED, error="", progress=0.0, attempts=0, started_at=None,
            heartbeat_at=None, finished_at=None,
        )
        started = locked.chunks.filter(status=IriChunk.Status.DONE).exists()
        IriJob.objects.filter(pk=job.pk).update(
            status=IriJob.Status.RUNNING if started else IriJob.Status.QUEUED, error="", finished_at=None
        )
        transaction.on_commit(lambda: iri_job_enqueue(job_id=job.pk, chunk_ids=failed))
    iri_job_refresh(job_id=job.pk)
    job.refresh_from_db()
    return job


def iri_job_refresh(*, job_id: int) -> None:
    """Aggregate chunk progress into the job; DONE when every chunk is, FAILED when one failed for good."""
    chunks = IriChunk.objects.filter(job_id=job_id).exclude(status=IriChunk.Status.SPLIT)
    agg = chunks.aggregate(
        total=Sum("size"), done=Sum(F("progress") * F("size"), output_field=FloatField())
    )
    progress = min(1.0, max(0.0, (agg["done"] or 0.0) / agg["total"])) if agg["total"] else 0.0
    counts = dict(chunks.values_list("status").annotate(n=Count("id")))
    live = [IriJob.Status.QUEUED, IriJob.Status.RUNNING]
    job = IriJob.objects.filter(pk=job_id, status__in=live)
    pending = counts.get(IriChunk.Status.QUEUED, 0) + counts.get(IriChunk.Status.RUNNING, 0)
    failures = [
        f"chunk {index}: {error}"
        for index, error in chunks.filter(status=IriChunk.Status.FAILED).values_list("index", "error")
    ]
    if counts and set(counts) == {IriChunk.Status.DONE}:
        job.update(status=IriJob.Status.DONE, progress=1.0, finished_at=timezone.now(), error="",
                   versions=library_versions())
    elif failures and not pending:
        job.update(status=IriJob.Status.FAILED, progress=progress, finished_at=timezone.now(),
                   error="\n".join(failures)[:5000], versions=library_versions())
    else:
        job.update(progress=progress, error="\n".join(failures)[:5000])


def library_versions() -> dict:
    import numpy
    import PIL
    import torch
    import torchvision

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "torchvision": torchvision.__version__, "numpy": numpy.__version__, "pillow": PIL.__version__}
    try:
        import pytorch_msssim

        versions["pytorch_msssim"] = getattr(pytorch_msssim, "__version__", "installed")
    except ImportError:
        pass
    if torch.version.cuda:
        versions["cuda"] = torch.version.cuda
    return versions


# --------------------------------------------------------------------------- chunks (run on workers)


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
    """CUDA when this process sees a GPU (one worker process per GPU via CUDA_VISIBLE_DEVICES), else CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def iri_worker_process_init() -> None:
    """Once per worker process: CPU thread count (IRI_TORCH_THREADS, 0 = torch's default)."""
    import torch

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
        validity, null_cached = [{"error": f"{type(exc).__name__}: {exc}"[:500]} for _ in targets], None
    details = {"device": device, "device_name": _device_name(device), "seconds": round(seconds, 2),
               "worker": worker, "steps_run": int(getattr(result, "steps_run", spec.steps) or spec.steps),
               "adversarial_c": getattr(result, "adversarial_c", None),
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
                    validity=validity[i],
                ),
            )
        finished = IriChunk.objects.filter(pk=chunk_id, status=IriChunk.Status.RUNNING, worker=worker[:255]).update(
            status=IriChunk.Status.DONE, progress=1.0, finished_at=timezone.now(), details=details
        )
        if not finished:  # cancelled or taken over while we stored: keep nothing of this run
            transaction.set_rollback(True)
            raise ChunkStopped(f"chunk {chunk_id} was cancelled or taken over")
    iri_job_refresh(job_id=job.pk)


# --------------------------------------------------------------------------- validity (run on workers)

# Photos in a null distribution's pool (the job's targets first, then others by sha256): 128 photos give 16,256
# ordered pairs to draw NULL_PAIRS from, and cost a first job on 2 CPU cores under 10 % of the demo's run
# (decoding the photos and 128 forward passes; bench/validity.py).
NULL_POOL_MAX = 128
NULL_SEED = 0  # the generator that draws the pairs when the pool has more than engine.validity.NULL_PAIRS
NULL_VERSION = 1  # bump when the null's definition changes: old cached rows are then never reused


def _null_pool(*, job: IriJob) -> list[StoredImage]:
    """The photos whose pairs make the job's null: its targets and the team's other target photos that existed when
    the job was created (fixed per job, whichever worker asks), at most NULL_POOL_MAX, distinct, by sha256."""
    own = list(StoredImage.objects.filter(pk__in=job.targets.values("image_id")).order_by("sha256")[:NULL_POOL_MAX])
    room = NULL_POOL_MAX - len(own)
    others = []
    if room > 0:
        earlier = TargetPhoto.objects.filter(team_id=job.team_id, created_at__lte=job.created_at).values("image_id")
        others = list(StoredImage.objects.filter(pk__in=earlier).exclude(pk__in=[i.pk for i in own])
                      .order_by("sha256")[:room])
    return sorted(own + others, key=lambda image: image.sha256)


def null_distribution_get(*, job: IriJob, spec, backbone, device: str) -> tuple[NullDistribution, bool]:
    """The job's null distribution and whether it was cached: representation distances between unrelated
    photos (engine.validity), at the job's backbone, checkpoint, layer and image size, over its photo pool.

    Cached in NullDistribution by a hash of all of those, so workers share it and a later job with the same
    settings and pool reuses it. Pool photos are preprocessed exactly as targets are (photo_to_tensor)."""
    import torch

    from iri_worker import engine

    pool = _null_pool(job=job)
    layer = spec.layer or backbone.default_layer
    size = spec.image_size or backbone.input_size
    identity = {
        "version": NULL_VERSION, "backbone": spec.backbone, "checkpoint_sha256": spec.checkpoint_sha256 or "",
        "layer": layer, "image_size": size, "pool": [image.sha256 for image in pool],
        "pairs": engine.validity.NULL_PAIRS, "seed": NULL_SEED,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    found = NullDistribution.objects.filter(key=key).first()
    if found is not None:
        return found, True
    started = time.monotonic()

    def load(image: StoredImage):
        try:
            return engine.photo_to_tensor(_read_rgb(image), size)
        except (OSError, ValueError) as exc:  # a missing or broken file leaves the pool, never fails the job
            logger.warning("null distribution: photo %s left out (%s)", image.sha256[:12], exc)
            return None

    # PIL decodes and resizes outside the GIL: a few threads divide the wall time
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as threads:
        loaded = list(threads.map(load, pool))
    tensors = [t for t in loaded if t is not None]
    used = [image.sha256 for image, t in zip(pool, loaded) if t is not None]
    images = torch.stack(tensors) if tensors else torch.zeros(0, 3, size, size)
    reps = engine.validity.representations(backbone, images, layer=layer)
    pairs = engine.validity.null_pairs(len(used), max_pairs=engine.validity.NULL_PAIRS, seed=NULL_SEED)
    distances = engine.validity.null_distances(reps, pairs)
    null = NullDistribution(
        key=key, backbone=spec.backbone, checkpoint_sha256=spec.checkpoint_sha256 or "", layer=layer,
        image_size=size, pool=used, distances=[float(d) for d in distances.tolist()],
        seconds=round(time.monotonic() - started, 3),
    )
    if len(used) < len(pool):  # not the pool the key names: use it for this chunk, cache nothing
        return null, False
    try:
        with transaction.atomic():
            null.save()
    except IntegrityError:  # another worker stored the same one meanwhile
        return NullDistribution.objects.get(key=key), True
    return null, False


def _signif(value: float, digits: int = 6) -> float | None:
    value = float(value)
    return float(f"{value:.{digits}g}") if math.isfinite(value) else None


def iri_validity_compute(*, job: IriJob, spec, backbone, device: str, iris, targets, curve) -> tuple[list[dict], bool]:
    """Each IRI's validity record (see IriImage.validity) and whether the null came from the cache.

    The IRI is judged as stored (8-bit); its distance to its target is the loss's representation term at the
    run's layer, in float32 without transform; its percentile is in the job's null distribution. ``curve`` is
    [(step, (B,) losses)] as collected from on_step: read back to the host here, once."""
    import torch

    from iri_worker import engine

    v = engine.validity
    null, cached = null_distribution_get(job=job, spec=spec, backbone=backbone, device=device)
    layer = spec.layer or backbone.default_layer
    shown = engine.eight_bit(iris).cpu()
    n = shown.shape[0]
    both = torch.cat([shown, targets.float().cpu()])
    reps = v.representations(backbone, both, layer=layer)
    distances = v.relative_distances(reps[:n], reps[n:])
    null_values = torch.tensor(null.distances, dtype=torch.float64)
    percentiles = v.null_percentiles(distances, null_values)
    labels = v.top1_labels(backbone, both)
    names = backbone.label_names
    losses = torch.stack([loss.detach().float() for _, loss in curve]).cpu() if curve else torch.zeros(0, n)
    steps = [step for step, _ in curve]
    summary = {"key": null.key, "layer": layer, "pairs": len(null.distances), "photos": len(null.pool),
               "median": _signif(null_values.median()) if null_values.numel() else None,
               "min": _signif(null_values[0]) if null_values.numel() else None}
    records = []
    for i in range(n):
        record = {
            "distance": _signif(distances[i]),
            "percentile": None if math.isnan(percentiles[i]) else round(float(percentiles[i]), 3),
            "null": summary,
            "label_match": None, "iri_label": None, "target_label": None,
            "iri_label_name": None, "target_label_name": None,
            "loss_curve": [[s, _signif(losses[k, i])] for k, s in enumerate(steps)],
        }
        if labels is not None:
            mine, theirs = int(labels[i]), int(labels[n + i])
            record.update(label_match=mine == theirs, iri_label=mine, target_label=theirs)
            if names is not None and max(mine, theirs) < len(names):
                record.update(iri_label_name=names[mine], target_label_name=names[theirs])
        records.append(record)
    return records, cached


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


def _save_tensor_once(tensor, cache: dict) -> StoredImage:
    key = hash(tensor.numpy().tobytes())
    if key not in cache:
        cache[key] = _save_tensor(tensor)
    return cache[key]


_PROXY_UNAVAILABLE: set[str] = set()


def iri_proxy_compute(*, iris, targets, seeds) -> list[dict]:
    """Per image {metric: {"to_target": d, "to_seed": d, "aligned": d_to_target <= d_to_seed}} for every
    metric the engine can compute here (LPIPS only where its weights are present), on 8-bit images."""
    from iri_worker import engine

    out: list[dict] = [{} for _ in range(iris.shape[0])]
    # Judge the images as stored and shown: 8-bit.
    iris, targets, seeds = (engine.eight_bit(t).cpu() for t in (iris, targets, seeds))
    for metric in [m for m in engine.PROXY_METRICS if m not in _PROXY_UNAVAILABLE]:
        try:
            result = engine.proxy_alignment(iris, targets, seeds, metric)
        except RuntimeError as exc:  # e.g. LPIPS without its backbone weights on this machine
            logger.info("proxy %s unavailable: %s", metric, exc)
            _PROXY_UNAVAILABLE.add(metric)
            continue
        for i in range(iris.shape[0]):
            out[i][metric] = {"to_target": round(float(result["to_target"][i]), 6),
                              "to_seed": round(float(result["to_seed"][i]), 6),
                              "aligned": bool(result["aligned"][i])}
    return out


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


def _read_rgb(stored: StoredImage) -> Image.Image:
    with default_storage.open(stored.file.name, "rb") as fh:
        return Image.open(io.BytesIO(fh.read())).convert("RGB")


def _save_tensor(tensor) -> StoredImage:
    from iri_worker.engine import tensor_to_png_bytes

    return stored_image_save(png_bytes=tensor_to_png_bytes(tensor), width=tensor.shape[-1], height=tensor.shape[-2])
