"""A survey's study on Prolific."""
from django.db import models

from .survey import Survey


class ProlificStudy(models.Model):
    """A survey's study on Prolific (surveys/services/prolific.py): its id there, and the status, places and reward
    as last seen there. Prolific holds the truth; this row says which study is the survey's and what was done."""

    survey = models.OneToOneField(Survey, on_delete=models.CASCADE, related_name="prolific_study")
    study_id = models.CharField("Prolific study ID", max_length=64)
    status = models.CharField(max_length=32, help_text="As Prolific last reported it: UNPUBLISHED, ACTIVE, PAUSED, …")
    places = models.PositiveIntegerField("total available places")
    reward = models.PositiveIntegerField("reward (pence / cents)")
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "Prolific studies"
        constraints = [models.UniqueConstraint(fields=["study_id"], name="prolific_study_id_unique")]

    def __str__(self) -> str:
        return f"{self.survey.slug} on Prolific ({self.study_id})"
