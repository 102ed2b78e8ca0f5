from django.apps import AppConfig


class SurveysConfig(AppConfig):
    name = "surveys"

    def ready(self) -> None:
        from operations.registry import operation_kind_register

        from .operation_kinds import BOTS_KIND, survey_bots_run
        from .services.prolific_review import PROLIFIC_REVIEW_KIND, prolific_review_run

        operation_kind_register(BOTS_KIND, survey_bots_run, label="bots (pilot)")
        operation_kind_register(PROLIFIC_REVIEW_KIND, prolific_review_run, label="Prolific review")
