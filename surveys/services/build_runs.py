"""A survey's build as a worker's operation run: where the web creates a survey (survey_create_start), the request
stores the DRAFT survey and a worker builds its trials (the image I/O: resized options, masks, histograms). Until
that run is done the survey is "building", and publishing it is refused with the reason. A build can still refuse
(too few natural photos for the catch trials, say): the survey is then "failed" with the reason, and creating a
survey of the same slug in the same team again replaces it."""
from backend.exceptions import ApplicationError
from operations.models import OperationRun
from operations.selectors import operation_run_list_of_subject

from ..models import Survey

SURVEY_BUILD_KIND = "survey_build"
STILL_BUILDING = (
    "The survey is still being built by a worker ({progress:.0%} done); publish it once its build is done (the survey's "
    "page shows how far it got)."
)
BUILD_FAILED = "The survey has no trials: its build failed ({error}). Create it again (same slug) with other choices."


def survey_build_runs(*, survey: Survey):
    """The survey's builds, newest first (none for a survey built in the process that created it)."""
    return operation_run_list_of_subject(subject=survey, kind=SURVEY_BUILD_KIND)


def survey_build_state(*, survey: Survey) -> str:
    """'building' while a worker's build is queued or running, 'failed' when it failed, else 'built'."""
    run = survey_build_runs(survey=survey).first()
    if run is None or run.status == OperationRun.Status.DONE:
        return "built"
    return "failed" if run.status == OperationRun.Status.FAILED else "building"


def survey_build_done_check(*, survey: Survey) -> None:
    """Refuse what needs the survey's trials (publishing) while its build is not done, saying why."""
    run = survey_build_runs(survey=survey).first()
    if run is None or run.status == OperationRun.Status.DONE:
        return
    if run.status == OperationRun.Status.FAILED:
        raise ApplicationError(BUILD_FAILED.format(error=run.error.rstrip(".")))
    raise ApplicationError(STILL_BUILDING.format(progress=run.progress), status_code=409)


def survey_build_error(*, survey: Survey) -> str:
    """Why the survey's latest build failed ("" unless it did)."""
    run = survey_build_runs(survey=survey).first()
    return run.error if run is not None and run.status == OperationRun.Status.FAILED else ""


def survey_failed_build_remove(*, slug: str, team_id: int) -> None:
    """Make way for a new survey of this slug: the team's DRAFT survey of that slug whose build failed (it has no
    trials, so nobody took part) is deleted. Called inside the new survey's transaction, so a refused new survey
    leaves the old one as it was."""
    survey = Survey.objects.filter(slug=slug, team_id=team_id, status=Survey.Status.DRAFT).first()
    if survey is not None and survey_build_state(survey=survey) == "failed" and not survey.trials.exists():
        survey_build_runs(survey=survey).delete()
        survey.delete()
