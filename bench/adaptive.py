"""Benchmark of adaptive collection as it ships: one simulator of the real enrollment decisions, against the fixed
design and an ideal oracle.

    python bench/adaptive.py --json             # 1000 simulated studies per scenario, goal 0.05
    python bench/adaptive.py --quick            # 40 studies: proves the script works (a readable summary)

No database, no Django. What it simulates, step by step as surveys/services does it (the decisions are the pure
functions of stats/adaptive.py, called with the same arguments):

- Build: each IRI set has ITEMS IRIs (one 2AFC trial each); ``blocks_layout`` and ``blocks_split`` cut them into
  blocks of BLOCK_TRIALS trials of one set; every block is a trial list with N places (``places_per_block``).
- Enrollment: the rng is ``np.random.default_rng([rng_seed, ordinal])`` (ordinal: live participants enrolled
  before); ``blocks_choose`` gets each block's places free and held by sessions under way, and the last estimate;
  the participant holds one place in each block chosen. Nobody enrolls once collection has stopped, past the cap,
  or when no block is chosen (the study is full for now).
- People in flight: ``concurrency`` sessions at a time; the one that ends next is drawn at random among them; a
  share ``abandon_share`` leave (or time out) and free their places, then re-estimate if due; the others complete.
- Completion: the places are filled, the answers join the data; ``estimate_due`` says whether to re-estimate
  (``precision_every``, every completion while the goal is pending or once stopped, or no useful place left); an
  estimate is ``condition_intervals`` (the design-effect Wilson interval) then ``collection_verdict`` (goal only
  with no session under way, else "goal_pending"; cap; no_place; once stopped, stopped for good). Sessions under
  way when it stops (cap, no_place) still complete and re-estimate.
- The study's result: the intervals from all completed answers; it ends short of the goal when the stop reason is
  not "goal" or a set is above the goal (or under MIN_ANSWERS answers) once the sessions under way completed.

The simulated people and items (MODEL, printed in the JSON): an IRI's probability that people choose the target is
q ~ Beta(mean μ, concentration KAPPA) around its set's μ (item sd about 0.7 on the logit scale); a person has a
logit shift u ~ N(0, participant_sd) and a lapse rate λ ~ Beta(lapse_a, lapse_b) (2 % on average; on a lapse
they answer at random): P(target) = (1 - λ) expit(logit q + u) + λ / 2. A set's true value (what coverage is
measured against) is the population mean of that probability, by quadrature.

Arms:
- adaptive: the simulator above, to the goal;
- fixed N: the fixed design (lists mixing all sets round robin, ``trials_per_participant`` trials each, every
  list N ratings); the figure is the smallest N that brings every set to the goal (the same interval, at least
  MIN_ANSWERS answers) in at least half the studies, found on prefixes (the first N raters of every list) of one
  long fixed run per study;
- oracle: free allocation knowing the true values and variance components: each set gets the answers its
  interval needs at its true value with the design effect this model gives (``oracle_needs``).

Figures (JSON, or a summary): answers per arm (mean, median), adaptive ÷ oracle and adaptive ÷ fixed with Monte
Carlo standard errors, coverage of the true value per set (worst set, and the sets with a true value in [0.2, 0.8]
pooled) ± s.e., the share of studies ending short of the goal, the run time and ``goals_met``.

The collection (the simulator above) is bench/adaptive_collection.py.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import special, stats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stats.adaptive.blocks import BLOCK_TRIALS  # noqa: E402
from stats.adaptive.interval import condition_answers_needed, condition_intervals  # noqa: E402
from bench.adaptive_collection import Collection, layout_build  # noqa: E402
from stats.adaptive.stopping import (  # noqa: E402
    MIN_ANSWERS,
    conditions_done,
)

MODEL = {
    "items_per_condition": 100,
    "kappa": 20.0,  # Beta concentration of item probabilities: item sd 0.11 at p = 0.5, about 0.7 on the logit scale
    "participant_sd": 0.5,  # logit shift per participant
    "lapse_a": 1.0,
    "lapse_b": 49.0,  # mean lapse rate 2 %
    "slots": 20,  # trials per participant (trials_per_participant)
    "places_per_block": 20,  # N: places of each adaptive block
    "cap_participants": 3000,
    "concurrency": 8,  # sessions under way at a time
    "abandon_share": 0.0,  # sessions that leave or time out (their places are freed)
    "precision_every": 1,  # the survey's default: re-estimate after every completed session
    "fixed_max_n": 24,  # the long fixed run's raters per list
}
SCENARIOS = {
    "paper": [0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.25, 0.5, 0.7, 0.9],
    "uniform": list(np.round(np.linspace(0.05, 0.95, 12), 4)),
}
MID_RANGE = (0.2, 0.8)  # true values whose coverage is also pooled
GOALS = {"adaptive_over_oracle": 1.15, "adaptive_over_fixed_paper": 0.5, "worst_coverage": 0.94,
         "mid_pooled_coverage": 0.945, "studies": 1000}


# The model's true values and variance components (quadrature), and the oracle
def _item_grid(mu: float, kappa: float, n: int = 400) -> np.ndarray:
    """Equal-probability midpoints of Beta(mean mu, concentration kappa): item probabilities, each weight 1/n."""
    if mu <= 0:
        return np.zeros(n)
    return stats.beta.ppf((np.arange(n) + 0.5) / n, mu * kappa, (1 - mu) * kappa)


def condition_truth(mu: float, model: dict) -> dict:
    """True alignment (population mean of P(target)) and its item and participant variance shares (ICCs)."""
    q = _item_grid(mu, model["kappa"])
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)  # u ~ N(0, sd): E f(u) = sum w f(sd x) / sqrt(2 pi)
    weights = weights / weights.sum()
    u = model["participant_sd"] * nodes
    with np.errstate(divide="ignore"):
        f = special.expit(special.logit(q)[:, None] + u[None, :])  # (items, participants)
    a, b = model["lapse_a"], model["lapse_b"]
    lam = a / (a + b)
    lam2 = lam * lam + a * b / ((a + b) ** 2 * (a + b + 1))  # E[λ²]
    g = f @ weights  # per item: mean over participants of expit(...)
    h = f.mean(axis=0)  # per participant shift: mean over items
    theta = (1 - lam) * g.mean() + lam / 2
    var_item = (1 - lam) ** 2 * g.var()
    # per participant: 1/2 + (1-λ)(h(u) - 1/2), λ and u independent
    second = (1 - 2 * lam + lam2) * (((h - 0.5) ** 2) @ weights)
    var_person = second - ((1 - lam) * ((h - 0.5) @ weights)) ** 2
    total = theta * (1 - theta)
    return {"theta": float(theta), "icc_item": float(var_item / total) if total else 0.0,
            "icc_person": float(var_person / total) if total else 0.0}


def oracle_needs(truths: list[dict], goal: float, model: dict) -> np.ndarray:
    """Answers per set at its true value, with the design effect this model gives (fixed point in n):
    deff = 1 + icc_item (n / min(n, items) - 1) + icc_person (answers per participant - 1), times the interval's
    degrees-of-freedom factor (t_df / z)², df = min(items used, participants) - 1; at least MIN_ANSWERS."""
    k = model["items_per_condition"]
    needs = np.array([condition_answers_needed(p=t["theta"], half_width=goal) for t in truths], dtype=float)
    for _ in range(20):
        share = needs / needs.sum()
        per_person = np.maximum(1.0, model["slots"] * share)
        deff = np.array([1 + t["icc_item"] * (n / min(n, k) - 1) + t["icc_person"] * (m - 1)
                         for t, n, m in zip(truths, needs, per_person)])
        df = np.maximum(np.minimum(np.minimum(needs, k), needs / per_person) - 1, 1)
        deff = np.maximum(1.0, deff) * (stats.t.ppf(0.975, df) / stats.norm.ppf(0.975)) ** 2
        needs = np.array([condition_answers_needed(p=t["theta"], half_width=goal, design_effect=d)
                          for t, d in zip(truths, deff)], dtype=float)
    return np.maximum(needs, MIN_ANSWERS)


# One simulated study per arm
def _items_draw(mu: np.ndarray, model: dict, rng: np.random.Generator) -> np.ndarray:
    """(sets × items) logits of each IRI's probability of the target (-inf where μ = 0)."""
    kappa, k = model["kappa"], model["items_per_condition"]
    q = np.zeros((mu.size, k))
    for c, m in enumerate(mu):
        if m > 0:
            q[c] = rng.beta(m * kappa, (1 - m) * kappa, size=k)
    with np.errstate(divide="ignore"):
        return special.logit(q).ravel()


def _people_draw(n: int, model: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(0, model["participant_sd"], n), rng.beta(model["lapse_a"], model["lapse_b"], n)


def _answers_draw(logit_q: np.ndarray, shift: np.ndarray, lapse: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    prob = (1 - lapse) * special.expit(logit_q + shift) + lapse / 2
    return rng.random(prob.shape) < prob


def study_adaptive(*, mu: np.ndarray, goal: float, model: dict, rng: np.random.Generator) -> dict:
    """One study through the simulated collection, people in flight, to the end (see the module docstring)."""
    k = model["items_per_condition"]
    logit_q = _items_draw(mu, model, rng)
    layout = layout_build(units=list(range(mu.size * k)), condition_of=lambda item: item // k, n_conditions=mu.size,
                          trials_per_participant=model["slots"], places=model["places_per_block"])
    collection = Collection(layout=layout, goal=goal, rng_seed=int(rng.integers(2**31)),
                            cap_participants=model["cap_participants"], every=model["precision_every"])
    shifts, lapses = _people_draw(model["cap_participants"], model, rng)
    in_flight: list[int] = []
    while True:
        while len(in_flight) < model["concurrency"]:
            ordinal = collection.enroll()
            if ordinal is None:
                break
            in_flight.append(ordinal)
        if not in_flight:
            break
        ordinal = in_flight.pop(int(rng.integers(len(in_flight))))
        if rng.random() < model["abandon_share"]:
            collection.abandon(ordinal)
            continue
        items = collection.items_of(ordinal)
        collection.complete(ordinal, _answers_draw(logit_q[items], shifts[ordinal], lapses[ordinal], rng))
    intervals = collection.intervals()
    half_width = np.array([i.half_width for i in intervals])
    n_answers = np.array([i.n_answers for i in intervals])
    met = conditions_done(half_width=half_width, goal=goal, n_answers=n_answers).all()
    return {"answers": collection.answers, "participants": collection.completed,
            "reason": collection.estimate.reason, "short": collection.estimate.reason != "goal" or not met,
            "low": np.array([i.low for i in intervals]), "high": np.array([i.high for i in intervals]),
            "n_answers": n_answers}


def study_fixed(*, mu: np.ndarray, goal: float, model: dict, rng: np.random.Generator) -> np.ndarray:
    """One long run of the fixed design (lists mixing all sets round robin, fixed_max_n raters each); returns,
    for N = 1..fixed_max_n, whether the first N raters of every list bring every set to the goal (taken as met for
    every larger N once met for three N running)."""
    k, slots, max_n = model["items_per_condition"], model["slots"], model["fixed_max_n"]
    logit_q = _items_draw(mu, model, rng)
    units = np.arange(mu.size * k)  # set by set, as the builder lists them; lists take them round robin
    n_lists = -(-units.size // slots)
    lists = [units[i::n_lists] for i in range(n_lists)]
    list_of = np.concatenate([np.full(items.size, i) for i, items in enumerate(lists)])
    items = np.concatenate(lists)
    shifts, lapses = _people_draw(n_lists * max_n, model, rng)
    # rater r of list i is person r * n_lists + i: the first N raters of every list are the first N × n_lists people
    person = (np.arange(max_n)[:, None] * n_lists + list_of[None, :]).ravel()
    item = np.tile(items, max_n)
    correct = _answers_draw(logit_q[item], shifts[person], lapses[person], rng)
    met = np.zeros(max_n, dtype=bool)
    for n in range(1, max_n + 1):
        if n > 3 and met[n - 4:n - 1].all():  # met three times running: more raters only narrow it (saves time)
            met[n - 1:] = True
            break
        size = n * items.size
        intervals = condition_intervals(correct=correct[:size], participants=person[:size], items=item[:size],
                                        conditions=item[:size] // k, n_conditions=mu.size)
        met[n - 1] = conditions_done(half_width=np.array([i.half_width for i in intervals]), goal=goal,
                                     n_answers=np.array([i.n_answers for i in intervals])).all()
    return met


def _study_batch(args) -> list[dict]:
    """A worker's share of one scenario's studies (each with its own seeded rng, so results do not depend on the
    number of workers)."""
    mu, goal, model, seed, scenario, studies = args
    out = []
    for s in studies:
        adaptive = study_adaptive(mu=mu, goal=goal, model=model, rng=np.random.default_rng([seed, scenario, s, 0]))
        adaptive["fixed_met"] = study_fixed(mu=mu, goal=goal, model=model,
                                            rng=np.random.default_rng([seed, scenario, s, 1]))
        out.append(adaptive)
    return out


# Figures
def _ratio_se(x: np.ndarray, denominator: float) -> float:
    return float(np.std(x, ddof=1) / np.sqrt(x.size) / denominator) if x.size > 1 else 0.0


def _coverage(hits: np.ndarray) -> dict:
    share = float(hits.mean())
    return {"coverage": round(share, 4), "se": round(float(np.sqrt(share * (1 - share) / hits.size)), 4)}


def scenario_run(*, index: int, mu: list[float], studies: int, goal: float, model: dict, seed: int,
                 workers: int) -> dict:
    mu = np.asarray(mu, dtype=float)
    truths = [condition_truth(m, model) for m in mu]
    theta = np.array([t["theta"] for t in truths])
    needs = oracle_needs(truths, goal, model)
    chunks = [list(range(studies))[w::workers] for w in range(workers)]
    jobs = [(mu, goal, model, seed, index, chunk) for chunk in chunks if chunk]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = [r for batch in pool.map(_study_batch, jobs) for r in batch]
    else:
        results = [r for job in jobs for r in _study_batch(job)]

    answers = np.array([r["answers"] for r in results], dtype=float)
    covered = np.array([(r["low"] <= theta) & (theta <= r["high"]) for r in results])  # (studies, sets)
    per_set = [_coverage(covered[:, c]) for c in range(mu.size)]
    worst = int(np.argmin([c["coverage"] for c in per_set]))
    mid = (theta >= MID_RANGE[0]) & (theta <= MID_RANGE[1])
    fixed_met = np.array([r["fixed_met"] for r in results])  # (studies, N)
    met_share = fixed_met.mean(axis=0)
    reached = np.flatnonzero(met_share >= 0.5)
    fixed_n = int(reached[0]) + 1 if reached.size else None
    trials = mu.size * model["items_per_condition"]
    fixed_answers = fixed_n * trials if fixed_n else None
    oracle = float(needs.sum())
    reasons, counts = np.unique([r["reason"] or "none" for r in results], return_counts=True)
    out = {
        "p": [float(m) for m in mu],
        "true_alignment": [round(float(t), 4) for t in theta],
        "adaptive": {
            "answers_mean": round(float(answers.mean()), 1),
            "answers_median": float(np.median(answers)),
            "answers_se": round(float(answers.std(ddof=1) / np.sqrt(answers.size)) if answers.size > 1 else 0.0, 1),
            "answers_per_set_mean": [round(float(x), 1) for x in np.mean([r["n_answers"] for r in results], axis=0)],
            "participants_mean": round(float(np.mean([r["participants"] for r in results])), 1),
            "short_of_goal": _coverage(np.array([r["short"] for r in results]))["coverage"],
            "short_of_goal_se": _coverage(np.array([r["short"] for r in results]))["se"],
            "stop_reasons": {str(k): int(v) for k, v in zip(reasons, counts)},
        },
        "fixed": {
            "n": fixed_n, "answers_mean": fixed_answers, "answers_median": fixed_answers,
            "studies_meeting_goal_by_n": [round(float(x), 3) for x in met_share],
        },
        "oracle": {"answers_mean": round(oracle, 1), "answers_median": round(oracle, 1),
                   "answers_per_set": [int(x) for x in needs]},
        "adaptive_over_oracle": round(float(answers.mean()) / oracle, 4),
        "adaptive_over_oracle_se": round(_ratio_se(answers, oracle), 4),
        "adaptive_over_oracle_median": round(float(np.median(answers)) / oracle, 4),
        "adaptive_over_fixed": round(float(answers.mean()) / fixed_answers, 4) if fixed_answers else None,
        "adaptive_over_fixed_se": round(_ratio_se(answers, fixed_answers), 4) if fixed_answers else None,
        "coverage": {
            "per_set": per_set,
            "worst": {**per_set[worst], "set": worst, "true_alignment": round(float(theta[worst]), 4)},
            "mid_pooled": _coverage(covered[:, mid].ravel()) if mid.any() else None,
        },
    }
    return out


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON line (default: a readable summary)")
    parser.add_argument("--quick", action="store_true", help="40 studies per scenario")
    parser.add_argument("--studies", type=int, default=None, help="simulated studies per scenario (default 1000)")
    parser.add_argument("--goal", type=float, default=0.05, help="target half-width of every set's 95 %% interval")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append", help="only these (default all)")
    for name in ("places_per_block", "concurrency", "precision_every", "slots"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None)
    parser.add_argument("--abandon-share", type=float, default=None)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    studies = args.studies or (40 if args.quick else GOALS["studies"])
    model = dict(MODEL)
    for name in ("places_per_block", "concurrency", "precision_every", "slots", "abandon_share"):
        if getattr(args, name) is not None:
            model[name] = getattr(args, name)
    start = time.perf_counter()
    names = args.scenario or list(SCENARIOS)
    scenarios = {name: scenario_run(index=list(SCENARIOS).index(name), mu=SCENARIOS[name], studies=studies,
                                    goal=args.goal, model=model, seed=args.seed, workers=args.workers)
                 for name in names}
    goals_met = {}
    for name, s in scenarios.items():
        goals_met[f"adaptive_over_oracle_{name}_le_{GOALS['adaptive_over_oracle']}"] = (
            s["adaptive_over_oracle"] <= GOALS["adaptive_over_oracle"])
        if name == "paper":
            goals_met[f"adaptive_over_fixed_paper_le_{GOALS['adaptive_over_fixed_paper']}"] = (
                s["adaptive_over_fixed"] is not None and s["adaptive_over_fixed"] <= GOALS["adaptive_over_fixed_paper"])
        enough = studies >= GOALS["studies"]
        goals_met[f"worst_coverage_{name}_ge_{GOALS['worst_coverage']}"] = (
            enough and s["coverage"]["worst"]["coverage"] >= GOALS["worst_coverage"])
        if s["coverage"]["mid_pooled"]:
            goals_met[f"mid_pooled_coverage_{name}_ge_{GOALS['mid_pooled_coverage']}"] = (
                enough and s["coverage"]["mid_pooled"]["coverage"] >= GOALS["mid_pooled_coverage"])
    summary = {name: {
        "answers_adaptive_mean": s["adaptive"]["answers_mean"],
        "answers_adaptive_median": s["adaptive"]["answers_median"],
        "answers_fixed": s["fixed"]["answers_mean"], "fixed_n": s["fixed"]["n"],
        "answers_oracle": s["oracle"]["answers_mean"],
        "adaptive_over_oracle": [s["adaptive_over_oracle"], s["adaptive_over_oracle_se"]],
        "adaptive_over_fixed": [s["adaptive_over_fixed"], s["adaptive_over_fixed_se"]],
        "coverage_worst": [s["coverage"]["worst"]["coverage"], s["coverage"]["worst"]["se"]],
        "coverage_mid_pooled": ([s["coverage"]["mid_pooled"]["coverage"], s["coverage"]["mid_pooled"]["se"]]
                                if s["coverage"]["mid_pooled"] else None),
        "short_of_goal": [s["adaptive"]["short_of_goal"], s["adaptive"]["short_of_goal_se"]],
    } for name, s in scenarios.items()}
    figures = {
        "benchmark": "adaptive",
        "summary": summary,  # per scenario; pairs are [value, Monte Carlo standard error]
        "studies": studies,
        "goal_half_width": args.goal,
        "min_answers": MIN_ANSWERS,
        "block_trials": BLOCK_TRIALS,
        "interval": ("design-effect Wilson (two-way cluster-robust deff over participants x items, df-adjusted "
                     "effective n), 95 %"),
        "model": model,
        "scenarios": scenarios,
        "goals": GOALS,
        "goals_met": goals_met,
        "run_s": round(time.perf_counter() - start, 1),
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    for name, s in scenarios.items():
        a, cov = s["adaptive"], s["coverage"]
        mid = cov["mid_pooled"]
        print(f"{name}: answers adaptive {a['answers_mean']} (median {a['answers_median']}), fixed N={s['fixed']['n']} "
              f"{s['fixed']['answers_mean']}, oracle {s['oracle']['answers_mean']}; adaptive/oracle "
              f"{s['adaptive_over_oracle']} ± {s['adaptive_over_oracle_se']}, adaptive/fixed "
              f"{s['adaptive_over_fixed']}; coverage worst "
              f"{cov['worst']['coverage']} ± {cov['worst']['se']} (set {cov['worst']['set']}, true "
              f"{cov['worst']['true_alignment']})" + (f", mid pooled {mid['coverage']} ± {mid['se']}" if mid else "")
              + f"; short of goal {a['short_of_goal']}; stops {a['stop_reasons']}")
    print(f"goals_met: {goals_met}\nrun_s: {figures['run_s']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
