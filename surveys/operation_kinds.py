"""The operation runs surveys does (registered in surveys.apps): a pilot run of bots."""
from django.conf import settings

from operations.models import OperationRun
from operations.registry import Progress

from . import bots

BOTS_KIND = "bots"


def survey_bots_run(run: OperationRun, progress: Progress) -> dict:
    """The admin's pilot: bots walk the participant flow of the server at SITE_URL (see surveys.bots)."""
    return bots.bots_run(base_url=settings.SITE_URL, slug=run.subject.slug, **run.params)
