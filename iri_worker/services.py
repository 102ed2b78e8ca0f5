"""Writes for IRI jobs. The engine is imported lazily so the web process needs torch only to validate."""
import hashlib
import io
import logging
import platform
import time

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from backend.exceptions import ApplicationError

from .models import IriImage, IriJob, StoredImage, TargetPhoto

logger = logging.getLogger(__name__)

NOT_AN_IMAGE = "The file is not an image we can read (PNG, JPEG, WebP, GIF, BMP or TIFF)."
IMAGE_TOO_LARGE = "The image is larger than {limit} MB."
NO_TARGETS = "Choose at least one target photo for the job."
MAX_PHOTO_SIDE = 4096
PROGRESS_EVERY_S = 1.0


def stored_image_save(*, png_bytes: bytes, width: int, height: int) -> StoredImage:
    """Store PNG bytes once, under a name made of their hash (the name never tells a role)."""
    sha256 = hashlib.sha256(png_bytes).hexdigest()
    existing = StoredImage.objects.filter(sha256=sha256).first()
    if existing is not None:
        return existing
    wanted = f"img/{sha256[:2]}/{sha256}.png"
    name = wanted if default_storage.exists(wanted) else default_storage.save(wanted, ContentFile(png_bytes))
    try:
        with transaction.atomic():
            return StoredImage.objects.create(sha256=sha256, file=name, width=width, height=height)
    except IntegrityError:  # another process stored the same bytes first; drop our copy if it is a second one
        if name != wanted:
            default_storage.delete(name)
        return StoredImage.objects.get(sha256=sha256)


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


def target_photo_create(*, name: str, data: bytes) -> TargetPhoto:
    png, width, height = photo_png_bytes(data=data)
    with transaction.atomic():
        image = stored_image_save(png_bytes=png, width=width, height=height)
        return TargetPhoto.objects.create(name=name[:200] or image.sha256[:12], image=image)


def iri_spec_validate(spec: dict) -> dict:
    """Check a job spec against the engine and return it with every default filled in."""
    from iri_worker.engine import InversionSpec

    if not isinstance(spec, dict):
        raise ApplicationError("The spec must be a JSON object.")
    try:
        return InversionSpec.from_dict(spec).to_dict()
    except ValueError as exc:
        raise ApplicationError(str(exc)) from exc


def iri_job_create(*, targets: list[TargetPhoto], spec: dict, name: str = "") -> IriJob:
    if not targets:
        raise ApplicationError(NO_TARGETS)
    full_spec = iri_spec_validate(spec)
    with transaction.atomic():
        job = IriJob.objects.create(name=name, spec=full_spec)
        job.targets.set(targets)
        transaction.on_commit(lambda: iri_job_enqueue(job_id=job.pk))
    return job


def iri_job_enqueue(*, job_id: int) -> None:
    from .tasks import iri_job_run_task

    try:
        iri_job_run_task.delay(job_id)
    except Exception as exc:  # broker down: say so on the job rather than leave it queued forever
        logger.exception("could not enqueue IRI job %s", job_id)
        iri_job_fail(job_id=job_id, error=f"The job queue (broker) is unavailable: {exc}")


def iri_job_start(*, job_id: int) -> bool:
    """QUEUED -> RUNNING exactly once; a redelivered job that was RUNNING is picked up again."""
    started = IriJob.objects.filter(pk=job_id, status=IriJob.Status.QUEUED).update(
        status=IriJob.Status.RUNNING, started_at=timezone.now(), progress=0.0
    )
    return bool(started) or IriJob.objects.filter(pk=job_id, status=IriJob.Status.RUNNING).exists()


def iri_job_fail(*, job_id: int, error: str) -> None:
    IriJob.objects.filter(pk=job_id).exclude(status=IriJob.Status.DONE).update(
        status=IriJob.Status.FAILED, error=error[:5000], finished_at=timezone.now()
    )


def _library_versions() -> dict:
    import torch
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__}


def _read_rgb(stored: StoredImage) -> Image.Image:
    with default_storage.open(stored.file.name, "rb") as fh:
        return Image.open(io.BytesIO(fh.read())).convert("RGB")


def _save_tensor(tensor) -> StoredImage:
    from iri_worker.engine import tensor_to_png_bytes

    return stored_image_save(png_bytes=tensor_to_png_bytes(tensor), width=tensor.shape[-1], height=tensor.shape[-2])


def iri_job_run(*, job_id: int, device: str = "cpu") -> None:
    """Generate every IRI of a job with the engine and store them. Safe to run twice for one job."""
    import torch

    from iri_worker import engine

    if not iri_job_start(job_id=job_id):
        logger.info("IRI job %s is not runnable (finished or missing); skipped", job_id)
        return
    job = IriJob.objects.get(pk=job_id)
    spec = engine.InversionSpec.from_dict(job.spec)
    targets = list(job.targets.order_by("id"))
    batch = torch.stack([engine.photo_to_tensor(_read_rgb(t.image), spec.image_size) for t in targets])

    last_update = [0.0]

    def report_progress(step: int, losses) -> None:
        now = time.monotonic()
        if now - last_update[0] >= PROGRESS_EVERY_S:
            last_update[0] = now
            IriJob.objects.filter(pk=job_id, status=IriJob.Status.RUNNING).update(progress=(step + 1) / spec.steps)

    result = engine.invert(spec, batch, device=device, on_step=report_progress)

    seed = _save_tensor(result.seeds[0])
    with transaction.atomic():
        for i, target in enumerate(targets):
            IriImage.objects.update_or_create(
                job=job,
                target=target,
                defaults=dict(
                    seed=_save_tensor(result.seeds[i]) if i else seed,
                    image=_save_tensor(result.images[i]),
                    target_image=_save_tensor(batch[i]),
                    initial_loss=float(result.initial_losses[i]),
                    final_loss=float(result.losses[i]),
                    best_step=int(result.best_step[i]),
                ),
            )
        IriJob.objects.filter(pk=job_id).update(
            status=IriJob.Status.DONE, progress=1.0, finished_at=timezone.now(), versions=_library_versions(), error=""
        )
