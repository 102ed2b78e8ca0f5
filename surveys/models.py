import secrets

from django.db import models

from iri_worker.models import IriImage, IriJob, StoredImage

DEFAULT_CONSENT = """**Consent.** This study is run by researchers who want to learn how people judge images.
You will look at images and choose between two of them. It takes a few minutes. Your answers are stored
without your name. You may stop at any time by closing the page."""

DEFAULT_INSTRUCTIONS = """On each screen you see a **query image** on top and **two images** below it.
Choose the one of the two that is **closer to the query image**: click or tap it, or press **F** for the
left image and **J** for the right one. Go with your first impression."""


def _token() -> str:
    return secrets.token_urlsafe(24)


def _completion_code() -> str:
    return secrets.token_hex(4).upper()


class Survey(models.Model):
    class TaskType(models.TextChoices):
        TWO_AFC = "2afc", "Two-alternative forced choice"

    class FoilRule(models.TextChoices):
        SEED = "seed", "The IRI's seed"
        OTHER_TARGET = "other_target", "Another target photo"

    class Status(models.TextChoices):
        DRAFT = "DRAFT", "Draft"
        LIVE = "LIVE", "Live"
        CLOSED = "CLOSED", "Closed"

    slug = models.SlugField(max_length=64)
    title = models.CharField(max_length=200)
    task_type = models.CharField(max_length=16, choices=TaskType.choices, default=TaskType.TWO_AFC)
    foil_rule = models.CharField(max_length=16, choices=FoilRule.choices, default=FoilRule.SEED)
    iri_jobs = models.ManyToManyField(IriJob, related_name="surveys")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    consent_md = models.TextField("consent text (Markdown)", default=DEFAULT_CONSENT)
    instructions_md = models.TextField("instructions (Markdown)", default=DEFAULT_INSTRUCTIONS)
    trials_per_participant = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: every trial.")
    completion_code = models.CharField(max_length=32, default=_completion_code)
    rng_seed = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["slug"], name="survey_slug_unique")]

    def __str__(self) -> str:
        return self.slug


class Trial(models.Model):
    """A 2AFC item: the query (an IRI) and two options; which side holds the target is stored here only."""

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="trials")
    public_id = models.CharField(max_length=40, default=_token)
    iri = models.ForeignKey(IriImage, on_delete=models.PROTECT, related_name="trials")
    query = models.ForeignKey(StoredImage, on_delete=models.PROTECT, related_name="+")
    option_0 = models.ForeignKey(StoredImage, on_delete=models.PROTECT, related_name="+")
    option_1 = models.ForeignKey(StoredImage, on_delete=models.PROTECT, related_name="+")
    target_option = models.PositiveSmallIntegerField(choices=[(0, "left"), (1, "right")])
    foil_kind = models.CharField(max_length=16, choices=Survey.FoilRule.choices)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="trial_public_id_unique"),
            models.CheckConstraint(condition=models.Q(target_option__in=[0, 1]), name="trial_target_option_0_or_1"),
        ]


class Participant(models.Model):
    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="participants")
    token = models.CharField(max_length=64, default=_token)
    prolific_pid = models.CharField(max_length=64, blank=True)
    study_id = models.CharField(max_length=64, blank=True)
    session_id = models.CharField(max_length=64, blank=True)
    consented_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["token"], name="participant_token_unique"),
            # The same Prolific participant cannot take one study twice.
            models.UniqueConstraint(
                fields=["survey", "prolific_pid"],
                condition=~models.Q(prolific_pid=""),
                name="participant_once_per_survey",
            ),
        ]


class Assignment(models.Model):
    """Which trials a participant sees, in which order."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="assignments")
    trial = models.ForeignKey(Trial, on_delete=models.CASCADE, related_name="assignments")
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["participant", "position"]
        constraints = [models.UniqueConstraint(fields=["participant", "trial"], name="assignment_once")]


class Response(models.Model):
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="responses")
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="responses")
    choice = models.PositiveSmallIntegerField(choices=[(0, "left"), (1, "right")])
    rt_ms = models.FloatField()
    idempotency_key = models.UUIDField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name="response_idempotency_key_unique"),
            models.UniqueConstraint(fields=["participant", "trial"], name="response_once_per_trial"),
            models.CheckConstraint(condition=models.Q(choice__in=[0, 1]), name="response_choice_0_or_1"),
            models.CheckConstraint(condition=models.Q(rt_ms__gte=0), name="response_rt_non_negative"),
        ]

    @property
    def chose_target(self) -> bool:
        return self.choice == self.trial.target_option
