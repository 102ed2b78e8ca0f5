from django.apps import AppConfig


class ResultsConfig(AppConfig):
    name = "results"

    def ready(self) -> None:
        from operations.registry import operation_kind_register

        from .archive import ARCHIVE_KIND, study_archive_build
        from .operation_kinds import PROXY_KIND, trial_proxy_choices_run

        operation_kind_register(PROXY_KIND, trial_proxy_choices_run, label="proxy choices")
        operation_kind_register(ARCHIVE_KIND, study_archive_build, label="study archive")
