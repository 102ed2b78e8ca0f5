"""Enrollment and reservations: start a session in a reserved slot (or hand back an earlier one per the
resume policy), claim slots without waiting on each other, release expired reservations, and lay out each
participant's trials."""
import random
import uuid
from datetime import timedelta

import numpy as np
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status

from backend.exceptions import ApplicationError

from ..layouts import TrialShape, option_orders
from ..models import Assignment, Participant, ParticipantEvent, Slot, Survey, Trial
from ..selectors import prolific_complete_url
from .adaptive import adaptive_blocks_choose, adaptive_cap_reached, survey_adaptive_refresh

SURVEY_NOT_LIVE = "This study is not open."
# What someone turned away reads, whatever the design: the truth (no place for them), never a claim about the
# study's answers (adaptive collection may end short of its goal). The page adds the platform's return advice.
SURVEY_FULL = "This study is full: there is no place left for a new participant. Thank you for your interest."
RETURNING_BLOCKED = "You have started this study before; it cannot be taken again."
BAD_SUBMIT_TO = "turkSubmitTo must be https://www.mturk.com or https://workersandbox.mturk.com."
DUPLICATE_ENROLL = (
    "This ID has already started this study in another browser or device. Please continue there; if you cannot, "
    "contact the researchers through the platform you came from."
)

DEVICE_REFUSED = (
    "This study needs a computer with a mouse or touchpad and a larger screen; it cannot be taken on a phone or "
    "tablet. Thank you for your interest."
)

MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
MTURK_HOSTS = ("https://www.mturk.com", "https://workersandbox.mturk.com")


def enroll_is_mturk_preview(*, assignment_id: str) -> bool:
    """MTurk shows the task before a worker accepts it: such a visit stores and reserves nothing."""
    return assignment_id == MTURK_PREVIEW


def participant_enroll(
    *,
    survey: Survey,
    prolific_pid: str = "",
    study_id: str = "",
    session_id: str = "",
    worker_id: str = "",
    assignment_id: str = "",
    hit_id: str = "",
    turk_submit_to: str = "",
    token: str = "",
    pilot: bool = False,
    is_bot: bool = False,
    is_rehearsal: bool = False,
    client: dict | None = None,
) -> tuple[Participant, bool]:
    """Start a session in a reserved slot, or hand back an earlier one per the resume policy.

    Returns (participant, created). A returning PID / worker ID / token gets its own session back (resume),
    a fresh start of it (restart; `participant.restarted` is True) or 409 (block); a finished one gets its
    final state (so nobody takes a study twice). A new session claims a slot in the same transaction; when
    none is free the study is full (409) and nothing is stored.
    """
    if survey.status != Survey.Status.LIVE and not (pilot and survey.status == Survey.Status.DRAFT):
        raise ApplicationError(SURVEY_NOT_LIVE, status_code=status.HTTP_404_NOT_FOUND)
    if enroll_is_mturk_preview(assignment_id=assignment_id):
        raise ApplicationError("An MTurk preview cannot enroll.", extra={"reason": "preview"})
    if turk_submit_to and turk_submit_to.rstrip("/") not in MTURK_HOSTS:
        raise ApplicationError(BAD_SUBMIT_TO)
    if survey.desktop_only and (client or {}).get("touch") and not pilot:
        raise ApplicationError(
            DEVICE_REFUSED, status_code=status.HTTP_409_CONFLICT,
            extra={"reason": "device", "completion_code": survey.code_screened_out,
                   "redirect_url": prolific_complete_url(code=survey.code_screened_out) if prolific_pid else None},
        )
    existing = _participant_find(survey=survey, prolific_pid=prolific_pid, worker_id=worker_id, token=token)
    if existing is not None:
        return _participant_return(participant=_holder_check(participant=existing, token=token, client=client)), False
    try:
        with transaction.atomic():
            participant = Participant.objects.create(
                survey=survey,
                prolific_pid=prolific_pid,
                study_id=study_id,
                session_id=session_id,
                worker_id=worker_id,
                assignment_id=assignment_id,
                hit_id=hit_id,
                turk_submit_to=turk_submit_to.rstrip("/"),
                is_pilot=pilot,
                is_bot=is_bot,
                is_rehearsal=is_rehearsal,
                client_info=client or {},
                last_seen_at=timezone.now(),
            )
            slot = slot_claim(participant=participant)
            if slot is None:
                raise ApplicationError(SURVEY_FULL, extra={"reason": "full"}, status_code=status.HTTP_409_CONFLICT)
            _assignments_create(participant=participant)
    except IntegrityError:  # the same PID / worker enrolled twice at once: hand back the one that won
        existing = _participant_find(survey=survey, prolific_pid=prolific_pid, worker_id=worker_id, token="")
        if existing is None:
            raise
        return _participant_return(participant=_holder_check(participant=existing, token=token, client=client)), False
    participant.restarted = False
    return participant, True


def _participant_find(*, survey: Survey, prolific_pid: str, worker_id: str, token: str) -> Participant | None:
    if prolific_pid:
        return Participant.objects.filter(survey=survey, prolific_pid=prolific_pid).first()
    if worker_id:
        return Participant.objects.filter(survey=survey, worker_id=worker_id).first()
    if token:
        return Participant.objects.filter(survey=survey, token=token).first()
    return None


def _holder_check(*, participant: Participant, token: str, client: dict | None) -> Participant:
    """A platform ID (Prolific PID, MTurk worker ID) is typed into a URL, so anyone can present someone else's.
    Only the browser that holds the session's token gets the session back; any other attempt is refused and
    recorded on the session it tried to reach."""
    if token == participant.token:
        return participant
    ParticipantEvent.objects.create(
        participant=participant, client_id=uuid.uuid4(), type=ParticipantEvent.Type.DUPLICATE_ENROLL,
        data={"client": client or {}, "presented_token": bool(token)},
    )
    raise ApplicationError(DUPLICATE_ENROLL, extra={"reason": "duplicate"}, status_code=status.HTTP_409_CONFLICT)


def _participant_return(*, participant: Participant) -> Participant:
    participant.restarted = False
    if participant.status != Participant.Status.ACTIVE:
        return participant
    policy = participant.survey.resume_policy
    if policy == Survey.ResumePolicy.BLOCK:
        raise ApplicationError(RETURNING_BLOCKED, extra={"reason": "blocked"}, status_code=status.HTTP_409_CONFLICT)
    if policy == Survey.ResumePolicy.RESTART:
        with transaction.atomic():
            participant.responses.all().delete()
            participant.assignments.all().delete()
            participant.events.all().delete()
            Participant.objects.filter(pk=participant.pk).update(
                consented_at=None, stage=Participant.Stage.ARRIVED, restarts=participant.restarts + 1, last_seen_at=timezone.now()
            )
            _assignments_create(participant=participant)
        participant.refresh_from_db()
        participant.restarted = True
    return participant


def slot_claim(*, participant: Participant) -> Slot | None:
    """Reserve the lowest-ranked claimable slot of the participant's mode: free, or reserved but expired (its
    holder is then timed out). `FOR UPDATE SKIP LOCKED`, so concurrent enrollments never wait for or take
    the same slot. Live slots beyond the survey's quota are not claimable. An adaptive survey's participant
    takes one slot in each block chosen for them (the first is returned). Call inside a transaction."""
    survey = participant.survey
    now = timezone.now()
    candidates = Slot.objects.filter(survey=survey, is_pilot=participant.is_pilot, filled_at__isnull=True).filter(
        models_q_free(now)
    )
    if not participant.is_pilot and survey.precision_goal is not None:
        slots = _adaptive_slots_claim(participant=participant, candidates=candidates, now=now)
    elif survey.precision_goal is not None:  # a pilot of an adaptive survey: a full session, blocks breadth-first
        state = survey.adaptive
        blocks = state.blocks_per_participant if state else 1
        slots, seen = [], set()
        for slot in candidates.order_by("rank").select_for_update(skip_locked=True, of=("self",))[:blocks * 4]:
            if slot.trial_list_id not in seen and len(slots) < blocks:
                seen.add(slot.trial_list_id)
                slots.append(slot)
    else:
        if not participant.is_pilot and survey.max_participants:
            candidates = candidates.filter(rank__lt=survey.max_participants)
        slot = candidates.order_by("rank").select_for_update(skip_locked=True, of=("self",)).first()
        slots = [slot] if slot is not None else []
    if not slots:
        return None
    for slot in slots:
        if slot.participant_id is not None:  # an expired reservation: its holder timed out, and frees all it held
            Participant.objects.filter(pk=slot.participant_id, status=Participant.Status.ACTIVE).update(
                status=Participant.Status.TIMED_OUT, ended_at=now
            )
            Slot.objects.filter(participant_id=slot.participant_id, filled_at__isnull=True).exclude(
                pk__in=[s.pk for s in slots]).update(participant=None, reserved_until=None)
    until = now + timedelta(minutes=survey.time_limit_minutes)
    Slot.objects.filter(pk__in=[s.pk for s in slots]).update(participant=participant, reserved_until=until)
    for slot in slots:
        slot.participant, slot.reserved_until = participant, until
    Participant.objects.filter(pk=participant.pk).update(trial_list=slots[0].trial_list_id)
    participant.trial_list_id = slots[0].trial_list_id
    return slots[0]


def _adaptive_slots_claim(*, participant: Participant, candidates, now) -> list[Slot]:
    """A survey with a precision goal: none once collection has stopped (goal met, cap reached, no block left that
    helps); else the lowest-ranked claimable slot of each block chosen (surveys.services.adaptive). The survey row
    is locked until the enrollment commits, so concurrent enrollments see each other's reservations and the cap
    holds exactly. The choice's rng is seeded by the survey's seed and the enrollment's ordinal, so a simulation
    of the same arrivals (bench/adaptive.py) makes the same choices."""
    # NO KEY UPDATE: the key is not changed, so other sessions' foreign-key checks (KEY SHARE) need not wait.
    survey = Survey.objects.select_for_update(no_key=True).get(pk=participant.survey_id)
    state = survey.adaptive
    if state is None or state.stop or adaptive_cap_reached(survey=survey, exclude_pk=participant.pk):
        return []
    ordinal = Participant.objects.filter(survey=survey, is_pilot=False, pk__lt=participant.pk).count()
    rng = np.random.default_rng([survey.rng_seed, ordinal])
    slots = []
    for list_id in adaptive_blocks_choose(survey=survey, state=state, now=now, rng=rng):
        slot = candidates.filter(trial_list_id=list_id).order_by("rank").select_for_update(skip_locked=True, of=("self",)).first()
        if slot is not None:
            slots.append(slot)
    return slots


def models_q_free(now):
    from django.db.models import Q

    return Q(participant__isnull=True) | Q(reserved_until__lt=now)


def reservations_release_expired(*, now=None) -> int:
    """The periodic cleanup: time out the holders of expired reservations and free their slots; adaptive surveys
    whose live sessions timed out re-estimate if due (survey_adaptive_refresh). Returns how many slots."""
    now = now or timezone.now()
    with transaction.atomic():
        slots = list(
            Slot.objects.select_for_update(skip_locked=True)
            .filter(filled_at__isnull=True, participant__isnull=False, reserved_until__lt=now)
            .values_list("pk", "participant_id")
        )
        if not slots:
            return 0
        Participant.objects.filter(pk__in=[p for _, p in slots], status=Participant.Status.ACTIVE).update(
            status=Participant.Status.TIMED_OUT, ended_at=now
        )
        Slot.objects.filter(pk__in=[s for s, _ in slots]).update(participant=None, reserved_until=None)
        adaptive = set(Survey.objects.filter(
            participants__pk__in=[p for _, p in slots], participants__is_pilot=False, participants__is_bot=False,
            precision_goal__isnull=False,
        ).values_list("pk", flat=True))
    for survey_id in sorted(adaptive):
        survey_adaptive_refresh(survey_id=survey_id)
    return len(slots)


def _assignments_create(*, participant: Participant) -> None:
    """Practice first, then screening (classification), then the list's main and catch trials in the order the
    task type gives (TaskType.main_order: a fresh random order; clustering: screens in random order, rows within a
    screen shuffled), each with this participant's option layout: the target's side is counterbalanced by the
    participant's slot in the list (surveys.layouts); buttons named by categories keep their fixed order."""
    rng = random.Random()
    survey = participant.survey
    fields = ("id", "kind", "n_options", "target_option", "screen")
    survey_wide = Trial.objects.filter(survey_id=survey.pk, trial_list=None).order_by("id").values_list(*fields)
    practice = [TrialShape(*row) for row in survey_wide if row[1] == Trial.Kind.PRACTICE]
    screening = [TrialShape(*row) for row in survey_wide if row[1] == Trial.Kind.SCREENING]
    # the participant's main trials: one list's, or an adaptive survey's blocks, each laid out by its own slot
    held = list(Slot.objects.filter(participant=participant).order_by("rank").values_list("trial_list_id", "ordinal"))
    catch = [TrialShape(*row) for row in survey_wide if row[1] == Trial.Kind.CATCH]  # an adaptive survey's
    by_list: dict[int, list[TrialShape]] = {}
    for list_id, *row in Trial.objects.filter(trial_list_id__in=[h[0] for h in held]).values_list("trial_list_id", *fields):
        by_list.setdefault(list_id, []).append(TrialShape(*row))
    rows = [t for list_id, _ in held for t in by_list.get(list_id, [])] + catch
    rater = held[0][1] if held else 0
    task = survey.task
    if task.options_are_categories:  # the buttons keep the categories' order: no layout
        orders = {t.id: "" for t in practice + screening + rows}
    else:
        orders = option_orders(trials=catch, rater=rater, seed=f"{survey.rng_seed}:catch")
        for list_id, ordinal in held:
            orders.update(option_orders(trials=by_list.get(list_id, []), rater=ordinal, seed=f"{survey.rng_seed}:{list_id}"))
        orders.update(option_orders(trials=practice, rater=rater, seed=f"{survey.rng_seed}:practice"))
    order = [t.id for t in practice] + [t.id for t in screening] + task.main_order(rows=rows, rng=rng)
    Assignment.objects.bulk_create(
        Assignment(participant=participant, trial_id=t, position=i, option_order=orders[t]) for i, t in enumerate(order)
    )
