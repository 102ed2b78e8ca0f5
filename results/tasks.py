"""Thin Celery tasks for results: they take ids and call services."""
from celery import shared_task


@shared_task
def trial_proxy_choices_compute_task(run_id: int) -> None:
    from .services import survey_task_run, trial_proxy_choices_compute

    def work(run, progress) -> dict:
        return {"trials": trial_proxy_choices_compute(survey=run.survey, metric=run.params["metric"], progress=progress)}

    survey_task_run(run_id=run_id, work=work)


@shared_task
def study_archive_build_task(run_id: int) -> None:
    from .archive import study_archive_build
    from .services import survey_task_run

    survey_task_run(run_id=run_id, work=lambda run, progress: study_archive_build(run=run, progress=progress))
