"""Thin Celery tasks for results: they take ids and call services."""
from celery import shared_task


@shared_task
def trial_proxy_choices_compute_task(run_id: int) -> None:
    from .services import survey_task_run, trial_proxy_choices_compute

    def work(run, progress) -> dict:
        return {"trials": trial_proxy_choices_compute(survey=run.survey, metric=run.params["metric"], progress=progress)}

    survey_task_run(run_id=run_id, work=work)
