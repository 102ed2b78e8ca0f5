from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models

from teams.models import Team

from .registry import operation_kind_label


class OperationRun(models.Model):
    """Long-running work handed to a Celery worker (a study archive, the proxy's choices, a pilot run of bots, ...):
    its kind (operations.registry), what it works on (`subject`), its state and progress for the admin pages, and
    its result or the sentence saying why it failed. The team scopes it like every other team-owned object."""

    class Status(models.TextChoices):
        QUEUED = "QUEUED", "Queued"
        RUNNING = "RUNNING", "Running"
        DONE = "DONE", "Done"
        FAILED = "FAILED", "Failed"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="operation_runs")
    kind = models.CharField(max_length=32, db_index=True, help_text="A kind registered in operations.registry.")
    subject_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    subject_id = models.PositiveBigIntegerField(null=True, blank=True)
    subject = GenericForeignKey("subject_type", "subject_id")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0, help_text="0 to 1.")
    progress_message = models.CharField(max_length=200, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["subject_type", "subject_id", "kind"], name="operation_run_subject")]

    def __str__(self) -> str:
        subject = f" of {self.subject}" if self.subject_id is not None else ""
        return f"{self.kind_label}{subject}: {self.get_status_display()}"

    @property
    def kind_label(self) -> str:
        return operation_kind_label(self.kind)

    @property
    def active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)
