"""A participant's session, the slot it holds in a trial list, and the trials assigned to it."""
from django.db import models

from .defaults import _token
from .survey import Survey
from .trials import Trial, TrialList


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
