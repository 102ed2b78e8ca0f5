"""Alignment statistics on plain arrays: numpy, and scipy.sparse for the bootstrap. No Django, no querysets, no torch.

Every function takes flat arrays (one entry per answer, or per item) and returns numbers with their
uncertainty. Where a number cannot be computed (no answers, zero variance) it is ``None``, never NaN.

Vocabulary
- answer: one response of one participant to one trial; ``correct`` = it chose the target (2AFC) or
  the right reference (clustering).
- item: a trial (the same query and options for everyone who saw it).
- unit: what the bootstrap resamples on the stimulus side (the service passes the target photo, so
  conditions that share target photos are compared *paired*; without units the item is the unit).
- condition: backbone x checkpoint x training x recipe x seed kind x layer (an int code here).

Beside it, on the same arrays: ``exclusions`` (which answers count), ``agreement`` (Fleiss' kappa, error
consistency) and ``ceiling`` (the split-half human ceiling).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import sparse

Z95 = 1.959963984540054


def finite_or_none(value) -> float | None:
    """A plain float, or None for NaN/inf/None (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def dense_codes(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Map arbitrary non-negative ids to 0..K-1 (order kept) without sorting when the ids are small."""
    dense, uniques = dense_codes_with_values(codes)
    return dense, int(uniques.size)


def dense_codes_with_values(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes mapped to 0..K-1 in sorted order, the K distinct values): a bincount instead of a sort for small ids."""
    codes = np.asarray(codes)
    if codes.size == 0:
        return codes.astype(np.int64), codes.astype(np.int64)
    low, high = int(codes.min()), int(codes.max())
    if low >= 0 and high < 50_000_000:
        used = np.bincount(codes, minlength=high + 1) > 0
        remap = np.cumsum(used) - 1
        return remap[codes].astype(np.int64), np.flatnonzero(used)
    uniques, inverse = np.unique(codes, return_inverse=True)
    return inverse.astype(np.int64), uniques


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


# Resamples are drawn in chunks (the same chunks whatever the method, so "sparse" and "exact" see the same
# draws) and the (condition, participant) rows are processed in blocks, so memory stays a few tens of MB.
_DRAW_BUDGET = 8_000_000  # counts per chunk of resamples (units x resamples)
_BLOCK_BUDGET = 2_000_000  # floats per block of rows (rows x resamples)
_MAX_CHUNK = 256


def _chunk_size(n_units: int, n_boot: int) -> int:
    return max(1, min(n_boot, _MAX_CHUNK, _DRAW_BUDGET // max(n_units, 1)))


def multinomial_counts(rng: np.random.Generator, n_units: int, n_boot: int) -> np.ndarray:
    """(n_units, n_boot) float32: how often each unit is drawn when n_units units are drawn with replacement,
    one column per resample (each column sums to n_units). One bincount of uniform draws per resample."""
    draws = rng.integers(0, n_units, size=(n_boot, n_units), dtype=np.int32 if n_units < 2**31 else np.int64)
    counts = np.empty((n_boot, n_units), dtype=np.float32)
    for b in range(n_boot):  # a loop over resamples (a bincount each stays in cache; one over all does not)
        counts[b] = np.bincount(draws[b], minlength=n_units)
    return np.ascontiguousarray(counts.T)


def _resample_chunks(rng: np.random.Generator, n_p: int, n_u: int, n_boot: int):
    """(start, stop, participant counts (n_p, k), unit counts (n_u, k)) per chunk of k resamples, in a fixed order."""
    chunk = _chunk_size(max(n_p, n_u), n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        w_p = multinomial_counts(rng, n_p, stop - start)
        w_u = multinomial_counts(rng, n_u, stop - start) if n_u > 1 else np.ones((1, stop - start), dtype=np.float32)
        yield start, stop, w_p, w_u


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
    method: str = "sparse",
) -> np.ndarray:
    """(n_boot, n_conditions) bootstrap replicates of the share correct per condition: the two-way bootstrap.

    Each resample draws the participants with replacement (multinomial counts w_p, summing to the number of
    participants) and, independently, the units (counts w_u); an answer of participant p on unit u then
    counts w_p * w_u times:  share*_c = sum_answers w_p w_u y / sum_answers w_p w_u  over the condition's
    answers. Participants and units are drawn once per resample for all conditions, so the replicates of
    two conditions are paired wherever they share people or stimuli, and ``a - b`` over the replicates is a
    paired difference. Without units only participants are resampled (the one-way cluster bootstrap).
    A replicate in which no answer of a condition was drawn is NaN there. Seeded: same data, same seed,
    same replicates.

    method "sparse" (default): per condition, sparse participant x unit matrices of hits H_c and answers N_c
    (repeated answers to one cell summed), so the numerator is w_pᵀ H_c w_u and the denominator w_pᵀ N_c w_u,
    for a chunk of resamples at once: cost O(resamples x distinct (condition, participant, unit) cells), no
    per-answer Python objects.
    method "exact": the same sums taken answer by answer (O(resamples x answers) memory); for checking.
    """
    correct = np.asarray(correct, dtype=np.float32)
    conditions = np.asarray(conditions, dtype=np.int64)
    out = np.full((n_boot, n_conditions), np.nan)
    if correct.size == 0:
        return out
    p_idx, n_p = dense_codes(participants)
    u_idx, n_u = dense_codes(units) if units is not None else (np.zeros(correct.size, dtype=np.int64), 1)
    rng = np.random.default_rng(seed)
    hits = np.zeros((n_boot, n_conditions))
    answers = np.zeros((n_boot, n_conditions))
    if method == "exact":
        for start, stop, w_p, w_u in _resample_chunks(rng, n_p, n_u, n_boot):
            weight = w_p[p_idx].astype(np.float64) * w_u[u_idx]  # (answers, k)
            for c in np.unique(conditions):
                mine = conditions == c
                answers[start:stop, c] = weight[mine].sum(axis=0)
                hits[start:stop, c] = (weight[mine] * correct[mine, None]).sum(axis=0)
    elif method == "sparse":
        rows_per_block = max(1, _BLOCK_BUDGET // _chunk_size(max(n_p, n_u), n_boot))
        blocks = _cell_blocks(correct, p_idx, n_p, u_idx, n_u, conditions, rows_per_block=rows_per_block)
        for start, stop, w_p, w_u in _resample_chunks(rng, n_p, n_u, n_boot):
            for block in blocks:
                people = w_p[block.participant]  # (rows, k): the count of each row's participant
                # per row: hits (answers) on each unit times the unit's count, times the participant's count;
                # then summed over each condition's rows (float32 sums of small integers: exact below 2**24)
                k_rows = block.hits @ w_u
                k_rows *= people
                n_rows = block.answers @ w_u
                n_rows *= people
                hits[start:stop, block.conditions] += (block.segments @ k_rows).T
                answers[start:stop, block.conditions] += (block.segments @ n_rows).T
    else:
        raise ValueError(f"unknown bootstrap method {method!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(hits, answers, out=out, where=answers > 0)
    return out


@dataclass(frozen=True)
class _CellBlock:
    """Consecutive (condition, participant) rows: answers and hits per unit (sparse), each row's participant,
    the conditions present, and a sparse (conditions x rows) indicator that sums rows into their condition."""

    answers: sparse.csr_matrix
    hits: sparse.csr_matrix
    participant: np.ndarray
    conditions: np.ndarray
    segments: sparse.csr_matrix


def _cell_blocks(correct, p_idx, n_p, u_idx, n_u, conditions, *, rows_per_block: int) -> list[_CellBlock]:
    """The answers as (condition, participant) x unit count matrices (duplicates summed), cut into row blocks."""
    row_of_answer, row_keys = dense_codes_with_values(conditions * n_p + p_idx)  # rows sorted by condition
    n_rows = row_keys.size
    shape = (n_rows, n_u)
    answers = sparse.csr_matrix((np.ones(correct.size, dtype=np.float32), (row_of_answer, u_idx)), shape=shape)
    hits = sparse.csr_matrix((correct, (row_of_answer, u_idx)), shape=shape)
    hits.eliminate_zeros()
    row_condition, row_participant = row_keys // n_p, row_keys % n_p
    blocks = []
    for first in range(0, n_rows, rows_per_block):
        last = min(n_rows, first + rows_per_block)
        present, local = np.unique(row_condition[first:last], return_inverse=True)
        segments = sparse.csr_matrix(
            (np.ones(last - first, dtype=np.float32), (local, np.arange(last - first))), shape=(present.size, last - first)
        )
        blocks.append(_CellBlock(answers[first:last], hits[first:last], row_participant[first:last], present, segments))
    return blocks


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
    method: str = "sparse",
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
