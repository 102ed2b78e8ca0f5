from django.apps import AppConfig


class IriWorkerConfig(AppConfig):
    name = "iri_worker"
    verbose_name = "IRI generation"

    def ready(self) -> None:
        from operations.registry import operation_kind_register

        from .operation_kinds import checkpoint_check_run
        from .services.checkpoints import CHECKPOINT_CHECK_KIND

        operation_kind_register(CHECKPOINT_CHECK_KIND, checkpoint_check_run, label="checkpoint check")
