"""What a participant's browser sends: answers and the events quality control reads."""
from django.db import models

from .sessions import Participant
from .trials import Trial


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
