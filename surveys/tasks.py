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


@shared_task
def prolific_study_pause_when_done(survey_id: int) -> dict | None:
    """Adaptive collection has stopped: pause the survey's Prolific study, if it has one and Prolific is configured.
    A refusal is kept on the study's row (last_error) and logged; the admin's "Pause" action can try again."""
    import logging

    from backend.exceptions import ApplicationError

    from .models import ProlificStudy
    from .prolific import prolific_enabled
    from .services.prolific import prolific_study_pause

    study = ProlificStudy.objects.select_related("survey").filter(survey_id=survey_id).first()
    if study is None or not prolific_enabled():
        return None
    try:
        return prolific_study_pause(survey=study.survey)
    except ApplicationError as exc:
        logging.getLogger(__name__).warning("Prolific study %s of survey %s not paused: %s", study.study_id, survey_id, exc.message)
        return {"paused": False, "error": exc.message}
