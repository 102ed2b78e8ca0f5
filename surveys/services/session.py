"""During and at the end of a session: consent, heartbeats that keep the reservation, browser events;
finishing with an outcome and exclusion flags, or leaving early."""
from datetime import timedelta

import numpy as np
from django.db import transaction
from django.utils import timezone
from rest_framework import status

from backend.exceptions import ApplicationError
from stats.exclusions import one_sided

from ..models import Participant, ParticipantEvent, Response, Slot, Survey, Trial
from .adaptive import survey_adaptive_refresh

NOT_FINISHED = "Some answers have not reached the server yet."

# A heartbeat (every 30 s from the browser; at least once a minute in a background tab) keeps the reservation
# this far ahead, up to HOLD_MAX_FACTOR × the survey's time limit after enrollment.
HEARTBEAT_HOLD_S = 300
HOLD_MAX_FACTOR = 2

FINAL = [s for s in Participant.Status.values if s != Participant.Status.ACTIVE]


def participant_consent(*, participant: Participant) -> Participant:
    Participant.objects.filter(pk=participant.pk, consented_at__isnull=True).update(
        consented_at=timezone.now(), stage=Participant.Stage.CONSENTED
    )
    participant.refresh_from_db()
    return participant


def participant_heartbeat(*, participant: Participant, stage: str = "") -> Participant:
    """The browser is alive: record when and (optionally) where, and keep the reservation at least
    HEARTBEAT_HOLD_S ahead, so a slow but present participant keeps the list while one who left loses it a few
    minutes after the time limit. The hold never goes beyond HOLD_MAX_FACTOR × the time limit after enrollment
    (a tab left open forever does not block a list) and never revives an expired reservation."""
    now = timezone.now()
    fields = {"last_seen_at": now}
    stage_map = {"practice": Participant.Stage.PRACTICE, "trials": Participant.Stage.TRIALS}
    if stage in stage_map and participant.status == Participant.Status.ACTIVE:
        fields["stage"] = stage_map[stage]
    Participant.objects.filter(pk=participant.pk).update(**fields)
    if participant.status == Participant.Status.ACTIVE:
        limit = timedelta(minutes=participant.survey.time_limit_minutes)
        hold = min(now + timedelta(seconds=HEARTBEAT_HOLD_S), participant.created_at + HOLD_MAX_FACTOR * limit)
        # Row-locked and rechecked by PostgreSQL: a slot claimed by someone else meanwhile no longer matches.
        Slot.objects.filter(
            participant=participant, filled_at__isnull=True, reserved_until__gt=now, reserved_until__lt=hold
        ).update(reserved_until=hold)
    participant.refresh_from_db()
    return participant


def participant_events_record(*, participant: Participant, events: list[dict], client: dict | None = None) -> int:
    """Store browser events once each (a retried batch repeats `id`s, which are ignored). Returns how many are new."""
    before = ParticipantEvent.objects.filter(participant=participant).count()
    ParticipantEvent.objects.bulk_create(
        [
            ParticipantEvent(
                participant=participant,
                client_id=e["id"],
                type=e["type"],
                t_ms=e.get("t_ms"),
                trial_public_id=e.get("trial", "") or "",
                data=e.get("data") or {},
            )
            for e in events
        ],
        ignore_conflicts=True,
    )
    fields = {"last_seen_at": timezone.now()}
    if client:
        fields["client_info"] = {**participant.client_info, **client}
    Participant.objects.filter(pk=participant.pk).update(**fields)
    return ParticipantEvent.objects.filter(participant=participant).count() - before


def participant_complete(*, participant: Participant) -> Participant:
    """Finish a session whose every trial is answered: compute exclusion flags (catch accuracy, RT floor),
    set the outcome and fill the slot, or free it for someone else when the person is excluded."""
    if participant.status != Participant.Status.ACTIVE:
        return participant
    missing = participant.assignments.exclude(trial__responses__participant=participant).count()
    if missing:
        raise ApplicationError(NOT_FINISHED, extra={"missing": missing}, status_code=status.HTTP_409_CONFLICT)
    survey = participant.survey
    rows = list(
        Response.objects.filter(participant=participant)
        .exclude(trial__kind__in=(Trial.Kind.PRACTICE, Trial.Kind.SCREENING))
        .values_list("trial__kind", "choice", "trial__target_option", "rt_ms", "shown_position")
    )
    if survey.task.timed:
        _mistimed_flag(participant=participant, image_ms=survey.image_ms)
    catch = [c == t for kind, c, t, *_ in rows if kind == Trial.Kind.CATCH]
    catch_accuracy = sum(catch) / len(catch) if catch else None
    fast = sum(rt < survey.rt_floor_ms for *_, rt, _ in rows) / len(rows) if rows else 0.0
    reasons = []
    if catch_accuracy is not None and catch_accuracy < survey.catch_min_accuracy:
        reasons.append("catch_accuracy")
    if fast > survey.rt_floor_max_fraction:
        reasons.append("rt_floor")
    if _one_sided(positions=[row[-1] for row in rows if row[-1] is not None], survey=survey):
        reasons.append("one_sided")
    Participant.objects.filter(pk=participant.pk).update(catch_accuracy=catch_accuracy, fast_rt_fraction=fast)
    status_to = Participant.Status.FAILED_ATTENTION if "catch_accuracy" in reasons else Participant.Status.COMPLETED
    fill = not (reasons and survey.refill_excluded)
    participant = _session_end(participant=participant, status_to=status_to, reasons=reasons, fill=fill)
    _adaptive_refresh(participant)
    return participant


def _mistimed_flag(*, participant: Participant, image_ms: int | None) -> int:
    """Flag the answers whose image was shown more than one frame longer or shorter than the survey asked, by the
    browser's own measure (timing.shown_ms, timing.refresh_hz). 'Until answered' has no duration to miss.
    Returns how many were flagged."""
    if image_ms is None:
        return 0
    flagged = [
        pk for pk, timing in participant.responses.exclude(timing=None).values_list("pk", "timing")
        if timing.get("refresh_hz") and abs(timing["shown_ms"] - image_ms) > 1000 / timing["refresh_hz"]
    ]
    return Response.objects.filter(pk__in=flagged).update(mistimed=True)


def _one_sided(*, positions: list[int], survey: Survey) -> bool:
    """The survey's one-sided rule (stats.exclusions.one_sided, as the report applies it) for one session."""
    counts = np.bincount(np.asarray(positions, dtype=np.int64), minlength=survey.n_options)[None]
    return bool(one_sided(counts, max_fraction=survey.one_side_max_fraction, min_trials=survey.one_side_min_trials)[0])


def participant_leave(*, participant: Participant, status_to: str, detail: str = "") -> Participant:
    """The participant withdraws (returned) or the browser gives up (technical): end and free the slot."""
    if detail:
        Participant.objects.filter(pk=participant.pk).update(client_info={**participant.client_info, "abort_detail": detail[:500]})
    participant = _session_end(participant=participant, status_to=status_to, reasons=[], fill=False)
    _adaptive_refresh(participant)
    return participant


def _adaptive_refresh(participant: Participant) -> None:
    """An adaptive survey re-estimates when a live session ends, if due (survey_adaptive_refresh)."""
    if participant.survey.precision_goal is not None and not (participant.is_pilot or participant.is_bot):
        survey_adaptive_refresh(survey_id=participant.survey_id)


def _session_end(*, participant: Participant, status_to: str, reasons: list[str], fill: bool) -> Participant:
    """Lock the slots first (same order as slot_claim, so no deadlock), then move ACTIVE → final. No slot left
    (they went to someone else meanwhile) means this session timed out; a list never gets an N + 1st rating. An
    adaptive survey's participant holds a slot in each of their blocks: all are filled or freed together."""
    now = timezone.now()
    with transaction.atomic():
        slots = list(Slot.objects.select_for_update().filter(participant=participant).order_by("rank").values_list("pk", flat=True))
        if not slots:
            status_to, fill = Participant.Status.TIMED_OUT, False
        updates = {"status": status_to, "ended_at": now, "stage": Participant.Stage.DONE}
        if status_to in (Participant.Status.COMPLETED, Participant.Status.FAILED_ATTENTION) and slots:
            updates["completed_at"] = now
        if reasons:
            updates.update(excluded=True, exclusion_reasons=reasons)
        moved = Participant.objects.filter(pk=participant.pk, status=Participant.Status.ACTIVE).update(**updates)
        if moved and slots:
            if fill:
                Slot.objects.filter(pk__in=slots).update(filled_at=now)
            else:
                Slot.objects.filter(pk__in=slots).update(participant=None, reserved_until=None)
    participant.refresh_from_db()
    return participant
