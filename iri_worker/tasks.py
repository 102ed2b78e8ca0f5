"""Thin Celery tasks: they take ids and call services. Chunks run on the `gpu` queue."""
import logging

from celery import shared_task
from celery.signals import worker_process_init, worker_ready

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def iri_chunk_run_task(self, chunk_id: int) -> str:
    from django.conf import settings

    from .services import STORAGE_RETRY_S, iri_chunk_run

    outcome = iri_chunk_run(chunk_id=chunk_id, worker=self.request.hostname or "")
    if outcome == "busy":  # another worker holds it: look again once its heartbeat could be stale
        raise self.retry(countdown=settings.IRI_CHUNK_STALE_S + 1)
    if outcome == "retry":  # its images could not be stored (disk full?): again after a pause that doubles
        raise self.retry(countdown=STORAGE_RETRY_S * 2 ** min(self.request.retries, 6))
    return outcome


@worker_process_init.connect
def _iri_worker_process_init(**kwargs) -> None:
    from .services import iri_worker_process_init

    iri_worker_process_init()


@worker_ready.connect
def _iri_requeue_orphans(sender=None, **kwargs) -> None:
    """A worker that starts re-sends chunks left RUNNING by workers that no longer answer."""
    from django.db import connections

    from .services import iri_chunk_requeue_orphans

    try:
        app = sender.app
        replies = app.control.ping(timeout=1.0) or []
        alive = {name for reply in replies for name in reply}
        alive.add(sender.hostname)
        requeued = iri_chunk_requeue_orphans(alive_workers=alive)
        if requeued:
            logger.warning("re-sent IRI chunks %s left running by lost workers", requeued)
    except Exception:  # never keep a worker from starting
        logger.exception("could not look for orphaned IRI chunks")
    finally:
        connections.close_all()  # the pool forks after this: no shared database connection
