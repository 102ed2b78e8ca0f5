"""Agreement on plain arrays: Fleiss' kappa between raters, the plurality answer per item, and the error
consistency of two decision makers (people and a network). numpy only; the vocabulary of ``alignment``."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


# Fleiss' kappa counts, per item, raters who chose the target and raters who chose a foil: the agreement between
# people about being right. Option indices (or screen positions) as categories would measure the alignment rate
# instead: independent raters who each choose the target with p = 0.9 agree on the option most of the time.
KAPPA_CATEGORIES = {
    "2afc": ("chose_target", "chose_foil"),
    "cluster": ("chose_right_reference", "chose_other_reference"),
    "classification": ("named_the_category", "named_another_category"),
}
KAPPA_NO_ITEMS = "Not enough data: no item has two ratings."
KAPPA_ONE_CATEGORY = "Undefined: every rating falls in one category ({category}), so agreement expected by chance is 1."


def rating_counts(items: np.ndarray, choices: np.ndarray, n_items: int, n_categories: int) -> np.ndarray:
    """(n_items, n_categories) how many raters chose each category for each item (items: dense 0..n-1)."""
    items = np.asarray(items, dtype=np.int64)
    choices = np.asarray(choices, dtype=np.int64)
    return np.bincount(items * n_categories + choices, minlength=n_items * n_categories).reshape(n_items, n_categories)


def correctness_counts(items: np.ndarray, correct: np.ndarray, n_items: int) -> np.ndarray:
    """(n_items, 2): per item, how many raters chose the target (column 0) and how many chose a foil (column 1);
    the categories of Fleiss' kappa (KAPPA_CATEGORIES)."""
    correct = np.asarray(correct, dtype=bool)
    return rating_counts(items, (~correct).astype(np.int64), n_items, 2)


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


@dataclass(frozen=True)
class Kappa:
    """Fleiss' kappa with the categories it was computed over, the items it used (>= 2 ratings) and their raters."""

    value: float | None
    categories: tuple[str, ...]
    items: int
    raters_per_item: dict | None  # min, median, max over the items used
    note: str = ""

    def as_dict(self) -> dict:
        out = asdict(self)
        out["categories"] = list(self.categories)
        return out


def agreement_kappa(counts: np.ndarray, *, categories: tuple[str, ...]) -> Kappa:
    """Fleiss' kappa of a (items x categories) count table, named by its categories, with a note when undefined."""
    counts = np.asarray(counts)
    if counts.shape[1:] != (len(categories),):
        raise ValueError(f"the count table has {counts.shape[1:]} columns for {len(categories)} categories")
    n_i = counts.sum(axis=1)
    used = n_i[n_i >= 2]
    raters = {"min": int(used.min()), "median": float(np.median(used)), "max": int(used.max())} if used.size else None
    value = fleiss_kappa(counts)
    note = ""
    if not used.size:
        note = KAPPA_NO_ITEMS
    elif value is None:
        note = KAPPA_ONE_CATEGORY.format(category=categories[int(counts[n_i >= 2].sum(axis=0).argmax())])
    return Kappa(value, tuple(categories), int(used.size), raters, note)


def plurality_correct(counts: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per item: 1 if the most chosen option is the target, 0 if another option, -1 if tied or unrated.

    counts are over option indices (rating_counts of the answers' `choice`, the canonical option, never the screen
    position): the human majority's answer is the option most raters chose (with three options, a plurality that
    need not be half of the raters), and the item counts as right when that option is the target.
    """
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

