"""A survey's answers as arrays, with the exclusion rules applied: what the report and the exports read.

exclusion_rules_for() gives the survey's thresholds (overridable per report, out-of-range values refused);
survey_data_load() reads the answers, trials and participants through surveys.counted_answers and results.selectors
and marks which answers each rule excludes (stats.exclusions).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backend.exceptions import ApplicationError
from stats.exclusions import (
    KIND_MAIN,
    KIND_PRACTICE,
    ExclusionRules,
    exclusions_apply,
    participant_rules_apply,
)
from surveys.counted_answers import ANSWER_SCOPES, Purpose, survey_answer_arrays, survey_mistimed_pairs
from surveys.models import Survey

from .selectors import (
    CONDITION_FIELDS,
    survey_iri_sets,
    survey_participant_table,
    survey_trial_table,
)

ONE_SIDE_OFF = "off"
ONE_SIDE_FRACTION_RANGE = (
    "one_side_max_fraction must be a share above 1/{k} and at most 1 on a survey with {k} screen positions "
    "(at or below 1/{k} every participant would be one-sided), or 'off'; got {value!r}."
)
ONE_SIDE_MIN_TRIALS_RANGE = "one_side_min_trials must be a whole number of at least 1; got {value!r}."
CATCH_ACCURACY_RANGE = "catch_min_accuracy must be a share between 0 and 1; got {value!r}."
RT_FLOOR_RANGE = "rt_floor_ms must be a number of milliseconds, 0 or more; got {value!r}."


def _one_side_fraction(value, *, n_positions: int) -> float | None:
    """A share in (1/n_positions, 1], or None for 'off'; anything else is an ApplicationError (a 400, a command error)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in (ONE_SIDE_OFF, "none", "")):
        return None
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        raise ApplicationError(ONE_SIDE_FRACTION_RANGE.format(k=n_positions, value=value), extra={"field": "one_side_max_fraction"}) from None
    if not (1 / n_positions < fraction <= 1):  # NaN fails too
        raise ApplicationError(ONE_SIDE_FRACTION_RANGE.format(k=n_positions, value=value), extra={"field": "one_side_max_fraction"})
    return fraction


def exclusion_rules_for(*, survey: Survey, **overrides) -> ExclusionRules:
    """The survey's own thresholds (where it has them), overridable per report; out-of-range values are refused.

    An override of None keeps the survey's value; one_side_max_fraction="off" switches the one-sided rule off.
    The one-sided share must lie in (1/k, 1] for k screen positions: (0.5, 1] on 2AFC, (1/3, 1] on clustering.
    """
    base = {
        **ANSWER_SCOPES[Purpose.REPORT].exclusion_switches(),  # which sessions are data: the one rule
        "catch_min_accuracy": float(survey.catch_min_accuracy),
        "rt_floor_ms": float(survey.rt_floor_ms),
        "one_side_max_fraction": survey.one_side_max_fraction,
        "one_side_min_trials": survey.one_side_min_trials,
    }
    base.update({k: v for k, v in overrides.items() if v is not None})
    base["one_side_max_fraction"] = _one_side_fraction(base["one_side_max_fraction"], n_positions=survey.n_options)
    min_trials = base["one_side_min_trials"]
    if isinstance(min_trials, bool) or not isinstance(min_trials, (int, np.integer)) or min_trials < 1:
        raise ApplicationError(ONE_SIDE_MIN_TRIALS_RANGE.format(value=min_trials), extra={"field": "one_side_min_trials"})
    if not 0 <= base["catch_min_accuracy"] <= 1:
        raise ApplicationError(CATCH_ACCURACY_RANGE.format(value=base["catch_min_accuracy"]), extra={"field": "catch_min_accuracy"})
    if not base["rt_floor_ms"] >= 0:
        raise ApplicationError(RT_FLOOR_RANGE.format(value=base["rt_floor_ms"]), extra={"field": "rt_floor_ms"})
    return ExclusionRules(**{**base, "one_side_min_trials": int(min_trials)})


@dataclass
class SurveyData:
    """Everything the report needs, as arrays aligned on answers (a_*), trials (t_*) and participants."""

    survey: Survey
    answers: dict
    trials: dict
    people: dict
    t_row: np.ndarray  # answer -> trial row
    p_row: np.ndarray  # answer -> participant row
    correct: np.ndarray
    included: np.ndarray
    exclusion_counts: list
    excluded_flags: dict  # rule -> bool per answer (for exports)
    conditions: list[dict]
    trial_condition: np.ndarray  # trial row -> condition index (-1: no IRI)
    rules: ExclusionRules
    n_positions: int = 2  # screen positions of the survey's main and catch trials (2AFC 2, clustering 3)
    participant_rules: dict = field(default_factory=dict)  # rule -> bool per participant row (participant-level rules)


def _rows_of(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    rows = np.searchsorted(keys, values)
    if values.size and (rows.max() >= keys.size or (keys[rows] != values).any()):
        raise RuntimeError("an answer refers to a trial or participant outside the survey")
    return rows


def _conditions(*, survey: Survey, trials: dict) -> tuple[list[dict], np.ndarray]:
    """Group IRI sets with the same backbone x checkpoint x training x recipe x seed kind x layer."""
    job_ids = sorted({int(j) for j in trials["job"] if j >= 0})
    conditions: list[dict] = []
    by_key: dict[tuple, int] = {}
    job_condition: dict[int, int] = {}
    for job in survey_iri_sets(survey=survey, job_ids=job_ids):
        key = tuple(job[f] for f in CONDITION_FIELDS)
        if key not in by_key:
            by_key[key] = len(conditions)
            conditions.append({"iri_sets": [], "names": [], **{f: job[f] for f in CONDITION_FIELDS}})
        c = by_key[key]
        conditions[c]["iri_sets"].append(job["id"])
        conditions[c]["names"].append(job["name"])
        job_condition[job["id"]] = c
    lookup = np.full(int(trials["job"].max(initial=-1)) + 2, -1, dtype=np.int64)
    for job_id, c in job_condition.items():
        if job_id < lookup.size:
            lookup[job_id] = c
    trial_condition = np.where(trials["job"] >= 0, lookup[np.maximum(trials["job"], 0)], -1)
    return conditions, trial_condition


def survey_data_load(*, survey: Survey, rules: ExclusionRules | None = None, raw_ids: bool = False) -> SurveyData:
    """Everything the report and the exports read; external ids pseudonymised unless raw_ids."""
    rules = rules or exclusion_rules_for(survey=survey)
    answers = survey_answer_arrays(survey=survey)
    trials = survey_trial_table(survey=survey)
    people = survey_participant_table(survey=survey, raw_ids=raw_ids)
    t_row = _rows_of(trials["id"], answers["trial"])
    p_row = _rows_of(people["id"], answers["participant"])
    correct = answers["choice"] == trials["target_option"][t_row]
    kind = trials["kind"][t_row]
    n_positions = int(trials["n_options"][trials["kind"] != KIND_PRACTICE].max(initial=survey.n_options))
    flags = {k: people[k] for k in ("pilot", "bot", "flagged") if k in people}
    flags["completed"] = people["completed"]
    people_rules = participant_rules_apply(
        participant=p_row, kind=kind, correct=correct, participant_flags=flags, rules=rules, n_people=people["id"].size,
        shown_position=answers["shown_position"], n_positions=n_positions,
    )
    included, counts = exclusions_apply(
        participant=p_row, kind=kind, correct=correct, rt_ms=answers["rt_ms"], participant_flags=flags, rules=rules,
        participant_rules=people_rules,
    )
    if survey.task.timed:
        mistimed = _mistimed(survey=survey, answers=answers) & (kind == KIND_MAIN)
        counts.append({"rule": "mistimed", "description": MISTIMED_RULE, "participants": int(np.unique(p_row[mistimed]).size),
                       "answers": int(mistimed.sum()), **({} if survey.exclude_mistimed else {"applies": False})})
        if survey.exclude_mistimed:
            included &= ~mistimed
    excluded_flags = {rule: mask[p_row] for rule, mask in people_rules.items()}
    excluded_flags["rt_floor"] = answers["rt_ms"] < rules.rt_floor_ms  # for the exports: which rule would exclude an answer
    conditions, trial_condition = _conditions(survey=survey, trials=trials)
    return SurveyData(
        survey, answers, trials, people, t_row, p_row, correct, included, counts, excluded_flags, conditions, trial_condition, rules,
        n_positions, people_rules,
    )


MISTIMED_RULE = "answers whose image the browser showed more than one frame off its duration (answer level; survey setting exclude_mistimed)"


def _mistimed(*, survey: Survey, answers: dict) -> np.ndarray:
    """Per answer: flagged as mistimed at completion (surveys.services.session)."""
    pairs = np.array(survey_mistimed_pairs(survey=survey), dtype=np.int64).reshape(-1, 2)
    if not pairs.size:
        return np.zeros(answers["trial"].size, dtype=bool)
    span = int(max(answers["trial"].max(initial=0), pairs[:, 1].max())) + 1
    return np.isin(answers["participant"] * span + answers["trial"], pairs[:, 0] * span + pairs[:, 1])
