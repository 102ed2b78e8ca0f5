"""The operation runs results does (registered in results.apps): the proxy's choices and the study archive."""
from operations.models import OperationRun
from operations.registry import Progress

from .proxy_choices import trial_proxy_choices_compute

PROXY_KIND = "proxy"


def trial_proxy_choices_run(run: OperationRun, progress: Progress) -> dict:
    """A worker's proxy run: the survey's trials' perceptual distances with run.params["metric"]."""
    return {"trials": trial_proxy_choices_compute(survey=run.subject, metric=run.params["metric"], progress=progress)}
