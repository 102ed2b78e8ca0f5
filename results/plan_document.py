"""A survey's analysis plan as a document (issue 21, part D): what decides the numbers a report gives, and its hash.

The plan is the conditions and their IRI sets, the design, the stopping rule or N, the exclusion rules and the
primary statistic with its interval. plan_document() reads it from the survey as a plain dict; plan_canonical()
writes that as canonical JSON (sorted keys, no whitespace, UTF-8), whose SHA-256 names the plan (plan_sha256);
plan_diff() says what differs between two plans. Freezing and versions: results.plans.
"""
from __future__ import annotations

import hashlib
import json

from django.db.models import Count

from stats.adaptive.stopping import MIN_ANSWERS
from surveys.counted_answers import ANSWER_SCOPES, Purpose
from surveys.models import Survey, Trial

from .selectors import CONDITION_FIELDS, survey_iri_sets

PLAN_SCHEMA = "iri-platform/analysis-plan/1"
# The report's defaults (results.services.alignment_report): the interval the plan promises.
PLAN_LEVEL, PLAN_N_BOOT, PLAN_SEED = 0.95, 1000, 0

# The plan's entries that belong to one task type (TaskType.plan_parts fills its own): every plan has them, empty
# where its type gives none, so that a plan's hash does not change; a new type's other entries go at the design's end.
TASK_KEYS = ("cluster_variant", "screening_trials", "categories", "timing_ms", "screening_pass_fraction",
             "exclude_mistimed")


def _number(value):
    """Floats as floats and whole numbers as ints, so a value typed as 0.8 or 4/5 hashes the same."""
    if value is None or isinstance(value, bool):
        return value
    return int(value) if isinstance(value, int) else float(value)


def plan_document(*, survey: Survey) -> dict:
    """The analysis plan as a dict of plain JSON values (only what decides the report's numbers)."""
    counts = dict(Trial.objects.filter(survey=survey, kind=Trial.Kind.MAIN, iri__isnull=False)
                  .values("iri__job_id").annotate(n=Count("id")).values_list("iri__job_id", "n"))
    conditions, by_key = [], {}
    for job in survey_iri_sets(survey=survey):  # by id
        key = tuple(job[f] for f in CONDITION_FIELDS)
        if key not in by_key:
            by_key[key] = len(conditions)
            conditions.append({**{f: job[f] for f in CONDITION_FIELDS}, "iri_sets": []})
        conditions[by_key[key]]["iri_sets"].append({"id": job["id"], "main_trials": counts.get(job["id"], 0)})
    adaptive = survey.precision_goal is not None
    task = survey.task
    own = task.plan_parts(survey)
    design = {
        "task_type": survey.task_type,
        "foil_rule": survey.foil_rule,
        "cluster_variant": own.get("cluster_variant"),
        "trial_lists": survey.trial_lists.count(),
        "main_trials": Trial.objects.filter(survey=survey, kind=Trial.Kind.MAIN).count(),
        "trials_per_participant": survey.trials_per_participant,
        "catch_trials": survey.catch_trials,
        "practice_trials": survey.practice_trials,
        "screening_trials": own.get("screening_trials"),
        "categories": own.get("categories"),
        "timing_ms": own.get("timing_ms"),
        "validity_filter": {"max_percentile": _number(survey.iri_max_percentile),
                            "require_label_match": survey.iri_require_label_match},
        "size_policy": survey.size_policy,
        "refill_excluded": survey.refill_excluded,
        "desktop_only": survey.desktop_only,
        "rng_seed": survey.rng_seed,
        **{key: value for key, value in own.items() if key not in TASK_KEYS},
    }
    stopping = {
        "rule": "adaptive_precision" if adaptive else "fixed_n",
        "ratings_per_list": None if adaptive else survey.ratings_per_list,
        "max_participants": survey.max_participants,
        "goal_half_width": _number(survey.precision_goal),
        "re_estimate_every": survey.precision_every if adaptive else None,
        "min_answers": MIN_ANSWERS if adaptive else None,
        "interval": "design_effect_wilson" if adaptive else None,
    }
    exclusions = {
        "catch_min_accuracy": _number(survey.catch_min_accuracy),
        "rt_floor_ms": _number(survey.rt_floor_ms),
        "rt_floor_max_fraction": _number(survey.rt_floor_max_fraction),
        "one_side_max_fraction": _number(survey.one_side_max_fraction),
        "one_side_min_trials": survey.one_side_min_trials,
        "practice_pass_fraction": _number(survey.practice_pass_fraction) if survey.practice_trials else None,
        "screening_pass_fraction": _number(own.get("screening_pass_fraction")),
        "exclude_mistimed": own.get("exclude_mistimed"),
        **ANSWER_SCOPES[Purpose.REPORT].exclusion_switches(),  # require_complete, exclude_pilot, exclude_bots
    }
    primary = {
        "statistic": task.statistic_name,
        "unit": "condition",
        "interval": {"method": "percentile_bootstrap_two_way", "resample": ["participants", "target_photos"],
                     "level": PLAN_LEVEL, "n_boot": PLAN_N_BOOT, "seed": PLAN_SEED},
        "beside": ["wilson"] + (["design_effect_wilson"] if adaptive else []),
    }
    return {"schema": PLAN_SCHEMA, "survey": survey.slug, "conditions": conditions, "design": design,
            "stopping": stopping, "exclusions": exclusions, "primary": primary}


def plan_canonical(*, document: dict) -> str:
    """Canonical JSON: sorted keys, no whitespace, non-ASCII as is; NaN refused. Its UTF-8 bytes are what is hashed."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def plan_sha256(*, canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _leaves(value, prefix: str = "") -> dict:
    """{dotted path: value} of a document's leaves; a list is one leaf (the conditions list compares whole)."""
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(_leaves(inner, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: value}


def plan_diff(*, before: dict, after: dict) -> list[dict]:
    """What differs between two plan documents: [{path, before, after}], by path."""
    a, b = _leaves(before), _leaves(after)
    return [{"path": p, "before": a.get(p), "after": b.get(p)} for p in sorted(set(a) | set(b)) if a.get(p) != b.get(p)]
