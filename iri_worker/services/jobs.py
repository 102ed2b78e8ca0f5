"""IRI jobs: check and create a job with its chunks (or a layer sweep: one job per layer), queue one task per chunk,
cancel, retry the failed chunks, and aggregate the chunks' progress into the job."""
import functools
import logging
import platform
import uuid

from django.db import transaction
from django.db.models import Count, F, FloatField, Sum
from django.utils import timezone

from backend.exceptions import ApplicationError
from teams.actors import Actor
from teams.services import audit_record

from ..models import Checkpoint, IriChunk, IriJob, TargetPhoto
from .checkpoints import CHECKPOINT_BACKBONE, checkpoint_usable_check
from .specs import iri_spec_default_chunk_size, iri_spec_validate
from .storage import photo_png_bytes, target_photo_create

logger = logging.getLogger(__name__)

NO_TARGETS = "Choose at least one target photo for the job."
TEAMS_MIXED = "A job's target photos, seed photo and checkpoint must all belong to one team."
BROKER_DOWN = "The job queue (broker) is unavailable, so the job was not started: {error}"
JOB_NOT_CANCELLABLE = "Job {id} is {status}: only queued or running jobs can be cancelled."
NOTHING_TO_RETRY = "Job {id} has no failed chunks to retry (it is {status})."
BAD_CHUNK_SIZE = "chunk_size must be a positive integer (got {value!r})."
CHECKPOINT_UNKNOWN = "No uploaded checkpoint has sha256 {sha256}; upload it first (POST /api/iri/checkpoints)."
CHECKPOINT_SHA_MISMATCH = "spec.checkpoint_sha256 ({spec}) is not the chosen checkpoint's ({checkpoint})."
WEIGHTS_PATH_REFUSED = "weights_path cannot be set through a job: upload the weights as a checkpoint and choose it."
SEED_PHOTO_MISSING = "seed_kind 'photo' needs a seed photo (a target photo or an uploaded image)."
MAX_SWEEP_LAYERS = 64
SWEEP_LAYERS_EMPTY = "layers: give at least one layer name for a layer sweep."
SWEEP_LAYERS_TOO_MANY = "layers: a sweep takes at most {max} layers (got {n})."
SWEEP_LAYER_NOT_A_NAME = "layers: every entry must be a layer name (a string), got {value!r}."
SWEEP_LAYERS_UNKNOWN = (
    "layers: {bad} {verb} not a layer of backbone '{backbone}'. Its stages (for sweeps): {stages}. "
    "Valid layers (GET /api/iri/backbones/{backbone}/layers): {valid}."
)
SWEEP_SPEC_LAYER = "layers: spec.layer '{layer}' is not among the layers; leave spec.layer out of a sweep."
SWEEP_NAME_SEPARATOR = " · "


def iri_job_check(
    *,
    targets: list[TargetPhoto],
    spec: dict,
    checkpoint: Checkpoint | None = None,
    seed_photo: TargetPhoto | None = None,
    seed_upload: bytes | None = None,
    chunk_size: int | None = None,
    layers: list[str] | None = None,
) -> tuple[dict, Checkpoint | None, int]:
    """Everything that must hold before a job is created (the API, the admin and iri_job_create ask here).

    Returns the engine's resolved spec, the checkpoint (also when named by spec.checkpoint_sha256) and the
    chunk size. An uploaded checkpoint enters the spec as checkpoint_sha256, a seed photo (or the image in
    seed_upload, stored only when the job is) as seed_kind "photo". With ``layers`` (a sweep), every layer is
    checked against the backbone too (``iri_sweep_layers_check``) and the spec returned is the sweep's common
    spec, spec.layer left to each job."""
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
        checkpoint_usable_check(checkpoint=checkpoint)  # only weights whose check passed
        spec["backbone"] = checkpoint.backbone
        spec["checkpoint_sha256"] = checkpoint.sha256
    if seed_upload is not None:
        photo_png_bytes(data=seed_upload)
    if seed_photo is not None or seed_upload is not None:
        spec["seed_kind"] = "photo"
    elif spec.get("seed_kind") == "photo":
        raise ApplicationError(SEED_PHOTO_MISSING)
    if layers is not None:
        layers = _sweep_layers_shape(layers)
        if spec.get("layer") is not None and spec["layer"] not in layers:
            raise ApplicationError(SWEEP_SPEC_LAYER.format(layer=spec["layer"]), extra={"field": "layers"})
        spec.pop("layer", None)
    full_spec = iri_spec_validate(spec)
    if layers is not None:
        iri_sweep_layers_check(backbone=full_spec["backbone"], layers=layers)
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
    actor: Actor | None = None,
) -> IriJob:
    """Check (iri_job_check), store the job with its chunks, and queue one task per chunk once the transaction
    commits. An uploaded seed image becomes a target photo of the job's team in the same transaction, so a job
    that is refused leaves no photo behind. Device options (precision, channels_last) are spec fields."""
    full_spec, checkpoint, chunk_size = iri_job_check(
        targets=targets, spec=spec, checkpoint=checkpoint, seed_photo=seed_photo, seed_upload=seed_upload,
        chunk_size=chunk_size,
    )
    with transaction.atomic():
        if seed_upload is not None:
            seed_photo = target_photo_create(team=targets[0].team, name=f"seed: {seed_upload_name}", data=seed_upload,
                                             actor=actor)
        job = _iri_job_store(targets=targets, name=name, spec=full_spec, checkpoint=checkpoint,
                             seed_photo=seed_photo, chunk_size=chunk_size, actor=actor)
    return job


def _sweep_layers_shape(layers: object) -> list[str]:
    """The layer names of a sweep in order, each once; refuses what is not a short list of names."""
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ApplicationError(SWEEP_LAYERS_EMPTY, extra={"field": "layers"})
    for value in layers:
        if not isinstance(value, str) or not value:
            raise ApplicationError(SWEEP_LAYER_NOT_A_NAME.format(value=value), extra={"field": "layers"})
    names = list(dict.fromkeys(layers))  # a layer given twice is one job
    if len(names) > MAX_SWEEP_LAYERS:
        raise ApplicationError(SWEEP_LAYERS_TOO_MANY.format(max=MAX_SWEEP_LAYERS, n=len(names)), extra={"field": "layers"})
    return names


def iri_sweep_layers_check(*, backbone: str, layers: list[str]) -> list[str]:
    """Every layer of a sweep must be one of the backbone's layers; else one 400 naming ``layers``, listing the
    bad names, the backbone's stages and all its valid layers (``extra``: field, invalid, valid, stages)."""
    from iri_worker.engine import describe_backbone

    names = _sweep_layers_shape(layers)
    architecture = describe_backbone(backbone)  # static data: nothing is built in the web process
    valid = architecture.layer_names()
    bad = [name for name in names if name not in valid]
    if bad:
        stages = architecture.stage_names()
        raise ApplicationError(
            SWEEP_LAYERS_UNKNOWN.format(
                bad=", ".join(repr(b) for b in bad), verb="is" if len(bad) == 1 else "are", backbone=backbone,
                stages=", ".join(stages), valid=", ".join(valid),
            ),
            extra={"field": "layers", "invalid": bad, "valid": valid, "stages": stages},
        )
    return names


def iri_sweep_create(
    *,
    targets: list[TargetPhoto],
    spec: dict,
    layers: list[str],
    name: str = "",
    checkpoint: Checkpoint | None = None,
    seed_photo: TargetPhoto | None = None,
    seed_upload: bytes | None = None,
    seed_upload_name: str = "",
    chunk_size: int | None = None,
    actor: Actor | None = None,
) -> list[IriJob]:
    """A layer sweep: one job per layer (in the order given, each layer once), the same targets, seed and spec
    but spec.layer, named "<name> · <layer>" and sharing one ``sweep`` id. Every layer is checked before
    anything is stored; the jobs (and an uploaded seed photo, shared by them) are created in one transaction,
    and their chunks are queued once it commits. Surveys treat each job, so each layer, as a condition."""
    common, checkpoint, chunk_size = iri_job_check(
        targets=targets, spec=spec, checkpoint=checkpoint, seed_photo=seed_photo, seed_upload=seed_upload,
        chunk_size=chunk_size, layers=layers,
    )
    layers = _sweep_layers_shape(layers)
    specs = [iri_spec_validate({**common, "layer": layer}) for layer in layers]
    sweep = uuid.uuid4()
    jobs = []
    with transaction.atomic():
        if seed_upload is not None:
            seed_photo = target_photo_create(team=targets[0].team, name=f"seed: {seed_upload_name}", data=seed_upload,
                                             actor=actor)
        for layer, full_spec in zip(layers, specs):
            label = f"{name[:200 - len(SWEEP_NAME_SEPARATOR) - len(layer)]}{SWEEP_NAME_SEPARATOR}{layer}" if name else layer
            jobs.append(_iri_job_store(
                targets=targets, name=label[:200], spec=full_spec, checkpoint=checkpoint, seed_photo=seed_photo,
                chunk_size=chunk_size, sweep=sweep, actor=actor,
            ))
    return jobs


def _iri_job_store(*, targets: list[TargetPhoto], name: str, spec: dict, checkpoint: Checkpoint | None,
                   seed_photo: TargetPhoto | None, chunk_size: int, actor: Actor | None,
                   sweep: uuid.UUID | None = None) -> IriJob:
    """Store one checked job with its chunks (audited) and queue them when the surrounding transaction commits."""
    job = IriJob.objects.create(
        team_id=targets[0].team_id, name=name, spec=spec, checkpoint=checkpoint, seed_photo=seed_photo,
        chunk_size=chunk_size, sweep=sweep,
    )
    job.targets.set(targets)
    iri_job_chunks_create(job=job)
    audit_record(actor=actor, action="iri_job.create", obj=job)
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


def iri_job_cancel(*, job: IriJob, actor: Actor | None = None) -> IriJob:
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
        audit_record(actor=actor, action="iri_job.cancel", obj=job)
    job.refresh_from_db()
    return job


def iri_job_retry(*, job: IriJob, actor: Actor | None = None) -> IriJob:
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
        audit_record(actor=actor, action="iri_job.retry", obj=locked)
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
    return dict(_library_versions())


@functools.cache  # asked at every job's end; a failed optional import searches the whole path again each time
def _library_versions() -> dict:
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
