"""Stored images and target photos: PNG bytes stored once under their hash, uploads re-encoded as plain RGB PNGs,
and tensors read from and saved to storage."""
import hashlib
import io
import logging

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from PIL import Image, UnidentifiedImageError

from backend.exceptions import ApplicationError
from teams.actors import Actor
from teams.models import Team
from teams.services import audit_record

from ..models import StoredImage, TargetPhoto

logger = logging.getLogger(__name__)

NOT_AN_IMAGE = "The file is not an image we can read (PNG, JPEG, WebP, GIF, BMP or TIFF)."
IMAGE_TOO_LARGE = "The image is larger than {limit} MB."
IMAGE_NOT_STORED = "Could not store an image (is the disk full or read-only?): {error}"
MAX_PHOTO_SIDE = 4096


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


def target_photo_create(*, team: Team, name: str, data: bytes, label: str | None = None,
                        actor: Actor | None = None) -> TargetPhoto:
    png, width, height = photo_png_bytes(data=data)
    with transaction.atomic():
        image = stored_image_save(png_bytes=png, width=width, height=height)
        photo = TargetPhoto.objects.create(team=team, name=name[:200] or image.sha256[:12], image=image,
                                           label=(label or "").strip() or None)
        audit_record(actor=actor, action="photo.create", obj=photo)
    return photo


def _read_rgb(stored: StoredImage) -> Image.Image:
    with default_storage.open(stored.file.name, "rb") as fh:
        return Image.open(io.BytesIO(fh.read())).convert("RGB")


def _save_tensor(tensor) -> StoredImage:
    from iri_worker.engine import tensor_to_png_bytes

    return stored_image_save(png_bytes=tensor_to_png_bytes(tensor), width=tensor.shape[-1], height=tensor.shape[-2])


def _save_tensor_once(tensor, cache: dict) -> StoredImage:
    key = hash(tensor.numpy().tobytes())
    if key not in cache:
        cache[key] = _save_tensor(tensor)
    return cache[key]
