"""The budget planner and the live forecast of adaptive collection: the survey-side of stats.adaptive's
plan_budget and condition_answers_needed (which stay pure numpy).

Where the planner's figures come from
-------------------------------------
A pilot is the survey's pilot sessions (``is_pilot``); bot sessions are left out (they answer by a policy, at
machine speed). Which sessions and answers count for each figure is surveys.counted_answers' rule (Purpose.PILOT,
PILOT_TIME, LIVE_TIME, ESTIMATE).

- **Session time** = completed_at − created_at of each completed pilot session: from the participant's arrival
  (when the platform's clock starts) to completion, the time a participant is paid for.
- **Seconds per trial** = the median over completed pilot sessions of the spacing of their trial answers:
  (last − first answer's server time) ÷ (answers − 1), main and catch answers (not practice or screening). That
  is the whole trial cycle (images loading, the decision, the next screen), which the response time alone
  (``rt_ms``, from the first painted frame to the click) leaves out although it is paid. A session's spacing is its mean, so a break moves
  that session only, and the median over sessions resists it. Without a session of two answers: the median
  main-trial response time.
- **Seconds per participant** (the fixed part: consent, instructions, practice and catch trials) = the median over
  completed pilot sessions of session time − main answers × seconds per trial, at least 0. When every session did
  the survey's trials, a participant's planned time is then the pilot's median session time.
- **p per IRI set** = the share of the main answers that chose the target; 0.5, the widest interval, for a set
  without answers. Once live sessions have completed, the answers are theirs (what collection really delivers:
  completed, not pilots, bots or excluded, as the estimates count them); before that, the pilot's (all pilot
  sessions, finished or not). ``assumptions.answers`` and each set's ``p_source`` say which.
- **Design effects per set and per design.** A design effect measured under one design does not carry over to
  another: it grows with the trials of a set one participant answers (m) and with the ratings of one item (r),
  deff = 1 + ρ_P (m − 1) + ρ_I (r − 1). From the same answers, stats.adaptive.cluster_correlations splits each
  set's design effect into its participant and item correlations ρ_P and ρ_I; a set with fewer than MIN_ANSWERS
  answers (or whose answers all agree) takes the answer-weighted mean of the others, else 0 (``icc_source``).
  plan_budget then plans each design at its own m and r: fixed N at m ≈ trials per participant ÷ sets and r = N,
  adaptive collection replayed block by block (m from 2 up to all of a participant's trials once one set is left).
  ``assumptions.design_effect`` is the mean design effect measured (1 without one), for reference.

What is entered wins over the pilot, and the pilot over the defaults (``DEFAULT_SECONDS_PER_TRIAL`` and
``DEFAULT_SECONDS_PER_PARTICIPANT``, with a warning); the plan says which source each assumption came from.

The plan's trial lists: a participant does the survey's main trials per list (their mean over its lists; an
adaptive survey's lists are blocks, and a participant does ``blocks_per_participant`` of them); fixed N adds
participants in whole rounds of one per list, so every list keeps the same N. Adaptive collection is planned with
DEFAULT_SESSIONS_IN_FLIGHT sessions under way and the survey's re-estimation cadence (``precision_every``).

The forecast (``survey_forecast``) reads the adaptive state enrollment keeps (surveys.services.adaptive): per IRI
set the answers still needed at its current alignment and design effect, and the participants and cost they
take; it says when the cap or the lists' free places cannot hold them.
"""
from __future__ import annotations

import math
import statistics

import numpy as np
from django.conf import settings
from django.db.models import Count

from backend.exceptions import ApplicationError
from stats.adaptive.blocks import BLOCK_TRIALS
from stats.adaptive.forecast import answers_per_cluster, design_effect_expected
from stats.adaptive.interval import cluster_correlations, condition_answers_needed
from stats.adaptive.planner import (
    DEFAULT_DESIGN_EFFECT,
    FEE_RANGE,
    PROLIFIC_RATES,
    RATE_POSITIVE,
    WORST_CASE_P,
    plan_budget,
)
from stats.adaptive.stopping import MIN_ANSWERS
from surveys.counted_answers import Purpose, answers_counted, sessions_counted
from surveys.models import Participant, Slot, Survey, Trial, TrialList
from surveys.services.adaptive import adaptive_outcome

DEFAULT_SECONDS_PER_TRIAL = 5.0
DEFAULT_SECONDS_PER_PARTICIPANT = 120.0
# Sessions under way at once while adaptive collection runs (their answers arrive after the estimate that stops
# it); what bench/adaptive.py simulates. The plan says it assumed this.
DEFAULT_SESSIONS_IN_FLIGHT = 8

NO_PILOT_TIMES = (
    "No completed pilot session: assumed {trial:g} s per trial and {fixed:g} s per participant; run a pilot "
    "(the survey's pilot link) or enter your own figures."
)
FEW_ANSWERS = "p: the {source} share for {names} rests on fewer than {n} answers; treat it as a rough guess."
SOURCE_WORDS = {"pilot": "pilot's", "live": "live sessions'", "default": "pilot's"}
NO_ANSWERS = {
    "pilot": "p: no pilot answers for {names}; planned at p = 0.5, the widest interval.",
    "default": "p: no pilot answers for {names}; planned at p = 0.5, the widest interval.",
    "live": "p: no live answers yet for {names}; planned at p = 0.5, the widest interval.",
}
PLACES_SHORT = (
    "ratings_per_list: the survey's lists hold {n} ratings each; {names} need {needed} for this goal "
    "(adaptive collection cannot reach it without a higher N or a wider goal)."
)
P_COUNT = "p: give one expected alignment for every IRI set, or one per set ({k} sets); got {got}"
CAP_ROOM = "the cap of {cap} participants leaves room for {room} more, and about {needed} are still needed"
PLACES_ROOM = "{name} needs {needed} more answers and its trial lists' free places hold {places}"
STOPPED_SHORT = "collection stopped ({reason}) before every IRI set reached the goal"


def prolific_pay_rates() -> dict:
    """The Prolific workspace's currency (PROLIFIC_CURRENCY) with its symbol and its minimum and recommended hourly
    pay (stats.adaptive.PROLIFIC_RATES): what the planner, the forecast and the draft form use."""
    return {"currency": settings.PROLIFIC_CURRENCY, **PROLIFIC_RATES[settings.PROLIFIC_CURRENCY]}


# ---------------------------------------------------------------------------------------------
# Sessions' figures


def _sessions_times(*, survey: Survey, purpose: Purpose) -> dict:
    """Session times and trial spacing of the completed sessions of ``purpose`` (PILOT_TIME or LIVE_TIME; see the
    module docstring)."""
    sessions = sessions_counted(survey=survey, purpose=purpose)
    done = list(sessions.filter(completed_at__isnull=False).values_list("pk", "created_at", "completed_at"))
    if not done:
        return {"sessions": 0, "session_seconds": None, "seconds_per_trial": None, "seconds_per_participant": None,
                "seconds_per_trial_method": ""}
    answers: dict[int, list] = {pk: [] for pk, *_ in done}
    main: dict[int, int] = dict.fromkeys(answers, 0)
    rts = []
    rows = (answers_counted(survey=survey, purpose=purpose, session_ids=list(answers))
            .values_list("participant_id", "created_at", "trial__kind", "rt_ms"))
    for pk, at, kind, rt_ms in rows:
        answers[pk].append(at)
        if kind == Trial.Kind.MAIN:
            main[pk] += 1
            rts.append(rt_ms)
    spacings = [(max(ts) - min(ts)).total_seconds() / (len(ts) - 1) for ts in answers.values() if len(ts) >= 2]
    if spacings:
        per_trial, method = statistics.median(spacings), "spacing of trial answers"
    elif rts:
        per_trial, method = statistics.median(rts) / 1000, "response times"
    else:
        per_trial, method = None, ""
    seconds = {pk: (completed - created).total_seconds() for pk, created, completed in done}
    fixed = None
    if per_trial is not None:
        fixed = max(0.0, statistics.median(seconds[pk] - main[pk] * per_trial for pk in seconds))
    return {"sessions": len(done), "session_seconds": statistics.median(seconds.values()),
            "seconds_per_trial": per_trial, "seconds_per_participant": fixed, "seconds_per_trial_method": method}


def _conditions(survey: Survey) -> list[dict]:
    """The survey's IRI sets in condition order (as in adaptive_state) with their main trials."""
    trials = dict(Trial.objects.filter(survey=survey, kind=Trial.Kind.MAIN).values("iri__job_id")
                  .annotate(n=Count("id")).values_list("iri__job_id", "n"))
    jobs = survey.iri_jobs.order_by("pk").values_list("pk", "name")
    return [{"id": pk, "name": name or f"IRI set {pk}", "trials": trials.get(pk, 0)} for pk, name in jobs]


def _answers_figures(*, survey: Survey, purpose: Purpose, conditions: list[dict]) -> dict:
    """Per IRI set, the main answers that count for ``purpose`` (PILOT or ESTIMATE): answers, alignment, design
    effect, and its participant and item intra-class correlations (stats.adaptive.cluster_correlations); and the
    answer-weighted mean design effect and correlations over the sets with at least MIN_ANSWERS answers (the
    fallback of a set with fewer)."""
    index = {c["id"]: i for i, c in enumerate(conditions)}
    rows = list(answers_counted(survey=survey, purpose=purpose)
                .values_list("participant_id", "trial__iri_id", "trial__iri__job_id", "choice", "trial__target_option"))
    rows = [r for r in rows if r[2] in index]
    arrays = np.array([(p, i, index[j], c == t) for p, i, j, c, t in rows], dtype=np.int64).reshape(-1, 4)
    parts = cluster_correlations(correct=arrays[:, 3], participants=arrays[:, 0], items=arrays[:, 1],
                                 conditions=arrays[:, 2], n_conditions=len(conditions))
    alignment = np.bincount(arrays[:, 2], weights=arrays[:, 3], minlength=len(conditions))
    enough = [c for c in parts if c.n_answers >= MIN_ANSWERS]

    def pooled(name: str) -> float | None:
        known = [(getattr(c, name), c.n_answers) for c in enough if getattr(c, name) is not None]
        return sum(v * n for v, n in known) / sum(n for _, n in known) if known else None

    design_effect = pooled("design_effect")
    return {
        "conditions": [{"answers": c.n_answers, "alignment": float(alignment[i] / c.n_answers) if c.n_answers else None,
                        "design_effect": round(c.design_effect, 4),
                        "answers_per_participant": round(c.answers_per_participant, 3),
                        "icc_participant": None if c.participant is None else round(c.participant, 4),
                        "icc_item": None if c.item is None else round(c.item, 4)}
                       for i, c in enumerate(parts)],
        "design_effect": round(design_effect, 4) if design_effect is not None else 1.0,
        "design_effect_sets": len(enough),
        "icc_participant": pooled("participant"),
        "icc_item": pooled("item"),
    }


def survey_pilot_figures(*, survey: Survey) -> dict:
    """What the survey's pilot says (module docstring): its completed sessions' median session time, seconds per
    trial and fixed seconds per participant; per IRI set its answers, alignment, design effect and intra-class
    correlations; the mean design effect."""
    conditions = _conditions(survey)
    answers = _answers_figures(survey=survey, purpose=Purpose.PILOT, conditions=conditions)
    return {
        **_sessions_times(survey=survey, purpose=Purpose.PILOT_TIME),
        **answers,
        "conditions": [{**c, **a} for c, a in zip(conditions, answers["conditions"])],
    }


def survey_answer_figures(*, survey: Survey) -> dict:
    """The answers the planner and the forecast plan from, with their source: the completed live sessions once there
    are any (what collection has really delivered), else the pilot's sessions, else none (``source`` "default").
    Per IRI set: answers, alignment, design effect, intra-class correlations (see _answers_figures)."""
    conditions = _conditions(survey)
    count = sessions_counted(survey=survey, purpose=Purpose.ESTIMATE).count()
    if count:
        figures, source = _answers_figures(survey=survey, purpose=Purpose.ESTIMATE, conditions=conditions), "live"
    else:
        count = sessions_counted(survey=survey, purpose=Purpose.PILOT).count()
        figures, source = _answers_figures(survey=survey, purpose=Purpose.PILOT, conditions=conditions), "pilot"
        if not any(c["answers"] for c in figures["conditions"]):
            source = "default"
    return {**figures, "source": source, "sessions": count,
            "conditions": [{**c, **a} for c, a in zip(conditions, figures["conditions"])]}


def _set_correlations(figures: dict) -> tuple[list[float], list[float], list[str]]:
    """Per set: ρ_P and ρ_I, with their source. A set with MIN_ANSWERS answers and its own estimate keeps it; the
    others take the answer-weighted mean of those sets, else 0 (answers as if independent, the default)."""
    rho_p, rho_i, sources = [], [], []
    for c in figures["conditions"]:
        own = c["answers"] >= MIN_ANSWERS
        p_own, i_own = c["icc_participant"] if own else None, c["icc_item"] if own else None
        rho_p.append(p_own if p_own is not None else (figures["icc_participant"] or 0.0))
        rho_i.append(i_own if i_own is not None else (figures["icc_item"] or 0.0))
        if figures["source"] == "default" or (p_own is None and i_own is None and figures["icc_participant"] is None
                                              and figures["icc_item"] is None):
            sources.append("default")
        elif p_own is not None or i_own is not None:
            sources.append(figures["source"])
        else:
            sources.append(f"{figures['source']}, pooled over sets")
    return rho_p, rho_i, sources


# ---------------------------------------------------------------------------------------------
# The planner


def _application_error(exc: ValueError) -> ApplicationError:
    message = str(exc)
    return ApplicationError(message, extra={"field": message.split(":", 1)[0]})


def _per_set_p(p, k: int) -> list[float]:
    values = [p] if isinstance(p, (int, float)) else list(p)
    if len(values) == 1:
        values = values * k
    if len(values) != k:
        raise ApplicationError(P_COUNT.format(k=k, got=len(values)), extra={"field": "p"})
    return values


def _survey_lists(survey: Survey) -> tuple[int, int]:
    """(trial lists of the fixed design, main trials a participant does, at least 1). A fixed survey: its lists,
    and their mean main trials. An adaptive survey's lists are blocks, several per participant
    (``blocks_per_participant`` of its state): a participant does that many blocks' trials, and the fixed design
    it is compared with would cut its trials into lists of that many."""
    lists = TrialList.objects.filter(survey=survey).count() or 1
    main = Trial.objects.filter(survey=survey, kind=Trial.Kind.MAIN).count()
    state = survey.adaptive if survey.precision_goal is not None else None
    if state is not None:
        blocks = state.blocks_per_participant
        per_participant = max(1, min(main, round(blocks * main / lists)))
        return max(1, math.ceil(main / per_participant)), per_participant
    return lists, max(1, round(main / lists))


def survey_plan(
    *,
    survey: Survey,
    half_width: float,
    rate_per_hour: float | None = None,
    fee: float = 0.0,
    seconds_per_trial: float | None = None,
    seconds_per_participant: float | None = None,
    p: float | list[float] | None = None,
    cap_participants: int | None = None,
) -> dict:
    """Participants and cost to bring every IRI set's 95 % half-width to ``half_width``, under fixed N and under
    adaptive allocation (stats.adaptive.plan_budget on the survey's sets, items and lists). Assumptions not given
    come from the answers collected (the completed live sessions once there are any, else the pilot), then from
    defaults; ``assumptions`` and each set's ``p_source`` and ``icc_source`` say which. Each design is planned
    with the design effect it implies (the sets' participant and item correlations at its trials per participant
    and ratings per item; ``design_effect_fixed`` and ``design_effect_adaptive`` per set). The cap defaults to the
    survey's ``max_participants``. Bad input (a half-width outside (0, 0.5), a rate ≤ 0, a fee outside [0, 1), a
    cap below one round of the lists, a goal the cap cannot reach, ...) is an ApplicationError (400) naming the
    field. Pay is in the Prolific workspace's currency; no rate: the rate Prolific recommends in it."""
    rates = prolific_pay_rates()
    rate_per_hour = rates["recommended"] if rate_per_hour is None else rate_per_hour
    pilot = survey_pilot_figures(survey=survey)
    answers = survey_answer_figures(survey=survey)
    warnings: list[str] = []

    def assumption(entered, from_pilot, default):
        if entered is not None:
            return entered, "entered"
        if from_pilot is not None:
            return from_pilot, "pilot"
        return default, "default"

    trial_s, trial_source = assumption(seconds_per_trial, pilot["seconds_per_trial"], DEFAULT_SECONDS_PER_TRIAL)
    fixed_s, fixed_source = assumption(seconds_per_participant, pilot["seconds_per_participant"],
                                       DEFAULT_SECONDS_PER_PARTICIPANT)
    if "default" in (trial_source, fixed_source):
        warnings.append(NO_PILOT_TIMES.format(trial=DEFAULT_SECONDS_PER_TRIAL, fixed=DEFAULT_SECONDS_PER_PARTICIPANT))
    conditions = answers["conditions"]
    source = answers["source"]
    if p is not None:
        expected, p_sources = _per_set_p(p, len(conditions)), ["entered"] * len(conditions)
    else:
        expected = [c["alignment"] if c["answers"] else WORST_CASE_P for c in conditions]
        p_sources = [source if c["answers"] else "default" for c in conditions]
        unanswered = [c["name"] for c in conditions if not c["answers"]]
        few = [c["name"] for c in conditions if 0 < c["answers"] < MIN_ANSWERS]
        if unanswered:
            warnings.append(NO_ANSWERS[source].format(names=", ".join(unanswered)))
        if few:
            warnings.append(FEW_ANSWERS.format(source=SOURCE_WORDS[source], names=", ".join(few), n=MIN_ANSWERS))
    rho_p, rho_i, icc_sources = _set_correlations(answers)
    design_effect, deff_source = ((answers["design_effect"], source) if answers["design_effect_sets"]
                                  else (DEFAULT_DESIGN_EFFECT, "default"))
    cap, cap_source = assumption(cap_participants, survey.max_participants, None)
    n_lists, per_participant = _survey_lists(survey)
    every = survey.precision_every if survey.precision_goal is not None else 1
    try:
        plan = plan_budget(
            p=expected, half_width=half_width, seconds_per_trial=trial_s, seconds_per_participant=fixed_s,
            trials_per_participant=per_participant, rate_per_hour=rate_per_hour, fee=fee,
            participants_per_list=n_lists, cap_participants=cap, currency=rates["currency"],
            items_per_set=[max(1, c["trials"]) for c in conditions], icc_participant=rho_p, icc_item=rho_i,
            estimate_every=max(1, every or 1), sessions_in_flight=DEFAULT_SESSIONS_IN_FLIGHT,
        )
    except ValueError as exc:
        raise _application_error(exc) from exc
    n_needed = [math.ceil(a / c["trials"]) if c["trials"] else None for a, c in zip(plan.answers_needed, conditions)]
    n_design = max((n for n in n_needed if n is not None), default=0)
    places_short = survey.precision_goal is not None and n_design > survey.ratings_per_list
    if places_short:
        short = [c["name"] for c, n in zip(conditions, n_needed) if n and n > survey.ratings_per_list]
        warnings.append(PLACES_SHORT.format(n=survey.ratings_per_list, names=", ".join(short), needed=n_design))
    return {
        "survey": survey.slug,
        "half_width": half_width,
        "rate_per_hour": rate_per_hour,
        "currency": rates["currency"],
        "currency_symbol": rates["symbol"],
        "fee": fee,
        "assumptions": {
            "seconds_per_trial": {"value": float(trial_s), "source": trial_source},
            "seconds_per_participant": {"value": float(fixed_s), "source": fixed_source},
            "design_effect": {"value": design_effect, "source": deff_source},
            "cap_participants": {"value": cap, "source": cap_source if cap is not None else "none"},
            "trials_per_participant": {"value": per_participant, "source": "survey"},
            "trial_lists": {"value": n_lists, "source": "survey"},
            "sessions_in_flight": {"value": DEFAULT_SESSIONS_IN_FLIGHT, "source": "default"},
            "answers": {"value": answers["sessions"], "source": source},
        },
        "pilot": {k: pilot[k] for k in ("sessions", "session_seconds", "seconds_per_trial", "seconds_per_participant",
                                        "seconds_per_trial_method", "design_effect", "design_effect_sets")},
        "conditions": [
            {"id": c["id"], "name": c["name"], "p": float(q), "p_source": p_source, "pilot_answers": pc["answers"],
             "answers": c["answers"], "trials": c["trials"], "answers_needed": needed, "ratings_per_list_needed": n,
             "icc_participant": round(a, 4), "icc_item": round(b, 4), "icc_source": icc_source,
             "design_effect_fixed": d_fixed, "design_effect_adaptive": d_adaptive,
             "trials_per_participant_adaptive": m}
            for c, pc, q, p_source, needed, n, a, b, icc_source, d_fixed, d_adaptive, m in zip(
                conditions, pilot["conditions"], expected, p_sources, plan.answers_needed, n_needed, rho_p, rho_i,
                icc_sources, plan.design_effect_fixed, plan.design_effect_adaptive,
                plan.answers_per_participant_adaptive)
        ],
        "seconds_per_participant": plan.seconds_per_participant,
        "pay_per_participant": plan.pay_per_participant,
        "cost_per_participant": plan.cost_per_participant,
        "fixed": {"answers": plan.answers_fixed, "participants": plan.participants_fixed,
                  "ratings_per_list": plan.ratings_fixed, "cost": plan.cost_fixed,
                  "reachable": plan.fixed_reachable},
        "adaptive": {"answers": plan.answers_adaptive, "participants": plan.participants_adaptive,
                     "ratings_per_list": n_design, "cost": plan.cost_adaptive, "reachable": not places_short},
        "warnings": plan.warnings + warnings,
    }


# ---------------------------------------------------------------------------------------------
# The live forecast


def _pay(seconds: float, rate_per_hour: float) -> float:
    """plan_budget's pay rule: the rate for the time, rounded up to the penny."""
    return math.ceil(round(rate_per_hour * seconds / 3600 * 100, 9)) / 100


def _seconds_per_participant(survey: Survey, per_participant: int) -> tuple[float, str]:
    """Time a participant takes: the live sessions' median, else the pilot's plan time, else the defaults."""
    live = _sessions_times(survey=survey, purpose=Purpose.LIVE_TIME)
    if live["sessions"]:
        return live["session_seconds"], f"median of {live['sessions']} completed live sessions"
    pilot = _sessions_times(survey=survey, purpose=Purpose.PILOT_TIME)
    if pilot["seconds_per_trial"] is not None:
        return (per_participant * pilot["seconds_per_trial"] + pilot["seconds_per_participant"],
                f"pilot ({pilot['sessions']} sessions)")
    return per_participant * DEFAULT_SECONDS_PER_TRIAL + DEFAULT_SECONDS_PER_PARTICIPANT, "default (no sessions yet)"


def survey_seconds_per_participant(*, survey: Survey) -> tuple[float, str]:
    """The time one participant takes, with its source: the completed live sessions' median, else the pilot's, else
    the planner's defaults (what a Prolific draft's estimated time starts from)."""
    _, per_participant = _survey_lists(survey)
    return _seconds_per_participant(survey, per_participant)


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
    rate_per_hour = rates["recommended"] if rate_per_hour is None else rate_per_hour
    if not 0 < rate_per_hour or not math.isfinite(rate_per_hour):
        raise ApplicationError(RATE_POSITIVE.format(value=rate_per_hour), extra={"field": "rate_per_hour"})
    if not 0 <= fee < 1:
        raise ApplicationError(FEE_RANGE.format(value=fee), extra={"field": "fee"})
    state = survey.adaptive
    if survey.precision_goal is None or state is None:
        return None
    goal = survey.precision_goal
    names = dict(survey.iri_jobs.values_list("pk", "name"))
    lists = {int(k): v for k, v in state.lists.items()}
    free = dict(Slot.objects.filter(survey=survey, is_pilot=False, filled_at__isnull=True)
                .values("trial_list_id").annotate(n=Count("id")).values_list("trial_list_id", "n"))
    figures = survey_answer_figures(survey=survey)
    rho_p, rho_i, icc_sources = _set_correlations(figures)
    blocks = state.blocks_per_participant
    _, per_session = _survey_lists(survey)
    conditions = []
    for c, job in enumerate(state.conditions):
        alignment, n = state.alignment[c], state.n_answers[c]
        sizes = sorted((per_set[c] for per_set in lists.values() if per_set[c]), reverse=True)
        most = sum(sizes[:blocks])  # a participant holds one place in each of their blocks
        measured = figures["conditions"][c] if c < len(figures["conditions"]) else None
        # the design effect at the end: the sets' correlations at this set's trials per participant so far (or, before
        # any, the most it can get) and the ratings per item its need implies; never below the live estimate
        open_sets = max(1, sum(not d for d in state.done))
        per_participant = (measured["answers_per_participant"] if measured and measured.get("answers_per_participant")
                           else min(max(1, most), max(BLOCK_TRIALS, per_session / open_sets)))
        items = sum(per_set[c] for per_set in lists.values()) or 1
        p_planned = WORST_CASE_P if alignment is None else alignment
        design_effect = state.design_effect[c]
        for _ in range(5):  # fixed point: the need sets the ratings per item, which set the design effect
            needed = max(MIN_ANSWERS, condition_answers_needed(p=p_planned, half_width=goal,
                                                               design_effect=design_effect))
            design_effect = max(state.design_effect[c], design_effect_expected(
                icc_participant=max(0.0, rho_p[c]), icc_item=max(0.0, rho_i[c]),
                answers_per_participant=per_participant,
                answers_per_item=answers_per_cluster(answers=max(needed, n), clusters=items)))
        needed = max(MIN_ANSWERS, condition_answers_needed(p=p_planned, half_width=goal, design_effect=design_effect))
        still = 0 if state.done[c] else max(needed - n, 1)
        conditions.append({
            "id": job, "name": names.get(job) or f"IRI set {job}", "half_width": state.half_width[c], "goal": goal,
            "n_answers": n, "alignment": alignment, "design_effect": state.design_effect[c], "done": state.done[c],
            "design_effect_planned": round(design_effect, 4), "icc_participant": round(rho_p[c], 4),
            "icc_item": round(rho_i[c], 4), "icc_source": icc_sources[c],
            "answers_needed": needed, "answers_still_needed": still,
            "places_free": sum(per_set[c] * free.get(list_id, 0) for list_id, per_set in lists.items()),
            "most_per_list": most,
        })
    per_participant = per_session
    still_total = sum(c["answers_still_needed"] for c in conditions)
    participants = max([math.ceil(still_total / per_participant)]
                       + [math.ceil(c["answers_still_needed"] / c["most_per_list"]) for c in conditions if c["most_per_list"]])
    seconds, seconds_source = _seconds_per_participant(survey, per_participant)
    pay = _pay(seconds, rate_per_hour)
    cost_each = round(pay * (1 + fee), 4)

    reasons = []
    outcome = adaptive_outcome(survey=survey)
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
    met = not still_total
    if met:
        note = "Every IRI set has reached the goal."
    elif reasons:
        note = "The goal cannot be met: " + "; ".join(reasons) + "."
    else:
        cost = f"{rates['symbol']}{participants * cost_each:,.2f}"
        note = f"About {participants} more participants ({cost}) to reach the goal."
    return {
        "goal": goal,
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
        "cap_participants": cap,
        "cap_room": room,
        "completed": state.completed,
        "stop": state.stop,
        "reason": state.reason,
        "outcome": outcome,  # why collection ended, and which sets missed the goal by how much
        "answers_source": figures["source"],  # where the correlations came from: "live", "pilot" or "default"
        "answers_sessions": figures["sessions"],
        "estimated_at": state.estimated_at,
        "met": met,
        "reachable": not reasons,
        "note": note,
    }
