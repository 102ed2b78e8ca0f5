"""Uploaded checkpoints: checked by loading them into their architecture with torch.load(weights_only=True), stored
once per team, and copied to a worker's disk when the storage is remote."""
import hashlib
import os
import pickle
import shutil
import tempfile

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from backend.exceptions import ApplicationError
from teams.actors import Actor
from teams.models import Team
from teams.services import audit_record

from ..models import Checkpoint
from .specs import iri_spec_validate

CHECKPOINT_TOO_LARGE = "The checkpoint is larger than {limit} MB."
CHECKPOINT_UNSAFE = (
    "The checkpoint was refused: it is not a plain weights file. It is loaded with torch.load(weights_only=True), "
    "which allows only tensors and plain containers, never arbitrary Python objects ({detail})."
)
CHECKPOINT_MISMATCH = "The checkpoint does not fit backbone '{backbone}': {detail}"
CHECKPOINT_BACKBONE = "The checkpoint is for backbone '{checkpoint}', but the job's spec uses '{spec}'."


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


def checkpoint_create(*, team: Team, name: str, backbone: str, data: bytes, actor: Actor | None = None) -> Checkpoint:
    """Store uploaded weights for a registered architecture once they passed checkpoint_data_check (the same
    file uploaded again to the same team is the checkpoint already stored; the upload is audited either way)."""
    checkpoint_data_check(backbone=backbone, data=data)
    sha256 = hashlib.sha256(data).hexdigest()
    with transaction.atomic():
        checkpoint = Checkpoint.objects.filter(team=team, sha256=sha256).first()
        if checkpoint is not None and checkpoint.backbone != backbone:
            raise ApplicationError(CHECKPOINT_BACKBONE.format(checkpoint=checkpoint.backbone, spec=backbone))
        if checkpoint is None:
            checkpoint = Checkpoint(team=team, name=name[:200] or sha256[:12], backbone=backbone, sha256=sha256,
                                    size=len(data))
            checkpoint.file.save(f"{sha256}.pt", ContentFile(data), save=False)
            checkpoint.save()
        audit_record(actor=actor, action="checkpoint.create", obj=checkpoint)
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
