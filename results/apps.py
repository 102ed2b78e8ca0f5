from django.apps import AppConfig


class ResultsConfig(AppConfig):
    name = "results"

    def ready(self) -> None:
        from operations.registry import operation_kind_register
        from surveys.signals import survey_published

        from .archive import ARCHIVE_KIND, study_archive_build
        from .operation_kinds import PROXY_KIND, trial_proxy_choices_run

        operation_kind_register(PROXY_KIND, trial_proxy_choices_run, label="proxy choices")
        operation_kind_register(ARCHIVE_KIND, study_archive_build, label="study archive")
        survey_published.connect(plan_freeze_on_publish, dispatch_uid="results.plan_freeze_on_publish")


def plan_freeze_on_publish(sender, survey, actor=None, **kwargs) -> None:
    """Inside survey_publish's transaction: the analysis plan is frozen (version 1) before any data; a changed plan
    after the first real answer is refused, which undoes the publish (results.plans.plan_freeze)."""
    from .plans import plan_freeze

    plan_freeze(survey=survey, actor=actor)
