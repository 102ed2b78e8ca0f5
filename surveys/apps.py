from django.apps import AppConfig


class SurveysConfig(AppConfig):
    name = "surveys"

    def ready(self) -> None:
        from operations.registry import operation_kind_register

        from .operation_kinds import BOTS_KIND, survey_bots_run, survey_build_run
        from .services.build_runs import SURVEY_BUILD_KIND
        from .services.prolific_review import PROLIFIC_REVIEW_KIND, prolific_review_run

        operation_kind_register(BOTS_KIND, survey_bots_run, label="bots (pilot)")
        operation_kind_register(PROLIFIC_REVIEW_KIND, prolific_review_run, label="Prolific review")
        operation_kind_register(SURVEY_BUILD_KIND, survey_build_run, label="survey build")
