"""Operation runs: created QUEUED and handed to a worker once the transaction commits; the worker marks them
RUNNING, calls the kind's function with a progress callback, and keeps its result or why it failed."""
import logging

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone

from backend.exceptions import ApplicationError
from teams.actors import Actor
from teams.models import Team
from teams.services import audit_record

from .models import OperationRun
from .registry import operation_kind_get

logger = logging.getLogger(__name__)

# The one task (operations.tasks), sent by name: the task calls this module, never the other way.
EXECUTE_TASK = "operations.tasks.operation_run_execute"
TASK_QUEUE_DOWN = "The task queue (broker) is unavailable, so this did not start: {error}"
NO_TEAM = "An operation run needs a team: its subject has none, so pass team= explicitly."
MESSAGE_MAX = 200
ERROR_MAX = 5000


def operation_run_create(*, kind: str, subject, params: dict, actor: Actor | None = None,
                         team: Team | None = None) -> OperationRun:
    """A QUEUED run of a registered kind on `subject` (any model instance, or None), sent to a worker once the
    transaction commits. Its team is `team`, else the subject's own `team`. An unknown kind is refused here, before
    anything is queued, with the known kinds named. Audited as "<subject's model>.<kind>" (e.g. survey.bots), as
    done by `actor` (teams.actors), who is also the run's creator when a person."""
    operation_kind_get(kind)
    team = team if team is not None else getattr(subject, "team", None)
    if team is None:
        raise ApplicationError(NO_TEAM)
    with transaction.atomic():
        run = OperationRun.objects.create(
            team=team, kind=kind, params=params, created_by=actor.user if actor is not None else None,
            subject_type=ContentType.objects.get_for_model(subject) if subject is not None else None,
            subject_id=subject.pk if subject is not None else None,
        )
        audit_record(actor=actor, action=f"{subject._meta.model_name if subject is not None else 'operation'}.{kind}",
                     obj=subject, team=team, details={"run": run.pk, **params})
    transaction.on_commit(lambda: _operation_run_enqueue(run_id=run.pk))
    return run


def _operation_run_enqueue(*, run_id: int) -> None:
    from backend.celery import app

    try:
        app.send_task(EXECUTE_TASK, args=(run_id,), retry=False)
    except Exception as exc:  # broker down: the run says so instead of waiting forever
        logger.exception("could not enqueue operation run %s", run_id)
        _operation_run_end(run_id=run_id, status=OperationRun.Status.FAILED, error=TASK_QUEUE_DOWN.format(error=exc))


def operation_run_progress(*, run_id: int, progress: float, message: str = "") -> None:
    """How far a RUNNING run has come: a fraction in [0, 1] (clamped) and a short sentence for the admin page."""
    OperationRun.objects.filter(pk=run_id, status=OperationRun.Status.RUNNING).update(
        progress=min(1.0, max(0.0, float(progress))), progress_message=message[:MESSAGE_MAX])


def operation_run_perform(*, run_id: int) -> None:
    """The worker's side (operations.tasks.operation_run_execute): a QUEUED run becomes RUNNING while its kind's
    function runs, then DONE with the dict it returns, or FAILED with the sentence saying why (an ApplicationError's
    message; for anything else, the exception's name and message, the traceback going to the log only). A second
    delivery of the same task finds the run taken and does nothing."""
    claimed = OperationRun.objects.filter(pk=run_id, status=OperationRun.Status.QUEUED).update(
        status=OperationRun.Status.RUNNING, started_at=timezone.now())
    if not claimed:
        return
    run = OperationRun.objects.select_related("team", "created_by").get(pk=run_id)

    def progress(fraction: float, message: str = "") -> None:
        operation_run_progress(run_id=run_id, progress=fraction, message=message)

    try:
        result = operation_kind_get(run.kind).function(run, progress)
    except ApplicationError as exc:
        _operation_run_end(run_id=run_id, status=OperationRun.Status.FAILED, error=exc.message)
    except Exception as exc:  # the researcher reads why on the page; the traceback goes to the log
        logger.exception("operation run %s (%s) failed", run_id, run.kind)
        _operation_run_end(run_id=run_id, status=OperationRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
    else:
        _operation_run_end(run_id=run_id, status=OperationRun.Status.DONE, result=result)


def _operation_run_end(*, run_id: int, status: str, result: dict | None = None, error: str = "") -> None:
    done = {"progress": 1.0} if status == OperationRun.Status.DONE else {}
    OperationRun.objects.filter(pk=run_id).update(status=status, result=result or {}, error=error[:ERROR_MAX],
                                                  finished_at=timezone.now(), **done)
