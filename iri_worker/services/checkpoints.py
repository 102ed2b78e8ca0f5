"""Uploaded checkpoints: stored once per team, checked by loading them into their architecture with
torch.load(weights_only=True), and copied to a worker's disk when the storage is remote.

The web process only stores an upload (its size limit and a registered architecture are checked there) and starts
an operation run (iri_worker.operation_kinds) in which a worker loads it; the checkpoint is READY, so usable by a
job, only once that check passed, or REFUSED with the reason (its file is deleted). Commands and tests check in
their own process (checkpoint_create)."""
import contextlib
import hashlib
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from backend.exceptions import ApplicationError
from operations.models import OperationRun
from operations.selectors import operation_run_list_of_subject
from operations.services import operation_run_create
from teams.actors import Actor
from teams.models import Team
from teams.services import audit_record

from ..models import Checkpoint
from .specs import iri_spec_validate

CHECKPOINT_CHECK_KIND = "checkpoint_check"
CHECKPOINT_TOO_LARGE = "The checkpoint is larger than {limit} MB."
CHECKPOINT_UNSAFE = (
    "The checkpoint was refused: it is not a plain weights file. It is loaded with torch.load(weights_only=True), "
    "which allows only tensors and plain containers, never arbitrary Python objects ({detail})."
)
CHECKPOINT_MISMATCH = "The checkpoint does not fit backbone '{backbone}': {detail}"
CHECKPOINT_BACKBONE = "The checkpoint is for backbone '{checkpoint}', but the job's spec uses '{spec}'."
CHECKPOINT_CHECKING = (
    "Checkpoint '{name}' is still being checked by a worker (its weights are loaded into '{backbone}'); "
    "use it once its status is READY."
)
CHECKPOINT_REFUSED = "Checkpoint '{name}' was refused by its check and cannot be used: {error}"


def checkpoint_data_limits(*, backbone: str, data: bytes) -> None:
    """What an upload must pass before it is stored: the size limit and a registered architecture (the registry's
    static data, with its hint for a near miss). Loading the weights is the worker's check."""
    limit = settings.IRI_MAX_CHECKPOINT_BYTES
    if len(data) > limit:
        raise ApplicationError(CHECKPOINT_TOO_LARGE.format(limit=limit // (1024 * 1024)))
    iri_spec_validate({"backbone": backbone})


def checkpoint_store(*, team: Team, name: str, backbone: str, data: bytes) -> Checkpoint:
    """Store uploaded weights (CHECKING) once they pass checkpoint_data_limits. The same file uploaded again to the
    same team is the checkpoint already stored, except one the check refused, which is stored and checked anew."""
    checkpoint_data_limits(backbone=backbone, data=data)
    sha256 = hashlib.sha256(data).hexdigest()
    with transaction.atomic():
        existing = Checkpoint.objects.select_for_update().filter(team=team, sha256=sha256).first()
        if existing is not None and existing.status != Checkpoint.Status.REFUSED:
            if existing.backbone != backbone:
                raise ApplicationError(CHECKPOINT_BACKBONE.format(checkpoint=existing.backbone, spec=backbone))
            return existing
        if existing is not None:
            existing.delete()
        checkpoint = Checkpoint(team=team, name=name[:200] or sha256[:12], backbone=backbone, sha256=sha256,
                                size=len(data), status=Checkpoint.Status.CHECKING)
        checkpoint.file.save(f"{sha256}.pt", ContentFile(data), save=False)
        checkpoint.save()
    return checkpoint


def checkpoint_upload(*, team: Team, name: str, backbone: str, data: bytes, actor: Actor | None = None) -> Checkpoint:
    """The web's upload: store the weights (checkpoint_store) and start the worker's check of them (an operation
    run of kind checkpoint_check on the checkpoint), unless they are checked already or being checked. The upload
    is audited either way."""
    with transaction.atomic():
        checkpoint = checkpoint_store(team=team, name=name, backbone=backbone, data=data)
        audit_record(actor=actor, action="checkpoint.create", obj=checkpoint)
        if checkpoint.status == Checkpoint.Status.CHECKING and not checkpoint_check_runs(checkpoint=checkpoint).filter(
                status__in=(OperationRun.Status.QUEUED, OperationRun.Status.RUNNING)).exists():
            operation_run_create(kind=CHECKPOINT_CHECK_KIND, subject=checkpoint, params={}, actor=actor)
    return checkpoint


def checkpoint_check_runs(*, checkpoint: Checkpoint):
    """The checks of a checkpoint, newest first (for a caller that loaded it through the scoped selectors)."""
    return operation_run_list_of_subject(subject=checkpoint, kind=CHECKPOINT_CHECK_KIND)


def checkpoint_verify(*, checkpoint: Checkpoint) -> Checkpoint:
    """Load the stored weights into their architecture in this process (the worker's check): READY when they load,
    else REFUSED with the reason, the file deleted, and the reason raised as an ApplicationError."""
    try:
        with _checkpoint_bytes_on_disk(checkpoint) as path:
            checkpoint_check(backbone=checkpoint.backbone, path=path)
    except ApplicationError as exc:
        checkpoint.file.delete(save=False)
        Checkpoint.objects.filter(pk=checkpoint.pk).update(status=Checkpoint.Status.REFUSED, error=exc.message, file="")
        checkpoint.refresh_from_db()
        raise
    Checkpoint.objects.filter(pk=checkpoint.pk).update(status=Checkpoint.Status.READY, error="")
    checkpoint.refresh_from_db()
    return checkpoint


def checkpoint_create(*, team: Team, name: str, backbone: str, data: bytes, actor: Actor | None = None) -> Checkpoint:
    """Store uploaded weights and check them in this process (commands, tests; the web uses checkpoint_upload):
    READY, or refused with the reason and nothing left stored. The upload is audited once it is stored."""
    checkpoint = checkpoint_store(team=team, name=name, backbone=backbone, data=data)
    if checkpoint.status != Checkpoint.Status.READY:
        try:
            checkpoint = checkpoint_verify(checkpoint=checkpoint)
        except ApplicationError:
            checkpoint.delete()
            raise
    audit_record(actor=actor, action="checkpoint.create", obj=checkpoint)
    return checkpoint


def checkpoint_usable_check(*, checkpoint: Checkpoint) -> None:
    """A job may use only weights whose check passed."""
    if checkpoint.status == Checkpoint.Status.CHECKING:
        raise ApplicationError(CHECKPOINT_CHECKING.format(name=checkpoint.name, backbone=checkpoint.backbone))
    if checkpoint.status == Checkpoint.Status.REFUSED:
        raise ApplicationError(CHECKPOINT_REFUSED.format(name=checkpoint.name, error=checkpoint.error))


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


@contextlib.contextmanager
def _checkpoint_bytes_on_disk(checkpoint: Checkpoint) -> Iterator[str]:
    """A local path with the stored weights: the storage's own file, else a temporary copy removed afterwards (so
    weights that may be refused are never left in a worker's cache)."""
    try:
        local = default_storage.path(checkpoint.file.name)
    except NotImplementedError:
        local = None
    if local is not None:
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="iri-ckpt-") as tmp:
        path = os.path.join(tmp, "checkpoint.pt")
        with default_storage.open(checkpoint.file.name, "rb") as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        yield path


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
