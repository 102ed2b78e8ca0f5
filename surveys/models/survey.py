"""The survey: its task, design, quality rules, adaptive collection settings and completion codes."""
from django.db import models

from iri_worker.models import IriJob
from surveys.adaptive_state import AdaptiveState
from teams.models import Team

from .defaults import (
    DEFAULT_CONSENT,
    DEFAULT_INSTRUCTIONS,
    DURATION_RANGE,
    TASK_DEFAULT_HELP,
    _completion_code,
    _pseudonym_salt,
    _token,
)


class Survey(models.Model):
    class TaskType(models.TextChoices):
        TWO_AFC = "2afc", "Two-alternative forced choice"
        CLUSTER = "cluster", "Clustering / matching (3 references, 6 IRIs)"
        CLASSIFY = "classification", "Timed classification (name the category of a briefly shown image)"

    class FoilRule(models.TextChoices):
        SEED = "seed", "The IRI's seed"
        OTHER_TARGET = "other_target", "A random other target photo"
        SAME_SET = "same_set", "Another target from the same IRI set"
        SAME_CLASS = "same_class", "Another target of the same class (target photo label)"

    class ClusterVariant(models.TextChoices):
        HARD = "hard", "Hard: the most similar references (colour histogram)"
        RANDOM = "random", "Random references"

    class ResumePolicy(models.TextChoices):
        RESUME = "resume", "Resume where the participant left"
        RESTART = "restart", "Restart from the beginning (earlier answers discarded)"
        BLOCK = "block", "Block a returning participant"

    class SizePolicy(models.TextChoices):
        RESIZE = "resize", "Resize every option to its query's size (stored as new images)"
        REFUSE = "refuse", "Refuse sets whose images differ in size"

    class Status(models.TextChoices):
        DRAFT = "DRAFT", "Draft"
        LIVE = "LIVE", "Live"
        CLOSED = "CLOSED", "Closed"

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="surveys")
    slug = models.SlugField(max_length=64)
    title = models.CharField(max_length=200)
    task_type = models.CharField(max_length=16, choices=TaskType.choices, default=TaskType.TWO_AFC)
    foil_rule = models.CharField(
        max_length=16, choices=FoilRule.choices, default=FoilRule.SEED,
        help_text="2AFC only: where the second option (the foil) comes from. Clustering and classification ignore it.",
    )
    cluster_variant = models.CharField(
        max_length=8, choices=ClusterVariant.choices, default=ClusterVariant.RANDOM,
        help_text="Clustering only: how each screen's three reference photos are chosen.",
    )
    iri_jobs = models.ManyToManyField(IriJob, related_name="surveys")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    consent_md = models.TextField(
        "consent text (Markdown)", default=DEFAULT_CONSENT,
        help_text=TASK_DEFAULT_HELP,
    )
    instructions_md = models.TextField(
        "instructions (Markdown)", default=DEFAULT_INSTRUCTIONS,
        help_text=TASK_DEFAULT_HELP,
    )
    trials_per_participant = models.PositiveIntegerField(
        null=True, blank=True, help_text="Main trials per participant (clustering: rounded up to whole screens). Empty: every trial."
    )
    ratings_per_list = models.PositiveIntegerField("N ratings per trial list", default=10)
    catch_trials = models.PositiveIntegerField("catch trials per participant", default=0)
    practice_trials = models.PositiveIntegerField("practice trials", default=0)
    practice_pass_fraction = models.FloatField(default=0.5, help_text="Share of practice trials that must be right.")
    catch_min_accuracy = models.FloatField(default=0.75, help_text="Below this share of right catch trials: failed attention.")
    rt_floor_ms = models.FloatField(default=200.0, help_text="Answers faster than this count as too fast.")
    rt_floor_max_fraction = models.FloatField(default=0.25, help_text="Excluded when more than this share of answers is too fast.")
    one_side_max_fraction = models.FloatField(
        null=True, blank=True,
        help_text="Exclude one-sided responders: at least this share of answers on one screen position (2AFC: a side; "
                  "clustering: a reference column; classification: a category button), e.g. 0.9. Empty: off.",
    )
    one_side_min_trials = models.PositiveIntegerField(default=20, help_text="The one-sided rule applies from this many answers on.")
    size_policy = models.CharField(
        max_length=8, choices=SizePolicy.choices, default=SizePolicy.RESIZE,
        help_text="When the chosen IRI sets differ in image size. 2AFC: resize the options to their query's size, or "
                  "refuse. Classification: show each IRI at its own size, or refuse. Clustering always needs one size.",
    )
    iri_max_percentile = models.FloatField(
        null=True, blank=True,
        help_text="Leave out IRIs whose distance to their target is above this percentile of the null distribution. Empty: off.",
    )
    iri_require_label_match = models.BooleanField(default=False, help_text="Leave out IRIs the model labels differently from their target.")
    # What the builder did: resized images, IRIs left out and why, where catch and practice images came from.
    build_report = models.JSONField(default=dict, blank=True)
    refill_excluded = models.BooleanField(default=True, help_text="An excluded participant's slot goes to someone else.")
    time_limit_minutes = models.PositiveIntegerField(default=60, help_text="How long a reservation is held.")
    resume_policy = models.CharField(max_length=8, choices=ResumePolicy.choices, default=ResumePolicy.RESUME)
    max_participants = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Quota of live slots (adaptive collection: the cap on participants). Empty: lists × N.",
    )
    # Timed classification (Feather et al. 2023): fixation, the image for image_ms, a noise mask, then the buttons.
    fixation_ms = models.PositiveIntegerField(
        "fixation (ms)", default=300, validators=DURATION_RANGE,
        help_text="Classification: the fixation cross before the image.",
    )
    image_ms = models.PositiveIntegerField(
        "image shown (ms)", null=True, blank=True, default=300, validators=DURATION_RANGE,
        help_text="Classification: how long the image is shown. Empty: until answered."
    )
    mask_ms = models.PositiveIntegerField(
        "mask (ms)", default=300, validators=DURATION_RANGE, help_text="Classification: the noise mask after the image."
    )
    categories = models.JSONField(default=list, blank=True, editable=False, help_text="Classification: the category of each button, in order.")
    screening_trials = models.PositiveIntegerField("screening trials", default=0, help_text="Classification: natural photos after practice; failing them ends the session.")
    screening_pass_fraction = models.FloatField(
        default=0.75, help_text="Classification: share of screening trials that must be right."
    )
    code_screened_out = models.CharField("code: screened out", max_length=32, default=_completion_code)
    desktop_only = models.BooleanField(default=False, help_text="Refuse phones and tablets (touch screens) with a clear page.")
    exclude_mistimed = models.BooleanField(
        default=False, help_text="Classification: leave out answers whose image was shown more than one frame off its duration."
    )
    precision_goal = models.FloatField(
        "precision goal (95 % CI half-width)", null=True, blank=True,
        help_text="Adaptive collection: each enrollment gets the trial list that most narrows the widest interval "
                  "still above this half-width, and enrollment closes when every IRI set reaches it (e.g. 0.05). "
                  "Empty: every trial list gets its N ratings.",
    )
    precision_every = models.PositiveIntegerField(
        "re-estimate every", default=1, help_text="Adaptive collection: recompute the intervals after this many completed sessions."
    )
    # Adaptive collection's latest estimate (surveys.services.adaptive): per IRI set its half-width and answers,
    # whether collection has stopped and why, each trial list's sets. Written at build and on completion.
    adaptive_state = models.JSONField(default=dict, blank=True, editable=False)
    completion_code = models.CharField("code: completed", max_length=32, default=_completion_code)
    code_failed_attention = models.CharField("code: failed attention check", max_length=32, default=_completion_code)
    code_timed_out = models.CharField("code: timed out / returned", max_length=32, default=_completion_code)
    code_technical = models.CharField("code: technical problem (fair exit)", max_length=32, default=_completion_code)
    pilot_key = models.CharField(max_length=64, default=_token)
    rng_seed = models.IntegerField(default=0)
    retention_days = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Days after a session ends until its Prolific / MTurk IDs are deleted. Empty: kept.",
    )
    # Exports show external IDs as HMAC-SHA256(salt, id): stable within a survey, unlinkable across surveys.
    pseudonym_salt = models.CharField(max_length=64, default=_pseudonym_salt, editable=False)
    # Raised whenever stored answers are erased, so report caches keyed on answer counts are not reused.
    data_version = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["slug"], name="survey_slug_unique")]

    def __str__(self) -> str:
        return self.slug

    @property
    def adaptive(self) -> AdaptiveState | None:
        """``adaptive_state`` through its contract (surveys.adaptive_state); None before an adaptive survey's build."""
        return AdaptiveState.from_dict(self.adaptive_state) if self.adaptive_state else None

    @property
    def n_options(self) -> int:
        from surveys.task_types import task_type_get  # the task types import these models

        return task_type_get(self.task_type).n_options(self)

    @property
    def task(self):
        """The survey's task type (surveys.task_types): its build, session, answer, export and report parts."""
        from surveys.task_types import task_type_get

        return task_type_get(self.task_type)
