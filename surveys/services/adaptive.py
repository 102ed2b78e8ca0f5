"""Adaptive collection (a survey with a precision goal): the state enrollment reads, its re-estimation after
completed sessions, and the choice of the trial list a new participant gets.

The statistics are results.adaptive's (pure numpy): each IRI set (condition) has a 95 % design-effect Wilson
interval; a set is done when its half-width is at or below the goal with enough answers; allocation_next says
which sets the next list should hold. Lists are built beforehand (surveys.services.design builds them from a few
sets each, so that choosing a list chooses sets), each with N slots, so a list is never over-filled. The state
lives in ``Survey.adaptive_state``:

- ``conditions``: the survey's IRI set (job) ids, in condition order;
- ``lists``: trial list id -> main trials per condition (fixed at build);
- ``half_width``, ``n_answers``, ``alignment``, ``design_effect``, ``n_participants_set``, ``done``: per condition,
  from the live sessions completed so far (not pilots, bots or excluded sessions);
- ``completed``: live sessions completed at the estimate; ``stop`` and ``reason`` ("goal", "cap_participants" or
  "no_place": no list holding a set above its goal has a place left, free or held), ``stopped_at`` (the estimate
  that stopped collection; the rule stops once, later estimates keep it stopped).
Enrollment also closes, for now, when every list that helps has its places held by sessions under way.

Once stopped, every completion re-estimates (the sessions under way when it stopped still add answers), and
``adaptive_outcome`` says how collection ended: "goal" only when every set meets the goal after those sessions.
"""
from __future__ import annotations

import logging
import math

import numpy as np
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from results.adaptive import (
    MIN_ANSWERS,
    Stop,
    allocation_next,
    collection_stop,
    condition_intervals,
    conditions_done,
)

from ..models import Participant, ProlificStudy, Response, Slot, Survey, Trial
from ..prolific import prolific_enabled
from ..tasks import prolific_places_from_forecast_task, prolific_study_pause_when_done

logger = logging.getLogger(__name__)

# Sessions that count toward the cap: everyone who holds or held a live place and was not timed out or returned.
CAP_STATUSES = (Participant.Status.ACTIVE, Participant.Status.COMPLETED, Participant.Status.FAILED_ATTENTION)
SETS_PER_LIST = 2  # IRI sets per trial list of an adaptive survey: few enough that a list choice is a set choice


def adaptive_state_initial(*, survey: Survey) -> dict:
    """The state of a survey just built: every list's main trials per condition, no answers yet."""
    conditions = sorted(survey.iri_jobs.values_list("pk", flat=True))
    index = {job: c for c, job in enumerate(conditions)}
    lists: dict[str, list[int]] = {}
    rows = Trial.objects.filter(survey=survey, kind=Trial.Kind.MAIN).values_list("trial_list_id", "iri__job_id")
    for list_id, job_id in rows:
        lists.setdefault(str(list_id), [0] * len(conditions))[index[job_id]] += 1
    k = len(conditions)
    return {
        "conditions": conditions, "lists": lists, "half_width": [0.5] * k, "n_answers": [0] * k,
        "alignment": [None] * k, "design_effect": [1.0] * k, "n_participants_set": [0] * k, "done": [False] * k,
        "completed": 0, "stop": False, "reason": "", "estimated_at": None,
    }


def _live_sessions(survey: Survey):
    return Participant.objects.filter(survey=survey, is_pilot=False, is_bot=False)


def _completed_count(survey: Survey) -> int:
    return _live_sessions(survey).filter(status=Participant.Status.COMPLETED, excluded=False).count()


def adaptive_estimate(*, survey: Survey, state: dict) -> dict:
    """Recompute every condition's interval from the live sessions completed so far and apply the stopping rule
    (results.adaptive.collection_stop). Returns the new state; stores nothing."""
    conditions = state["conditions"]
    index = {job: c for c, job in enumerate(conditions)}
    rows = list(
        Response.objects.filter(
            participant__in=_live_sessions(survey).filter(status=Participant.Status.COMPLETED, excluded=False),
            trial__kind=Trial.Kind.MAIN,
        ).values_list("participant_id", "trial__iri_id", "trial__iri__job_id", "choice", "trial__target_option")
    )
    arrays = np.array([(p, i, index[j], c == t) for p, i, j, c, t in rows], dtype=np.int64).reshape(-1, 4)
    intervals = condition_intervals(
        correct=arrays[:, 3], participants=arrays[:, 0], items=arrays[:, 1], conditions=arrays[:, 2],
        n_conditions=len(conditions),
    )
    half_width = np.array([i.half_width for i in intervals])
    n_answers = np.array([i.n_answers for i in intervals])
    completed = _completed_count(survey)
    verdict = collection_stop(
        half_width=half_width, goal=survey.precision_goal, n_answers=n_answers, n_participants=completed,
        cap_participants=survey.max_participants,
    )
    if not verdict.stop and not adaptive_places_left(survey=survey, lists=state["lists"], done=verdict.done):
        verdict = Stop(True, "no_place", verdict.done)  # every list that could still help is full: say so
    if state.get("stop"):  # the rule stops once: later estimates (sessions that were under way) never reopen it
        verdict = Stop(True, state["reason"], verdict.done)
    return {
        **state,
        "stopped_at": state.get("stopped_at") or (timezone.now().isoformat() if verdict.stop else None),
        "half_width": [round(float(h), 6) for h in half_width],
        "n_answers": n_answers.tolist(),
        "alignment": [i.alignment for i in intervals],
        "design_effect": [round(i.design_effect, 4) for i in intervals],
        "n_participants_set": [i.n_participants for i in intervals],
        "done": verdict.done.tolist(),
        "completed": completed,
        "stop": verdict.stop,
        "reason": verdict.reason,
        "estimated_at": timezone.now().isoformat(),
    }


def survey_adaptive_refresh(*, survey_id: int, force: bool = False) -> dict | None:
    """Re-estimate when ``precision_every`` more live sessions have completed since the last estimate (or when
    forced). The survey row is locked meanwhile, so estimates are written in order and enrollment reads the newest.
    Once collection has stopped, every completion is due: the final estimate must include the sessions that were
    under way. So is one that leaves no place in a list that helps (the rule then stops with "no_place").
    Returns the new state, or None when nothing was due."""
    with transaction.atomic():
        survey = Survey.objects.select_for_update(no_key=True).get(pk=survey_id)
        state = survey.adaptive_state
        if survey.precision_goal is None or not state:
            return None
        stopped_before = state.get("stop", False)
        due = (force or stopped_before or _completed_count(survey) >= state["completed"] + survey.precision_every
               or not adaptive_places_left(survey=survey, lists=state["lists"], done=state["done"]))
        if not due:
            return None
        state = adaptive_estimate(survey=survey, state=state)
        Survey.objects.filter(pk=survey_id).update(adaptive_state=state)
        if state["stop"] and not stopped_before:
            transaction.on_commit(lambda: _prolific_enqueue(prolific_study_pause_when_done, survey_id=survey_id))
        elif not state["stop"]:
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


def adaptive_list_order(*, survey: Survey, state: dict, now, rng: np.random.Generator) -> list[int]:
    """The trial lists with a free live slot, best first, for the next participant; empty when none helps.

    The wanted composition is results.adaptive.allocation_next's for one list, counting the answers that the
    sessions now holding a reservation will add (their lists' trials per condition; each such condition's
    half-width projected down by sqrt(n / (n + pending))). A list's score is how many of its trials the wanted
    composition asks for; lists with a score of 0 (only done sets) are left out while a set is above its goal.
    Ties go to the list with the most free slots, so lists fill breadth-first."""
    lists = {int(k): np.asarray(v) for k, v in state["lists"].items()}
    if not lists:
        return []
    n_conditions = len(state["conditions"])
    pending = np.zeros(n_conditions)
    held = (
        Slot.objects.filter(survey=survey, is_pilot=False, filled_at__isnull=True, participant__isnull=False,
                            reserved_until__gte=now)
        .values("trial_list_id").annotate(n=Count("id"))
    )
    for row in held:
        pending += row["n"] * lists.get(row["trial_list_id"], 0)
    n_answers = np.asarray(state["n_answers"], dtype=np.float64)
    half_width = np.asarray(state["half_width"]) * np.sqrt((n_answers + 1) / (n_answers + 1 + pending))
    slots = int(max(v.sum() for v in lists.values())) or 1
    wanted = np.bincount(
        allocation_next(half_width=half_width, goal=survey.precision_goal, n_answers=n_answers + pending, slots=slots,
                        rng=rng, done=np.asarray(state["done"], dtype=bool)),
        minlength=n_conditions,
    )
    free = dict(
        Slot.objects.filter(survey=survey, is_pilot=False, filled_at__isnull=True)
        .filter(Q(participant__isnull=True) | Q(reserved_until__lt=now))
        .values("trial_list_id").annotate(n=Count("id")).values_list("trial_list_id", "n")
    )
    some_open = not all(state["done"])
    scored = []
    for list_id, n_free in free.items():
        score = int(np.minimum(lists.get(list_id, np.zeros(n_conditions)), wanted).sum())
        if score or not some_open:
            scored.append((-score, -n_free, list_id))
    return [list_id for *_, list_id in sorted(scored)]


def adaptive_cap_reached(*, survey: Survey, exclude_pk: int | None = None) -> bool:
    """Whether the live sessions that hold or held a place reach the survey's cap on participants."""
    if not survey.max_participants:
        return False
    taken = _live_sessions(survey).filter(status__in=CAP_STATUSES).exclude(pk=exclude_pk).count()
    return taken >= survey.max_participants


def adaptive_places_left(*, survey: Survey, lists: dict, done) -> bool:
    """Whether a list holding a set that is not done has a live place not yet filled (free, or held by a session
    under way, which may still time out and free it). False means no participant can help any more."""
    useful = [int(k) for k, per_set in lists.items() if any(n and not d for n, d in zip(per_set, done))]
    return Slot.objects.filter(survey=survey, is_pilot=False, filled_at__isnull=True, trial_list_id__in=useful).exists()


# Why collection ended, in the report's and the monitor's words ("" while it goes on).
OUTCOME_NOTES = {
    "": "Collection goes on.",
    "goal": "Collection stopped: every IRI set meets the goal, with every session ended.",
    "goal_pending": (
        "Enrollment closed when every IRI set met the goal; {under_way} session{s} under way still add answers, so "
        "whether every set stays within the goal is known once they end."
    ),
    "late_sessions": (
        "Enrollment closed when every IRI set met the goal, but the answers of the sessions then under way moved a "
        "set back above it."
    ),
    "cap_participants": "Collection ended: the cap of {cap} participants was reached.",
    "no_place": "Collection ended: no trial list holding an IRI set above the goal has a place left.",
    "researcher": "Collection ended: the researcher closed the survey.",
}


def adaptive_outcome(*, survey: Survey, half_width=None, n_answers=None) -> dict | None:
    """How adaptive collection stands (None without a precision goal): ``stop_reason`` (a key of OUTCOME_NOTES),
    the sessions still under way, and every set that missed the goal with how far (``missed``), in a sentence.

    "goal" is said only when every set meets the goal (half-width at most the goal, with MIN_ANSWERS answers) and
    no live session is under way; before that it is "goal_pending". ``half_width`` and ``n_answers`` (per set, in
    the state's condition order) default to the last estimate; the report passes its own."""
    state = survey.adaptive_state
    if survey.precision_goal is None or not state:
        return None
    goal = survey.precision_goal
    if half_width is None:  # the last estimate's own verdict
        half_width, n_answers, meets = state["half_width"], state["n_answers"], list(state["done"])
    else:
        half_width, n_answers = [float(h) for h in half_width], [int(n) for n in n_answers]
        meets = conditions_done(half_width=half_width, goal=goal, n_answers=n_answers).tolist()
    under_way = _live_sessions(survey).filter(status=Participant.Status.ACTIVE).count()
    if state.get("stop"):
        reason = state["reason"]
        if reason == "goal":  # the stop happened at the goal; the sessions under way then decide whether it holds
            reason = "goal_pending" if under_way else ("goal" if all(meets) else "late_sessions")
    elif survey.status == Survey.Status.CLOSED:
        reason = "researcher"
    elif adaptive_cap_reached(survey=survey):
        reason = "cap_participants"
    elif not all(meets) and not adaptive_places_left(survey=survey, lists=state["lists"], done=meets):
        reason = "no_place"
    else:
        reason = ""
    names = dict(survey.iri_jobs.values_list("pk", "name"))
    ended = reason not in ("", "goal_pending")
    missed = [
        {"iri_job": job, "name": names.get(job) or f"IRI set {job}", "half_width": round(h, 6), "goal": goal,
         "answers": n, "missed_by": round(max(h - goal, 0.0), 6), "answers_short": max(MIN_ANSWERS - n, 0)}
        for job, h, n, ok in zip(state["conditions"], half_width, n_answers, meets) if not ok
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


def adaptive_lists_split(*, units: list[list[Trial]], per_list: int, condition_of, rng) -> list[list[list[Trial]]]:
    """Split units into lists of about ``per_list`` units drawn from SETS_PER_LIST conditions each (fewer when a
    set runs short, topped up from the others). Each list starts from the set with the most units left and pairs
    it with the set it has been paired with least (then the one with most units left; ties at random), so the
    pairs vary like a round-robin: sets that stay wide get lists of their own together instead of always dragging
    a finished set along. Sizes differ by at most one unit, as in the fixed design."""
    queues: dict[int, list] = {}
    for unit in units:
        queues.setdefault(condition_of(unit), []).append(unit)
    n_lists = max(1, math.ceil(len(units) / max(1, per_list)))
    sizes = [len(units) // n_lists + (i < len(units) % n_lists) for i in range(n_lists)]
    paired: dict[frozenset, int] = {}
    out = []
    for size in sizes:
        order = sorted((c for c in queues if queues[c]), key=lambda c: (-len(queues[c]), rng.random()))
        first = order[0]
        partners = sorted(order[1:], key=lambda c: (paired.get(frozenset((first, c)), 0), -len(queues[c]), rng.random()))
        order = [first, *partners]
        for c in order[1:SETS_PER_LIST]:
            paired[frozenset((first, c))] = paired.get(frozenset((first, c)), 0) + 1
        share = math.ceil(size / min(SETS_PER_LIST, len(order)))
        taken: list = []
        for c in order[:SETS_PER_LIST]:
            want = min(share, size - len(taken))
            taken += queues[c][:want]
            del queues[c][:want]
        for c in order:  # top up when a chosen set ran short
            want = size - len(taken)
            taken += queues[c][:want]
            del queues[c][:want]
        out.append(taken)
    return out
