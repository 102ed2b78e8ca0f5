"""The budget planner's forecast of both designs, and the model it rests on.

The forecast's model. Answers are clustered twice: one participant answers m trials of a set, one item is answered
by r participants. With intra-class correlations ρ_P (two answers of one participant, different items) and ρ_I
(two answers to one item, different participants), the share's variance is the binomial one times
    deff(m, r) = 1 + ρ_P (m − 1) + ρ_I (r − 1)
(m and r the answer-weighted cluster sizes Σ size² / n), which is what the interval's two-way cluster-robust design
effect estimates. So a design effect measured under one design does not carry over to another: the fixed design
spreads every list over all K sets (m ≈ T / K), the adaptive one hands a participant blocks of the sets still
above their goal (m from 2 up to T once one set is left). cluster_correlations splits a pilot's (or the live
sessions') design effects into ρ_P and ρ_I; plan_budget puts them back at each design's m and r.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..alignment import Z95
from .blocks import blocks_choose, blocks_layout, blocks_split
from .interval import wilson_half_width

REPLAY_LIMIT = 20_000  # participants (and ratings per item): a forecast that needs more is out of reach anyway


def answers_per_cluster(*, answers: float, clusters: int) -> float:
    """The answer-weighted cluster size Σ size² / answers when ``answers`` are spread as evenly as possible over
    ``clusters`` clusters (sizes q and q + 1): a fixed design's trials of one set over its lists (m), a set's
    answers over its items filled breadth-first (r). At least 1."""
    if answers <= 0 or clusters < 1:
        return 1.0
    q, s = divmod(answers, clusters)
    return max(1.0, (s * (q + 1) ** 2 + (clusters - s) * q * q) / answers)


def design_effect_expected(
    *, icc_participant: float, icc_item: float, answers_per_participant: float, answers_per_item: float,
) -> float:
    """1 + ρ_P (m − 1) + ρ_I (r − 1), at least 1: the design effect a design with those answer-weighted cluster
    sizes gives (see "The forecast's model" in the module docstring)."""
    return max(1.0, 1 + icc_participant * (answers_per_participant - 1) + icc_item * (answers_per_item - 1))


_DF_FACTORS: dict[int, float] = {}


def _df_factor(df: float) -> float:
    """(t_df / z)²: what the interval's few-cluster adjustment costs in answers (df = min(participants, items) − 1,
    whole; the planner asks for the same few thousand values many times, so they are kept)."""
    key = min(max(int(df), 1), 100_000)
    if key not in _DF_FACTORS:
        _DF_FACTORS[key] = float((stats.t.ppf(0.975, key) / Z95) ** 2)
    return _DF_FACTORS[key]


@dataclass(frozen=True)
class SetModel:
    """One set as the forecast sees it: expected share, ρ_P, ρ_I, items, and a design-effect floor (entered)."""

    p: float
    icc_participant: float
    icc_item: float
    items: int
    floor: float

    def design_effect(self, *, answers: float, answers_per_participant: float) -> float:
        r = answers_per_cluster(answers=answers, clusters=self.items)
        return max(self.floor, design_effect_expected(icc_participant=self.icc_participant, icc_item=self.icc_item,
                                                      answers_per_participant=answers_per_participant,
                                                      answers_per_item=r))

    def half_width(self, *, answers: float, answers_per_participant: float, participants: float) -> float:
        if answers <= 0:
            return 0.5
        deff = self.design_effect(answers=answers, answers_per_participant=answers_per_participant)
        df = min(participants, min(answers, self.items)) - 1
        return wilson_half_width(p=self.p, n=answers / (deff * _df_factor(df)))

    def half_width_spread(self, *, answers: float, answers_per_participant: float, participants: float) -> float:
        """The standard deviation of the half-width a study observes at these answers (delta method): the share
        moves by sqrt(p(1−p) deff / n), and the estimated design effect by a relative variance of about
        2 (m − 1 + r − 1) / (n deff²) (the cross-products inside each participant's and each item's answers)."""
        if answers <= 0:
            return 0.0
        deff = self.design_effect(answers=answers, answers_per_participant=answers_per_participant)
        df = min(participants, min(answers, self.items)) - 1
        n_eff = answers / (deff * _df_factor(df))
        r = answers_per_cluster(answers=answers, clusters=self.items)
        step = 1e-4
        low, high = max(0.0, self.p - step), min(1.0, self.p + step)
        by_share = (wilson_half_width(p=high, n=n_eff) - wilson_half_width(p=low, n=n_eff)) / (high - low)
        by_log_n = (wilson_half_width(p=self.p, n=n_eff * (1 + step))
                    - wilson_half_width(p=self.p, n=n_eff * (1 - step))) / (2 * step)
        share_var = self.p * (1 - self.p) * deff / answers
        log_deff_var = 2 * (answers_per_participant - 1 + r - 1) / (answers * deff * deff)
        return math.sqrt(by_share**2 * share_var + by_log_n**2 * log_deff_var)

    def chance_at_goal(self, goal: float, **at) -> float:
        """The chance that a study's half-width is at or below the goal at these answers (normal approximation)."""
        mean, spread = self.half_width(**at), self.half_width_spread(**at)
        if spread <= 0:
            return float(mean <= goal)
        return float(stats.norm.cdf((goal - mean) / spread))

    def half_width_limit(self) -> float:
        """The half-width with answers without end: item differences alone leave n / deff → items / ρ_I."""
        if self.icc_item <= 0:
            return 0.0
        return wilson_half_width(p=self.p, n=self.items / self.icc_item / _df_factor(self.items - 1))


def fixed_forecast(*, sets: list[SetModel], goal: float, lists: int, min_answers: int) -> dict:
    """The smallest N (answers per item) with which every set meets the goal in at least half the studies, when
    every list mixes all sets: set c's items spread over the lists, so one participant answers
    m = answers_per_cluster(items_c, lists) ≈ T / K of it, and each item is answered N times (r = N). A study meets
    the goal when every set does; the sets' half-widths vary independently (half_width_spread), so the chance is
    the product of each set's, and several sets near the widest need a larger N than the widest alone."""
    per_participant = [answers_per_cluster(answers=s.items, clusters=lists) for s in sets]
    seeing = [min(lists, s.items) for s in sets]  # lists that hold set c: N participants each

    def chance(ratings: int) -> float:
        if any(ratings * s.items < min_answers for s in sets):
            return 0.0
        return float(np.prod([s.chance_at_goal(goal, answers=ratings * s.items, answers_per_participant=m,
                                               participants=ratings * k)
                              for s, m, k in zip(sets, per_participant, seeing)]))

    high = 1  # the chance grows with N: double, then bisect
    while chance(high) < 0.5:
        high *= 2
        if high > REPLAY_LIMIT:  # within reach (half_width_limit), but only with more ratings than any list gets
            return None
    low = high // 2  # chance(low) < 0.5, or low = 0
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if chance(mid) >= 0.5 else (mid, high)
    ratings = high
    return {
        "ratings": ratings,
        "answers_per_set": [ratings * s.items for s in sets],
        "answers_per_participant": per_participant,
        "design_effect": [s.design_effect(answers=ratings * s.items, answers_per_participant=m)
                          for s, m in zip(sets, per_participant)],
    }


def adaptive_forecast(
    *, sets: list[SetModel], goal: float, trials_per_participant: int, every: int, in_flight: int,
    min_answers: int, max_participants: int,
) -> dict:
    """Adaptive collection replayed on expected half-widths: each participant gets blocks_choose's blocks (the shipped
    rule, places never short), ``in_flight`` sessions are under way at once, the estimate (each set's half-width at
    its expected share, with the design effect of the answers so far: m = Σ m_i² / n over the participants who
    answered it) is redone every ``every`` completions, and once it says every set is done the sessions under way
    still add their answers. None when ``max_participants`` sessions do not get there."""
    k = len(sets)
    units_per_block, blocks = blocks_layout(trials_per_participant=trials_per_participant, unit_size=1)
    units = [(c, j) for c, s in enumerate(sets) for j in range(s.items)]
    split = blocks_split(units=units, condition_of=lambda u: u[0], units_per_block=units_per_block)
    # a participant takes one place in at most ``blocks`` blocks of a set: with places never short, those are enough
    split = [b for c in range(k) for b in [b for b in split if b[0][0] == c][:blocks]]
    block_conditions = np.array([b[0][0] for b in split], dtype=np.int64)
    block_sizes = np.array([len(b) for b in split], dtype=np.int64)
    first_block = np.array([int(np.flatnonzero(block_conditions == c)[0]) for c in range(k)])
    free = np.full(block_conditions.size, 1_000_000)  # places are not the limit here (the survey planner checks them)
    rng = np.random.default_rng(0)
    answers, squares, people = np.zeros(k), np.zeros(k), np.zeros(k)
    half_width, done = np.full(k, 0.5), np.zeros(k, dtype=bool)
    flight: list[np.ndarray] = []
    enrolled = completed = 0

    def enroll() -> bool:
        """Whether the next arrival got blocks (else they are turned away: every set done or waiting)."""
        nonlocal enrolled
        pending = np.sum(flight, axis=0) if flight else np.zeros(k)
        held = np.zeros(block_conditions.size)
        held[first_block] = pending / block_sizes[first_block]
        chosen = blocks_choose(block_conditions=block_conditions, block_sizes=block_sizes, free=free, held=held,
                               half_width=half_width, n_answers=answers, done=done, goal=goal, blocks=blocks, rng=rng)
        if chosen:
            flight.append(np.bincount(block_conditions[chosen], weights=block_sizes[chosen], minlength=k))
            enrolled += 1
        return bool(chosen)

    def complete() -> None:
        nonlocal answers, squares, people, completed
        given = flight.pop(0)
        answers, squares, people = answers + given, squares + given**2, people + (given > 0)
        completed += 1

    while len(flight) < in_flight and enroll():
        pass
    while flight:
        complete()
        if completed % every == 0:
            half_width = np.array([
                s.half_width(answers=answers[c], answers_per_participant=squares[c] / answers[c] if answers[c] else 1,
                             participants=people[c])
                for c, s in enumerate(sets)
            ])
            done = (half_width <= goal) & (answers >= min_answers)
            if done.all():
                break
        if enrolled >= max_participants:
            return None
        while len(flight) < in_flight and enroll():
            pass
    while flight:  # the sessions under way when every set met the goal
        complete()
    per_participant = np.where(answers > 0, squares / np.maximum(answers, 1), 1.0)
    return {
        "participants": enrolled,
        "answers_per_set": [int(a) for a in answers],
        "answers_per_participant": [round(float(m), 3) for m in per_participant],
        "design_effect": [s.design_effect(answers=a, answers_per_participant=m)
                          for s, a, m in zip(sets, answers, per_participant)],
    }
