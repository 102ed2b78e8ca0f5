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


@shared_task
def survey_bots_run_task(run_id: int) -> None:
    """The admin's pilot: bots walk the participant flow of the server at SITE_URL (see surveys.bots)."""
    from django.conf import settings

    from results.services import survey_task_run

    from .bots import bots_run

    def work(run, progress) -> dict:
        return bots_run(base_url=settings.SITE_URL, slug=run.survey.slug, **run.params)

    survey_task_run(run_id=run_id, work=work)
