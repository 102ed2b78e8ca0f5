from django.apps import AppConfig


class IriWorkerConfig(AppConfig):
    name = "iri_worker"
    verbose_name = "IRI generation"
