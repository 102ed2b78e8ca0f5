import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def iri_job_run_task(job_id: int) -> None:
    from .services import iri_job_fail, iri_job_run

    try:
        iri_job_run(job_id=job_id)
    except Exception as exc:
        # The job ends FAILED with the reason; the worker moves on to the next job.
        logger.exception("IRI job %s failed", job_id)
        iri_job_fail(job_id=job_id, error=f"{type(exc).__name__}: {exc}")
