"""The live forecast of adaptive collection: from the adaptive state enrollment keeps (surveys.services.adaptive),
per IRI set the answers still needed at its current alignment and planned design effect, and the participants and
cost they take; it says when the cap, the lists' free places or a stop leave the goal out of reach."""
from __future__ import annotations

import math
from dataclasses import dataclass

from django.db.models import Count

from backend.exceptions import ApplicationError
from stats.adaptive.blocks import BLOCK_TRIALS
from stats.adaptive.forecast import answers_per_cluster, design_effect_expected
from stats.adaptive.interval import condition_answers_needed
from stats.adaptive.planner import FEE_RANGE, RATE_POSITIVE, WORST_CASE_P
from stats.adaptive.stopping import MIN_ANSWERS
from surveys.adaptive_state import AdaptiveState
from surveys.counted_answers import Purpose
from surveys.models import Participant, Slot, Survey
from surveys.services.adaptive import adaptive_outcome

from .figures import (
    DEFAULT_SECONDS_PER_PARTICIPANT,
    DEFAULT_SECONDS_PER_TRIAL,
    prolific_pay_rates,
    sessions_times,
    set_correlations,
    survey_answer_figures,
    survey_lists,
)

CAP_ROOM = "the cap of {cap} participants leaves room for {room} more, and about {needed} are still needed"
PLACES_ROOM = "{name} needs {needed} more answers and its trial lists' free places hold {places}"
STOPPED_SHORT = "collection stopped ({reason}) before every IRI set reached the goal"
# The need sets the ratings per item, which set the design effect: a few rounds settle them.
NEED_ROUNDS = 5


def _pay(seconds: float, rate_per_hour: float) -> float:
    """plan_budget's pay rule: the rate for the time, rounded up to the penny."""
    return math.ceil(round(rate_per_hour * seconds / 3600 * 100, 9)) / 100


def _seconds_per_participant(survey: Survey, per_participant: int) -> tuple[float, str]:
    """Time a participant takes: the live sessions' median, else the pilot's plan time, else the defaults."""
    live = sessions_times(survey=survey, purpose=Purpose.LIVE_TIME)
    if live["sessions"]:
        return live["session_seconds"], f"median of {live['sessions']} completed live sessions"
    pilot = sessions_times(survey=survey, purpose=Purpose.PILOT_TIME)
    if pilot["seconds_per_trial"] is not None:
        return (per_participant * pilot["seconds_per_trial"] + pilot["seconds_per_participant"],
                f"pilot ({pilot['sessions']} sessions)")
    return per_participant * DEFAULT_SECONDS_PER_TRIAL + DEFAULT_SECONDS_PER_PARTICIPANT, "default (no sessions yet)"


def survey_seconds_per_participant(*, survey: Survey) -> tuple[float, str]:
    """The time one participant takes, with its source: the completed live sessions' median, else the pilot's, else
    the planner's defaults (what a Prolific draft's estimated time starts from)."""
    _, per_participant = survey_lists(survey)
    return _seconds_per_participant(survey, per_participant)


@dataclass(frozen=True)
class _Collection:
    """What every IRI set's forecast reads: the adaptive state and goal, each trial list's main trials per set and
    its free live places, the sets' correlations (with the answers they came from) and a participant's main trials."""

    state: AdaptiveState
    goal: float
    names: dict[int, str]
    lists: dict[int, list[int]]
    free: dict[int, int]
    figures: dict
    rho_p: list[float]
    rho_i: list[float]
    icc_sources: list[str]
    per_session: int


def survey_forecast(*, survey: Survey, rate_per_hour: float | None = None, fee: float = 0.0) -> dict | None:
    """For a survey with a precision goal (None otherwise): per IRI set its current half-width, the goal, its
    answers, the answers it needs at its current alignment (0.5 where it has no answers yet) and planned design effect
    (condition_answers_needed; at least MIN_ANSWERS) and those still needed (0 once done, at least 1 while above the
    goal: the live interval also pays for few clusters, which the need at the design effect leaves out); in total
    the participants and cost still needed; and ``reachable`` False with a sentence (``note``) when the cap, the
    lists' free places or a stop before the goal leave the goal out of reach.

    The planned design effect is the one the set will have at its need, not the one it has now: the participant and
    item correlations (``survey_answer_figures``: the completed live sessions once there are any, else the pilot;
    ``answers_source`` says which, ``icc_source`` per set) at the set's trials per participant so far and the
    ratings per item its need implies, never below the live estimate's design effect.

    Participants still needed is a lower bound: max(all answers still needed ÷ main trials per participant, per set
    its answers still needed ÷ the most trials of it one participant's blocks hold). Sessions in progress are among
    them (their answers are not in the estimate yet), so the cap's room counts only finished sessions. Pay is in the
    Prolific workspace's currency; no rate: the rate Prolific recommends in it."""
    rates = prolific_pay_rates()
    rate_per_hour = _checked_rate(rates["recommended"] if rate_per_hour is None else rate_per_hour, fee=fee)
    state = survey.adaptive
    if survey.precision_goal is None or state is None:
        return None
    collection = _collection(survey=survey, state=state)
    conditions = [_set_forecast(collection, c) for c in range(len(state.conditions))]
    still_total = sum(c["answers_still_needed"] for c in conditions)
    participants = _participants_still_needed(conditions, still_total=still_total,
                                              per_participant=collection.per_session)
    seconds, seconds_source = _seconds_per_participant(survey, collection.per_session)
    pay = _pay(seconds, rate_per_hour)
    cost_each = round(pay * (1 + fee), 4)
    outcome = adaptive_outcome(survey=survey)
    reasons, room = _unreachable_reasons(survey=survey, outcome=outcome, participants=participants,
                                         conditions=conditions)
    return {
        "goal": collection.goal,
        "conditions": conditions,
        "answers_still_needed": still_total,
        "participants_still_needed": participants,
        "seconds_per_participant": round(seconds, 1),
        "seconds_source": seconds_source,
        "rate_per_hour": rate_per_hour,
        "currency": rates["currency"],
        "currency_symbol": rates["symbol"],
        "fee": fee,
        "pay_per_participant": pay,
        "cost_per_participant": cost_each,
        "cost_still_needed": round(participants * cost_each, 2),
        "cap_participants": survey.max_participants,
        "cap_room": room,
        "completed": state.completed,
        "stop": state.stop,
        "reason": state.reason,
        "outcome": outcome,  # why collection ended, and which sets missed the goal by how much
        "answers_source": collection.figures["source"],  # where the correlations came from: live, pilot or default
        "answers_sessions": collection.figures["sessions"],
        "estimated_at": state.estimated_at,
        "met": not still_total,
        "reachable": not reasons,
        "note": _note(still_total=still_total, reasons=reasons, participants=participants,
                      cost=f"{rates['symbol']}{participants * cost_each:,.2f}"),
    }


def _checked_rate(rate_per_hour: float, *, fee: float) -> float:
    if not 0 < rate_per_hour or not math.isfinite(rate_per_hour):
        raise ApplicationError(RATE_POSITIVE.format(value=rate_per_hour), extra={"field": "rate_per_hour"})
    if not 0 <= fee < 1:
        raise ApplicationError(FEE_RANGE.format(value=fee), extra={"field": "fee"})
    return rate_per_hour


def _collection(*, survey: Survey, state: AdaptiveState) -> _Collection:
    free = dict(Slot.objects.filter(survey=survey, is_pilot=False, filled_at__isnull=True)
                .values("trial_list_id").annotate(n=Count("id")).values_list("trial_list_id", "n"))
    figures = survey_answer_figures(survey=survey)
    rho_p, rho_i, icc_sources = set_correlations(figures)
    _, per_session = survey_lists(survey)
    return _Collection(
        state=state, goal=survey.precision_goal, names=dict(survey.iri_jobs.values_list("pk", "name")),
        lists={int(k): v for k, v in state.lists.items()}, free=free, figures=figures, rho_p=rho_p, rho_i=rho_i,
        icc_sources=icc_sources, per_session=per_session,
    )


def _set_forecast(collection: _Collection, c: int) -> dict:
    """The forecast of IRI set ``c``: its interval, its need at the planned design effect, what is still needed, and
    the free places and most answers per participant its lists leave."""
    state, job = collection.state, collection.state.conditions[c]
    n = state.n_answers[c]
    # a participant holds one place in each of their blocks
    sizes = sorted((per_set[c] for per_set in collection.lists.values() if per_set[c]), reverse=True)
    most = sum(sizes[:state.blocks_per_participant])
    needed, design_effect = _planned_need(collection, c, most=most)
    places_free = sum(per_set[c] * collection.free.get(list_id, 0) for list_id, per_set in collection.lists.items())
    return {
        "id": job, "name": collection.names.get(job) or f"IRI set {job}", "half_width": state.half_width[c],
        "goal": collection.goal, "n_answers": n, "alignment": state.alignment[c],
        "design_effect": state.design_effect[c], "done": state.done[c],
        "design_effect_planned": round(design_effect, 4), "icc_participant": round(collection.rho_p[c], 4),
        "icc_item": round(collection.rho_i[c], 4), "icc_source": collection.icc_sources[c],
        "answers_needed": needed, "answers_still_needed": 0 if state.done[c] else max(needed - n, 1),
        "places_free": places_free,
        "most_per_list": most,
    }


def _planned_need(collection: _Collection, c: int, *, most: int) -> tuple[int, float]:
    """(answers needed, design effect) of IRI set ``c`` at the end: the sets' correlations at this set's trials per
    participant so far (or, before any, the most it can get) and the ratings per item its need implies; never below
    the live estimate's design effect."""
    state, goal = collection.state, collection.goal
    figures = collection.figures["conditions"]
    measured = figures[c] if c < len(figures) else None
    open_sets = max(1, sum(not d for d in state.done))
    per_participant = (measured["answers_per_participant"] if measured and measured.get("answers_per_participant")
                       else min(max(1, most), max(BLOCK_TRIALS, collection.per_session / open_sets)))
    items = sum(per_set[c] for per_set in collection.lists.values()) or 1
    p_planned = WORST_CASE_P if state.alignment[c] is None else state.alignment[c]
    design_effect = state.design_effect[c]
    for _ in range(NEED_ROUNDS):
        needed = max(MIN_ANSWERS, condition_answers_needed(p=p_planned, half_width=goal, design_effect=design_effect))
        design_effect = max(state.design_effect[c], design_effect_expected(
            icc_participant=max(0.0, collection.rho_p[c]), icc_item=max(0.0, collection.rho_i[c]),
            answers_per_participant=per_participant,
            answers_per_item=answers_per_cluster(answers=max(needed, state.n_answers[c]), clusters=items)))
    needed = max(MIN_ANSWERS, condition_answers_needed(p=p_planned, half_width=goal, design_effect=design_effect))
    return needed, design_effect


def _participants_still_needed(conditions: list[dict], *, still_total: int, per_participant: int) -> int:
    """A lower bound: all answers still needed over a participant's main trials, and per set its answers still
    needed over the most of its trials one participant's blocks hold."""
    return max([math.ceil(still_total / per_participant)]
               + [math.ceil(c["answers_still_needed"] / c["most_per_list"]) for c in conditions if c["most_per_list"]])


def _unreachable_reasons(*, survey: Survey, outcome: dict, participants: int,
                         conditions: list[dict]) -> tuple[list[str], int | None]:
    """Why the goal is out of reach (a stop short of it, the cap's room, a set's free places), and the cap's room
    (None without a cap): finished live sessions count against the cap, those in progress do not."""
    reasons = []
    if outcome["missed"]:  # collection ended (cap, no useful place, the researcher, late sessions) short of the goal
        reasons.append(STOPPED_SHORT.format(reason=outcome["stop_reason"]))
    cap, room = survey.max_participants, None
    if cap is not None:
        finished = Participant.objects.filter(
            survey=survey, is_pilot=False, is_bot=False,
            status__in=[Participant.Status.COMPLETED, Participant.Status.FAILED_ATTENTION],
        ).count()
        room = max(0, cap - finished)
        if participants > room:
            reasons.append(CAP_ROOM.format(cap=cap, room=room, needed=participants))
    reasons += [PLACES_ROOM.format(name=c["name"], needed=c["answers_still_needed"], places=c["places_free"])
                for c in conditions if c["answers_still_needed"] > c["places_free"]]
    return reasons, room


def _note(*, still_total: int, reasons: list[str], participants: int, cost: str) -> str:
    if not still_total:
        return "Every IRI set has reached the goal."
    if reasons:
        return "The goal cannot be met: " + "; ".join(reasons) + "."
    return f"About {participants} more participants ({cost}) to reach the goal."
