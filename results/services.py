"""The alignment report of a survey, the proxy's trial-level choices, and the per-answer rows behind both.

alignment_report_compute() reads arrays through results.selectors and computes with stats.alignment (pure numpy);
the report is a results.report.AlignmentReport, and alignment_report() its JSON.
trial_proxy_choices_compute() is the only code here that touches torch (imported inside the function).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from django.db import transaction
from django.urls import reverse

from backend.exceptions import ApplicationError
from iri_worker.selectors import VALIDITY_REASONS
from stats.adaptive.interval import condition_intervals
from stats.adaptive.stopping import conditions_done, stopping_rule_describe
from stats.agreement import (
    agreement_kappa,
    correctness_counts,
    error_consistency,
    plurality_correct,
    rating_counts,
)
from stats.alignment import condition_alignment, dense_codes, difference_interval, finite_or_none
from stats.ceiling import split_half_ceilings
from stats.exclusions import (
    KIND_CATCH,
    KIND_MAIN,
    KIND_PRACTICE,
    ExclusionRules,
    exclusions_apply,
    participant_rules_apply,
    position_counts,
    side_summary,
)
from surveys.counted_answers import ANSWER_SCOPES, Purpose, survey_answer_arrays, survey_mistimed_pairs
from surveys.models import Survey, Trial
from surveys.services.adaptive import adaptive_outcome
from surveys.task_types import AnswerRows, task_type_get

from .models import TrialProxyChoice
from .plans import plan_report
from .report import AlignmentReport, Comparison, ConditionRow
from .selectors import (
    CONDITION_FIELDS,
    iri_validity_table,
    survey_iri_sets,
    survey_participant_table,
    survey_trial_table,
    trial_proxy_choice_table,
)


NO_ANSWERS = "No answers yet."
ALL_EXCLUDED = "All {n} answers to this condition were excluded (see the exclusion counts)."
ONE_PARTICIPANT = "Only one participant: the interval reflects item variation only."
NO_INTERVAL = "No interval: too little data to resample."
ALL_MAIN_EXCLUDED = "All {n} main-trial answers were excluded; no alignment can be given."
PROXY_METRICS = ("ssim", "ms_ssim", "lpips")
UNKNOWN_METRIC = "Unknown proxy metric '{metric}'; choose one of: {choices}."

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


def _proxy_correct(*, data: SurveyData, metrics: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per trial and metric: 1 = the proxy chose the target, 0 = another option, -1 = unknown."""
    trials = data.trials
    cached = trial_proxy_choice_table(survey=data.survey, metrics=metrics)
    n = trials["id"].size
    # Option images exist for 2AFC and clustering only (a classification's options are categories).
    has_images = trials["n_options"] <= trials["options"].shape[1]
    target_ids = np.where(has_images, trials["options"][np.arange(n), np.minimum(trials["target_option"], 2)], -1) if n else np.zeros(0, dtype=np.int64)
    # 2AFC with the IRI's seed as the foil: the IRI's stored verdict answers the trial exactly.
    foil_is_seed = (trials["n_options"] == 2) & (trials["seed_image"] >= 0) & (
        ((trials["options"][:, 0] == trials["seed_image"]) & (trials["options"][:, 1] == target_ids))
        | ((trials["options"][:, 1] == trials["seed_image"]) & (trials["options"][:, 0] == target_ids))
    ) if n else np.zeros(0, dtype=bool)
    out = {}
    for metric in metrics:
        values = np.full(n, -1, dtype=np.int64)
        for i in range(n):
            choice = cached[metric].get(int(trials["id"][i]))
            if choice is not None:
                values[i] = int(choice == trials["target_option"][i])
            elif foil_is_seed[i]:
                verdict = (trials["iri_proxy"][i] or {}).get(metric)
                if isinstance(verdict, dict) and verdict.get("aligned") is not None:
                    values[i] = int(bool(verdict["aligned"]))
        if (values >= 0).any():
            out[metric] = values
    return out


def _presence(conditions: np.ndarray, codes: np.ndarray, n_conditions: int) -> np.ndarray:
    dense, k = dense_codes(codes)
    return (np.bincount(conditions * k + dense, minlength=n_conditions * k) > 0).reshape(n_conditions, k)


CI_DESCRIPTION = (
    "{percent} % percentile bootstrap, participants and target photos each drawn with replacement (two-way), "
    "{n_boot} resamples, seed {seed}; Wilson interval beside it"
)


def alignment_report(
    *, survey: Survey, n_boot: int = 1000, seed: int = 0, rules: ExclusionRules | None = None, level: float = 0.95
) -> dict:
    """The report as JSON (AlignmentReport.to_dict): what the API serves, the archive stores and the cache keeps."""
    return alignment_report_compute(survey=survey, n_boot=n_boot, seed=seed, rules=rules, level=level).to_dict()


def alignment_report_compute(
    *, survey: Survey, n_boot: int = 1000, seed: int = 0, rules: ExclusionRules | None = None, level: float = 0.95
) -> AlignmentReport:
    """Alignment per condition with CIs, exclusions, agreement, human ceiling, proxy and comparisons."""
    data = survey_data_load(survey=survey, rules=rules)
    trials, a = data.trials, data.answers
    n_cond = len(data.conditions)
    answer_cond = data.trial_condition[data.t_row] if data.t_row.size else np.zeros(0, dtype=np.int64)
    main = data.trials["kind"][data.t_row] == KIND_MAIN if data.t_row.size else np.zeros(0, dtype=bool)
    use = data.included & (answer_cond >= 0)
    units = np.where(trials["target"] >= 0, trials["target"], -1 - trials["id"])[data.t_row[use]]
    table = condition_alignment(
        data.correct[use], data.p_row[use], data.t_row[use], answer_cond[use], n_cond,
        units=units - units.min(initial=0), n_boot=n_boot, seed=seed, level=level,
    )

    n_trials = trials["id"].size
    n_categories = int(max(3, trials["n_options"].max(initial=2)))
    # The human majority per item: the option most raters chose (option indices, not screen positions).
    counts = rating_counts(data.t_row[use], np.clip(a["choice"][use], 0, n_categories - 1), n_trials, n_categories)
    majority = plurality_correct(counts, trials["target_option"]) if n_trials else np.zeros(0, dtype=np.int64)
    # Agreement between people: Fleiss' kappa over chose-target / chose-foil per item, never over options or sides.
    task_types = sorted(set(trials["task_type"])) or [survey.task_type]
    task_type = survey.task_type if len(task_types) != 1 else task_types[0]
    categories = task_type_get(task_type).kappa_categories
    right_wrong = correctness_counts(data.t_row[use], data.correct[use], n_trials)
    proxy = _proxy_correct(data=data, metrics=PROXY_METRICS)
    main_trial = trials["kind"] == KIND_MAIN

    n_splits = 50 if use.sum() <= 200_000 else 20  # the mean r over splits is stable long before 50 on big data
    ceiling, condition_ceilings = split_half_ceilings(
        data.correct[use], data.p_row[use], data.t_row[use], answer_cond[use], n_cond, n_splits=n_splits, seed=seed
    )
    rows = _condition_rows(data=data, table=table, answer_cond=answer_cond, main=main, proxy=proxy, majority=majority,
                           right_wrong=right_wrong, categories=categories, ceilings=condition_ceilings)
    ratings = counts.sum(axis=1)[main_trial]
    fill = np.bincount(ratings) if ratings.size else np.zeros(0, dtype=np.int64)
    return AlignmentReport(
        survey=survey.slug,
        title=survey.title,
        admin_url=reverse("admin:results_surveyreport_report", args=[survey.pk]),
        task_type=task_type,
        foil_rule=survey.foil_rule,
        chance=finite_or_none(np.mean(1.0 / trials["n_options"][main_trial])) if main_trial.any() else 0.5,
        ci=CI_DESCRIPTION.format(percent=round(level * 100), n_boot=n_boot, seed=seed),
        level=level,
        n_boot=n_boot,
        seed=seed,
        n_answers=int(a["trial"].size),
        n_main_answers=int(main.sum()),
        n_included=int(use.sum()),
        n_participants=int(data.people["id"].size),
        n_items=int(main_trial.sum()),
        exclusions=_exclusions(data=data, main=main),
        agreement={
            "fleiss_kappa": agreement_kappa(right_wrong[main_trial], categories=categories).as_dict(),
            "items_rated_twice": int((ratings >= 2).sum()),
            "ceiling": ceiling.as_dict(),
        },
        sides=_sides(data=data),
        collection=_collection(survey=survey, data=data, use=use, answer_cond=answer_cond, rows=rows),
        # the task type's own summary (classification: recognition), in the report field it names
        **{survey.task.summary_field: survey.task.report_summary(_answer_rows(
            data=data, use=use, answer_cond=answer_cond, rows=rows, n_boot=n_boot, seed=seed, level=level))},
        design=survey_design(survey=survey),
        plan=plan_report(survey=survey),  # the frozen analysis plan's hash and every deviation (results.plans)
        ratings_per_item=[{"ratings": int(k), "items": int(v)} for k, v in enumerate(fill) if v],
        ratings_target=survey.ratings_per_list,
        proxy={"metrics": sorted(proxy),
               "overall": {metric: _proxy_score(values, main_trial & (values >= 0), majority)
                           for metric, values in proxy.items()}},
        conditions=rows,
        comparisons=_comparisons(data=data, table=table, rows=rows, answer_cond=answer_cond, use=use, units=units,
                                 level=level),
        notes=_report_notes(n_answers=int(a["trial"].size), n_main=int(main.sum()), any_used=bool(use.any())),
    )


def _report_notes(*, n_answers: int, n_main: int, any_used: bool) -> list[str]:
    if n_answers == 0:
        return [NO_ANSWERS]
    if not any_used:
        return [ALL_MAIN_EXCLUDED.format(n=n_main)]
    return []


def _proxy_score(values: np.ndarray, known: np.ndarray, majority: np.ndarray) -> dict:
    """The proxy's alignment on the items ``known`` (it chose on them) and its error consistency with the human
    majority there."""
    both = known & (majority >= 0)
    return {
        "alignment": finite_or_none(values[known].mean()) if known.any() else None,
        "n_items": int(known.sum()),
        "error_consistency": error_consistency(values[both] == 1, majority[both] == 1).as_dict(),
    }


def _condition_note(*, n_before: int, estimate) -> str:
    """Why a condition's numbers say little, if they do."""
    if n_before == 0:
        return NO_ANSWERS
    if estimate.n_answers == 0:
        return ALL_EXCLUDED.format(n=n_before)
    if estimate.n_participants == 1:
        return ONE_PARTICIPANT
    if estimate.ci_low is None:
        return NO_INTERVAL
    return ""


def _condition_rows(*, data: SurveyData, table, answer_cond: np.ndarray, main: np.ndarray, proxy: dict,
                    majority: np.ndarray, right_wrong: np.ndarray, categories: tuple[str, ...],
                    ceilings: list) -> list[ConditionRow]:
    """The conditions table: per condition its alignment, agreement between raters, ceiling and proxy scores."""
    trials = data.trials
    main_trial = trials["kind"] == KIND_MAIN
    rows = []
    for c, condition in enumerate(data.conditions):
        est = table.estimates[c]
        in_cond = data.trial_condition == c
        n_before = int((main & (answer_cond == c)).sum())
        chance = trials["n_options"][in_cond & main_trial]
        rows.append(ConditionRow(
            condition=" · ".join(str(condition[f]) for f in CONDITION_FIELDS if condition[f]),
            iri_set=condition["iri_sets"][0],
            iri_sets=condition["iri_sets"],
            name=" + ".join(condition["names"]),
            **{f: condition[f] for f in CONDITION_FIELDS},
            chance=finite_or_none(np.mean(1.0 / chance)) if chance.size else None,
            **est.as_dict(),
            n_answers_before_exclusion=n_before,
            fleiss_kappa=agreement_kappa(right_wrong[in_cond], categories=categories).as_dict(),
            ceiling=ceilings[c].as_dict(),
            proxy={metric: _proxy_score(values, in_cond & main_trial & (values >= 0), majority)
                   for metric, values in proxy.items()},
            note=_condition_note(n_before=n_before, estimate=est),
        ))
    return rows


def _comparisons(*, data: SurveyData, table, rows: list[ConditionRow], answer_cond: np.ndarray, use: np.ndarray,
                 units: np.ndarray, level: float) -> list[Comparison]:
    """Every pair of conditions with an alignment: a - b with its paired bootstrap interval."""
    n_cond = len(data.conditions)
    unit_seen = _presence(answer_cond[use], units, n_cond)  # (conditions x units) bool, no Python sets
    people_seen = _presence(answer_cond[use], data.p_row[use], n_cond)
    comparisons = []
    for i, j in combinations(range(n_cond), 2):
        ei, ej = table.estimates[i], table.estimates[j]
        if ei.alignment is None or ej.alignment is None:
            continue
        low, high = difference_interval(table.draws[:, i], table.draws[:, j], level=level)
        shared_units = int((unit_seen[i] & unit_seen[j]).sum())
        shared_people = int((people_seen[i] & people_seen[j]).sum())
        comparisons.append(Comparison(
            a=rows[i].label,
            b=rows[j].label,
            a_iri_sets=rows[i].iri_sets,
            b_iri_sets=rows[j].iri_sets,
            difference=finite_or_none(ei.alignment - ej.alignment),
            ci_low=low,
            ci_high=high,
            excludes_zero=bool(low is not None and (low > 0 or high < 0)),
            shared_target_photos=shared_units,
            shared_participants=shared_people,
            paired=bool(shared_units or shared_people),
        ))
    return comparisons


def _exclusions(*, data: SurveyData, main: np.ndarray) -> dict:
    """The exclusion rules, what each one caught, and the answers and participants left out in all."""
    excluded_main = main & ~data.included
    n_people = data.people["id"].size
    has_main = np.bincount(data.p_row[main], minlength=n_people) > 0
    has_included = np.bincount(data.p_row[data.included], minlength=n_people) > 0
    reasons: dict[str, int] = {}
    for row_reasons in data.people["exclusion_reasons"]:
        for reason in row_reasons:
            reasons[str(reason)] = reasons.get(str(reason), 0) + 1
    return {
        "rules": data.rules.describe(),
        "counts": data.exclusion_counts,
        "answers_excluded": int(excluded_main.sum()),
        "participants_excluded": int((has_main & ~has_included).sum()),
        "survey_exclusion_reasons": reasons,
        "note": "Each rule is counted on its own; a participant can be caught by several rules.",
    }


# ---------------------------------------------------------------------------------------------
# Recognition (timed classification)

def _answer_rows(*, data: SurveyData, use: np.ndarray, answer_cond: np.ndarray, rows: list[ConditionRow], n_boot: int,
                 seed: int, level: float) -> AnswerRows:
    """The included answers with a condition, as a task type's report summary reads them (TaskType.report_summary);
    the network's verdicts (the IRIs' validity records) are read only if the summary asks for them."""
    trials, t_row = data.trials, data.t_row[use]

    def network_correct() -> np.ndarray:
        iri = trials["iri"][t_row]
        validity = iri_validity_table(ids={int(i) for i in iri if i >= 0})
        return np.array([validity[int(i)].label_match if int(i) in validity else None for i in iri], dtype=object)

    return AnswerRows(
        correct=data.correct[use], choice=data.answers["choice"][use], participant=data.p_row[use], item=t_row,
        unit=np.where(trials["target"] >= 0, trials["target"], -1 - trials["id"])[t_row], condition=answer_cond[use],
        n_options=trials["n_options"][t_row],
        conditions=[{"condition": r.label, "layer": r.layer, "backbone": r.backbone, "checkpoint": r.checkpoint,
                     "recipe": r.recipe} for r in rows],
        exclusion_counts=data.exclusion_counts, network_correct=network_correct, n_boot=n_boot, seed=seed, level=level,
    )


# ---------------------------------------------------------------------------------------------
# How collection stopped


FIXED_RULE = "Fixed design: every trial list gets N = {n} ratings; no interim looks at the data decide when to stop."
ADAPTIVE_INTERVAL = (
    "Under adaptive stopping read each condition's 95 % design-effect Wilson interval (two-way participant × item "
    "cluster-robust design effect, degrees-of-freedom-adjusted effective n; stats.adaptive), the interval the "
    "stopping rule uses: bench/adaptive.py simulates this rule with item heterogeneity and participant noise and "
    "finds its coverage at 0.94 or above in every condition. The percentile bootstrap in the conditions table was not "
    "checked under adaptive stopping."
)


def _collection(*, survey: Survey, data: SurveyData, use: np.ndarray, answer_cond: np.ndarray,
                rows: list[ConditionRow]) -> dict:
    """The stopping rule the survey used and, for adaptive collection, the units it stops on: each IRI set's
    design-effect Wilson interval on the report's included answers beside the goal (``sets``), how those map to
    the report's conditions (``conditions``: one row per condition, its pooled interval and its IRI sets), and why
    collection ended (``stop_reason``, surveys.services.adaptive.adaptive_outcome) with the sets that missed."""
    if survey.precision_goal is None:
        return {"design": "fixed", "stopping_rule": FIXED_RULE.format(n=survey.ratings_per_list)}
    goal = survey.precision_goal
    state = survey.adaptive
    jobs = state.conditions if state and state.conditions else sorted(survey.iri_jobs.values_list("pk", flat=True))
    answer_job = data.trials["job"][data.t_row] if data.t_row.size else np.zeros(0, dtype=np.int64)
    known = np.asarray(jobs, dtype=np.int64)  # sorted, as adaptive_state keeps them; a survey has at least one set
    at = np.minimum(np.searchsorted(known, answer_job), known.size - 1)
    answer_set = np.where(known[at] == answer_job, at, -1)  # catch and practice trials (job -1): no set
    in_set = use & (answer_set >= 0)
    per_set = condition_intervals(
        correct=data.correct[in_set], participants=data.p_row[in_set], items=data.t_row[in_set],
        conditions=answer_set[in_set], n_conditions=len(jobs),
    )
    outcome = adaptive_outcome(survey=survey, half_width=[i.half_width for i in per_set],
                               n_answers=[i.n_answers for i in per_set]) or {}
    condition_of = {job: c for c, condition in enumerate(data.conditions) for job in condition["iri_sets"]}
    names = dict(survey.iri_jobs.values_list("pk", "name"))
    sets = []
    for job, interval in zip(jobs, per_set):
        c = condition_of.get(job)
        meets = bool(conditions_done(half_width=[interval.half_width], goal=goal, n_answers=[interval.n_answers])[0])
        sets.append({
            "iri_job": job, "name": names.get(job) or f"IRI set {job}",
            "condition": rows[c].label if c is not None else None, "condition_index": c,
            **interval.as_dict(), "goal": goal, "answers": interval.n_answers, "meets_goal": meets,
            "missed_by": round(max(interval.half_width - goal, 0.0), 6),
        })
    pooled = condition_intervals(
        correct=data.correct[use], participants=data.p_row[use], items=data.t_row[use], conditions=answer_cond[use],
        n_conditions=len(data.conditions),
    )
    return {
        "design": "adaptive",
        "stopping_rule": stopping_rule_describe(goal=goal, cap_participants=survey.max_participants),
        "units": "IRI sets: the rule stops on each set's interval; a condition pools the sets that share its key",
        "stopped": bool(outcome.get("stopped")),
        "stop_reason": outcome.get("stop_reason", ""),
        "reason": outcome.get("stop_reason", ""),  # the older name of stop_reason
        "stop_note": outcome.get("note", ""),
        "sessions_under_way": outcome.get("sessions_under_way", 0),
        "missed": [s for s in sets if not s["meets_goal"]] if outcome.get("missed") else [],
        "completed_at_last_estimate": state.completed if state else 0,
        "goal": goal,
        "interval": ADAPTIVE_INTERVAL,
        "sets": sets,
        "conditions": [
            {"condition": row.label, "iri_sets": data.conditions[c]["iri_sets"],
             **interval.as_dict(), "goal": goal,
             # a condition meets the goal when every set it pools does: the rule stops on sets, not on the pool
             "meets_goal": all(s["meets_goal"] for s in sets if s["condition_index"] == c)}
            for c, (row, interval) in enumerate(zip(rows, pooled))
        ],
    }


# ---------------------------------------------------------------------------------------------
# Where people clicked, and what the survey builder left out


SIDES_NOTE = (
    "Main and catch answers by the screen position of the chosen option (0 = left), before exclusions; "
    "answers without a recorded position are left out. `choice` (and so alignment) is the option, not the side."
)


def _sides(*, data: SurveyData) -> dict:
    """Share of answers per screen position, survey-wide and per participant, and the one-sided rule's count."""
    kind = data.trials["kind"][data.t_row] if data.t_row.size else np.zeros(0, dtype=np.int64)
    counted = (kind == KIND_MAIN) | (kind == KIND_CATCH)
    position = data.answers["shown_position"][counted]
    counts = position_counts(data.p_row[counted], position, data.people["id"].size, data.n_positions)
    rules = data.rules
    summary = side_summary(counts, max_fraction=rules.one_side_max_fraction, min_trials=rules.one_side_min_trials)
    two_afc = data.n_positions == 2
    return {
        **summary,
        "answers_unknown_position": int(counted.sum()) - summary["answers"],
        "left_share": summary["shares"][0] if two_afc else None,
        "rule": {"one_side_max_fraction": rules.one_side_max_fraction, "one_side_min_trials": rules.one_side_min_trials},
        "note": SIDES_NOTE,
    }


NO_BUILD_REPORT = "No build report: the survey was built before the builder recorded what it left out and resized."


def _number(value) -> int | None:
    """A finite JSON number as an int; None for anything else (a bool, a string, null)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        return None
    return int(value)


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def survey_design(*, survey: Survey) -> dict:
    """What the survey builder did (Survey.build_report): IRIs left out and why, the validity filter, resized images.

    Missing keys (older surveys) read as empty; counts that are not numbers are left out rather than guessed.
    """
    build = _mapping(survey.build_report)
    left_out = _mapping(build.get("left_out"))
    order = list(VALIDITY_REASONS)  # known reasons first, in this order (jsonb does not keep the builder's key order)
    reasons = [
        {"reason": str(reason), "count": _number(left_out[reason]), "description": VALIDITY_REASONS.get(str(reason), str(reason).replace("_", " "))}
        for reason in sorted(left_out, key=lambda r: (order.index(r) if r in order else len(order), str(r)))
        if _number(left_out[reason]) is not None
    ]
    resized = [entry for entry in build.get("resized") or [] if isinstance(entry, dict)] if isinstance(build.get("resized"), list) else []
    validity = _mapping(build.get("validity_filter"))
    return {
        "recorded": bool(build),
        "left_out": {"total": sum(r["count"] for r in reasons), "reasons": reasons},
        "validity_filter": {
            "max_percentile": validity.get("max_percentile"),
            "require_label_match": validity.get("require_label_match"),
            "on": validity.get("max_percentile") is not None or bool(validity.get("require_label_match")),
        },
        "size_policy": build.get("size_policy") or "",
        "resized": resized,
        "images_resized": sum(_number(e.get("images")) or 0 for e in resized),
        "note": "" if build else NO_BUILD_REPORT,
    }


# ---------------------------------------------------------------------------------------------
# Proxy choices per trial (torch, lazily)


def trial_proxy_choices_compute(*, survey: Survey, metric: str, batch_size: int = 32,
                                progress: Callable[[float], None] | None = None) -> int:
    """d(query, option_k) for every main trial of the survey without a cached choice; stores the proxy's choice.

    The proxy picks the closest option; when the target ties with the closest, the target (ties count
    aligned). Returns how many trials were computed; `progress` hears the share done after each batch.
    Raises ApplicationError for an unknown metric and for LPIPS without local weights.
    """
    if metric not in PROXY_METRICS:
        raise ApplicationError(UNKNOWN_METRIC.format(metric=metric, choices=", ".join(PROXY_METRICS)))
    import torch
    import torch.nn.functional as F

    from iri_worker.engine import perceptual_distance, png_bytes_to_tensor

    done = TrialProxyChoice.objects.filter(trial__survey=survey, metric=metric).values_list("trial_id", flat=True)
    trials = list(
        Trial.objects.filter(survey=survey, kind=Trial.Kind.MAIN).exclude(pk__in=done)
        .select_related("query", "option_0", "option_1", "option_2").order_by("id")
    )
    images: dict[int, torch.Tensor] = {}

    def tensor(stored) -> torch.Tensor:
        if stored.pk not in images:
            with stored.file.open("rb") as fh:
                images[stored.pk] = png_bytes_to_tensor(fh.read())
        return images[stored.pk]

    created = []
    for start in range(0, len(trials), batch_size):
        batch = trials[start : start + batch_size]
        xs, ys, owners = [], [], []
        for trial in batch:
            query = tensor(trial.query)
            options = trial.options
            for k, option in enumerate(options):
                y = tensor(option)
                if y.shape != query.shape:
                    y = F.interpolate(y[None], size=query.shape[-2:], mode="bilinear", align_corners=False)[0]
                xs.append(query)
                ys.append(y)
                owners.append((trial, k))
        if not xs:
            continue
        try:
            with torch.no_grad():
                dist = perceptual_distance(torch.stack(xs), torch.stack(ys), metric).tolist()
        except RuntimeError as exc:
            raise ApplicationError(str(exc)) from exc
        per_trial: dict[int, list[float]] = {}
        for (trial, k), d in zip(owners, dist):
            per_trial.setdefault(trial.pk, []).append(float(d))
        for trial in batch:
            d = per_trial[trial.pk]
            choice = trial.target_option if d[trial.target_option] <= min(d) else int(np.argmin(d))
            created.append(TrialProxyChoice(trial=trial, metric=metric, distances=d, choice=choice))
        if progress is not None:
            progress((start + len(batch)) / len(trials))
    with transaction.atomic():
        TrialProxyChoice.objects.bulk_create(created, ignore_conflicts=True)
    return len(created)
