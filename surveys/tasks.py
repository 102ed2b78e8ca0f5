"""Thin Celery tasks for surveys."""
from celery import shared_task


@shared_task
def reservations_release_expired_task() -> int:
    from .services import reservations_release_expired

    return reservations_release_expired()


@shared_task
def participant_ids_expire_task() -> dict:
    from .services import participant_ids_expire

    return participant_ids_expire()
