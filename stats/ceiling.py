"""The split-half human ceiling on plain arrays: how well one half of the participants predicts the other's
per-item accuracy, Spearman-Brown corrected. numpy only; the vocabulary of ``alignment``."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .alignment import dense_codes, dense_codes_with_values, finite_or_none


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


CEILING_TOO_SMALL = "Not enough data: the split-half ceiling needs at least two participants and three items{where}."
CEILING_NO_VARIANCE = (
    "Not enough data: per-item accuracy does not vary between items, or fewer than three items were rated in both halves."
)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _pearson_by_group(x: np.ndarray, y: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r of x and y within each group (NaN where undefined) and the number of points per group."""
    m = np.bincount(groups, minlength=n_groups)
    safe = np.maximum(m, 1)
    dx = x - (np.bincount(groups, weights=x, minlength=n_groups) / safe)[groups]
    dy = y - (np.bincount(groups, weights=y, minlength=n_groups) / safe)[groups]
    sxy = np.bincount(groups, weights=dx * dy, minlength=n_groups)
    sxx = np.bincount(groups, weights=dx * dx, minlength=n_groups)
    syy = np.bincount(groups, weights=dy * dy, minlength=n_groups)
    denom = np.sqrt(sxx * syy)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(denom > 1e-12, sxy / np.where(denom > 1e-12, denom, 1.0), np.nan)
    return r, m


def split_half_ceilings(
    correct: np.ndarray,
    participants: np.ndarray,
    items: np.ndarray,
    conditions: np.ndarray,
    n_conditions: int,
    *,
    n_splits: int = 100,
    seed: int = 0,
) -> tuple[Ceiling, list[Ceiling]]:
    """The split-half human ceiling over all items and per condition, Spearman-Brown corrected.

    In each of n_splits random splits, every condition's participants are split into two halves (⌊n/2⌋ and
    the rest). Per item, the accuracy in one half is correlated (Pearson) with the accuracy in the other,
    over the items rated in both halves: per condition over its own items, and over all items for the
    survey-wide figure. r is averaged over the splits where it is defined and stepped up with Spearman-Brown
    (factor 2: the reliability of the whole group of raters). Items are per condition: an item answered in
    two conditions counts as two items. A condition that cannot be split says so in ``note``.
    """
    correct = np.asarray(correct, dtype=np.float64)
    conditions = np.asarray(conditions, dtype=np.int64)
    p_idx, n_p = dense_codes(participants)
    i_idx, n_i = dense_codes(items)
    pair_of, pair_keys = dense_codes_with_values(conditions * max(n_p, 1) + p_idx)  # (condition, participant)
    cell_of, cell_keys = dense_codes_with_values(conditions * max(n_i, 1) + i_idx)  # (condition, item)
    pair_cond, cell_cond = pair_keys // max(n_p, 1), cell_keys // max(n_i, 1)
    people = np.bincount(pair_cond, minlength=n_conditions)
    n_items = np.bincount(cell_cond, minlength=n_conditions)
    first_pair = np.cumsum(people) - people  # pairs are sorted by condition
    n_cells = cell_keys.size
    r_sum = np.zeros(n_conditions)  # sum of r over the splits where it is defined, per condition
    r_n = np.zeros(n_conditions, dtype=np.int64)  # how many such splits
    used = np.zeros(n_conditions, dtype=np.int64)  # items rated in both halves (the most over the splits)
    overall_r, overall_used = [], 0
    if ((people >= 2) & (n_items >= 3)).any():
        rng = np.random.default_rng(seed)
        base = float(np.bincount(cell_of).max() + 1)  # hits and answers in one bincount: weight = base * 1 + correct
        weights = base + correct
        rank = np.empty(pair_keys.size, dtype=np.int64)
        for _ in range(n_splits):  # a loop over splits, each one vectorised over answers
            rank[np.argsort(pair_cond + rng.random(pair_keys.size))] = np.arange(pair_keys.size)  # shuffled within condition
            first_half = (rank - first_pair[pair_cond]) < people[pair_cond] // 2
            packed = np.bincount(cell_of * 2 + first_half[pair_of], weights=weights, minlength=2 * n_cells).reshape(n_cells, 2)
            n = np.floor(packed / base)
            k = packed - n * base
            both = (n > 0).all(axis=1)
            acc = k[both] / n[both]
            r, m = _pearson_by_group(acc[:, 0], acc[:, 1], cell_cond[both], n_conditions)
            ok = (m >= 3) & np.isfinite(r)
            r_sum[ok] += r[ok]
            r_n += ok
            used = np.maximum(used, np.where(ok, m, 0))
            r_all, m_all = _pearson_by_group(acc[:, 0], acc[:, 1], np.zeros(int(both.sum()), dtype=np.int64), 1)
            if m_all[0] >= 3 and np.isfinite(r_all[0]):
                overall_r.append(float(r_all[0]))
                overall_used = max(overall_used, int(m_all[0]))

    def ceiling(r_values_sum: float, count: int, items_used: int, items_total: int, too_small: bool, where: str) -> Ceiling:
        if too_small:
            return Ceiling(None, None, items_total, 0, CEILING_TOO_SMALL.format(where=where))
        if count == 0:
            return Ceiling(None, None, items_total, n_splits, CEILING_NO_VARIANCE)
        r = r_values_sum / count
        return Ceiling(finite_or_none(spearman_brown(r)), float(r), items_used, count)

    overall = ceiling(sum(overall_r), len(overall_r), overall_used, n_cells, n_p < 2 or n_cells < 3, "")
    per_condition = [
        ceiling(r_sum[c], int(r_n[c]), int(used[c]), int(n_items[c]), people[c] < 2 or n_items[c] < 3,
                f"; this condition has {_count(people[c], 'participant')} and {_count(n_items[c], 'item')}")
        for c in range(n_conditions)
    ]
    return overall, per_condition


def split_half_ceiling(
    correct: np.ndarray, participants: np.ndarray, items: np.ndarray, *, n_splits: int = 100, seed: int = 0
) -> Ceiling:
    """Split the participants at random into two halves; correlate per-item accuracy between the halves
    (Pearson, over items rated in both halves); average r over the splits; correct with Spearman-Brown."""
    correct = np.asarray(correct)
    one_condition = np.zeros(correct.size, dtype=np.int64)
    overall, _ = split_half_ceilings(correct, participants, items, one_condition, 1, n_splits=n_splits, seed=seed)
    return overall
