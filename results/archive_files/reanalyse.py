#!/usr/bin/env python3
"""Recompute this study archive's report from its CSVs, with Python and numpy only, and compare.

    python reanalyse.py [--json FILE]

1. Every file is checked against manifest.json (SHA-256 and size): an edited, missing or added file is named and
   the script stops with exit status 2 before reading any data.
2. The answer arrays the platform's report is computed from (results.selectors / results.services on the platform)
   are rebuilt from data/*.csv: one entry per answer (participant, trial, choice, screen position, response time,
   mistimed flag), per trial (kind, target option, option count, condition, target photo, the IRI's validity) and
   per participant (completed, pilot, bot, flagged).
3. The statistics are recomputed with analysis/, copies of the platform's modules (alignment.py, exclusions.py,
   agreement.py, ceiling.py, recognition.py, adaptive/). Their few scipy uses are replaced here with numpy: the
   bootstrap's sparse sums (the same seeded draws, summed cell by cell: integer sums, so identical) and, for adaptive
   collection, the normal cdf and Student's t quantile (to about 1e-12, so those intervals are compared within 1e-9).
4. Each recomputed number is compared with report/report.json. Exit status 0: all identical; 1: differences, listed.

Recomputed: alignment per condition (share, n, bootstrap interval with the recorded seed, Wilson interval), the
comparisons between conditions, the exclusions (each rule's counts, answers and participants excluded), Fleiss'
kappa with its named categories (overall and per condition), where people clicked (sides), the collection section
(the stopping rule; for adaptive collection each IRI set's and condition's design-effect interval), and for
classification the recognition section (people vs the network, error consistency). Not recomputed: the perceptual
proxy (it needs torch and the images' distances), the split-half ceiling, and the adaptive stop reason (it reads
the live sessions at the time of the report).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
EXIT_DIFFERENT, EXIT_TAMPERED = 1, 2
KIND_CODES = {"main": 0, "catch": 1, "practice": 2, "screening": 3}
CONDITION_FIELDS = ("backbone", "checkpoint", "training", "recipe", "seed_kind", "layer")
FIXED_RULE = "Fixed design: every trial list gets N = {n} ratings; no interim looks at the data decide when to stop."
MISTIMED_RULE = ("answers whose image the browser showed more than one frame off its duration (answer level; "
                 "survey setting exclude_mistimed)")


# ---------------------------------------------------------------------------------------------
# 1. The manifest


def manifest_check(*, root: Path) -> list[str]:
    """What does not match manifest.json, in words (empty: every file is as exported)."""
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"manifest.json cannot be read ({exc})"]
    problems = []
    listed = manifest.get("files", {})
    for name, record in sorted(listed.items()):
        path = root / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        sha = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sha.update(chunk)
        if sha.hexdigest() != record["sha256"]:
            problems.append(f"{name} was changed after export (its SHA-256 differs from the manifest's)")
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    for name in sorted(present - set(listed) - {"manifest.json"}):
        if not name.endswith(".pyc"):
            problems.append(f"{name} is not in the manifest (added after export)")
    return problems


# ---------------------------------------------------------------------------------------------
# 2. numpy in place of scipy (analysis/scipy_stand_in.py), then the platform's statistics modules


sys.path.insert(0, str(HERE))
from analysis import scipy_stand_in  # noqa: E402

scipy_stand_in.install()
from analysis import agreement, alignment, exclusions, recognition  # noqa: E402
from analysis.adaptive import interval  # noqa: E402


def numpy_bootstrap(correct, participants, units, conditions, n_conditions, *, n_boot=1000, seed=0, method="sparse"):
    """alignment.bootstrap_shares with numpy alone: the same seeded participant and unit counts (the module's own
    _resample_chunks), each resample's sums taken over (condition, participant, unit) cells. The sums are of small
    integers, exact in float64 as in the platform's float32 sparse products, so the replicates are identical."""
    correct = np.asarray(correct, dtype=np.float32)
    conditions = np.asarray(conditions, dtype=np.int64)
    out = np.full((n_boot, n_conditions), np.nan)
    if correct.size == 0:
        return out
    p_idx, n_p = alignment.dense_codes(participants)
    u_idx, n_u = alignment.dense_codes(units) if units is not None else (np.zeros(correct.size, dtype=np.int64), 1)
    rng = np.random.default_rng(seed)
    keys, cell = np.unique((conditions * n_p + p_idx) * n_u + u_idx, return_inverse=True)
    cell_n = np.bincount(cell).astype(np.float64)
    cell_k = np.bincount(cell, weights=correct.astype(np.float64))
    cell_c, cell_p, cell_u = keys // (n_p * n_u), (keys // n_u) % n_p, keys % n_u
    hits = np.zeros((n_boot, n_conditions))
    answers = np.zeros((n_boot, n_conditions))
    for start, stop, w_p, w_u in alignment._resample_chunks(rng, n_p, n_u, n_boot):
        w_p, w_u = np.ascontiguousarray(w_p.T), np.ascontiguousarray(w_u.T)  # one resample per row: gathers stay local
        for j in range(stop - start):
            weight = w_p[j][cell_p].astype(np.float64) * w_u[j][cell_u]
            answers[start + j] = np.bincount(cell_c, weights=weight * cell_n, minlength=n_conditions)
            hits[start + j] = np.bincount(cell_c, weights=weight * cell_k, minlength=n_conditions)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(hits, answers, out=out, where=answers > 0)
    return out


alignment.bootstrap_shares = numpy_bootstrap  # condition_alignment (and so recognition) looks it up here


# ---------------------------------------------------------------------------------------------
# 3. The arrays, from the CSVs


def _rows(path: Path):
    with path.open(newline="", encoding="utf-8") as f:
        yield from csv.DictReader(f)


def _int(value: str, empty: int = -1) -> int:
    return int(value) if value != "" else empty


def _bool(value: str):
    return {"true": True, "false": False}.get(value.lower())


def arrays_load(*, root: Path, slug: str) -> dict:
    table = lambda name: root / "data" / f"study-{slug}_data-{name}_data.csv"  # noqa: E731
    trial_rows = sorted(_rows(table("trials")), key=lambda r: int(r["trial_id"]))
    trials = {
        "id": np.array([int(r["trial_id"]) for r in trial_rows], dtype=np.int64),
        "kind": np.array([KIND_CODES[r["kind"]] for r in trial_rows], dtype=np.int64),
        "task_type": [r["task_type"] for r in trial_rows],
        "target_option": np.array([int(r["target_option"]) for r in trial_rows], dtype=np.int64),
        "n_options": np.array([int(r["n_options"]) for r in trial_rows], dtype=np.int64),
        "condition": np.array([_int(r["condition"]) for r in trial_rows], dtype=np.int64),
        "job": np.array([_int(r["iri_set"]) for r in trial_rows], dtype=np.int64),
        "target": np.array([_int(r["target_photo_id"]) for r in trial_rows], dtype=np.int64),
        "label_match": [_bool(r["iri_label_match"]) if r["iri_set"] != "" else None for r in trial_rows],
    }
    public = {r["public_id"]: int(r["trial_id"]) for r in trial_rows}
    people_rows = sorted(_rows(table("sessions")), key=lambda r: int(r["participant_id"]))
    people = {"id": np.array([int(r["participant_id"]) for r in people_rows], dtype=np.int64),
              "completed": np.array([_bool(r["completed"]) for r in people_rows], dtype=bool),
              "reasons": [[x for x in r["exclusion_reasons"].split(";") if x] for r in people_rows]}
    for flag in ("pilot", "bot", "flagged"):
        if all(r[flag] != "" for r in people_rows):
            people[flag] = np.array([_bool(r[flag]) for r in people_rows], dtype=bool)
    names = ("participant", "trial", "choice", "shown_position", "rt_ms", "mistimed")
    columns = {name: [] for name in names}
    with table("answers").open(newline="", encoding="utf-8") as f:  # csv.reader: a million rows, no dict per row
        rows = csv.reader(f)
        header = next(rows)
        at = [header.index(name) for name in names]
        for r in rows:
            participant, trial, choice, shown, rt_ms, mistimed = (r[k] for k in at)
            columns["participant"].append(int(participant))
            columns["trial"].append(public[trial])
            columns["choice"].append(_int(choice))
            columns["shown_position"].append(_int(shown))
            columns["rt_ms"].append(float(rt_ms) if rt_ms != "" else math.nan)
            columns["mistimed"].append(mistimed.lower() == "true")
    answers = {k: np.array(v, dtype=np.float64 if k == "rt_ms" else bool if k == "mistimed" else np.int64)
               for k, v in columns.items()}
    conditions = list(_rows(table("conditions")))
    return {"trials": trials, "people": people, "answers": answers, "conditions": conditions}


# ---------------------------------------------------------------------------------------------
# 4. The report's numbers (as results.services.alignment_report computes them)


def report_recompute(*, data: dict, design: dict) -> dict:
    settings = design["analysis"]
    trials, people, a = data["trials"], data["people"], data["answers"]
    t_row = np.searchsorted(trials["id"], a["trial"])
    p_row = np.searchsorted(people["id"], a["participant"])
    correct = a["choice"] == trials["target_option"][t_row]
    kind = trials["kind"][t_row]
    rules = exclusions.ExclusionRules(**settings["rules"])
    n_positions = int(trials["n_options"][trials["kind"] != KIND_CODES["practice"]].max(initial=settings["n_options"]))
    flags = {k: people[k] for k in ("pilot", "bot", "flagged") if k in people}
    flags["completed"] = people["completed"]
    people_rules = exclusions.participant_rules_apply(
        participant=p_row, kind=kind, correct=correct, participant_flags=flags, rules=rules, n_people=people["id"].size,
        shown_position=a["shown_position"], n_positions=n_positions)
    included, counts = exclusions.exclusions_apply(
        participant=p_row, kind=kind, correct=correct, rt_ms=a["rt_ms"], participant_flags=flags, rules=rules,
        participant_rules=people_rules)
    main = kind == exclusions.KIND_MAIN
    if settings["task_type"] == "classification":
        mistimed = a["mistimed"] & main
        counts.append({"rule": "mistimed", "description": MISTIMED_RULE,
                       "participants": int(np.unique(p_row[mistimed]).size),
                       "answers": int(mistimed.sum()), **({} if settings["exclude_mistimed"] else {"applies": False})})
        if settings["exclude_mistimed"]:
            included &= ~mistimed
    n_cond = len(data["conditions"])
    answer_cond = trials["condition"][t_row]
    use = included & (answer_cond >= 0)
    units_all = np.where(trials["target"] >= 0, trials["target"], -1 - trials["id"])
    units = units_all[t_row[use]]
    n_boot, seed, level = settings["n_boot"], settings["seed"], settings["level"]
    table = alignment.condition_alignment(
        correct[use], p_row[use], t_row[use], answer_cond[use], n_cond, units=units - units.min(initial=0),
        n_boot=n_boot, seed=seed, level=level)
    main_trial = trials["kind"] == exclusions.KIND_MAIN
    task_types = sorted(set(trials["task_type"])) or [settings["task_type"]]
    task_type = settings["task_type"] if len(task_types) != 1 else task_types[0]
    categories = agreement.KAPPA_CATEGORIES.get(task_type, agreement.KAPPA_CATEGORIES["2afc"])
    right_wrong = agreement.correctness_counts(t_row[use], correct[use], trials["id"].size)
    rows = []
    for c, condition in enumerate(data["conditions"]):
        in_cond = trials["condition"] == c
        chance = trials["n_options"][in_cond & main_trial]
        rows.append({
            "condition": condition["label"],
            **table.estimates[c].as_dict(),
            "n_answers_before_exclusion": int((main & (answer_cond == c)).sum()),
            "chance": alignment.finite_or_none(np.mean(1.0 / chance)) if chance.size else None,
            "fleiss_kappa": agreement.agreement_kappa(right_wrong[in_cond], categories=categories).as_dict(),
        })
    n_people = people["id"].size
    has_main = np.bincount(p_row[main], minlength=n_people) > 0
    has_included = np.bincount(p_row[included], minlength=n_people) > 0
    reasons: dict[str, int] = {}
    for reason in (reason for row_reasons in people["reasons"] for reason in row_reasons):
        reasons[reason] = reasons.get(reason, 0) + 1
    out = {
        "task_type": task_type,
        "n_boot": n_boot, "seed": seed, "level": level,
        "n_answers": int(a["trial"].size), "n_main_answers": int(main.sum()), "n_included": int(use.sum()),
        "n_participants": int(n_people), "n_items": int(main_trial.sum()),
        "chance": alignment.finite_or_none(np.mean(1.0 / trials["n_options"][main_trial])) if main_trial.any() else 0.5,
        "exclusions": {"counts": counts, "answers_excluded": int((main & ~included).sum()),
                       "participants_excluded": int((has_main & ~has_included).sum()),
                       "survey_exclusion_reasons": reasons},
        "agreement": {
            "fleiss_kappa": agreement.agreement_kappa(right_wrong[main_trial], categories=categories).as_dict(),
        },
        "sides": sides_recompute(counted=main | (kind == exclusions.KIND_CATCH), p_row=p_row, answers=a, rules=rules,
                                 n_people=n_people, n_positions=n_positions),
        "conditions": rows,
        "comparisons": comparisons_recompute(table=table, n_cond=n_cond, level=level),
        "collection": collection_recompute(settings=settings, trials=trials, t_row=t_row, p_row=p_row, correct=correct,
                                           use=use, answer_cond=answer_cond, n_cond=n_cond),
    }
    if settings["task_type"] == "classification":
        out["recognition"] = recognition_recompute(trials=trials, t_row=t_row, p_row=p_row, correct=correct, use=use,
                                                   answer_cond=answer_cond, n_cond=n_cond, units_all=units_all,
                                                   mistimed_answers=counts[-1]["answers"], **settings)
    return out


def comparisons_recompute(*, table, n_cond: int, level: float) -> list[dict]:
    """Every pair of conditions with an alignment each: the difference and its paired bootstrap interval."""
    comparisons = []
    for i in range(n_cond):
        for j in range(i + 1, n_cond):
            ei, ej = table.estimates[i], table.estimates[j]
            if ei.alignment is None or ej.alignment is None:
                continue
            low, high = alignment.difference_interval(table.draws[:, i], table.draws[:, j], level=level)
            comparisons.append({"difference": alignment.finite_or_none(ei.alignment - ej.alignment), "ci_low": low,
                                "ci_high": high, "excludes_zero": bool(low is not None and (low > 0 or high < 0))})
    return comparisons


def sides_recompute(*, counted, p_row, answers, rules, n_people: int, n_positions: int) -> dict:
    """Which side people chose, over the main and catch answers (the report's one-side check)."""
    position = exclusions.position_counts(p_row[counted], answers["shown_position"][counted], n_people, n_positions)
    sides = exclusions.side_summary(position, max_fraction=rules.one_side_max_fraction,
                                    min_trials=rules.one_side_min_trials)
    sides["answers_unknown_position"] = int(counted.sum()) - sides["answers"]
    return sides


def collection_recompute(*, settings, trials, t_row, p_row, correct, use, answer_cond, n_cond) -> dict:
    if settings["precision_goal"] is None:
        return {"design": "fixed", "stopping_rule": FIXED_RULE.format(n=settings["ratings_per_list"])}
    jobs = settings["adaptive_sets"]
    known = np.asarray(jobs, dtype=np.int64)
    answer_job = trials["job"][t_row]
    at = np.minimum(np.searchsorted(known, answer_job), known.size - 1)
    answer_set = np.where(known[at] == answer_job, at, -1)
    in_set = use & (answer_set >= 0)
    per_set = interval.condition_intervals(correct=correct[in_set], participants=p_row[in_set], items=t_row[in_set],
                                           conditions=answer_set[in_set], n_conditions=len(jobs))
    pooled = interval.condition_intervals(correct=correct[use], participants=p_row[use], items=t_row[use],
                                          conditions=answer_cond[use], n_conditions=n_cond)
    return {"design": "adaptive", "goal": settings["precision_goal"],
            "sets": [{"iri_job": job, **i.as_dict(), "answers": i.n_answers} for job, i in zip(jobs, per_set)],
            "conditions": [i.as_dict() for i in pooled]}


def recognition_recompute(*, trials, t_row, p_row, correct, use, answer_cond, n_cond, units_all, mistimed_answers,
                          n_boot, seed, level, **_) -> dict:
    verdict = np.array([trials["label_match"][t] for t in t_row], dtype=object)
    known = use & np.array([v is not None for v in verdict], dtype=bool)
    arrays = {"correct": correct[known], "network_correct": verdict[known].astype(bool), "participants": p_row[known],
              "items": t_row[known], "n_categories": trials["n_options"][t_row[known]],
              "units": units_all[t_row[known]]}
    by_condition = recognition.recognition_by_condition(**arrays, conditions=answer_cond[known], n_conditions=n_cond,
                                                        n_boot=n_boot, seed=seed, level=level)
    for row in by_condition:
        row.pop("condition")
    return {"answers_without_network_verdict": int((use & ~known).sum()), "mistimed_answers": mistimed_answers,
            "overall": recognition.recognition_overall(**arrays, n_boot=n_boot, seed=seed, level=level),
            "conditions": by_condition}


# ---------------------------------------------------------------------------------------------
# 5. The comparison


def compare(recomputed, archived, path: str, out: dict, tolerance: float) -> None:
    """Walk what was recomputed; each leaf must equal the archived report's (floats within ``tolerance``)."""
    if isinstance(recomputed, dict):
        if not isinstance(archived, dict):
            out["different"].append(f"{path}: the report has {archived!r}, not a mapping")
            return
        for key, value in recomputed.items():
            tol = 1e-9 if key in ("sets",) or (path.startswith("collection") and key == "conditions") else tolerance
            compare(value, archived.get(key, "<missing>"), f"{path}.{key}" if path else key, out, tol)
        return
    if isinstance(recomputed, (list, tuple)):
        if not isinstance(archived, (list, tuple)) or len(archived) != len(recomputed):
            out["different"].append(f"{path}: {len(recomputed)} entries recomputed, the report has {archived!r:.80}")
            return
        for k, (mine, theirs) in enumerate(zip(recomputed, archived)):
            compare(mine, theirs, f"{path}[{k}]", out, tolerance)
        return
    same = recomputed == archived
    if not same and isinstance(recomputed, float) and isinstance(archived, (int, float)) and tolerance:
        same = math.isclose(recomputed, archived, rel_tol=tolerance, abs_tol=tolerance)
        out["largest_gap"] = max(out["largest_gap"], abs(recomputed - archived))  # the t quantile's rounding only
    out["compared"] += 1
    if not same:
        out["different"].append(f"{path}: recomputed {recomputed!r}, the report has {archived!r}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--json", help="write the comparison to this file")
    args = parser.parse_args(argv)
    problems = manifest_check(root=HERE)
    if problems:
        print("The archive does not match its manifest; nothing was recomputed:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_TAMPERED
    report = json.loads((HERE / "report" / "report.json").read_text(encoding="utf-8"))
    design = json.loads((HERE / "design" / "design.json").read_text(encoding="utf-8"))
    recomputed = report_recompute(data=arrays_load(root=HERE, slug=report["survey"]), design=design)
    result = {"compared": 0, "different": [], "largest_gap": 0.0}
    compare(json.loads(json.dumps(recomputed)), report, "", result, 0.0)
    result["sections"] = sorted(recomputed)
    print(f"{report['survey']}: {result['compared']} numbers and labels of the report recomputed from the CSVs "
          f"({', '.join(result['sections'])}).")
    for c, row in enumerate(recomputed["conditions"]):
        print(f"  {row['condition'] or c}: alignment {row['alignment']}, {n_boot_text(design)} interval "
              f"[{row['ci_low']}, {row['ci_high']}], n = {row['n_answers']}")
    if result["different"]:
        print(f"{len(result['different'])} differ from report/report.json:")
        for line in result["different"]:
            print(f"  - {line}")
    else:
        gap = f" (the adaptive intervals within {result['largest_gap']:.1e})" if result["largest_gap"] else ""
        print(f"All identical to report/report.json{gap}.")
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "recomputed": recomputed}, indent=2), encoding="utf-8")
    return EXIT_DIFFERENT if result["different"] else 0


def n_boot_text(design: dict) -> str:
    a = design["analysis"]
    return f"{round(a['level'] * 100)} % bootstrap ({a['n_boot']} resamples, seed {a['seed']})"


if __name__ == "__main__":
    sys.exit(main())
