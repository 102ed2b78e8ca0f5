"""The operation runs surveys does (registered in surveys.apps): a pilot run of bots and a survey's build (the
review of Prolific submissions is in services.prolific_review)."""
from django.conf import settings
from django.db import transaction

from iri_worker.models import IriImage
from operations.models import OperationRun
from operations.registry import Progress

from . import bots
from .models import Survey
from .services.design import build_summary, survey_trials_build

BOTS_KIND = "bots"


def survey_bots_run(run: OperationRun, progress: Progress) -> dict:
    """The admin's pilot: bots walk the participant flow of the server at SITE_URL (see surveys.bots)."""
    return bots.bots_run(base_url=settings.SITE_URL, slug=run.subject.slug, **run.params)


def survey_build_run(run: OperationRun, progress: Progress) -> dict:
    """A worker builds the trials of a survey the web stored (survey_create_start) from the IRIs the request chose
    and its build report so far; all or nothing (a failed build leaves the survey without trials)."""
    survey = Survey.objects.get(pk=run.subject_id)
    iris = list(IriImage.objects.filter(pk__in=run.params["iris"])
                .select_related("job", "target__image", "target_image", "image", "seed").order_by("job_id", "id"))
    progress(0.0, f"building the trials of {len(iris)} IRIs")
    with transaction.atomic():
        survey = survey_trials_build(survey=survey, iris=iris, report=run.params["report"])
    return {"trials": survey.trials.count(), "summary": build_summary(survey.build_report)}
