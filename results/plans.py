"""A survey's analysis plan, frozen before the data (issue 21, part D).

The plan is what decides the numbers a report gives: the conditions and their IRI sets, the design, the stopping
rule or N, the exclusion rules and the primary statistic with its interval. plan_document() reads it from the
survey as a plain dict; plan_canonical() writes that as canonical JSON (sorted keys, no whitespace, UTF-8), whose
SHA-256 names the plan. survey_publish freezes version 1 (plan_freeze). Until the first real answer (live, not a
pilot, not a bot) an edit re-freezes silently; after it, an edit is a deviation: a new version that must give a
reason, audit-logged, and listed by every report (plan_report) and by the pre-registration export (plan_markdown).
"""
from __future__ import annotations

import copy
import hashlib
import json

from django.db import transaction
from django.db.models import Count, Min

from backend.exceptions import ApplicationError
from stats.adaptive.stopping import MIN_ANSWERS
from surveys.counted_answers import ANSWER_SCOPES, Purpose, answers_counted
from surveys.models import Survey, Trial
from surveys.task_types import task_type_get
from teams.actors import Actor
from teams.services import audit_record

from .models import AnalysisPlanVersion
from .selectors import CONDITION_FIELDS, survey_iri_sets

PLAN_SCHEMA = "iri-platform/analysis-plan/1"
# The report's defaults (results.services.alignment_report): the interval the plan promises.
PLAN_LEVEL, PLAN_N_BOOT, PLAN_SEED = 0.95, 1000, 0
# Survey fields the plan reads that may still be edited once a survey is built (the admin form, the API).
PLAN_EDITABLE_FIELDS = (
    "max_participants", "precision_every", "catch_min_accuracy", "rt_floor_ms", "rt_floor_max_fraction",
    "one_side_max_fraction", "one_side_min_trials", "practice_pass_fraction", "screening_pass_fraction",
    "exclude_mistimed", "refill_excluded", "desktop_only", "fixation_ms", "image_ms", "mask_ms",
)

PLAN_REASON_REQUIRED = (
    "reason: this survey has real answers, so a change to its analysis plan ({paths}) is a deviation from the "
    "frozen plan and needs a reason; nothing was saved."
)
BASELINE_REASON = "Recorded at its first edit: the survey went live before analysis plans were frozen at publish."
LATE_FREEZE_REASON = "Frozen at publish after the first real answer: the survey had gone live before plans were frozen."
NOT_FROZEN = "Not frozen yet: a draft's plan is frozen when it is published; this hash is the plan as it stands."
FROZEN_AFTER_DATA = "This plan was first recorded after the first real answer (the survey predates frozen plans)."
UNRECORDED = ("The survey's plan differs from its latest frozen version in {paths}: it was changed without going "
              "through the admin or the API, so no reason was given.")

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


def plan_locked(*, survey: Survey) -> bool:
    """Whether the survey has a real answer: live, not a pilot, not a bot (a rehearsal's bots are bots)."""
    return _real_answers(survey).exists()


def _real_answers(survey: Survey):
    return answers_counted(survey=survey, purpose=Purpose.PEOPLE)


def plan_versions(*, survey: Survey) -> list[AnalysisPlanVersion]:
    return list(AnalysisPlanVersion.objects.filter(survey=survey).select_related("created_by").order_by("version"))


def plan_changes(*, survey: Survey, values: dict) -> list[dict]:
    """What the plan would change by if `values` (survey field -> new value) were saved; nothing is saved."""
    return plan_diff(before=plan_document(survey=survey), after=plan_document(survey=_with(survey, values)))


def _version_add(*, survey: Survey, document: dict, previous: AnalysisPlanVersion | None, deviation: bool,
                 reason: str = "", user=None) -> AnalysisPlanVersion:
    canonical = plan_canonical(document=document)
    changed = plan_diff(before=json.loads(previous.canonical), after=document) if previous else []
    return AnalysisPlanVersion.objects.create(
        survey=survey, version=(previous.version + 1) if previous else 1, canonical=canonical,
        sha256=plan_sha256(canonical=canonical), changed=changed, deviation=deviation, reason=reason,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )


def _latest(survey: Survey) -> AnalysisPlanVersion | None:
    return AnalysisPlanVersion.objects.filter(survey=survey).order_by("-version").first()


@transaction.atomic
def plan_freeze(*, survey: Survey, actor: Actor | None = None) -> AnalysisPlanVersion:
    """At publish: store the plan (version 1), or a new version when it changed before the first real answer.

    Publishing again with the plan unchanged adds nothing. After the first real answer a changed plan is refused
    here: it is a deviation, recorded by plan_change with a reason."""
    Survey.objects.select_for_update().filter(pk=survey.pk).first()  # one version number at a time
    document, latest = plan_document(survey=survey), _latest(survey)
    if latest is not None and latest.canonical == plan_canonical(document=document):
        return latest
    locked = plan_locked(survey=survey)
    if latest is not None and locked:
        paths = ", ".join(d["path"] for d in plan_diff(before=json.loads(latest.canonical), after=document))
        raise ApplicationError(PLAN_REASON_REQUIRED.format(paths=paths), extra={"field": "reason"})
    version = _version_add(survey=survey, document=document, previous=latest, deviation=False,
                           reason=LATE_FREEZE_REASON if locked else "", user=_user(actor))
    audit_record(actor=actor, action="survey.plan_freeze", obj=survey,
                 details={"version": version.version, "sha256": version.sha256})
    return version


@transaction.atomic
def plan_change(*, survey: Survey, reason: str = "", actor: Actor | None = None, before: dict | None = None,
                values: dict | None = None) -> AnalysisPlanVersion | None:
    """Record the survey's plan after an edit: saves `values` (survey field -> value) first when given, then adds a
    version if the plan changed. After the first real answer the version is a deviation and `reason` is required
    (an ApplicationError naming the field, raised before anything is saved). `before`: the plan before an edit that
    was already saved, for a survey that went live without a frozen plan. Returns the new version, or None."""
    Survey.objects.select_for_update().filter(pk=survey.pk).first()
    latest, locked = _latest(survey), plan_locked(survey=survey)
    if latest is None and survey.status == Survey.Status.DRAFT:
        if values:
            _values_save(survey, values)
        return None  # a draft's plan is frozen at publish
    if latest is None:  # live before plans were frozen: its plan as it was becomes version 1
        latest = _version_add(survey=survey, document=before or plan_document(survey=survey), previous=None,
                              deviation=False, reason=BASELINE_REASON if locked else "", user=_user(actor))
    after = plan_document(survey=_with(survey, values)) if values else plan_document(survey=survey)
    changes = plan_diff(before=json.loads(latest.canonical), after=after)
    if not changes:
        if values:
            _values_save(survey, values)
        return None
    reason = (reason or "").strip()
    if locked and not reason:
        raise ApplicationError(PLAN_REASON_REQUIRED.format(paths=", ".join(c["path"] for c in changes)),
                               extra={"field": "reason", "changed": [c["path"] for c in changes]})
    if values:
        _values_save(survey, values)
    version = _version_add(survey=survey, document=after, previous=latest, deviation=locked, reason=reason,
                           user=_user(actor))
    audit_record(actor=actor, action="survey.plan_change" if locked else "survey.plan_freeze",
                 obj=survey, details={"version": version.version, "sha256": version.sha256, "deviation": locked,
                                      "changed": [c["path"] for c in changes], "reason": reason})
    return version


def _with(survey: Survey, values: dict) -> Survey:
    changed = copy.copy(survey)
    for field, value in values.items():
        setattr(changed, field, value)
    return changed


def _values_save(survey: Survey, values: dict) -> None:
    for field, value in values.items():
        setattr(survey, field, value)
    survey.save(update_fields=list(values))


def _user(actor: Actor | None):
    return actor.user if actor is not None else None


def _user_name(user) -> str:
    return user.get_username() if user is not None else ""


def plan_deviations(*, survey: Survey, versions: list[AnalysisPlanVersion] | None = None) -> list[dict]:
    """Every change made after the first real answer: version, hash, what changed (from → to), reason, when, who."""
    versions = plan_versions(survey=survey) if versions is None else versions
    return [
        {"version": v.version, "sha256": v.sha256, "changed": v.changed, "reason": v.reason,
         "at": v.created_at.isoformat(), "by": _user_name(v.created_by)}
        for v in versions if v.deviation
    ]


def plan_report(*, survey: Survey) -> dict:
    """The plan block of the report: the hash of the plan in force, the one frozen before the data, every deviation,
    and any change made around the services (the survey's plan now against its latest version)."""
    versions = plan_versions(survey=survey)
    document = plan_document(survey=survey)
    first = _real_answers(survey).aggregate(at=Min("created_at"))["at"]
    if not versions:
        canonical = plan_canonical(document=document)
        return {"frozen": False, "sha256": plan_sha256(canonical=canonical), "version": None, "frozen_sha256": None,
                "frozen_at": None, "first_real_answer_at": first.isoformat() if first else None, "deviations": [],
                "unrecorded_changes": [], "note": NOT_FROZEN}
    latest = versions[-1]
    before_data = [v for v in versions if not v.deviation]
    frozen = before_data[-1] if before_data else versions[0]
    stored = json.loads(latest.canonical)
    unrecorded = plan_diff(before=stored, after=document) if stored.get("schema") == document["schema"] else []
    notes = [FROZEN_AFTER_DATA] if first is not None and versions[0].created_at > first else []
    if unrecorded:
        notes.append(UNRECORDED.format(paths=", ".join(c["path"] for c in unrecorded)))
    return {
        "frozen": True, "sha256": latest.sha256, "version": latest.version, "frozen_sha256": frozen.sha256,
        "frozen_version": frozen.version, "frozen_at": frozen.created_at.isoformat(),
        "first_real_answer_at": first.isoformat() if first else None,
        "deviations": plan_deviations(survey=survey, versions=versions),
        "unrecorded_changes": unrecorded, "note": " ".join(notes),
    }


# ---------------------------------------------------------------------------------------------
# The pre-registration export: Markdown to read, the canonical JSON whose SHA-256 the report shows

EXCLUSION_WORDS = {
    "catch_min_accuracy": "a participant below this share of right catch trials is excluded (failed attention)",
    "rt_floor_ms": "answers faster than this many milliseconds count as too fast",
    "rt_floor_max_fraction": "a participant with more than this share of too-fast answers is excluded",
    "one_side_max_fraction": "a participant with at least this share of answers on one screen position is excluded "
                             "(null: rule off)",
    "one_side_min_trials": "the one-sided rule judges participants from this many answers on",
    "practice_pass_fraction": "share of practice trials that must be right",
    "screening_pass_fraction": "share of screening trials that must be right; failing ends the session",
    "exclude_mistimed": "answers whose image was shown more than one frame off its duration are left out",
    "require_complete": "sessions that never completed are left out",
    "exclude_pilot": "pilot sessions are never data",
    "exclude_bots": "bot sessions are never data",
}
INTERVAL_WORDS = {
    "percentile_bootstrap_two_way": "percentile bootstrap, participants and target photos each drawn with "
                                    "replacement (two-way)",
    "wilson": "Wilson score interval",
    "design_effect_wilson": "Wilson interval on the design-effect-adjusted effective n (two-way participant × item "
                            "cluster-robust design effect), the interval adaptive stopping uses",
}


def plan_files(*, survey: Survey) -> dict[str, str]:
    """The export's files by name: SLUG-analysis-plan.json (the canonical JSON of the plan frozen before the data,
    byte for byte, so sha256sum gives the report's frozen hash), SLUG-analysis-plan.md (to attach to an OSF
    pre-registration) and SLUG-analysis-plan-versions.json (every version with its hash and, for deviations,
    what changed, the reason, when and who)."""
    versions, report = plan_versions(survey=survey), plan_report(survey=survey)
    frozen = next((v for v in reversed(versions) if not v.deviation), None)
    canonical = frozen.canonical if frozen else plan_canonical(document=plan_document(survey=survey))
    history = {
        "survey": survey.slug, "schema": PLAN_SCHEMA, "sha256": report["sha256"],
        "frozen_sha256": report["frozen_sha256"],
        "versions": [{"version": v.version, "sha256": v.sha256, "deviation": v.deviation, "changed": v.changed,
                      "reason": v.reason, "at": v.created_at.isoformat(), "by": _user_name(v.created_by),
                      "plan": json.loads(v.canonical)} for v in versions],
        "deviations": report["deviations"],
    }
    return {
        f"{survey.slug}-analysis-plan.json": canonical,
        f"{survey.slug}-analysis-plan.md": plan_markdown(survey=survey, canonical=canonical, report=report),
        f"{survey.slug}-analysis-plan-versions.json": json.dumps(history, indent=2, ensure_ascii=False) + "\n",
    }


def _cell(value) -> str:
    if value is None or value == "":
        return "—"
    text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def plan_markdown(*, survey: Survey, canonical: str | None = None, report: dict | None = None) -> str:
    """The plan as Markdown: conditions, design, stopping rule, exclusions, primary analysis, deviations, and the
    canonical JSON itself with its SHA-256."""
    report = report or plan_report(survey=survey)
    canonical = canonical or plan_canonical(document=plan_document(survey=survey))
    plan, sha = json.loads(canonical), plan_sha256(canonical=canonical)
    names = dict(survey.iri_jobs.values_list("pk", "name"))
    state = (f"frozen as version {report['frozen_version']} on {report['frozen_at'][:16].replace('T', ' ')} UTC"
             if report["frozen"] else "a draft: frozen when the survey is published")
    lines = [
        f"# Analysis plan: {survey.title} (`{survey.slug}`)", "",
        f"- SHA-256 of the plan: `{sha}` ({state})",
        f"- The hash is of `{survey.slug}-analysis-plan.json`, the plan as canonical JSON (keys sorted, no "
        "whitespace, UTF-8): `sha256sum` of that file gives it.",
    ]
    if report["frozen"] and report["sha256"] != sha:
        lines.append(f"- The plan in force now is version {report['version']}, SHA-256 `{report['sha256']}`: "
                     "see the deviations below.")
    if report["note"]:
        lines.append(f"- Note: {report['note']}")
    lines += ["", "## 1. Conditions", "",
              "| condition | backbone | checkpoint | training | recipe | seed kind | layer | IRI sets (main trials) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for k, c in enumerate(plan["conditions"], start=1):
        sets = "; ".join(f"{s['id']} {names.get(s['id'], '')} ({s['main_trials']})".replace("  ", " ")
                         for s in c["iri_sets"])
        lines.append(f"| {k} | " + " | ".join(_cell(c.get(f)) for f in ("backbone", "checkpoint", "training", "recipe",
                                                                       "seed_kind", "layer")) + f" | {_cell(sets)} |")
    lines += ["", "## 2. Design", ""]
    lines += [f"- {key.replace('_', ' ')}: {_cell(json.dumps(v) if isinstance(v, dict) else v)}"
              for key, v in plan["design"].items() if v is not None]
    stopping = plan["stopping"]
    lines += ["", "## 3. Sample size and stopping rule", ""]
    if stopping["rule"] == "fixed_n":
        cap = f"; at most {stopping['max_participants']} participants" if stopping["max_participants"] else ""
        lines.append(f"- Fixed N: every trial list gets N = {stopping['ratings_per_list']} ratings{cap}; no interim "
                     "look at the data decides when to stop.")
    else:
        lines.append(f"- Adaptive: each IRI set is done when its 95 % design-effect Wilson interval has a half-width "
                     f"of at most {stopping['goal_half_width']} and at least {stopping['min_answers']} answers; "
                     f"estimates are recomputed every {stopping['re_estimate_every']} completed session(s); "
                     f"collection stops when every set is done or at the cap of "
                     f"{stopping['max_participants'] or 'no'} participants.")
    lines += ["", "## 4. Exclusion rules", "", "| rule | value | meaning |", "| --- | --- | --- |"]
    lines += [f"| {key} | {_cell(json.dumps(v))} | {EXCLUSION_WORDS.get(key, '')} |"
              for key, v in plan["exclusions"].items() if v is not None]
    primary, interval = plan["primary"], plan["primary"]["interval"]
    statistic = task_type_get(plan["design"]["task_type"]).statistic
    lines += ["", "## 5. Primary statistic and its interval", "",
              f"- Statistic: {statistic}.",
              f"- Interval: {round(interval['level'] * 100)} % {INTERVAL_WORDS[interval['method']]}, "
              f"{interval['n_boot']} resamples, seed {interval['seed']}.",
              "- Beside it: " + "; ".join(INTERVAL_WORDS.get(b, b) for b in primary["beside"]) + ".",
              "", "## 6. Deviations from the frozen plan", ""]
    if not report["deviations"]:
        lines.append("None.")
    else:
        lines += ["| version | when (UTC) | who | what changed | reason | SHA-256 |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for d in report["deviations"]:
            what = "; ".join(f"{c['path']}: {json.dumps(c['before'])} → {json.dumps(c['after'])}" for c in d["changed"])
            lines.append(f"| {d['version']} | {d['at'][:16].replace('T', ' ')} | {_cell(d['by'])} | {_cell(what)} | "
                         f"{_cell(d['reason'])} | `{d['sha256'][:12]}` |")
    lines += ["", "## The plan as canonical JSON", "", "```json", canonical, "```", ""]
    return "\n".join(lines)
