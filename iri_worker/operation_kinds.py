"""The operation runs iri_worker does (registered in iri_worker.apps): the check of uploaded weights."""
from backend.exceptions import ApplicationError
from operations.models import OperationRun
from operations.registry import Progress

from .models import Checkpoint
from .services.checkpoints import checkpoint_verify

CHECKPOINT_GONE = "The checkpoint was deleted before its check ran."


def checkpoint_check_run(run: OperationRun, progress: Progress) -> dict:
    """A worker loads the uploaded weights into their architecture with torch.load(weights_only=True): the
    checkpoint becomes READY, or REFUSED with the reason (the run fails with it too)."""
    checkpoint = Checkpoint.objects.filter(pk=run.subject_id).first()
    if checkpoint is None:
        raise ApplicationError(CHECKPOINT_GONE)
    if checkpoint.status == Checkpoint.Status.CHECKING:
        progress(0.0, f"loading the weights into {checkpoint.backbone} (weights_only=True)")
        checkpoint = checkpoint_verify(checkpoint=checkpoint)
    return {"status": checkpoint.status, "backbone": checkpoint.backbone, "sha256": checkpoint.sha256}

