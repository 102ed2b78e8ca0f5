"""The alignment report of a survey: alignment per condition with its intervals, agreement, the human ceiling, the
proxy's scores and the paired comparisons between conditions.

alignment_report_compute() reads the answers through results.survey_data (arrays, exclusions applied) and computes
with stats (pure numpy); the report is a results.report.AlignmentReport, and alignment_report() its JSON. The
sections beside the conditions table come from results.report_sections, the proxy's choices from
results.proxy_choices.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
from django.urls import reverse

from stats.agreement import (
    agreement_kappa,
    correctness_counts,
    error_consistency,
    plurality_correct,
    rating_counts,
)
from stats.alignment import condition_alignment, dense_codes, difference_interval, finite_or_none
from stats.ceiling import split_half_ceilings
from stats.exclusions import KIND_MAIN, ExclusionRules
from surveys.models import Survey
from surveys.task_types import task_type_get

from .plans import plan_report
from .proxy_choices import PROXY_METRICS, trial_proxy_correct
from .report import AlignmentReport, Comparison, ConditionRow
from .report_sections import (
    report_answer_rows,
    report_collection,
    report_exclusions,
    report_sides,
    survey_design,
)
from .selectors import CONDITION_FIELDS
from .survey_data import SurveyData, survey_data_load

NO_ANSWERS = "No answers yet."
ALL_EXCLUDED = "All {n} answers to this condition were excluded (see the exclusion counts)."
ONE_PARTICIPANT = "Only one participant: the interval reflects item variation only."
NO_INTERVAL = "No interval: too little data to resample."
ALL_MAIN_EXCLUDED = "All {n} main-trial answers were excluded; no alignment can be given."


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
    proxy = trial_proxy_correct(data=data, metrics=PROXY_METRICS)
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
        exclusions=report_exclusions(data=data, main=main),
        agreement={
            "fleiss_kappa": agreement_kappa(right_wrong[main_trial], categories=categories).as_dict(),
            "items_rated_twice": int((ratings >= 2).sum()),
            "ceiling": ceiling.as_dict(),
        },
        sides=report_sides(data=data),
        collection=report_collection(survey=survey, data=data, use=use, answer_cond=answer_cond, rows=rows),
        # the task type's own summary (classification: recognition), in the report field it names
        **{survey.task.summary_field: survey.task.report_summary(report_answer_rows(
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
