"""The budget planner: participants and cost to bring every IRI set's interval to a goal half-width, under fixed N
and under adaptive collection (surveys.planning's docstring says where its assumptions come from)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from backend.exceptions import ApplicationError
from stats.adaptive.planner import DEFAULT_DESIGN_EFFECT, WORST_CASE_P, BudgetPlan, plan_budget
from stats.adaptive.stopping import MIN_ANSWERS
from surveys.models import Survey

from .figures import (
    DEFAULT_SECONDS_PER_PARTICIPANT,
    DEFAULT_SECONDS_PER_TRIAL,
    DEFAULT_SESSIONS_IN_FLIGHT,
    prolific_pay_rates,
    set_correlations,
    survey_answer_figures,
    survey_lists,
    survey_pilot_figures,
)

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
PILOT_FIGURES = ("sessions", "session_seconds", "seconds_per_trial", "seconds_per_participant",
                 "seconds_per_trial_method", "design_effect", "design_effect_sets")


@dataclass(frozen=True)
class _PlanInputs:
    """What plan_budget plans from, each assumption with its source ("entered", "pilot", "live", "default", ...)."""

    seconds_per_trial: float
    trial_source: str
    seconds_per_participant: float
    fixed_source: str
    expected: list[float]  # p per IRI set
    p_sources: list[str]
    rho_p: list[float]  # the participant and item correlations per IRI set
    rho_i: list[float]
    icc_sources: list[str]
    cap: int | None
    cap_source: str
    n_lists: int
    per_participant: int


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
    inputs = _plan_inputs(survey=survey, pilot=pilot, answers=answers, seconds_per_trial=seconds_per_trial,
                          seconds_per_participant=seconds_per_participant, p=p, cap_participants=cap_participants,
                          warnings=warnings)
    conditions = answers["conditions"]
    plan = _budget(survey=survey, inputs=inputs, conditions=conditions, half_width=half_width,
                   rate_per_hour=rate_per_hour, fee=fee, currency=rates["currency"])
    n_needed = [math.ceil(a / c["trials"]) if c["trials"] else None for a, c in zip(plan.answers_needed, conditions)]
    n_design = max((n for n in n_needed if n is not None), default=0)
    places_short = _places_short(survey=survey, conditions=conditions, n_needed=n_needed, n_design=n_design,
                                 warnings=warnings)
    return {
        "survey": survey.slug,
        "half_width": half_width,
        "rate_per_hour": rate_per_hour,
        "currency": rates["currency"],
        "currency_symbol": rates["symbol"],
        "fee": fee,
        "assumptions": _assumptions(inputs=inputs, answers=answers),
        "pilot": {k: pilot[k] for k in PILOT_FIGURES},
        "conditions": _plan_conditions(inputs=inputs, answers=answers, pilot=pilot, plan=plan, n_needed=n_needed),
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


def _assumption(entered, from_pilot, default) -> tuple:
    """(value, source): what is entered wins over the pilot, and the pilot over the default."""
    if entered is not None:
        return entered, "entered"
    if from_pilot is not None:
        return from_pilot, "pilot"
    return default, "default"


def _plan_inputs(*, survey: Survey, pilot: dict, answers: dict, seconds_per_trial: float | None,
                 seconds_per_participant: float | None, p, cap_participants: int | None,
                 warnings: list[str]) -> _PlanInputs:
    """The assumptions the plan rests on, each from what is entered, else the pilot or the answers, else the
    defaults; a warning for the times and the alignments that rest on nothing or on few answers."""
    trial_s, trial_source = _assumption(seconds_per_trial, pilot["seconds_per_trial"], DEFAULT_SECONDS_PER_TRIAL)
    fixed_s, fixed_source = _assumption(seconds_per_participant, pilot["seconds_per_participant"],
                                        DEFAULT_SECONDS_PER_PARTICIPANT)
    if "default" in (trial_source, fixed_source):
        warnings.append(NO_PILOT_TIMES.format(trial=DEFAULT_SECONDS_PER_TRIAL, fixed=DEFAULT_SECONDS_PER_PARTICIPANT))
    expected, p_sources = _expected_alignments(answers=answers, p=p, warnings=warnings)
    rho_p, rho_i, icc_sources = set_correlations(answers)
    cap, cap_source = _assumption(cap_participants, survey.max_participants, None)
    n_lists, per_participant = survey_lists(survey)
    return _PlanInputs(
        seconds_per_trial=trial_s, trial_source=trial_source, seconds_per_participant=fixed_s,
        fixed_source=fixed_source, expected=expected, p_sources=p_sources, rho_p=rho_p, rho_i=rho_i,
        icc_sources=icc_sources, cap=cap, cap_source=cap_source, n_lists=n_lists, per_participant=per_participant,
    )


def _expected_alignments(*, answers: dict, p, warnings: list[str]) -> tuple[list[float], list[str]]:
    """p per IRI set with its source: as entered, else the set's share of answers that chose the target, else
    WORST_CASE_P (0.5, the widest interval); a warning names the sets without answers or with few."""
    conditions = answers["conditions"]
    if p is not None:
        return _per_set_p(p, len(conditions)), ["entered"] * len(conditions)
    source = answers["source"]
    expected = [c["alignment"] if c["answers"] else WORST_CASE_P for c in conditions]
    p_sources = [source if c["answers"] else "default" for c in conditions]
    unanswered = [c["name"] for c in conditions if not c["answers"]]
    few = [c["name"] for c in conditions if 0 < c["answers"] < MIN_ANSWERS]
    if unanswered:
        warnings.append(NO_ANSWERS[source].format(names=", ".join(unanswered)))
    if few:
        warnings.append(FEW_ANSWERS.format(source=SOURCE_WORDS[source], names=", ".join(few), n=MIN_ANSWERS))
    return expected, p_sources


def _per_set_p(p, k: int) -> list[float]:
    values = [p] if isinstance(p, (int, float)) else list(p)
    if len(values) == 1:
        values = values * k
    if len(values) != k:
        raise ApplicationError(P_COUNT.format(k=k, got=len(values)), extra={"field": "p"})
    return values


def _budget(*, survey: Survey, inputs: _PlanInputs, conditions: list[dict], half_width: float,
            rate_per_hour: float, fee: float, currency: str) -> BudgetPlan:
    """stats.adaptive.plan_budget on the survey's sets, items and lists; a bad value is a 400 naming its field."""
    every = survey.precision_every if survey.precision_goal is not None else 1
    try:
        return plan_budget(
            p=inputs.expected, half_width=half_width, seconds_per_trial=inputs.seconds_per_trial,
            seconds_per_participant=inputs.seconds_per_participant,
            trials_per_participant=inputs.per_participant, rate_per_hour=rate_per_hour, fee=fee,
            participants_per_list=inputs.n_lists, cap_participants=inputs.cap, currency=currency,
            items_per_set=[max(1, c["trials"]) for c in conditions], icc_participant=inputs.rho_p,
            icc_item=inputs.rho_i, estimate_every=max(1, every or 1), sessions_in_flight=DEFAULT_SESSIONS_IN_FLIGHT,
        )
    except ValueError as exc:
        raise _application_error(exc) from exc


def _application_error(exc: ValueError) -> ApplicationError:
    message = str(exc)
    return ApplicationError(message, extra={"field": message.split(":", 1)[0]})


def _places_short(*, survey: Survey, conditions: list[dict], n_needed: list[int | None], n_design: int,
                  warnings: list[str]) -> bool:
    """Whether an adaptive survey's lists hold fewer ratings than the goal needs (with a warning naming the sets)."""
    places_short = survey.precision_goal is not None and n_design > survey.ratings_per_list
    if places_short:
        short = [c["name"] for c, n in zip(conditions, n_needed) if n and n > survey.ratings_per_list]
        warnings.append(PLACES_SHORT.format(n=survey.ratings_per_list, names=", ".join(short), needed=n_design))
    return places_short


def _assumptions(*, inputs: _PlanInputs, answers: dict) -> dict:
    """Each assumption the plan made, with its source."""
    source = answers["source"]
    design_effect, deff_source = ((answers["design_effect"], source) if answers["design_effect_sets"]
                                  else (DEFAULT_DESIGN_EFFECT, "default"))
    cap = inputs.cap
    return {
        "seconds_per_trial": {"value": float(inputs.seconds_per_trial), "source": inputs.trial_source},
        "seconds_per_participant": {"value": float(inputs.seconds_per_participant), "source": inputs.fixed_source},
        "design_effect": {"value": design_effect, "source": deff_source},
        "cap_participants": {"value": cap, "source": inputs.cap_source if cap is not None else "none"},
        "trials_per_participant": {"value": inputs.per_participant, "source": "survey"},
        "trial_lists": {"value": inputs.n_lists, "source": "survey"},
        "sessions_in_flight": {"value": DEFAULT_SESSIONS_IN_FLIGHT, "source": "default"},
        "answers": {"value": answers["sessions"], "source": source},
    }


def _plan_conditions(*, inputs: _PlanInputs, answers: dict, pilot: dict, plan: BudgetPlan,
                     n_needed: list[int | None]) -> list[dict]:
    """Per IRI set: its p, answers and trials, the answers and ratings per list it needs, its correlations and the
    design effect of each design."""
    return [
        {"id": c["id"], "name": c["name"], "p": float(q), "p_source": p_source, "pilot_answers": pc["answers"],
         "answers": c["answers"], "trials": c["trials"], "answers_needed": needed, "ratings_per_list_needed": n,
         "icc_participant": round(a, 4), "icc_item": round(b, 4), "icc_source": icc_source,
         "design_effect_fixed": d_fixed, "design_effect_adaptive": d_adaptive,
         "trials_per_participant_adaptive": m}
        for c, pc, q, p_source, needed, n, a, b, icc_source, d_fixed, d_adaptive, m in zip(
            answers["conditions"], pilot["conditions"], inputs.expected, inputs.p_sources, plan.answers_needed,
            n_needed, inputs.rho_p, inputs.rho_i, inputs.icc_sources, plan.design_effect_fixed,
            plan.design_effect_adaptive, plan.answers_per_participant_adaptive)
    ]
