"""Adaptive collection (a survey with a precision goal): the state enrollment reads, its re-estimation after
completed sessions, and the choice of the blocks a new participant gets.

The decisions are stats.adaptive's (pure numpy; ``bench/adaptive.py`` simulates studies through the same
functions): each IRI set (condition) has a 95 % design-effect Wilson interval; a set is done when its half-width
is at or below the goal with enough answers. The trials are cut into blocks of a few trials of one set
(stats.adaptive.blocks_split), each a trial list with N places; at enrollment ``blocks_choose`` composes the
participant's session of blocks of the sets still above their goal, and the participant holds one place in each
(a slot per block), so no block is ever over-filled and no trial is seen twice. The state lives in
``Survey.adaptive_state`` (read and written through its contract, surveys.adaptive_state.AdaptiveState):

- ``conditions``: the survey's IRI set (job) ids, in condition order;
- ``lists``: block (trial list) id -> main trials per condition (fixed at build; one set per block);
  ``blocks_per_participant``: how many blocks make a session;
- ``half_width``, ``n_answers``, ``alignment``, ``design_effect``, ``n_participants_set``, ``done``: per condition,
  from the live sessions completed so far (not pilots, bots or excluded sessions);
- ``completed``: live sessions completed at the estimate; ``stop`` and ``reason`` ("goal", "cap_participants" or
  "no_place": no block of a set above its goal has a place left, free or held), ``stopped_at`` (the estimate
  that stopped collection; the rule stops once, later estimates keep it stopped). ``reason`` "goal_pending" without
  ``stop``: every set meets the goal but sessions are under way; the goal stops collection once their answers are
  in and every set still meets it, else the sets they moved back above are open again.
Enrollment turns people away, for now, when no set can use them: every set is done or waiting on the answers of
the sessions under way (their places come free again if those sessions leave or time out).

While the goal is pending and once stopped, every completion or end of a session re-estimates, and
``adaptive_outcome`` says how collection ended: "goal" only when every set meets the goal after those sessions.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from stats.adaptive.blocks import blocks_choose
from stats.adaptive.interval import condition_intervals
from stats.adaptive.stopping import MIN_ANSWERS, collection_verdict, conditions_done, estimate_due, useful_places_left

from ..adaptive_state import AdaptiveState
from ..counted_answers import Purpose, answers_counted, sessions_counted
from ..models import Participant, ProlificStudy, Slot, Survey, Trial
from ..prolific import prolific_enabled
from ..tasks import prolific_places_from_forecast_task, prolific_study_pause_when_done

logger = logging.getLogger(__name__)

# Sessions that count toward the cap: everyone who holds or held a live place and was not timed out or returned.
CAP_STATUSES = (Participant.Status.ACTIVE, Participant.Status.COMPLETED, Participant.Status.FAILED_ATTENTION)


def adaptive_state_initial(*, survey: Survey, blocks_per_participant: int | None = None) -> AdaptiveState:
    """The state of a survey just built (or put back to its start): every block's main trials per condition, no
    answers yet. ``blocks_per_participant``: fixed at build; None keeps the survey's."""
    if blocks_per_participant is None:
        state = survey.adaptive
        blocks_per_participant = state.blocks_per_participant if state else 1
    conditions = sorted(survey.iri_jobs.values_list("pk", flat=True))
    index = {job: c for c, job in enumerate(conditions)}
    lists: dict[str, list[int]] = {}
    rows = Trial.objects.filter(survey=survey, kind=Trial.Kind.MAIN).values_list("trial_list_id", "iri__job_id")
    for list_id, job_id in rows:
        lists.setdefault(str(list_id), [0] * len(conditions))[index[job_id]] += 1
    k = len(conditions)
    return AdaptiveState(
        conditions=conditions, lists=lists, blocks_per_participant=blocks_per_participant, half_width=[0.5] * k,
        n_answers=[0] * k, alignment=[None] * k, design_effect=[1.0] * k, n_participants_set=[0] * k,
        done=[False] * k, completed=0, stop=False, reason="", estimated_at=None, stopped_at=None,
    )


def _live_sessions(survey: Survey):
    """Live sessions of people, whatever their outcome: what holds places (the cap, sessions under way); whose answers
    count is surveys.counted_answers' rule."""
    return Participant.objects.filter(survey=survey, is_pilot=False, is_bot=False)


def _completed_count(survey: Survey) -> int:
    return sessions_counted(survey=survey, purpose=Purpose.ESTIMATE).count()


def adaptive_estimate(*, survey: Survey, state: AdaptiveState) -> AdaptiveState:
    """Recompute every condition's interval from the live sessions completed so far and apply the stopping rule
    (stats.adaptive.collection_stop). Returns the new state; stores nothing."""
    conditions = state.conditions
    index = {job: c for c, job in enumerate(conditions)}
    # One read of who has completed, for both the answers and the count: a session that completes between two reads
    # would be counted without its answers, and the next refresh would see nothing new to estimate.
    completed_ids = list(sessions_counted(survey=survey, purpose=Purpose.ESTIMATE).values_list("pk", flat=True))
    rows = list(
        answers_counted(survey=survey, purpose=Purpose.ESTIMATE, session_ids=completed_ids)
        .values_list("participant_id", "trial__iri_id", "trial__iri__job_id", "choice", "trial__target_option")
    )
    arrays = np.array([(p, i, index[j], c == t) for p, i, j, c, t in rows], dtype=np.int64).reshape(-1, 4)
    intervals = condition_intervals(
        correct=arrays[:, 3], participants=arrays[:, 0], items=arrays[:, 1], conditions=arrays[:, 2],
        n_conditions=len(conditions),
    )
    half_width = np.array([i.half_width for i in intervals])
    n_answers = np.array([i.n_answers for i in intervals])
    completed = len(completed_ids)
    ids, block_conditions, _ = _blocks(state)
    verdict = collection_verdict(
        half_width=half_width, goal=survey.precision_goal, n_answers=n_answers, n_participants=completed,
        cap_participants=survey.max_participants, block_conditions=block_conditions,
        unfilled=_places(survey, ids, unfilled=True),
        under_way=bool(_places(survey, ids, now=timezone.now(), held=True).any()),
        stopped_reason=state.reason if state.stop else "",
    )
    return dataclasses.replace(
        state,
        stopped_at=state.stopped_at or (timezone.now().isoformat() if verdict.stop else None),
        half_width=[round(float(h), 6) for h in half_width],
        n_answers=n_answers.tolist(),
        alignment=[i.alignment for i in intervals],
        design_effect=[round(i.design_effect, 4) for i in intervals],
        n_participants_set=[i.n_participants for i in intervals],
        done=verdict.done.tolist(),
        completed=completed,
        stop=verdict.stop,
        reason=verdict.reason,
        estimated_at=timezone.now().isoformat(),
    )


def survey_adaptive_refresh(*, survey_id: int, force: bool = False) -> AdaptiveState | None:
    """Re-estimate when ``precision_every`` more live sessions have completed since the last estimate (or when
    forced); called after every completion and every other end of a live session. The survey row is locked
    meanwhile, so estimates are written in order and enrollment reads the newest. While the goal is pending and
    once collection has stopped, every call is due: the final estimate must include the sessions that were under
    way. So is one that leaves no place in a list that helps (the rule then stops with "no_place").
    Returns the new state, or None when nothing was due."""
    with transaction.atomic():
        survey = Survey.objects.select_for_update(no_key=True).get(pk=survey_id)
        state = survey.adaptive
        if survey.precision_goal is None or state is None:
            return None
        stopped_before = state.stop
        due = force or estimate_due(
            completed=_completed_count(survey), completed_at_estimate=state.completed, every=survey.precision_every,
            stopped=stopped_before, goal_pending=state.reason == "goal_pending",
            places_left=adaptive_places_left(survey=survey, state=state, done=state.done),
        )
        if not due:
            return None
        state = adaptive_estimate(survey=survey, state=state)
        Survey.objects.filter(pk=survey_id).update(adaptive_state=state.to_dict())
        if state.stop and not stopped_before:
            transaction.on_commit(lambda: _prolific_enqueue(prolific_study_pause_when_done, survey_id=survey_id))
        elif not state.stop:
            transaction.on_commit(lambda: _prolific_enqueue(prolific_places_from_forecast_task, survey_id=survey_id,
                                                            only_status="ACTIVE"))
    return state


def _prolific_enqueue(task, *, survey_id: int, only_status: str | None = None) -> None:
    """Collection stopped (pause the survey's Prolific study) or re-estimated what it needs (its active study's
    places follow the forecast): in the background, if it has a study. A broker that cannot be reached must not
    fail the participant's completion: the admin's actions remain."""
    studies = ProlificStudy.objects.filter(survey_id=survey_id)
    if only_status:
        studies = studies.filter(status=only_status)
    if not (prolific_enabled() and studies.exists()):
        return
    try:
        task.delay(survey_id)
    except Exception:  # noqa: BLE001 (any broker error)
        logger.warning("Survey %s's Prolific study: %s could not be queued", survey_id, task.name, exc_info=True)


def _blocks(state: AdaptiveState) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The state's blocks: ids, each one's IRI set (condition index) and its number of main trials."""
    ids = [int(k) for k in state.lists]
    per_set = np.array([state.lists[str(k)] for k in ids], dtype=np.int64).reshape(len(ids), -1)
    return ids, per_set.argmax(axis=1), per_set.sum(axis=1)


def _places(survey: Survey, ids: list[int], *, unfilled: bool = False, now=None, held: bool = False) -> np.ndarray:
    """Per block (in ``ids`` order), its live places not filled (``unfilled``), claimable now (``now``: free or
    held past its reservation) or held by a session under way (``held``, with ``now``)."""
    slots = Slot.objects.filter(survey=survey, is_pilot=False, filled_at__isnull=True)
    if held:
        slots = slots.filter(participant__isnull=False, reserved_until__gte=now)
    elif now is not None:
        slots = slots.filter(Q(participant__isnull=True) | Q(reserved_until__lt=now))
    counts = dict(slots.values("trial_list_id").annotate(n=Count("id")).values_list("trial_list_id", "n"))
    return np.array([counts.get(i, 0) for i in ids], dtype=np.int64)


def adaptive_blocks_choose(*, survey: Survey, state: AdaptiveState, now, rng: np.random.Generator) -> list[int]:
    """The blocks (trial list ids) the next participant gets, in the order chosen (stats.adaptive.blocks_choose
    on the places free and held now); empty when none helps."""
    ids, block_conditions, sizes = _blocks(state)
    if not ids:
        return []
    chosen = blocks_choose(
        block_conditions=block_conditions, block_sizes=sizes, free=_places(survey, ids, now=now),
        held=_places(survey, ids, now=now, held=True), half_width=state.half_width, n_answers=state.n_answers,
        done=state.done, goal=survey.precision_goal, blocks=state.blocks_per_participant, rng=rng,
    )
    return [ids[b] for b in chosen]


def adaptive_cap_reached(*, survey: Survey, exclude_pk: int | None = None) -> bool:
    """Whether the live sessions that hold or held a place reach the survey's cap on participants."""
    if not survey.max_participants:
        return False
    taken = _live_sessions(survey).filter(status__in=CAP_STATUSES).exclude(pk=exclude_pk).count()
    return taken >= survey.max_participants


def adaptive_places_left(*, survey: Survey, state: AdaptiveState, done) -> bool:
    """Whether a block of a set that is not done has a live place not yet filled (free, or held by a session under
    way, which may still time out and free it). False means no participant can help any more."""
    ids, block_conditions, _ = _blocks(state)
    return useful_places_left(block_conditions=block_conditions, unfilled=_places(survey, ids, unfilled=True),
                              done=done)


# Why collection ended, in the report's and the monitor's words ("" while it goes on).
OUTCOME_NOTES = {
    "": "Collection goes on.",
    "goal": "Collection stopped: every IRI set meets the goal, with every session ended.",
    "goal_pending": (
        "Every IRI set meets the goal; {under_way} session{s} under way still add answers, so whether every set "
        "stays within the goal is known once they end (a set they move back above it takes new participants)."
    ),
    "late_sessions": (
        "Enrollment closed when every IRI set met the goal, but the answers of the sessions then under way moved a "
        "set back above it."
    ),
    "cap_participants": "Collection ended: the cap of {cap} participants was reached.",
    "no_place": "Collection ended: no block of trials of an IRI set above the goal has a place left.",
    "researcher": "Collection ended: the researcher closed the survey.",
}


def adaptive_outcome(*, survey: Survey, half_width=None, n_answers=None) -> dict | None:
    """How adaptive collection stands (None without a precision goal): ``stop_reason`` (a key of OUTCOME_NOTES),
    the sessions still under way, and every set that missed the goal with how far (``missed``), in a sentence.

    "goal" is said only when every set meets the goal (half-width at most the goal, with MIN_ANSWERS answers) and
    no live session is under way; before that it is "goal_pending". ``half_width`` and ``n_answers`` (per set, in
    the state's condition order) default to the last estimate; the report passes its own."""
    state = survey.adaptive
    if survey.precision_goal is None or state is None:
        return None
    goal = survey.precision_goal
    if half_width is None:  # the last estimate's own verdict
        half_width, n_answers, meets = state.half_width, state.n_answers, list(state.done)
    else:
        half_width, n_answers = [float(h) for h in half_width], [int(n) for n in n_answers]
        meets = conditions_done(half_width=half_width, goal=goal, n_answers=n_answers).tolist()
    under_way = _live_sessions(survey).filter(status=Participant.Status.ACTIVE).count()
    if state.stop:
        reason = state.reason
        if reason == "goal":  # a session whose place had timed out may still complete after the stop
            reason = "goal_pending" if under_way else ("goal" if all(meets) else "late_sessions")
    elif state.reason == "goal_pending":
        reason = "goal_pending"
    elif survey.status == Survey.Status.CLOSED:
        reason = "researcher"
    elif adaptive_cap_reached(survey=survey):
        reason = "cap_participants"
    elif not all(meets) and not adaptive_places_left(survey=survey, state=state, done=meets):
        reason = "no_place"
    else:
        reason = ""
    names = dict(survey.iri_jobs.values_list("pk", "name"))
    ended = reason not in ("", "goal_pending")
    missed = [
        {"iri_job": job, "name": names.get(job) or f"IRI set {job}", "half_width": round(h, 6), "goal": goal,
         "answers": n, "missed_by": round(max(h - goal, 0.0), 6), "answers_short": max(MIN_ANSWERS - n, 0)}
        for job, h, n, ok in zip(state.conditions, half_width, n_answers, meets) if not ok
    ] if ended else []
    note = OUTCOME_NOTES[reason].format(under_way=under_way, s="" if under_way == 1 else "s",
                                        cap=survey.max_participants)
    if missed:
        note += " Missed the goal: " + "; ".join(
            f"{m['name']} (half-width {m['half_width']:.3f}, goal {goal:g}, missed by {m['missed_by']:.3f}"
            + (f", {m['answers_short']} answers short of {MIN_ANSWERS}" if m["answers_short"] else "") + ")"
            for m in missed) + "."
    return {"stopped": bool(reason), "stop_reason": reason, "sessions_under_way": under_way, "met": all(meets),
            "missed": missed, "note": note}
