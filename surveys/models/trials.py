"""A survey's trials and the trial lists that group them into what one participant does."""
from django.db import models

from iri_worker.models import IriImage, StoredImage

from .defaults import _token
from .survey import Survey


class TrialList(models.Model):
    """The set of main (and catch) trials one participant does; filled to `survey.ratings_per_list` per mode."""

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="trial_lists")
    index = models.PositiveIntegerField()

    class Meta:
        ordering = ["survey", "index"]
        constraints = [models.UniqueConstraint(fields=["survey", "index"], name="trial_list_index_unique")]

    def __str__(self) -> str:
        return f"{self.survey.slug} list {self.index}"


class Trial(models.Model):
    """One judgement: a query and `n_options` ordered options; `target_option` (server only) is the right one.

    2AFC: query = an IRI (main) or one of the options (catch); options = target and foil, side random.
    Clustering: one row per IRI; `screen` groups 6 rows sharing 3 references (`option_0..2`); target_option =
    the reference whose target the IRI was made from. Practice trials have no list (`trial_list` null).
    """

    class Kind(models.TextChoices):
        MAIN = "main", "Main"
        CATCH = "catch", "Catch"
        PRACTICE = "practice", "Practice"
        SCREENING = "screening", "Screening"

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="trials")
    trial_list = models.ForeignKey(TrialList, null=True, blank=True, on_delete=models.CASCADE, related_name="trials")
    public_id = models.CharField(max_length=40, default=_token)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.MAIN)
    task_type = models.CharField(max_length=16, choices=Survey.TaskType.choices, default=Survey.TaskType.TWO_AFC)
    screen = models.CharField(max_length=40, blank=True, help_text="Clustering: opaque id of the screen this row is on.")
    iri = models.ForeignKey(IriImage, null=True, blank=True, on_delete=models.PROTECT, related_name="trials")
    query = models.ForeignKey(StoredImage, on_delete=models.PROTECT, related_name="+")
    # Classification trials have no option images: their options are the survey's categories, and a mask.
    option_0 = models.ForeignKey(StoredImage, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    option_1 = models.ForeignKey(StoredImage, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    option_2 = models.ForeignKey(StoredImage, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    mask = models.ForeignKey(StoredImage, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    n_options = models.PositiveSmallIntegerField(default=2)
    target_option = models.PositiveSmallIntegerField()
    foil_kind = models.CharField(max_length=16, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="trial_public_id_unique"),
            models.CheckConstraint(condition=models.Q(n_options__gte=2) & models.Q(n_options__lte=256), name="trial_n_options_2_to_256"),
            models.CheckConstraint(condition=models.Q(target_option__lt=models.F("n_options")), name="trial_target_option_in_range"),
        ]

    @property
    def options(self) -> list[StoredImage]:
        return [self.option_0, self.option_1, self.option_2][: self.n_options]

    @property
    def option_ids(self) -> list[int]:
        return [self.option_0_id, self.option_1_id, self.option_2_id][: self.n_options]
