"""Alignment statistics on plain arrays. Pure numpy: no Django, no querysets."""
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Alignment:
    """Share of answers that chose the target, with a 95 % bootstrap CI over participants."""

    alignment: float | None
    ci_low: float | None
    ci_high: float | None
    n_answers: int
    n_participants: int

    def as_dict(self) -> dict:
        return asdict(self)


def alignment_estimate(
    chose_target: np.ndarray, participants: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> Alignment:
    """Point estimate and percentile bootstrap CI, resampling whole participants (their answers are not independent).

    chose_target: bool array (one entry per answer); participants: int array of the same length.
    With no answers the estimate and CI are None (never NaN).
    """
    chose_target = np.asarray(chose_target, dtype=bool)
    participants = np.asarray(participants)
    if chose_target.shape != participants.shape:
        raise ValueError("chose_target and participants must have the same length")
    n = chose_target.size
    if n == 0:
        return Alignment(None, None, None, 0, 0)
    _, index = np.unique(participants, return_inverse=True)
    hits = np.bincount(index, weights=chose_target).astype(float)
    counts = np.bincount(index).astype(float)
    point = float(hits.sum() / counts.sum())
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, counts.size, size=(n_boot, counts.size))
    shares = hits[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(shares, [tail, 100 - tail])
    return Alignment(point, float(low), float(high), int(n), int(counts.size))
