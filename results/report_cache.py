"""The alignment report kept in Django's cache: the admin's survey page, report page and plots share it rather than
computing it on every view. A module above results.services (it calls the report service, which reads through
the selectors), so that no two of results' modules import each other."""
from django.core.cache import cache

from surveys.counted_answers import answers_version
from surveys.models import Survey

from .models import TrialProxyChoice
from .services import alignment_report


def report_cached(*, survey: Survey, n_boot: int = 1000, seed: int = 0) -> dict:
    """The alignment report, reused while no answer or proxy choice has been added or erased."""
    n_answers, last_answer = answers_version(survey=survey)
    proxies = TrialProxyChoice.objects.filter(trial__survey=survey).count()
    key = f"results:report:{survey.pk}:{survey.data_version}:{n_boot}:{seed}:{n_answers}:{last_answer}:{proxies}"
    return cache.get_or_set(key, lambda: alignment_report(survey=survey, n_boot=n_boot, seed=seed), 300)
