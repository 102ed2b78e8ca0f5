"""The report's sections beside its conditions table: the exclusions, how collection stopped, where people clicked,
what the survey builder left out, and the answer rows a task type's own summary reads (classification: recognition).

Each is a JSON object the report carries as it is (results.report.AlignmentReport); results.services puts them in.
"""
from __future__ import annotations

import numpy as np

from iri_worker.selectors import VALIDITY_REASONS
from stats.adaptive.interval import condition_intervals
from stats.adaptive.stopping import conditions_done, stopping_rule_describe
from stats.exclusions import KIND_CATCH, KIND_MAIN, position_counts, side_summary
from surveys.models import Survey
from surveys.services.adaptive import adaptive_outcome
from surveys.task_types import AnswerRows

from .report import ConditionRow
from .selectors import iri_validity_table
from .survey_data import SurveyData


def report_exclusions(*, data: SurveyData, main: np.ndarray) -> dict:
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
# Recognition (timed classification): the rows a task type's summary reads


def report_answer_rows(*, data: SurveyData, use: np.ndarray, answer_cond: np.ndarray, rows: list[ConditionRow],
                       n_boot: int, seed: int, level: float) -> AnswerRows:
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


def report_collection(*, survey: Survey, data: SurveyData, use: np.ndarray, answer_cond: np.ndarray,
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


def report_sides(*, data: SurveyData) -> dict:
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
