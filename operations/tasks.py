"""The one Celery task of every operation run: it takes the run's id and calls the service."""
from celery import shared_task


@shared_task
def operation_run_execute(run_id: int) -> None:
    from .services import operation_run_perform

    operation_run_perform(run_id=run_id)
