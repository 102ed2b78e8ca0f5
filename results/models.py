from django.conf import settings
from django.db import models

from surveys.models import Survey, Trial


class TrialProxyChoice(models.Model):
    """The perceptual proxy's answer to one trial, cached: d(query, option_k) for every option, and its choice.

    choice = the option with the smallest distance; when the target ties with the best, the target (ties count
    aligned, as in the paper's proxy). Computed by results.proxy_choices.trial_proxy_choices_compute.
    """

    trial = models.ForeignKey(Trial, on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=16)
    distances = models.JSONField(help_text="d(query, option_k), k = 0..n_options-1; a distance, 0 = identical.")
    choice = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["trial_id", "metric"]
        constraints = [models.UniqueConstraint(fields=["trial", "metric"], name="trial_proxy_choice_once")]


class SurveyReport(Survey):
    """A survey seen as its results: the admin's report page (tables, plots, exports) hangs off this proxy."""

    class Meta:
        proxy = True
        verbose_name = "survey report"
        verbose_name_plural = "survey reports"


class AnalysisPlanVersion(models.Model):
    """One version of a survey's analysis plan (results.plans): the canonical JSON text and its SHA-256.

    Version 1 is frozen at publish. An edit before the first real answer adds a version silently (deviation False);
    an edit after it adds a deviation, which must give a reason. It lives here because the surveys app takes no new
    migrations now."""

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="+")
    version = models.PositiveIntegerField()
    canonical = models.TextField(help_text="The plan as canonical JSON (sorted keys, no whitespace): what is hashed.")
    sha256 = models.CharField(max_length=64)
    changed = models.JSONField(default=list, blank=True, help_text="What differs from the version before.")
    deviation = models.BooleanField(default=False, help_text="Made after the first real answer.")
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["survey_id", "version"]
        constraints = [models.UniqueConstraint(fields=["survey", "version"], name="analysis_plan_version_once")]

    def __str__(self) -> str:
        return f"{self.survey_id} plan v{self.version} {self.sha256[:12]}"
