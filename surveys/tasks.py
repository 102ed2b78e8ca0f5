"""Thin Celery tasks for surveys."""
from celery import shared_task


@shared_task
def reservations_release_expired_task() -> int:
    from .services import reservations_release_expired

    return reservations_release_expired()


@shared_task
def participant_ids_expire_task() -> dict:
    from teams.actors import Actor

    from .services import participant_ids_expire

    return participant_ids_expire(actor=Actor.task("participant_ids_expire"))


@shared_task(bind=True, max_retries=None)  # the bound is PROLIFIC_TASK_RETRIES, checked below
def prolific_study_pause_when_done(self, survey_id: int) -> dict | None:
    """Adaptive collection has stopped: pause the survey's Prolific study, if it has one and Prolific is
    configured, so it stops recruiting (and paying)."""
    from .services.prolific import prolific_study_pause

    return _prolific_background(self, survey_id, what="pause", work=prolific_study_pause,
                                actor_name="prolific_study_pause_when_done")


@shared_task(bind=True, max_retries=None)
def prolific_places_from_forecast_task(self, survey_id: int) -> dict | None:
    """Adaptive collection re-estimated what it still needs: give the survey's published Prolific study the places
    the forecast asks for (they only grow; surveys.services.prolific.prolific_places_from_forecast)."""
    from .services.prolific import prolific_places_from_forecast

    return _prolific_background(self, survey_id, what="places", work=prolific_places_from_forecast,
                                actor_name="prolific_places_from_forecast_task")


def _prolific_background(task, survey_id: int, *, what: str, work, actor_name: str) -> dict | None:
    """Run one Prolific service for the survey's study. While Prolific is busy or away (429, 5xx, no answer: the
    client has retried already) the task is retried with exponential back-off and full jitter, up to
    PROLIFIC_TASK_RETRIES times; a refusal, or the last failure, is kept on the study's row (the survey's admin
    page shows it) and in the audit log by prolific_background_failed."""
    from celery.utils.time import get_exponential_backoff_interval
    from django.conf import settings

    from backend.exceptions import ApplicationError
    from teams.actors import Actor

    from .models import ProlificStudy
    from .prolific import prolific_enabled
    from .services.prolific import prolific_background_failed

    study = ProlificStudy.objects.select_related("survey").filter(survey_id=survey_id).first()
    if study is None or not prolific_enabled():
        return None
    try:
        return work(survey=study.survey, actor=Actor.task(actor_name))
    except ApplicationError as exc:
        tries = task.request.retries + 1
        if exc.extra.get("transient") and tries <= settings.PROLIFIC_TASK_RETRIES:
            countdown = get_exponential_backoff_interval(
                factor=settings.PROLIFIC_TASK_BACKOFF_S, retries=task.request.retries,
                maximum=settings.PROLIFIC_TASK_BACKOFF_MAX_S, full_jitter=True)
            raise task.retry(exc=exc, countdown=countdown) from exc
        prolific_background_failed(survey_id=survey_id, what=what, message=exc.message, tries=tries,
                                   actor=Actor.task(actor_name))
        return {"error": exc.message, "tries": tries}
