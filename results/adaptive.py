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
not); ``results.alignment`` still reports the two-way (participant × item) bootstrap beside it for fixed designs.
Its coverage under the adaptive rule below, with item heterogeneity and participant noise, is what
``bench/adaptive.py`` measures (goal: ≥ 0.93 for every condition at a nominal 95 %).

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
    "Adaptive stopping: after every trial list, each condition's 95 % design-effect Wilson interval is recomputed; "
    "a condition is done when its half-width is at or below its goal and it has at least {min_answers} answers; "
    "done conditions get no more trials while another is still above its goal; collection stops when every "
    "condition is done or the cap is reached."
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


def allocation_next(
    *,
    half_width: np.ndarray,
    goal: float | np.ndarray,
    n_answers: np.ndarray,
    slots: int,
    rng: np.random.Generator,
    done: np.ndarray | None = None,
    max_conditions: int | None = None,
    min_answers: int = MIN_ANSWERS,
) -> np.ndarray:
    """The conditions of the next trial list: one condition index per slot (``slots`` of them, sorted; the caller
    shuffles the order on screen and picks each condition's least-answered items).

    Rule, in order:
    1. Candidates are the conditions not done (``done``, or else ``conditions_done``); when all are done, all are
       candidates (a list is never left empty while collection goes on).
    2. The list holds at most ``cap = min(slots, max_conditions)`` distinct conditions. If more candidates than that
       are left, it takes the ``cap`` with the largest half-width ÷ goal (ties in random order from ``rng``);
       otherwise it takes them all, so no condition still above its goal is starved.
    3. Each chosen condition gets one slot; every further slot goes, one at a time, to the chosen condition whose
       *projected* ratio (half-width ÷ goal) × sqrt((n + 1) / (n + 1 + slots already given)) is largest: the widest
       interval relative to its goal, counting the answers this list will add (half-width ∝ 1/√n).

    Deterministic given the rng's state.
    """
    half_width = np.asarray(half_width, dtype=np.float64)
    n_conditions = half_width.size
    goal = np.broadcast_to(np.asarray(goal, dtype=np.float64), half_width.shape)
    n_answers = np.asarray(n_answers, dtype=np.float64)
    if slots < 1:
        raise ValueError(f"slots: must be at least 1; got {slots}")
    if max_conditions is not None and max_conditions < 1:
        raise ValueError(f"max_conditions: must be at least 1; got {max_conditions}")
    if n_conditions == 0:
        raise ValueError("half_width: no conditions to allocate to")
    if not np.all(goal > 0):
        raise ValueError(f"goal: every goal must be above 0; got {goal.tolist()}")
    if done is None:
        done = conditions_done(half_width=half_width, goal=goal, n_answers=n_answers, min_answers=min_answers)
    done = np.asarray(done, dtype=bool)
    candidates = np.flatnonzero(~done) if not done.all() else np.arange(n_conditions)
    ratio = half_width / goal
    order = rng.permutation(candidates)  # random tie order, then a stable sort by ratio (widest first)
    order = order[np.argsort(-ratio[order], kind="stable")]
    cap = min(slots, max_conditions or slots)
    chosen = order[:cap]
    given = np.zeros(n_conditions)
    given[chosen] = 1
    base = ratio[chosen] * np.sqrt(n_answers[chosen] + 1)
    for _ in range(slots - chosen.size):
        projected = base / np.sqrt(n_answers[chosen] + 1 + given[chosen])
        given[chosen[int(np.argmax(projected))]] += 1  # argmax keeps the first (widest, then rng) on ties
    return np.repeat(np.arange(n_conditions), given.astype(np.int64))


# ---------------------------------------------------------------------------------------------
# The budget planner


@dataclass(frozen=True)
class BudgetPlan:
    """What a target half-width costs, under fixed N (every condition gets the answers the widest one needs) and
    under adaptive allocation (each condition gets its own need). Money in the rate's currency (£ by default)."""

    seconds_per_participant: float  # trials × seconds per trial + fixed seconds
    pay_per_participant: float  # at the hourly rate, rounded up to the penny
    cost_per_participant: float  # pay × (1 + fee)
    answers_needed: list[int]  # per condition, at its expected p
    answers_fixed: int
    answers_adaptive: int
    participants_fixed: int  # whole trial lists (participants_per_list each)
    participants_adaptive: int
    cost_fixed: float
    cost_adaptive: float
    fixed_reachable: bool  # False when fixed N needs more participants than the cap
    warnings: list[str]

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


def plan_budget(
    *,
    p: list[float] | np.ndarray,
    half_width: float,
    seconds_per_trial: float,
    seconds_per_participant: float,
    trials_per_participant: int,
    rate_per_hour: float | None = None,
    fee: float = 0.0,
    design_effect: float = DEFAULT_DESIGN_EFFECT,
    participants_per_list: int = 1,
    cap_participants: int | None = None,
    min_answers: int = MIN_ANSWERS,
    currency: str = "GBP",
) -> BudgetPlan:
    """Participants and cost to bring every condition's 95 % half-width to ``half_width``.

    - rate_per_hour: in ``currency``; None is the rate Prolific recommends in it.
    - p: the expected alignment per condition (assumed, or a pilot's shares); design_effect: from a pilot's
      ``condition_intervals`` (1 = independent answers).
    - Time per participant = trials_per_participant × seconds_per_trial + seconds_per_participant (instructions,
      practice, consent); pay = rate × time, rounded up to the penny; cost per participant = pay × (1 + fee), the
      platform's fee being a fraction of the pay.
    - Answers per condition: ``condition_answers_needed`` at its p, at least min_answers (the stopping rule's
      minimum). Fixed N gives every condition the largest of
      them; adaptive allocation gives each its own (a lower bound that ``bench/adaptive.py`` shows adaptive
      collection reaching closely). Participants = answers ÷ trials per participant, rounded up to whole trial
      lists of participants_per_list participants.

    Raises ValueError naming the field: half_width outside (0, 0.5), rate ≤ 0, a cap below one trial list, or a
    goal that adaptive allocation cannot reach within cap_participants. A rate below Prolific's minimum for the
    currency (PROLIFIC_RATES: £6/h, $8/h) is a warning.
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
    if not isinstance(design_effect, (int, float)) or not (math.isfinite(design_effect) and design_effect >= 1):
        raise ValueError(DESIGN_EFFECT_RANGE.format(value=design_effect))
    expected = np.atleast_1d(np.asarray(p, dtype=np.float64))
    if expected.size == 0:
        raise ValueError(P_EMPTY)
    if not np.all((expected >= 0) & (expected <= 1)):
        raise ValueError(P_RANGE.format(value=list(map(float, expected))))
    if cap_participants is not None and cap_participants < participants_per_list:
        raise ValueError(CAP_BELOW_ONE_LIST.format(value=cap_participants, per_list=participants_per_list))

    warnings = []
    if rate_per_hour < PROLIFIC_RATES[currency]["minimum"]:
        warnings.append(RATE_BELOW_MINIMUM.format(rate=rate_per_hour, **PROLIFIC_RATES[currency]))
    seconds = trials_per_participant * trial_s + fixed_s
    pay = math.ceil(round(rate_per_hour * seconds / 3600 * 100, 9)) / 100  # round() keeps 30.000000000000004 at 30
    cost_each = round(pay * (1 + fee), 4)
    needed = [max(min_answers, condition_answers_needed(p=float(q), half_width=half_width, design_effect=design_effect))
              for q in expected]
    answers_fixed = max(needed) * len(needed)
    answers_adaptive = sum(needed)
    lists = {"trials_per_participant": int(trials_per_participant), "participants_per_list": int(participants_per_list)}
    participants_fixed = _whole_lists(answers_fixed, **lists)
    participants_adaptive = _whole_lists(answers_adaptive, **lists)
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
        answers_needed=needed,
        answers_fixed=int(answers_fixed),
        answers_adaptive=int(answers_adaptive),
        participants_fixed=int(participants_fixed),
        participants_adaptive=int(participants_adaptive),
        cost_fixed=round(participants_fixed * pay * (1 + fee), 2),
        cost_adaptive=round(participants_adaptive * pay * (1 + fee), 2),
        fixed_reachable=fixed_reachable,
        warnings=warnings,
    )
