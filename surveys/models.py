"""Surveys, their trials and trial lists, participants, reservations (slots), answers and quality events.

The data model in one paragraph: a **Survey** is built from finished IRI sets. Its main trials are split
into **TrialLists** (a list = the set of trials one participant does; conditions are spread round robin so
every list mixes them). Each list has N **Slots** per mode (live and pilot): a participant claims one slot
(`SELECT … FOR UPDATE SKIP LOCKED`, lowest `rank` first, so lists fill breadth-first and their counts never
differ by more than one), holds it until `reserved_until`, and fills it on completion. A list therefore ends
with exactly N filled slots, never N + 1. Every **Trial** has `kind` (main / catch / practice), `task_type`
(2afc / cluster), ordered options (`option_0`, `option_1`, `option_2`; `n_options` of them) and
`target_option`, the index of the correct option; only the server knows it. **Assignment** rows give a
participant's trials in their order; **Response** is one answer per (participant, trial), `choice` = the
chosen option's index, saved exactly once under its idempotency key.

Contract for `results/selectors.py` (keep these names): Trial.kind / task_type / target_option / n_options /
options; Participant.is_pilot / is_bot / excluded / exclusion_reasons / status; Response.choice / rt_ms.
"Correct" = choice == trial.target_option; chance = 1 / n_options. Pilot participants (is_pilot) and bots
(is_bot) are never live data. A rehearsal's bots (is_rehearsal: `run_bots --as-people`) are live data on
purpose, counted like people, until surveys.services.survey_rehearsal_erase deletes them.
"""
import secrets

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from iri_worker.models import IriImage, IriJob, StoredImage
from teams.models import Team

from .adaptive_state import AdaptiveState

DEFAULT_CONSENT = """**Consent.** This study is run by researchers who want to learn how people judge images.
You will look at images and choose between two of them. It takes a few minutes. Your answers are stored
without your name. You may stop at any time by closing the page."""

DEFAULT_INSTRUCTIONS = """On each screen you see a **query image** on top and **two images** below it.
Choose the one of the two that is **closer to the query image**: click or tap it, or press **F** for the
left image and **J** for the right one. Go with your first impression."""

DEFAULT_CLUSTER_INSTRUCTIONS = """On each screen you see **three reference images** and **six images** below them.
For each of the six, choose the reference image it is **closest to**. Go with your first impression."""

DEFAULT_CLUSTER_CONSENT = DEFAULT_CONSENT.replace(
    "choose between two of them", "match each of them to one of three reference images"
)

DEFAULT_CLASSIFY_CONSENT = DEFAULT_CONSENT.replace(
    "look at images and choose between two of them",
    "look at images, some shown only for a moment, and choose the category each one shows",
)

DEFAULT_CLASSIFY_INSTRUCTIONS = """Look at the **+** in the middle of the screen. An image appears there, often only
for a moment, and then a pattern of noise. Choose the **category** the image shows: click or tap its button, or
move between the buttons with the arrow keys and press **Enter**. If you are not sure, make your best guess."""

TASK_DEFAULT_HELP = (
    "Left as a default text, a new survey gets its own task's default (2AFC, clustering, classification)."
)
# The consent and instructions a survey gets when the researcher writes none, by task type.
DEFAULT_TEXTS = {
    "2afc": {"consent_md": DEFAULT_CONSENT, "instructions_md": DEFAULT_INSTRUCTIONS},
    "cluster": {"consent_md": DEFAULT_CLUSTER_CONSENT, "instructions_md": DEFAULT_CLUSTER_INSTRUCTIONS},
    "classification": {"consent_md": DEFAULT_CLASSIFY_CONSENT, "instructions_md": DEFAULT_CLASSIFY_INSTRUCTIONS},
}


MAX_DURATION_MS = 10_000  # a timed screen lasts at most 10 s
DURATION_RANGE = [MinValueValidator(1), MaxValueValidator(MAX_DURATION_MS)]


def _token() -> str:
    return secrets.token_urlsafe(24)


def _completion_code() -> str:
    return secrets.token_hex(4).upper()


def _pseudonym_salt() -> str:
    return secrets.token_hex(16)


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
        from .task_types import task_type_get  # the task types import these models

        return task_type_get(self.task_type).n_options(self)

    @property
    def task(self):
        """The survey's task type (surveys.task_types): its build, session, answer, export and report parts."""
        from .task_types import task_type_get

        return task_type_get(self.task_type)


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


class Participant(models.Model):
    """One session. `status` is the outcome; `stage` where the person is; exclusion flags are set on completion."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        FAILED_ATTENTION = "failed_attention", "Failed attention check"
        TIMED_OUT = "timed_out", "Timed out"
        RETURNED = "returned", "Returned"
        TECHNICAL = "technical", "Technical problem"
        SCREENED_OUT = "screened_out", "Screened out"

    class Stage(models.TextChoices):
        ARRIVED = "arrived", "Arrived"
        CONSENTED = "consented", "Consented"
        PRACTICE = "practice", "Practising"
        TRIALS = "trials", "In trials"
        DONE = "done", "Done"

    # The IDs that single out a person or their submission; study_id and hit_id name the study, not the person.
    PERSONAL_ID_FIELDS = ("prolific_pid", "session_id", "worker_id", "assignment_id")

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="participants")
    trial_list = models.ForeignKey(TrialList, null=True, blank=True, on_delete=models.SET_NULL, related_name="participants")
    token = models.CharField(max_length=64, default=_token)
    prolific_pid = models.CharField(max_length=64, blank=True)
    study_id = models.CharField(max_length=64, blank=True)
    session_id = models.CharField(max_length=64, blank=True)
    worker_id = models.CharField("MTurk worker ID", max_length=64, blank=True)
    assignment_id = models.CharField("MTurk assignment ID", max_length=64, blank=True)
    hit_id = models.CharField("MTurk HIT ID", max_length=64, blank=True)
    turk_submit_to = models.CharField(max_length=200, blank=True)
    is_pilot = models.BooleanField(default=False)
    is_bot = models.BooleanField(default=False)
    # A rehearsal's bot: not a bot to the estimates and the report (it rehearses the real study), only to the
    # one action that erases the rehearsal.
    is_rehearsal = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.ARRIVED)
    consented_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    restarts = models.PositiveIntegerField(default=0)
    client_info = models.JSONField(default=dict, blank=True)
    practice_accuracy = models.FloatField(null=True, blank=True)
    catch_accuracy = models.FloatField(null=True, blank=True)
    fast_rt_fraction = models.FloatField(null=True, blank=True)
    excluded = models.BooleanField(default=False)
    exclusion_reasons = models.JSONField(default=list, blank=True, help_text="catch_accuracy, rt_floor, practice_failed")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["token"], name="participant_token_unique"),
            # The same Prolific participant or MTurk worker cannot take one study twice.
            models.UniqueConstraint(
                fields=["survey", "prolific_pid"], condition=~models.Q(prolific_pid=""), name="participant_once_per_survey"
            ),
            models.UniqueConstraint(
                fields=["survey", "worker_id"], condition=~models.Q(worker_id=""), name="participant_worker_once_per_survey"
            ),
        ]

    def __str__(self) -> str:
        return self.prolific_pid or self.worker_id or f"participant {self.pk}"


class Slot(models.Model):
    """One of the N ratings of a trial list in one mode (live or pilot): free, reserved until a time, or filled.

    `rank` = ordinal × lists + list index: claiming the lowest free rank fills lists breadth-first.
    A participant holds one slot; an adaptive survey's participant holds one in each of their blocks.
    """

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="slots")
    trial_list = models.ForeignKey(TrialList, on_delete=models.CASCADE, related_name="slots")
    is_pilot = models.BooleanField(default=False)
    ordinal = models.PositiveIntegerField()
    rank = models.PositiveIntegerField()
    participant = models.ForeignKey(Participant, null=True, blank=True, on_delete=models.SET_NULL, related_name="slots")
    reserved_until = models.DateTimeField(null=True, blank=True)
    filled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["survey", "is_pilot", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["trial_list", "is_pilot", "ordinal"], name="slot_once_per_list_mode"),
            models.CheckConstraint(
                condition=models.Q(filled_at__isnull=True) | models.Q(participant__isnull=False), name="slot_filled_has_participant"
            ),
        ]
        indexes = [models.Index(fields=["survey", "is_pilot", "rank"], name="slot_claim_order")]


class Assignment(models.Model):
    """Which trials a participant sees, in which order (practice first), and how the options are laid out.

    `option_order` lists the trial's option indices in screen order ("10": option 1 on the left); the side
    of the target is counterbalanced per participant and per item across raters."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    trial = models.ForeignKey(Trial, on_delete=models.CASCADE, related_name="assignments")
    position = models.PositiveIntegerField()
    option_order = models.CharField(max_length=3, default="")

    class Meta:
        ordering = ["participant", "position"]
        # On PostgreSQL its index also covers option_order (migration 0005), so the answer statement, which reads
        # it, stays an index-only scan. Declared plain here: SQLite would drop a constraint with INCLUDE.
        constraints = [models.UniqueConstraint(fields=["participant", "trial"], name="assignment_once")]


class Response(models.Model):
    """One answer: `choice` = index of the chosen option (0..n_options-1); `shown_position` = where it was on the
    screen (0 = left); rt_ms from the images' first painted frame."""

    # The (participant, trial) unique index covers lookups by participant: no separate index.
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="responses", db_index=False)
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="responses")
    choice = models.PositiveSmallIntegerField()
    shown_position = models.PositiveSmallIntegerField(null=True)
    rt_ms = models.FloatField()
    idempotency_key = models.UUIDField()
    # Timed classification: what the browser measured (image onset/offset from requestAnimationFrame, shown_ms,
    # frames, refresh_hz); mistimed = the image was up more than one frame longer or shorter than asked.
    timing = models.JSONField(null=True, blank=True)
    mistimed = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name="response_idempotency_key_unique"),
            models.UniqueConstraint(fields=["participant", "trial"], name="response_once_per_trial"),
            models.CheckConstraint(condition=models.Q(choice__lte=255), name="response_choice_below_256"),
            models.CheckConstraint(condition=models.Q(rt_ms__gte=0), name="response_rt_non_negative"),
        ]

    @property
    def chose_target(self) -> bool:
        return self.choice == self.trial.target_option


class ParticipantEvent(models.Model):
    """A browser event (blur, focus, fullscreen exit, …) for quality control; `client_id` makes retries idempotent."""

    class Type(models.TextChoices):
        BLUR = "blur"
        FOCUS = "focus"
        FULLSCREEN_ENTER = "fullscreen_enter"
        FULLSCREEN_EXIT = "fullscreen_exit"
        VISIBILITY_HIDDEN = "visibility_hidden"
        VISIBILITY_VISIBLE = "visibility_visible"
        RESIZE = "resize"
        LOAD_FAILURE = "load_failure"
        OFFLINE = "offline"
        ONLINE = "online"
        DUPLICATE_ENROLL = "duplicate_enroll"
        OTHER = "other"

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="events", db_index=False)
    client_id = models.UUIDField()
    type = models.CharField(max_length=20, choices=Type.choices)
    t_ms = models.FloatField(null=True, blank=True)
    trial_public_id = models.CharField(max_length=40, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["participant", "client_id"], name="event_once")]


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
