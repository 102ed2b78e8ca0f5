"""The analysis plan's pre-registration export: Markdown to read (to attach to an OSF pre-registration), the
canonical JSON whose SHA-256 the report shows, and every version with its hash (plan_files)."""
from __future__ import annotations

import json

from surveys.models import Survey
from surveys.task_types import task_type_get

from .plan_document import PLAN_SCHEMA, plan_canonical, plan_document, plan_sha256
from .plans import plan_report, plan_version_author, plan_versions

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
                      "reason": v.reason, "at": v.created_at.isoformat(), "by": plan_version_author(version=v),
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
