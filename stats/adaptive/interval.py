"""The interval a condition's alignment gets under adaptive stopping, and the answers a goal needs.

The interval: design-effect Wilson
----------------------------------
Answers are not independent: one participant answers several trials of a condition (a lapse-prone or a
"model-like" participant moves all of them) and one item is answered by many participants (some IRIs are easier
than others). A plain Wilson interval then undercovers, and a Wald interval on cluster-robust variance collapses
to zero width at 0 % or 100 % (where half the paper's conditions sit). The interval used here does both jobs:

1. the variance of the share is estimated two-way cluster-robust (Cameron, Gelbach & Miller 2011), with
   participants and items as crossed clusters: V = V_participant + V_item - V_participant×item, each term the sum
   over clusters of (sum of residuals y - p̂ in the cluster)² / n², the first two scaled by G/(G-1) (G = clusters);
2. the design effect deff = V / (p̂(1-p̂)/n), floored at 1 (never narrower than the binomial), turns the n answers
   into an effective sample size n_eff = n / deff (Kish);
3. with few clusters a cluster-robust variance is itself uncertain, so n_eff is shrunk by (z / t_df)², t_df the
   Student quantile on df = min(participants, items) - 1 degrees of freedom (the degrees-of-freedom-adjusted
   effective sample size of Korn & Graubard 1998; with 100 clusters it costs about 2 % of n);
4. the Wilson score interval of p̂ on that effective n: it keeps its width at p̂ = 0 or 1, where the
   cluster-robust variance is zero.

It costs a few bincounts per look, so it can be recomputed after every list (a two-way bootstrap per look could
not); ``stats.alignment`` still reports the two-way (participant × item) bootstrap beside it for fixed designs.
Its coverage under the adaptive rule (``stopping``, ``blocks``), with item heterogeneity and participant noise, is
what ``bench/adaptive.py`` measures (goal: ≥ 0.94 for every condition at a nominal 95 %).

Half-width = (high - low) / 2 of that interval; a condition without answers has the interval [0, 1] and
half-width 0.5.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from ..alignment import Z95, dense_codes, dense_codes_with_values, wilson_interval

# Error messages (the field first, so a 400 or a command can name it).
HALF_WIDTH_RANGE = "half_width: must lie in (0, 0.5); got {value}"
P_RANGE = "p: every expected alignment must lie in [0, 1]; got {value}"
DESIGN_EFFECT_RANGE = "design_effect: must be 1 or more; got {value}"


@dataclass(frozen=True)
class ConditionInterval:
    """One condition's alignment with its design-effect Wilson interval (see the module docstring)."""

    alignment: float | None  # share of answers that chose the target
    low: float
    high: float
    half_width: float  # (high - low) / 2
    n_answers: int
    n_effective: float  # n_answers / design_effect x (z / t_df)²
    design_effect: float  # two-way cluster-robust variance / binomial variance, at least 1
    n_participants: int
    n_items: int

    def as_dict(self) -> dict:
        return asdict(self)


def _cluster_squares(residual: np.ndarray, cluster: np.ndarray, cluster_condition: np.ndarray, n_conditions: int):
    """Per condition: the sum over its clusters of (sum of the cluster's residuals)², and how many clusters it has.
    ``cluster`` numbers each answer's cluster 0..G-1; ``cluster_condition`` gives each cluster's condition."""
    sums = np.bincount(cluster, weights=residual, minlength=cluster_condition.size)
    squares = np.bincount(cluster_condition, weights=sums * sums, minlength=n_conditions)
    return squares, np.bincount(cluster_condition, minlength=n_conditions)


def _wilson_arrays(successes: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """``alignment.wilson_interval`` on arrays (n > 0 everywhere): exact 0 and 1 bounds at the edges."""
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = np.where(p <= 0, 0.0, np.maximum(0.0, centre - half))
    high = np.where(p >= 1, 1.0, np.minimum(1.0, centre + half))
    return low, high


def _interval_arrays(correct, participants, items, conditions, n_conditions: int, z: float) -> dict[str, np.ndarray]:
    """The design-effect Wilson interval of every condition as arrays (see condition_intervals)."""
    correct = np.asarray(correct, dtype=np.float64)
    participants, items = np.asarray(participants), np.asarray(items)
    conditions = np.asarray(conditions, dtype=np.int64)
    if not (correct.shape == participants.shape == items.shape == conditions.shape):
        raise ValueError("correct, participants, items and conditions must have the same length")
    n = np.bincount(conditions, minlength=n_conditions).astype(np.float64)
    k = np.bincount(conditions, weights=correct, minlength=n_conditions)
    share = np.divide(k, n, out=np.zeros(n_conditions), where=n > 0)
    out = {"alignment": share, "low": np.zeros(n_conditions), "high": np.ones(n_conditions), "n": n,
           "n_effective": np.zeros(n_conditions), "design_effect": np.ones(n_conditions),
           "participants": np.zeros(n_conditions, dtype=np.int64), "items": np.zeros(n_conditions, dtype=np.int64)}
    if correct.size == 0:
        return out
    residual = correct - share[conditions]
    p_idx, n_p = dense_codes(participants)
    i_idx, n_i = dense_codes(items)
    squares, clusters = {}, {}
    for name, key, span in (("participants", p_idx, n_p), ("items", i_idx, n_i)):
        cluster, values = dense_codes_with_values(conditions * span + key)
        squares[name], clusters[name] = _cluster_squares(residual, cluster, values // span, n_conditions)
    # (condition, participant, item) cells: sorted, as their key range can be far too large for a bincount
    cells, cell_of = np.unique((conditions * n_p + p_idx) * n_i + i_idx, return_inverse=True)
    squares["cells"], _ = _cluster_squares(residual, cell_of, cells // (n_p * n_i), n_conditions)

    def small_sample(g: np.ndarray) -> np.ndarray:  # G / (G - 1); 1 where one cluster leaves nothing to correct
        return np.where(g > 1, g / np.maximum(g - 1, 1), 1.0)

    seen = n > 0
    safe_n = np.where(seen, n, 1.0)
    robust = (squares["participants"] * small_sample(clusters["participants"])
              + squares["items"] * small_sample(clusters["items"]) - squares["cells"]) / safe_n**2
    binomial = share * (1 - share) / safe_n
    deff = np.where(binomial > 0, np.maximum(1.0, robust / np.where(binomial > 0, binomial, 1.0)), 1.0)
    df = np.maximum(np.minimum(clusters["participants"], clusters["items"]) - 1, 1)
    level = 2 * stats.norm.cdf(z) - 1
    n_eff = safe_n / deff * (z / stats.t.ppf((1 + level) / 2, df)) ** 2
    low, high = _wilson_arrays(share * n_eff, n_eff, z)
    out.update(
        low=np.where(seen, low, 0.0), high=np.where(seen, high, 1.0), n_effective=np.where(seen, n_eff, 0.0),
        design_effect=deff, participants=clusters["participants"], items=clusters["items"],
    )
    return out


def condition_intervals(
    *,
    correct: np.ndarray,
    participants: np.ndarray,
    items: np.ndarray,
    conditions: np.ndarray,
    n_conditions: int,
    z: float = Z95,
) -> list[ConditionInterval]:
    """Each condition's alignment and its design-effect Wilson interval (two-way cluster-robust design effect over
    participants and items, effective sample size adjusted for the degrees of freedom, Wilson score interval on it;
    z = 1.96 for 95 %).

    One entry per answer in each array. A condition without answers gets alignment None and the interval [0, 1].
    """
    a = _interval_arrays(correct, participants, items, conditions, n_conditions, z)
    return [
        ConditionInterval(
            alignment=float(a["alignment"][c]) if a["n"][c] else None,
            low=float(a["low"][c]),
            high=float(a["high"][c]),
            half_width=float((a["high"][c] - a["low"][c]) / 2),
            n_answers=int(a["n"][c]),
            n_effective=float(a["n_effective"][c]),
            design_effect=float(a["design_effect"][c]),
            n_participants=int(a["participants"][c]),
            n_items=int(a["items"][c]),
        )
        for c in range(n_conditions)
    ]


def condition_half_width(
    *,
    correct: np.ndarray,
    participants: np.ndarray,
    items: np.ndarray,
    conditions: np.ndarray,
    n_conditions: int,
    z: float = Z95,
) -> np.ndarray:
    """(n_conditions,) half-widths (high - low) / 2 of the design-effect Wilson intervals of condition_intervals
    (0.5 for a condition without answers: its interval is [0, 1])."""
    a = _interval_arrays(correct, participants, items, conditions, n_conditions, z)
    return (a["high"] - a["low"]) / 2


def wilson_half_width(*, p: float, n: float, z: float = Z95) -> float:
    """Half-width of the Wilson interval when the observed share equals p on n (effective) answers; 0.5 at n = 0."""
    if n <= 0:
        return 0.5
    low, high = wilson_interval(p * n, n, z=z)
    return (high - low) / 2


def condition_answers_needed(*, p: float, half_width: float, design_effect: float = 1.0, z: float = Z95) -> int:
    """The fewest answers whose design-effect Wilson interval, observed share p, has a half-width ≤ half_width.

    The half-width falls as n grows, so a bisection on n finds it. This is the need *at* the expected p with z
    (many clusters; fold a t_df / z factor, squared, into design_effect for few): the realised need varies with the
    data (the bench measures by how much).
    """
    if not 0 < half_width < 0.5:
        raise ValueError(HALF_WIDTH_RANGE.format(value=half_width))
    if not 0 <= p <= 1:
        raise ValueError(P_RANGE.format(value=p))
    if not (math.isfinite(design_effect) and design_effect >= 1):
        raise ValueError(DESIGN_EFFECT_RANGE.format(value=design_effect))
    high = 1
    while wilson_half_width(p=p, n=high / design_effect, z=z) > half_width:
        high *= 2
    low = high // 2  # half-width(low) > goal, or low = 0
    while high - low > 1:
        mid = (low + high) // 2
        if wilson_half_width(p=p, n=mid / design_effect, z=z) <= half_width:
            high = mid
        else:
            low = mid
    return max(high, 1)



@dataclass(frozen=True)
class ClusterCorrelations:
    """One set's answers split into the parts of its design effect: 1 + ρ_P (m − 1) + ρ_I (r − 1) = the interval's
    design effect (before its floor at 1). A part is None where its clusters hold one answer each (nothing to see)
    or every answer agrees (no variance to share)."""

    participant: float | None  # ρ_P
    item: float | None  # ρ_I
    design_effect: float  # the interval's (condition_intervals), at least 1
    n_answers: int
    n_participants: int
    n_items: int
    answers_per_participant: float  # m = Σ m_i² / n: the cluster size the design effect weighs
    answers_per_item: float  # r = Σ r_j² / n

    def as_dict(self) -> dict:
        return asdict(self)


def cluster_correlations(
    *, correct: np.ndarray, participants: np.ndarray, items: np.ndarray, conditions: np.ndarray, n_conditions: int,
) -> list[ClusterCorrelations]:
    """Per condition, its participant and item intra-class correlations, read off the interval's design effect:
    deff − 1 = A_P + A_I with A = (G/(G−1) Σ_clusters (Σ residuals)² − Σ residuals²) / (n p̂(1−p̂)), the part of the
    two-way cluster-robust variance each kind of cluster adds, and ρ = A / (m − 1) (resp. r − 1). One entry per
    answer in each array, as condition_intervals."""
    correct = np.asarray(correct, dtype=np.float64)
    conditions = np.asarray(conditions, dtype=np.int64)
    n = np.bincount(conditions, minlength=n_conditions).astype(np.float64)
    share = np.divide(np.bincount(conditions, weights=correct, minlength=n_conditions), n,
                      out=np.zeros(n_conditions), where=n > 0)
    residual = correct - share[conditions]
    p_idx, n_p = dense_codes(np.asarray(participants))
    i_idx, n_i = dense_codes(np.asarray(items))
    parts = {}
    for name, key, span in (("participants", p_idx, n_p), ("items", i_idx, n_i)):
        cluster, values = dense_codes_with_values(conditions * span + key)
        squares, clusters = _cluster_squares(residual, cluster, values // span, n_conditions)
        sizes = np.bincount(cluster, minlength=values.size).astype(np.float64)
        size_squares = np.bincount(values // span, weights=sizes * sizes, minlength=n_conditions)
        parts[name] = (squares, clusters, size_squares)
    cells, cell_of = np.unique((conditions * max(n_p, 1) + p_idx) * max(n_i, 1) + i_idx, return_inverse=True)
    cell_squares, _ = _cluster_squares(residual, cell_of, cells // (max(n_p, 1) * max(n_i, 1)), n_conditions)
    intervals = condition_intervals(correct=correct, participants=participants, items=items, conditions=conditions,
                                    n_conditions=n_conditions)
    out = []
    for c in range(n_conditions):
        binomial = n[c] * share[c] * (1 - share[c])
        rho, size = {}, {}
        for name, (squares, clusters, size_squares) in parts.items():
            g = clusters[c]
            size[name] = size_squares[c] / n[c] if n[c] else 0.0
            if binomial > 0 and size[name] > 1:
                scale = g / (g - 1) if g > 1 else 1.0  # the interval's small-sample factor
                rho[name] = float((scale * squares[c] - cell_squares[c]) / binomial / (size[name] - 1))
            else:
                rho[name] = None
        out.append(ClusterCorrelations(
            participant=rho["participants"], item=rho["items"], design_effect=intervals[c].design_effect,
            n_answers=int(n[c]), n_participants=int(parts["participants"][1][c]), n_items=int(parts["items"][1][c]),
            answers_per_participant=float(size["participants"]), answers_per_item=float(size["items"]),
        ))
    return out
