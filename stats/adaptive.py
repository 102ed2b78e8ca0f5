"""Adaptive collection on plain arrays: the interval a condition's alignment gets under adaptive stopping, the
allocation of the next trial list, the stopping rule and the budget planner. numpy and scipy only: no Django, no
querysets (the sibling ``alignment`` module is pure too and is imported relatively).

Vocabulary (as in ``alignment``): an answer is one participant's response to one trial (item); ``correct`` = it
chose the target; a condition is an IRI set (an int code 0..K-1 here); its alignment is the share of its answers
that chose the target. A trial list is the set of trials one participant does; its ``slots`` are its main trials.

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
Its coverage under the adaptive rule below, with item heterogeneity and participant noise, is what
``bench/adaptive.py`` measures (goal: ≥ 0.94 for every condition at a nominal 95 %).

Half-width = (high - low) / 2 of that interval; a condition without answers has the interval [0, 1] and
half-width 0.5.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from .alignment import Z95, dense_codes, dense_codes_with_values, wilson_interval

# A condition counts as done only with at least this many answers: the design effect needs a few clusters, and a
# short run of zeros must not end a condition (Wilson's half-width at 0 of n is z²/(2(n+z²)): 0.05 after 35).
MIN_ANSWERS = 20
# What the planner assumes before any data: the widest interval (p = 0.5) and answers as if independent (a design
# effect of 1, unless a pilot says otherwise). The survey builder checks a goal against its cap at these.
WORST_CASE_P = 0.5
DEFAULT_DESIGN_EFFECT = 1.0
# Prolific's hourly pay per currency: the minimum it enforces and the pay it recommends ("Prolific's payment
# principles", researcher-help.prolific.com, read 2026-12-06: at least £9.00 / $12.00 recommended, £6.00 / $8.00
# the minimum). A study's rewards are in its workspace's currency (backend.settings.PROLIFIC_CURRENCY).
PROLIFIC_RATES = {
    "GBP": {"symbol": "£", "minimum": 6.0, "recommended": 9.0},
    "USD": {"symbol": "$", "minimum": 8.0, "recommended": 12.0},
}

STOPPING_RULE = (
    "Adaptive stopping: after every completed session (or every few, as the survey sets), each condition's 95 % "
    "design-effect Wilson interval is recomputed; a condition is done when its half-width is at or below its goal "
    "and it has at least {min_answers} answers; done conditions, and conditions the sessions under way will bring "
    "to their goal, get no more trials; collection stops when every condition is done with no session under way, "
    "or the cap is reached."
)

# Error messages (the field first, so a 400 or a command can name it).
HALF_WIDTH_RANGE = "half_width: must lie in (0, 0.5); got {value}"
RATE_POSITIVE = "rate_per_hour: must be above 0; got {value}"
FEE_RANGE = "fee: must lie in [0, 1) (a fraction of the pay, 0.33 for 33 %); got {value}"
SECONDS_POSITIVE = "{field}: must be above 0; got {value}"
SECONDS_NOT_NEGATIVE = "{field}: must be 0 or more; got {value}"
TRIALS_POSITIVE = "trials_per_participant: must be a whole number of at least 1; got {value}"
PER_LIST_POSITIVE = "participants_per_list: must be a whole number of at least 1; got {value}"
P_RANGE = "p: every expected alignment must lie in [0, 1]; got {value}"
P_EMPTY = "p: give the expected alignment of at least one condition"
DESIGN_EFFECT_RANGE = "design_effect: must be 1 or more; got {value}"
CAP_BELOW_ONE_LIST = "cap_participants: {value} is below one trial list ({per_list} participants)"
GOAL_UNREACHABLE = (
    "half_width: a goal of {half_width} needs {needed} participants even with adaptive allocation, above "
    "cap_participants {cap}"
)
RATE_BELOW_MINIMUM = (
    "rate_per_hour: {symbol}{rate:.2f}/h is below Prolific's minimum of {symbol}{minimum:g}/h "
    "(recommended {symbol}{recommended:g}/h)"
)
CURRENCY_UNKNOWN = "currency: Prolific pays in {known}; got {value}"


# ---------------------------------------------------------------------------------------------
# The interval


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


# ---------------------------------------------------------------------------------------------
# Stopping and allocation


def conditions_done(
    *, half_width: np.ndarray, goal: float | np.ndarray, n_answers: np.ndarray, min_answers: int = MIN_ANSWERS
) -> np.ndarray:
    """Per condition: its half-width is at or below its goal and it has at least min_answers answers."""
    half_width = np.asarray(half_width, dtype=np.float64)
    goal = np.broadcast_to(np.asarray(goal, dtype=np.float64), half_width.shape)
    return (half_width <= goal) & (np.asarray(n_answers) >= min_answers)


@dataclass(frozen=True)
class Stop:
    """The stopping rule's verdict: stop or not, why ("goal", "cap_participants", "cap_answers", or "" to go on),
    and which conditions are done."""

    stop: bool
    reason: str
    done: np.ndarray = field(repr=False)


def stopping_rule_describe(
    *, goal: float | np.ndarray, cap_participants: int | None = None, cap_answers: int | None = None,
    min_answers: int = MIN_ANSWERS,
) -> str:
    """The stopping rule in words, for the report: ``STOPPING_RULE`` with the goal and the caps filled in."""
    goals = np.unique(np.asarray(goal, dtype=np.float64))
    goal_text = f"{goals[0]:g}" if goals.size == 1 else "per condition (" + ", ".join(f"{g:g}" for g in goals) + ")"
    caps = [f"{cap_participants} participants"] if cap_participants is not None else []
    caps += [f"{cap_answers} answers"] if cap_answers is not None else []
    return (STOPPING_RULE.format(min_answers=min_answers) + f" Goal half-width: {goal_text}; cap: "
            + (" or ".join(caps) if caps else "none") + ".")


def collection_stop(
    *,
    half_width: np.ndarray,
    goal: float | np.ndarray,
    n_answers: np.ndarray,
    n_participants: int,
    cap_participants: int | None = None,
    cap_answers: int | None = None,
    min_answers: int = MIN_ANSWERS,
) -> Stop:
    """The stopping rule (``STOPPING_RULE``): stop when every condition is done (half-width ≤ goal with at least
    min_answers answers), or when the participants or the answers reach their cap (None: no cap)."""
    done = conditions_done(half_width=half_width, goal=goal, n_answers=n_answers, min_answers=min_answers)
    if done.all():
        return Stop(True, "goal", done)
    if cap_participants is not None and n_participants >= cap_participants:
        return Stop(True, "cap_participants", done)
    if cap_answers is not None and int(np.sum(n_answers)) >= cap_answers:
        return Stop(True, "cap_answers", done)
    return Stop(False, "", done)


# An adaptive survey's block: this many trials of one IRI set (a clustering screen counts as one unit), two so
# that each block shows a participant the target once on each side. Small blocks let each participant's session
# be composed, at enrollment, of the sets still above their goal, each in proportion to how far it is from it.
BLOCK_TRIALS = 2


def blocks_layout(*, trials_per_participant: int, unit_size: int) -> tuple[int, int]:
    """(units per block, blocks per participant) for a session of about ``trials_per_participant`` trials made of
    units of ``unit_size`` trials."""
    units_per_block = max(1, round(BLOCK_TRIALS / unit_size))
    units_per_participant = max(1, math.ceil(trials_per_participant / unit_size))
    return units_per_block, max(1, round(units_per_participant / units_per_block))


def blocks_split(*, units: list, condition_of, units_per_block: int) -> list[list]:
    """Cut each IRI set's units (in the order given) into blocks of ``units_per_block`` units of that set alone
    (sizes differ by at most one unit within a set, and none is larger than asked: a set of 5 trials in blocks of
    2 makes blocks of 2, 2 and 1, so that a session holds about the trials the survey asks for). Blocks come set by
    set, in order of first appearance."""
    sets: dict = {}
    for unit in units:
        sets.setdefault(condition_of(unit), []).append(unit)
    out = []
    for members in sets.values():
        n_blocks = math.ceil(len(members) / units_per_block)
        sizes = [len(members) // n_blocks + (i < len(members) % n_blocks) for i in range(n_blocks)]
        start = 0
        for size in sizes:
            out.append(members[start:start + size])
            start += size
    return out


def blocks_choose(
    *,
    block_conditions: np.ndarray,
    block_sizes: np.ndarray,
    free: np.ndarray,
    held: np.ndarray,
    half_width: np.ndarray,
    n_answers: np.ndarray,
    done: np.ndarray,
    goal: float | np.ndarray,
    blocks: int,
    rng: np.random.Generator,
) -> list[int]:
    """The blocks the next participant of an adaptive survey gets (indices into the block arrays; at most one place
    in each block, so never the same trial twice), in the order chosen; empty when no block can help.

    An adaptive survey's trials are cut into blocks of a few trials of one IRI set (``block_conditions``: the set;
    ``block_sizes``: its trials), each with N places; ``free`` counts a block's places one can claim now and
    ``held`` those held by sessions under way, whose answers are not in the estimate yet. Rule, in order:

    1. Each set's half-width is projected down by the answers under way: × sqrt((n + 1) / (n + 1 + pending)).
    2. Candidates are the sets not ``done`` that have a free block, less those waiting on answers under way (projected
       at or below the goal, from an estimate on at least MIN_ANSWERS answers): more answers now would overshoot, and
       if the sessions under way leave, their places come free and the set is a candidate again. No candidate: empty
       (nobody can help now).
    3. Candidates get one block each, widest (half-width ÷ goal) first, ties in random order from ``rng``; every
       further block goes, one at a time, to the candidate whose projected ratio, counting the blocks already
       given, × sqrt((n + 1) / (n + 1 + given answers)), is largest, which has a free block left and of which this
       participant holds fewer than ``max_blocks_per_set(blocks, sets)``: the widest interval relative to its goal,
       counting what this participant will add (half-width ∝ 1/√n). With few sets open, sessions are shorter rather
       than one person's answers piling into one set, where the differences between people weigh most.
    4. A set's blocks are taken most free places first (then lowest index), so its trials fill breadth-first.

    Deterministic given the rng's state. ``blocks``: blocks per participant (fewer when too few are free or few sets
    are open)."""
    block_conditions = np.asarray(block_conditions, dtype=np.int64)
    sizes = np.asarray(block_sizes, dtype=np.float64)
    free, held = np.asarray(free), np.asarray(held)
    half_width = np.asarray(half_width, dtype=np.float64)
    n_conditions = half_width.size
    goal = np.broadcast_to(np.asarray(goal, dtype=np.float64), half_width.shape)
    n_answers = np.asarray(n_answers, dtype=np.float64)
    done = np.asarray(done, dtype=bool)
    if blocks < 1:
        raise ValueError(f"blocks: must be at least 1; got {blocks}")
    if not np.all(goal > 0):
        raise ValueError(f"goal: every goal must be above 0; got {goal.tolist()}")
    pending = np.bincount(block_conditions, weights=held * sizes, minlength=n_conditions)
    projected = half_width / goal * np.sqrt((n_answers + 1) / (n_answers + 1 + pending))
    # projected only from an estimate that rests on MIN_ANSWERS answers (0.5 on none is no estimate at all)
    waiting = (pending > 0) & (projected <= 1) & (n_answers >= MIN_ANSWERS)
    # each set's free blocks, most free places first, then lowest index
    queues: dict[int, list[int]] = {}
    for b in sorted(np.flatnonzero(free > 0).tolist(), key=lambda b: (-int(free[b]), b)):
        queues.setdefault(int(block_conditions[b]), []).append(b)
    candidates = np.array(sorted(c for c in queues if not (done[c] or waiting[c])), dtype=np.int64)
    if candidates.size == 0:
        return []
    order = rng.permutation(candidates)  # random tie order, then a stable sort by ratio (widest first)
    order = order[np.argsort(-projected[order], kind="stable")]
    per_set = max_blocks_per_set(blocks=blocks, sets=n_conditions)
    given = np.zeros(n_conditions)
    taken = np.zeros(n_conditions, dtype=np.int64)
    chosen: list[int] = []
    for c in order[:blocks]:
        b = queues[int(c)].pop(0)
        chosen.append(b)
        given[c] += sizes[b]
        taken[c] += 1
    base = projected * np.sqrt(n_answers + pending + 1)
    while len(chosen) < blocks:
        left = [int(c) for c in order if queues[int(c)] and taken[c] < per_set]
        if not left:
            break
        score = base[left] / np.sqrt(n_answers[left] + pending[left] + 1 + given[left])
        c = left[int(np.argmax(score))]  # argmax keeps the first (widest, then rng) on ties
        b = queues[c].pop(0)
        chosen.append(b)
        given[c] += sizes[b]
        taken[c] += 1
    return chosen


def max_blocks_per_set(*, blocks: int, sets: int) -> int:
    """The most blocks of one IRI set a participant gets: half a session (rounded up) when the survey has two sets or
    more, so that one person's answers are at most half of what they give any set late in collection (the design
    effect grows with each person's answers to one set); the whole session when there is one set."""
    return blocks if sets < 2 else math.ceil(blocks / 2)


def useful_places_left(*, block_conditions: np.ndarray, unfilled: np.ndarray, done: np.ndarray) -> bool:
    """Whether a block of a set not done has a place not yet filled (free, or held by a session under way, which may
    still time out and free it). False means no participant can help any more."""
    done = np.asarray(done, dtype=bool)
    return bool(np.any((np.asarray(unfilled) > 0) & ~done[np.asarray(block_conditions, dtype=np.int64)]))


def collection_verdict(
    *,
    half_width: np.ndarray,
    goal: float | np.ndarray,
    n_answers: np.ndarray,
    n_participants: int,
    cap_participants: int | None,
    block_conditions: np.ndarray,
    unfilled: np.ndarray,
    under_way: bool = False,
    stopped_reason: str = "",
) -> Stop:
    """The stopping rule of a running adaptive survey: collection_stop, then "no_place" when no block of a set
    above its goal has a place left; once stopped (``stopped_reason``), stopped for that reason for good (later
    estimates only add the answers of the sessions that were under way).

    The goal stops collection only with no session ``under_way``: until their answers are in, the verdict is
    "goal_pending" (not stopped; enrollment has no set to give, since every set is done), and a set their answers
    move back above the goal is open again."""
    verdict = collection_stop(half_width=half_width, goal=goal, n_answers=n_answers, n_participants=n_participants,
                              cap_participants=cap_participants)
    if verdict.reason == "goal" and under_way and not stopped_reason:
        return Stop(False, "goal_pending", verdict.done)
    if not verdict.stop and not useful_places_left(block_conditions=block_conditions, unfilled=unfilled,
                                                   done=verdict.done):
        verdict = Stop(True, "no_place", verdict.done)
    if stopped_reason:
        verdict = Stop(True, stopped_reason, verdict.done)
    return verdict


def estimate_due(*, completed: int, completed_at_estimate: int, every: int, stopped: bool, places_left: bool,
                 goal_pending: bool = False) -> bool:
    """Whether a completion (or a session's end) calls for a new estimate: ``every`` more completed sessions since
    the last one; every one once collection has stopped or waits on the sessions under way to confirm the goal
    (``goal_pending``: the final estimate must include them); and one that leaves no place in a block that helps
    (the rule then stops with "no_place")."""
    return stopped or goal_pending or completed >= completed_at_estimate + every or not places_left


# ---------------------------------------------------------------------------------------------
# The budget planner
#
# The forecast's model. Answers are clustered twice: one participant answers m trials of a set, one item is answered
# by r participants. With intra-class correlations ρ_P (two answers of one participant, different items) and ρ_I
# (two answers to one item, different participants), the share's variance is the binomial one times
#     deff(m, r) = 1 + ρ_P (m − 1) + ρ_I (r − 1)
# (m and r the answer-weighted cluster sizes Σ size² / n), which is what the interval's two-way cluster-robust design
# effect estimates. So a design effect measured under one design does not carry over to another: the fixed design
# spreads every list over all K sets (m ≈ T / K), the adaptive one hands a participant blocks of the sets still
# above their goal (m from 2 up to T once one set is left). cluster_correlations splits a pilot's (or the live
# sessions') design effects into ρ_P and ρ_I; plan_budget puts them back at each design's m and r.


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
    sizes gives (see "The forecast's model" above)."""
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
class _SetModel:
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


def _fixed_forecast(*, sets: list[_SetModel], goal: float, lists: int, min_answers: int) -> dict:
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


def _adaptive_forecast(
    *, sets: list[_SetModel], goal: float, trials_per_participant: int, every: int, in_flight: int,
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


@dataclass(frozen=True)
class BudgetPlan:
    """What a target half-width costs, under fixed N (every condition gets the answers the widest one needs) and
    under adaptive allocation (each condition gets about its own need). Money in the rate's currency (£ by
    default). The per-design fields (``design_effect_*``, ``answers_per_participant_*``) are filled when the plan
    knows each set's items (``items_per_set``); otherwise both designs use the design effect given."""

    seconds_per_participant: float  # trials × seconds per trial + fixed seconds
    pay_per_participant: float  # at the hourly rate, rounded up to the penny
    cost_per_participant: float  # pay × (1 + fee)
    answers_needed: list[int]  # per condition: what adaptive collection gathers (at least its need at its p)
    answers_fixed: int
    answers_adaptive: int
    participants_fixed: int  # whole trial lists (participants_per_list each)
    participants_adaptive: int
    cost_fixed: float
    cost_adaptive: float
    fixed_reachable: bool  # False when fixed N needs more participants than the cap
    warnings: list[str]
    ratings_fixed: int | None = None  # fixed N: answers per item
    design_effect_fixed: list[float] | None = None  # per condition, at the fixed design's m and r
    design_effect_adaptive: list[float] | None = None  # per condition, at the adaptive design's m and r
    answers_per_participant_fixed: list[float] | None = None  # m per condition
    answers_per_participant_adaptive: list[float] | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _check_number(value, field_name: str, *, positive: bool) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field_name}: must be a number; got {value!r}") from None
    if not math.isfinite(number) or (number <= 0 if positive else number < 0):
        template = SECONDS_POSITIVE if positive else SECONDS_NOT_NEGATIVE
        raise ValueError(template.format(field=field_name, value=value))
    return number


def _whole_at_least_one(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _whole_lists(answers: int, *, trials_per_participant: int, participants_per_list: int) -> int:
    participants = -(-answers // trials_per_participant)
    return -(-participants // participants_per_list) * participants_per_list


def _per_set(value, k: int, field_name: str, *, check, rule: str) -> list[float]:
    """A scalar or one value per set, as k floats; ValueError naming the field otherwise."""
    values = list(np.atleast_1d(np.asarray(value, dtype=object)))
    if len(values) == 1:
        values = values * k
    numbers = [v for v in values if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)]
    if len(values) != k or len(numbers) != k or not all(math.isfinite(float(v)) and check(float(v)) for v in values):
        raise ValueError(f"{field_name}: {rule}, one number or one per condition ({k}); got {value}")
    return [float(v) for v in values]


ITEMS_FOR_CORRELATIONS = "items_per_set: give each set's items to plan from intra-class correlations"
GOAL_ITEMS = (
    "half_width: a goal of {half_width} is out of reach with {items} items in {name}: with items answering this "
    "differently (ρ_I {icc:.3f}) its half-width stays above {limit:.3f} however many answers it gets"
)
REPLAY_LIMIT = 20_000  # participants (and ratings per item): a forecast that needs more is out of reach anyway


def plan_budget(
    *,
    p: list[float] | np.ndarray,
    half_width: float,
    seconds_per_trial: float,
    seconds_per_participant: float,
    trials_per_participant: int,
    rate_per_hour: float | None = None,
    fee: float = 0.0,
    design_effect: float | list[float] = DEFAULT_DESIGN_EFFECT,
    participants_per_list: int = 1,
    cap_participants: int | None = None,
    min_answers: int = MIN_ANSWERS,
    currency: str = "GBP",
    items_per_set: int | list[int] | None = None,
    icc_participant: float | list[float] | None = None,
    icc_item: float | list[float] | None = None,
    estimate_every: int = 1,
    sessions_in_flight: int = 1,
) -> BudgetPlan:
    """Participants and cost to bring every condition's 95 % half-width to ``half_width``.

    - rate_per_hour: in ``currency``; None is the rate Prolific recommends in it.
    - p: the expected alignment per condition (assumed, or a pilot's or the live sessions' shares).
    - Time per participant = trials_per_participant × seconds_per_trial + seconds_per_participant (instructions,
      practice, consent); pay = rate × time, rounded up to the penny; cost per participant = pay × (1 + fee), the
      platform's fee being a fraction of the pay.

    Two models of the answers, depending on what is known:

    - **Without** ``items_per_set`` (the design unknown): ``design_effect`` (one, or one per condition) applies as
      given to both designs. Answers per condition: ``condition_answers_needed`` at its p, at least min_answers (the
      stopping rule's minimum); fixed N gives every condition the largest of them, adaptive allocation each its own
      (a lower bound). Participants = answers ÷ trials per participant, rounded up to whole trial lists of
      participants_per_list participants.
    - **With** ``items_per_set`` (each condition's items; the survey's design): each design gets the design effect
      it implies, 1 + ρ_P (m − 1) + ρ_I (r − 1) (``icc_participant`` ρ_P and ``icc_item`` ρ_I, one or one per
      condition, e.g. from ``cluster_correlations`` on a pilot; None is 0), never below ``design_effect`` (a floor
      per condition), times the interval's few-cluster factor (t_df / z)². Fixed N: lists of T =
      trials_per_participant trials mixing all K conditions (participants_per_list = the lists), so m ≈ T / K, and
      every item answered N times (r = N); N is the smallest whole number that brings every condition to the goal
      at its expected share, and fixed answers = N × all items. Adaptive: the shipped rule replayed on expected
      half-widths (``_adaptive_forecast``: blocks of BLOCK_TRIALS trials of one set chosen by ``blocks_choose``,
      so a participant answers m from 2 trials of a set up to T once it is the last one open; the estimate every
      ``estimate_every`` completions with ``sessions_in_flight`` sessions under way, whose answers still count after
      the stop). It assumes the expected shares and correlations are right and that places never run short (the
      survey planner checks them); the realised answers vary around it (``bench/adaptive.py`` measures by how much).

    Raises ValueError naming the field: half_width outside (0, 0.5), rate ≤ 0, a cap below one trial list, a goal
    that adaptive allocation cannot reach within cap_participants, or one item differences keep out of reach. A rate
    below Prolific's minimum for the currency (PROLIFIC_RATES: £6/h, $8/h) is a warning.
    """
    if currency not in PROLIFIC_RATES:
        raise ValueError(CURRENCY_UNKNOWN.format(known=" or ".join(PROLIFIC_RATES), value=currency))
    if rate_per_hour is None:  # the pay Prolific recommends in that currency
        rate_per_hour = PROLIFIC_RATES[currency]["recommended"]
    if not isinstance(half_width, (int, float)) or not 0 < half_width < 0.5:
        raise ValueError(HALF_WIDTH_RANGE.format(value=half_width))
    if not isinstance(rate_per_hour, (int, float)) or not rate_per_hour > 0 or not math.isfinite(rate_per_hour):
        raise ValueError(RATE_POSITIVE.format(value=rate_per_hour))
    if not isinstance(fee, (int, float)) or not 0 <= fee < 1:
        raise ValueError(FEE_RANGE.format(value=fee))
    trial_s = _check_number(seconds_per_trial, "seconds_per_trial", positive=True)
    fixed_s = _check_number(seconds_per_participant, "seconds_per_participant", positive=False)
    if not _whole_at_least_one(trials_per_participant):
        raise ValueError(TRIALS_POSITIVE.format(value=trials_per_participant))
    if not _whole_at_least_one(participants_per_list):
        raise ValueError(PER_LIST_POSITIVE.format(value=participants_per_list))
    deffs = np.atleast_1d(np.asarray(design_effect, dtype=object))
    if not all(isinstance(d, (int, float, np.integer, np.floating)) and not isinstance(d, bool)
               and math.isfinite(d) and d >= 1 for d in deffs) or deffs.size == 0:
        raise ValueError(DESIGN_EFFECT_RANGE.format(value=design_effect))
    expected = np.atleast_1d(np.asarray(p, dtype=np.float64))
    if expected.size == 0:
        raise ValueError(P_EMPTY)
    if not np.all((expected >= 0) & (expected <= 1)):
        raise ValueError(P_RANGE.format(value=list(map(float, expected))))
    k = expected.size
    deffs = _per_set(design_effect, k, "design_effect", check=lambda v: v >= 1, rule="must be 1 or more")
    if cap_participants is not None and cap_participants < participants_per_list:
        raise ValueError(CAP_BELOW_ONE_LIST.format(value=cap_participants, per_list=participants_per_list))
    for name, value in (("estimate_every", estimate_every), ("sessions_in_flight", sessions_in_flight)):
        if not _whole_at_least_one(value):
            raise ValueError(f"{name}: must be a whole number of at least 1; got {value}")
    if items_per_set is None and (icc_participant is not None or icc_item is not None):
        raise ValueError(ITEMS_FOR_CORRELATIONS)

    warnings = []
    if rate_per_hour < PROLIFIC_RATES[currency]["minimum"]:
        warnings.append(RATE_BELOW_MINIMUM.format(rate=rate_per_hour, **PROLIFIC_RATES[currency]))
    seconds = trials_per_participant * trial_s + fixed_s
    pay = math.ceil(round(rate_per_hour * seconds / 3600 * 100, 9)) / 100  # round() keeps 30.000000000000004 at 30
    cost_each = round(pay * (1 + fee), 4)
    lists = {"trials_per_participant": int(trials_per_participant), "participants_per_list": int(participants_per_list)}
    per_design: dict = {}
    if items_per_set is None:
        needed = [max(min_answers, condition_answers_needed(p=float(q), half_width=half_width, design_effect=d))
                  for q, d in zip(expected, deffs)]
        answers_fixed = max(needed) * len(needed)
        answers_adaptive = sum(needed)
        participants_adaptive = _whole_lists(answers_adaptive, **lists)
    else:
        items = _per_set(items_per_set, k, "items_per_set", check=lambda v: v >= 1 and v == int(v),
                         rule="must be whole numbers of at least 1")
        rho_p = _per_set(0.0 if icc_participant is None else icc_participant, k, "icc_participant",
                         check=lambda v: -1 <= v <= 1, rule="must lie in [-1, 1]")
        rho_i = _per_set(0.0 if icc_item is None else icc_item, k, "icc_item", check=lambda v: -1 <= v <= 1,
                         rule="must lie in [-1, 1]")
        # a negative correlation measured on a small pilot is noise: planned at 0
        sets = [_SetModel(p=float(q), icc_participant=max(0.0, a), icc_item=max(0.0, b), items=int(n), floor=d)
                for q, a, b, n, d in zip(expected, rho_p, rho_i, items, deffs)]
        for c, s in enumerate(sets):
            if (limit := s.half_width_limit()) > half_width:
                raise ValueError(GOAL_ITEMS.format(half_width=half_width, items=s.items, name=f"condition {c}",
                                                   icc=s.icc_item, limit=limit))
        fixed = _fixed_forecast(sets=sets, goal=half_width, lists=int(participants_per_list), min_answers=min_answers)
        if fixed is None:
            raise ValueError(f"half_width: a goal of {half_width} needs more than {REPLAY_LIMIT} ratings of every "
                             "item under fixed N")
        adaptive = _adaptive_forecast(sets=sets, goal=half_width, trials_per_participant=int(trials_per_participant),
                                      every=int(estimate_every), in_flight=int(sessions_in_flight),
                                      min_answers=min_answers, max_participants=REPLAY_LIMIT)
        if adaptive is None:
            raise ValueError(GOAL_UNREACHABLE.format(half_width=half_width, needed=f"more than {REPLAY_LIMIT}",
                                                     cap=cap_participants))
        needed = adaptive["answers_per_set"]
        answers_fixed = sum(fixed["answers_per_set"])
        answers_adaptive = sum(needed)
        participants_adaptive = adaptive["participants"]
        per_design = {
            "ratings_fixed": fixed["ratings"],
            "design_effect_fixed": [round(d, 4) for d in fixed["design_effect"]],
            "design_effect_adaptive": [round(d, 4) for d in adaptive["design_effect"]],
            "answers_per_participant_fixed": [round(m, 3) for m in fixed["answers_per_participant"]],
            "answers_per_participant_adaptive": adaptive["answers_per_participant"],
        }
    participants_fixed = _whole_lists(answers_fixed, **lists)
    if cap_participants is not None and participants_adaptive > cap_participants:
        raise ValueError(
            GOAL_UNREACHABLE.format(half_width=half_width, needed=participants_adaptive, cap=cap_participants)
        )
    fixed_reachable = cap_participants is None or participants_fixed <= cap_participants
    if not fixed_reachable:
        warnings.append(
            f"cap_participants: fixed N needs {participants_fixed} participants, above the cap of {cap_participants}; "
            "only adaptive allocation reaches the goal"
        )
    return BudgetPlan(
        seconds_per_participant=float(seconds),
        pay_per_participant=pay,
        cost_per_participant=cost_each,
        answers_needed=[int(n) for n in needed],
        answers_fixed=int(answers_fixed),
        answers_adaptive=int(answers_adaptive),
        participants_fixed=int(participants_fixed),
        participants_adaptive=int(participants_adaptive),
        cost_fixed=round(participants_fixed * pay * (1 + fee), 2),
        cost_adaptive=round(participants_adaptive * pay * (1 + fee), 2),
        fixed_reachable=fixed_reachable,
        warnings=warnings,
        **per_design,
    )
