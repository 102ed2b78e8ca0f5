from django.db import models

from surveys.models import Survey, Trial


class TrialProxyChoice(models.Model):
    """The perceptual proxy's answer to one trial, cached: d(query, option_k) for every option, and its choice.

    choice = the option with the smallest distance; when the target ties with the best, the target (ties count
    aligned, as in the paper's proxy). Computed by results.services.trial_proxy_choices_compute.
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
