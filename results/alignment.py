"""Alignment statistics on plain arrays. Pure numpy: no Django, no querysets, no torch.

Every function takes flat arrays (one entry per answer, or per item) and returns numbers with their
uncertainty. Where a number cannot be computed (no answers, zero variance) it is ``None``, never NaN.

Vocabulary
- answer: one response of one participant to one trial; ``correct`` = it chose the target (2AFC) or
  the right reference (clustering).
- item: a trial (the same query and options for everyone who saw it).
- unit: what the bootstrap resamples on the stimulus side (the service passes the target photo, so
  conditions that share target photos are compared *paired*; without units the item is the unit).
- condition: backbone x checkpoint x training x recipe x seed kind x layer (an int code here).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

Z95 = 1.959963984540054

# Participant-level and answer-level exclusion rules, in the order reports list them.
EXCLUSION_RULES = {
    "pilot": "pilot sessions (is_pilot)",
    "bot": "bot sessions (is_bot)",
    "flagged": "flagged for exclusion by the survey (exclusion flags)",
    "incomplete": "sessions that never completed",
    "catch_accuracy": "catch-trial accuracy below the threshold",
    "rt_floor": "answers faster than the RT floor (answer level)",
}


def finite_or_none(value) -> float | None:
    """A plain float, or None for NaN/inf/None (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def dense_codes(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Map arbitrary non-negative ids to 0..K-1 (order kept) without sorting when the ids are small."""
    codes = np.asarray(codes)
    if codes.size == 0:
        return codes.astype(np.int64), 0
    low, high = int(codes.min()), int(codes.max())
    if low >= 0 and high < 50_000_000:
        used = np.bincount(codes, minlength=high + 1) > 0
        remap = np.cumsum(used) - 1
        return remap[codes].astype(np.int64), int(used.sum())
    uniques, inverse = np.unique(codes, return_inverse=True)
    return inverse.astype(np.int64), int(uniques.size)


# ---------------------------------------------------------------------------------------------
# Intervals


def wilson_interval(successes: int, n: int, *, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval for a binomial share (answers treated as independent)."""
    if n <= 0:
        return None, None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact bounds at the edges (no rounding residue)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return float(low), float(high)


def _resample_weights(rng: np.random.Generator, n_units: int, n_boot: int) -> np.ndarray:
    """(n_boot, n_units) random weights with mean 1 and variance 1 per resample, float32.

    Exponential weights (the Bayesian bootstrap, Rubin 1981), normalised to mean 1 in each resample: the same
    first two moments as multinomial or Poisson(1) resampling counts, and the reweighting scheme Owen & Eckles
    (2012) use for bootstrapping arrays (participants x items), but several times cheaper to draw and smooth.
    """
    weights = rng.standard_exponential((n_boot, n_units), dtype=np.float32)
    weights /= weights.mean(axis=1, keepdims=True)
    return weights


def _percentiles(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column of (n_boot, k) draws, ignoring NaN (resamples without data)."""
    tail = (1 - level) / 2 * 100
    out_low = np.full(draws.shape[1], np.nan)
    out_high = np.full(draws.shape[1], np.nan)
    ok = ~np.isnan(draws).all(axis=0)
    if ok.any():
        low, high = np.nanpercentile(draws[:, ok], [tail, 100 - tail], axis=0)
        out_low[ok], out_high[ok] = low, high
    return out_low, out_high


def bootstrap_shares(
    correct: np.ndarray,
    participants: np.ndarray,
    units: np.ndarray | None,
    conditions: np.ndarray,
    n_conditions: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    method: str = "aggregated",
) -> np.ndarray:
    """(n_boot, n_conditions) bootstrap replicates of the share correct per condition.

    Participants and units are resampled jointly for all conditions (one weight per participant and per
    unit in each resample), so the replicates of two conditions are paired wherever they share people or
    stimuli, and ``a - b`` over the replicates is a paired difference.

    method "aggregated" (default, O(n_boot x (participants + units))): the two-way (participant x unit)
    bootstrap to first order, on per-participant and per-unit aggregated counts:
        hits*  = sum_p w_p Y_pc + sum_u v_u Y_uc - Y_c     (same for answers N)
    which drops the participant x unit interaction term. With one answer per participant-unit cell that
    term is answer-level noise, which each main effect already carries once, so the interval stays
    conservative (Owen 2007, "The pigeonhole bootstrap"). Replicates are clipped to [0, 1]; a replicate
    without answers for a condition is NaN there.
    method "exact": sum_answers w_p v_u y / sum_answers w_p v_u, O(n_boot x answers); for checking.
    Without units only participants are resampled (the exact one-way cluster bootstrap).
    """
    correct = np.asarray(correct, dtype=np.float64)
    conditions = np.asarray(conditions, dtype=np.int64)
    p_idx, n_p = dense_codes(participants)
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, n_conditions))
    if correct.size == 0:
        out[:] = np.nan
        return out
    if units is not None:
        u_idx, n_u = dense_codes(units)
    chunk = max(1, min(n_boot, 4_000_000 // max(n_p, 1)))
    if method == "exact":
        chunk = max(1, min(chunk, 20_000_000 // max(correct.size, 1)))
    if method == "aggregated":
        y_p = np.bincount(p_idx * n_conditions + conditions, weights=correct, minlength=n_p * n_conditions).reshape(n_p, n_conditions).astype(np.float32)
        n_pc = np.bincount(p_idx * n_conditions + conditions, minlength=n_p * n_conditions).reshape(n_p, n_conditions).astype(np.float32)
        if units is not None:
            y_u = np.bincount(u_idx * n_conditions + conditions, weights=correct, minlength=n_u * n_conditions).reshape(n_u, n_conditions).astype(np.float32)
            n_uc = np.bincount(u_idx * n_conditions + conditions, minlength=n_u * n_conditions).reshape(n_u, n_conditions).astype(np.float32)
            yn_u = np.hstack([y_u, n_uc])
            yn_tot = np.concatenate([y_p.sum(axis=0, dtype=np.float64), n_pc.sum(axis=0, dtype=np.float64)])
        yn_p = np.hstack([y_p, n_pc])
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        w_p = _resample_weights(rng, n_p, stop - start)
        w_u = _resample_weights(rng, n_u, stop - start) if units is not None else None
        if method == "exact":
            weights = w_p[:, p_idx].astype(np.float64) * (w_u[:, u_idx] if w_u is not None else 1.0)
            hits = np.stack([np.bincount(conditions, weights=row * correct, minlength=n_conditions) for row in weights])
            answers = np.stack([np.bincount(conditions, weights=row, minlength=n_conditions) for row in weights])
        else:
            both = (w_p @ yn_p).astype(np.float64)  # hits and answers in one product
            if w_u is not None:
                both += (w_u @ yn_u).astype(np.float64) - yn_tot
            hits, answers = both[:, :n_conditions], both[:, n_conditions:]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(answers > 0, hits / np.where(answers > 0, answers, 1), np.nan)
        out[start:stop] = np.clip(share, 0.0, 1.0)
    return out


@dataclass(frozen=True)
class Alignment:
    """Share of answers that chose the target, with a 95 % bootstrap CI and a Wilson interval."""

    alignment: float | None
    ci_low: float | None
    ci_high: float | None
    n_answers: int
    n_participants: int
    n_items: int = 0
    n_correct: int = 0
    wilson_low: float | None = None
    wilson_high: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ConditionTable:
    """Per-condition alignment (arrays of length n_conditions) and the bootstrap replicates behind the CIs."""

    estimates: list[Alignment]
    draws: np.ndarray = field(repr=False)  # (n_boot, n_conditions)
    level: float = 0.95


def condition_alignment(
    correct: np.ndarray,
    participants: np.ndarray,
    items: np.ndarray,
    conditions: np.ndarray,
    n_conditions: int,
    *,
    units: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    method: str = "aggregated",
) -> ConditionTable:
    """Alignment per condition: share correct, n of answers/participants/items, bootstrap CI, Wilson interval.

    The bootstrap is two-way: participants and units (``units`` if given, else the items).
    """
    correct = np.asarray(correct, dtype=bool)
    participants, items, conditions = (np.asarray(a) for a in (participants, items, conditions))
    if not (correct.shape == participants.shape == items.shape == conditions.shape):
        raise ValueError("correct, participants, items and conditions must have the same length")
    units = items if units is None else np.asarray(units)
    draws = bootstrap_shares(correct, participants, units, conditions, n_conditions, n_boot=n_boot, seed=seed, method=method)
    low, high = _percentiles(draws, level)
    k = np.bincount(conditions, weights=correct, minlength=n_conditions)
    n = np.bincount(conditions, minlength=n_conditions)
    n_people = _distinct_per_condition(participants, conditions, n_conditions)
    n_items = _distinct_per_condition(items, conditions, n_conditions)
    estimates = []
    for c in range(n_conditions):
        if n[c] == 0:
            estimates.append(Alignment(None, None, None, 0, 0))
            continue
        w_low, w_high = wilson_interval(int(k[c]), int(n[c]))
        estimates.append(
            Alignment(
                alignment=float(k[c] / n[c]),
                ci_low=finite_or_none(low[c]),
                ci_high=finite_or_none(high[c]),
                n_answers=int(n[c]),
                n_participants=int(n_people[c]),
                n_items=int(n_items[c]),
                n_correct=int(k[c]),
                wilson_low=w_low,
                wilson_high=w_high,
            )
        )
    return ConditionTable(estimates, draws, level)


def _distinct_per_condition(codes: np.ndarray, conditions: np.ndarray, n_conditions: int) -> np.ndarray:
    if codes.size == 0:
        return np.zeros(n_conditions, dtype=np.int64)
    dense, k = dense_codes(codes)
    seen = np.bincount(conditions.astype(np.int64) * k + dense, minlength=n_conditions * k).reshape(n_conditions, k) > 0
    return seen.sum(axis=1)


def alignment_estimate(
    chose_target: np.ndarray,
    participants: np.ndarray,
    items: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Alignment:
    """One condition: point estimate, percentile bootstrap CI (over participants, and items when given)."""
    chose_target = np.asarray(chose_target, dtype=bool)
    participants = np.asarray(participants)
    if chose_target.shape != participants.shape:
        raise ValueError("chose_target and participants must have the same length")
    if chose_target.size == 0:
        return Alignment(None, None, None, 0, 0)
    one = np.zeros(chose_target.size, dtype=np.int64)
    draws = bootstrap_shares(chose_target, participants, items, one, 1, n_boot=n_boot, seed=seed)
    low, high = _percentiles(draws, level)
    k, n = int(chose_target.sum()), int(chose_target.size)
    w_low, w_high = wilson_interval(k, n)
    n_items = int(np.unique(items).size) if items is not None else 0
    return Alignment(
        k / n, finite_or_none(low[0]), finite_or_none(high[0]), n, int(np.unique(participants).size), n_items, k, w_low, w_high
    )


def difference_interval(draws_a: np.ndarray, draws_b: np.ndarray, *, level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile CI of a - b from paired bootstrap replicates (resamples where either is missing are dropped)."""
    diff = np.asarray(draws_a) - np.asarray(draws_b)
    diff = diff[~np.isnan(diff)]
    if diff.size == 0:
        return None, None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diff, [tail, 100 - tail])
    return float(low), float(high)


# ---------------------------------------------------------------------------------------------
# Exclusions


@dataclass(frozen=True)
class ExclusionRules:
    catch_min_accuracy: float = 0.75
    rt_floor_ms: float = 200.0
    require_complete: bool = True
    exclude_pilot: bool = True
    exclude_bots: bool = True

    def describe(self) -> dict:
        return asdict(self)


KIND_MAIN, KIND_CATCH, KIND_PRACTICE = 0, 1, 2


def exclusions_apply(
    *,
    participant: np.ndarray,
    kind: np.ndarray,
    correct: np.ndarray,
    rt_ms: np.ndarray,
    participant_flags: dict[str, np.ndarray],
    rules: ExclusionRules,
) -> tuple[np.ndarray, list[dict]]:
    """Which main-trial answers stay in, and how many each rule removed.

    participant: dense index (0..P-1) per answer; kind: KIND_* per answer; participant_flags: bool arrays of
    length P for "pilot", "bot", "flagged", "completed" (missing keys: the rule does not apply).
    Returns (included mask over answers: main, not excluded) and one count row per rule:
    {rule, description, participants, answers} where answers are main-trial answers the rule removes on its
    own (a participant can be caught by several rules; the total is reported separately by the caller).
    """
    participant = np.asarray(participant, dtype=np.int64)
    n_people = next((len(v) for v in participant_flags.values()), int(participant.max(initial=-1)) + 1)
    main = np.asarray(kind) == KIND_MAIN
    correct = np.asarray(correct, dtype=bool)
    flagged_people: dict[str, np.ndarray] = {}
    if rules.exclude_pilot and "pilot" in participant_flags:
        flagged_people["pilot"] = np.asarray(participant_flags["pilot"], dtype=bool)
    if rules.exclude_bots and "bot" in participant_flags:
        flagged_people["bot"] = np.asarray(participant_flags["bot"], dtype=bool)
    if "flagged" in participant_flags:
        flagged_people["flagged"] = np.asarray(participant_flags["flagged"], dtype=bool)
    if rules.require_complete and "completed" in participant_flags:
        flagged_people["incomplete"] = ~np.asarray(participant_flags["completed"], dtype=bool)
    catch = np.asarray(kind) == KIND_CATCH
    if catch.any():
        n_catch = np.bincount(participant[catch], minlength=n_people)
        k_catch = np.bincount(participant[catch], weights=correct[catch], minlength=n_people)
        with np.errstate(divide="ignore", invalid="ignore"):
            accuracy = np.where(n_catch > 0, k_catch / np.maximum(n_catch, 1), 1.0)
        flagged_people["catch_accuracy"] = (n_catch > 0) & (accuracy < rules.catch_min_accuracy)
    excluded = np.zeros(participant.size, dtype=bool)
    counts = []
    for rule, description in EXCLUSION_RULES.items():
        if rule == "rt_floor":
            fast = main & (np.asarray(rt_ms, dtype=np.float64) < rules.rt_floor_ms)
            counts.append({"rule": rule, "description": description, "participants": int(np.unique(participant[fast]).size), "answers": int(fast.sum())})
            excluded |= fast
            continue
        people = flagged_people.get(rule)
        if people is None:
            counts.append({"rule": rule, "description": description, "participants": 0, "answers": 0, "applies": False})
            continue
        hit = people[participant] & main
        counts.append({"rule": rule, "description": description, "participants": int(people.sum()), "answers": int(hit.sum())})
        excluded |= people[participant]
    return main & ~excluded, counts


# ---------------------------------------------------------------------------------------------
# Agreement between raters


def rating_counts(items: np.ndarray, choices: np.ndarray, n_items: int, n_categories: int) -> np.ndarray:
    """(n_items, n_categories) how many raters chose each category for each item (items: dense 0..n-1)."""
    items = np.asarray(items, dtype=np.int64)
    choices = np.asarray(choices, dtype=np.int64)
    return np.bincount(items * n_categories + choices, minlength=n_items * n_categories).reshape(n_items, n_categories)


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa over the items with >= 2 ratings (rows: items, columns: categories).

    Items may have different numbers of raters: P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1)),
    P_bar = mean_i P_i, p_j = sum_i n_ij / sum_i n_i, P_e = sum_j p_j^2, kappa = (P_bar - P_e) / (1 - P_e).
    None when no item has two ratings or every rating falls in one category (P_e = 1).
    """
    counts = np.asarray(counts, dtype=np.float64)
    n_i = counts.sum(axis=1)
    counts, n_i = counts[n_i >= 2], n_i[n_i >= 2]
    if counts.shape[0] == 0:
        return None
    p_i = ((counts**2).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_j = counts.sum(axis=0) / n_i.sum()
    p_e = float((p_j**2).sum())
    if p_e >= 1.0:
        return None
    return float((p_i.mean() - p_e) / (1 - p_e))


def plurality_correct(counts: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per item: 1 if the most chosen option is the target, 0 if another option, -1 if tied or unrated."""
    counts = np.asarray(counts)
    top = counts.max(axis=1)
    unique_top = (counts == top[:, None]).sum(axis=1) == 1
    winner = counts.argmax(axis=1)
    out = np.where(winner == np.asarray(target), 1, 0)
    return np.where(unique_top & (top > 0), out, -1)


# ---------------------------------------------------------------------------------------------
# Error consistency (Geirhos, Meding & Wichmann 2020; model-vs-human)


@dataclass(frozen=True)
class ErrorConsistency:
    kappa: float | None
    c_obs: float | None
    c_exp: float | None
    p_1: float | None
    p_2: float | None
    n_trials: int

    def as_dict(self) -> dict:
        return asdict(self)


def error_consistency_from_rates(*, p_1: float, p_2: float, c_obs: float) -> tuple[float, float]:
    """(kappa, c_exp) from two accuracies and the observed consistency; kappa = 1 when c_obs = 1."""
    c_exp = p_1 * p_2 + (1 - p_1) * (1 - p_2)
    if c_obs >= 1.0:
        return 1.0, c_exp
    return (c_obs - c_exp) / (1 - c_exp), c_exp


def error_consistency(correct_1: np.ndarray, correct_2: np.ndarray) -> ErrorConsistency:
    """Trial-level error consistency of two decision makers on the same trials (bool arrays, same order)."""
    a = np.asarray(correct_1, dtype=bool)
    b = np.asarray(correct_2, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("both decision makers must answer the same trials")
    if a.size == 0:
        return ErrorConsistency(None, None, None, None, None, 0)
    p_1, p_2, c_obs = float(a.mean()), float(b.mean()), float((a == b).mean())
    kappa, c_exp = error_consistency_from_rates(p_1=p_1, p_2=p_2, c_obs=c_obs)
    return ErrorConsistency(float(kappa), c_obs, float(c_exp), p_1, p_2, int(a.size))


# ---------------------------------------------------------------------------------------------
# Human ceiling


def spearman_brown(r: float, factor: float = 2.0) -> float:
    """Reliability of a test `factor` times as long: factor * r / (1 + (factor - 1) * r)."""
    return factor * r / (1 + (factor - 1) * r)


@dataclass(frozen=True)
class Ceiling:
    ceiling: float | None  # Spearman-Brown corrected split-half correlation of per-item accuracy
    split_half_r: float | None
    n_items: int
    n_splits: int
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def split_half_ceiling(
    correct: np.ndarray, participants: np.ndarray, items: np.ndarray, *, n_splits: int = 100, seed: int = 0
) -> Ceiling:
    """Split the participants at random into two halves; correlate per-item accuracy between the halves
    (Pearson, over items rated in both halves); average r over the splits; correct with Spearman-Brown."""
    correct = np.asarray(correct, dtype=np.float64)
    p_idx, n_p = dense_codes(participants)
    i_idx, n_i = dense_codes(items)
    if n_p < 2 or n_i < 3:
        return Ceiling(None, None, n_i, 0, "Needs at least two participants and three items.")
    rng = np.random.default_rng(seed)
    half = np.argsort(rng.random((n_splits, n_p)), axis=1) < n_p // 2  # (S, P): True = first half
    rs = []
    used_items = 0
    base = float(np.bincount(i_idx).max() + 1)  # hits and answers in one bincount: weight = base * 1 + correct
    weights = base + correct
    item2 = i_idx * 2
    for s in range(n_splits):  # a loop over splits, each one vectorised over answers
        packed = np.bincount(item2 + half[s, p_idx], weights=weights, minlength=2 * n_i).reshape(n_i, 2)
        n = np.floor(packed / base)
        k = packed - n * base
        both = (n > 0).all(axis=1)
        if both.sum() < 3:
            continue
        acc = k[both] / n[both]
        a, b = acc[:, 0] - acc[:, 0].mean(), acc[:, 1] - acc[:, 1].mean()
        denom = np.sqrt((a * a).sum() * (b * b).sum())
        if denom > 0:
            rs.append((a * b).sum() / denom)
            used_items = max(used_items, int(both.sum()))
    if not rs:
        return Ceiling(None, None, n_i, n_splits, "Per-item accuracy does not vary between items (or too few items in both halves).")
    r = float(np.mean(rs))
    return Ceiling(finite_or_none(spearman_brown(r)), r, used_items, len(rs))
