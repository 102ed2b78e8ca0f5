from django.apps import AppConfig


class BackendConfig(AppConfig):
    """The project itself as an app, so project-wide commands (`demo`) live here rather than in one of the apps."""

    name = "backend"
    verbose_name = "Platform"
