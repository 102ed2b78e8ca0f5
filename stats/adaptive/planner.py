"""The budget planner: what a target half-width costs in participants and money, under fixed N and under
adaptive allocation. numpy and scipy only."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .forecast import REPLAY_LIMIT, SetModel, adaptive_forecast, fixed_forecast
from .interval import DESIGN_EFFECT_RANGE, HALF_WIDTH_RANGE, P_RANGE, condition_answers_needed
from .stopping import MIN_ANSWERS

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

# Error messages (the field first, so a 400 or a command can name it).
RATE_POSITIVE = "rate_per_hour: must be above 0; got {value}"
FEE_RANGE = "fee: must lie in [0, 1) (a fraction of the pay, 0.33 for 33 %); got {value}"
SECONDS_POSITIVE = "{field}: must be above 0; got {value}"
SECONDS_NOT_NEGATIVE = "{field}: must be 0 or more; got {value}"
TRIALS_POSITIVE = "trials_per_participant: must be a whole number of at least 1; got {value}"
PER_LIST_POSITIVE = "participants_per_list: must be a whole number of at least 1; got {value}"
P_EMPTY = "p: give the expected alignment of at least one condition"
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
      half-widths (``adaptive_forecast``: blocks of BLOCK_TRIALS trials of one set chosen by ``blocks_choose``,
      so a participant answers m from 2 trials of a set up to T once it is the last one open; the estimate every
      ``estimate_every`` completions with ``sessions_in_flight`` sessions under way, whose answers still count after
      the stop). It assumes the expected shares and correlations are right and that places never run short (the
      survey planner checks them); the realised answers vary around it (``bench/adaptive.py`` measures by how much).

    Raises ValueError naming the field: half_width outside (0, 0.5), rate ≤ 0, a cap below one trial list, a goal
    that adaptive allocation cannot reach within cap_participants, or one item differences keep out of reach. A rate
    below Prolific's minimum for the currency (PROLIFIC_RATES: £6/h, $8/h) is a warning.
    """
    rate_per_hour, trial_s, fixed_s, expected, deffs = _plan_inputs(
        p=p, half_width=half_width, seconds_per_trial=seconds_per_trial,
        seconds_per_participant=seconds_per_participant, trials_per_participant=trials_per_participant,
        rate_per_hour=rate_per_hour, fee=fee, design_effect=design_effect,
        participants_per_list=participants_per_list, cap_participants=cap_participants, currency=currency,
        items_per_set=items_per_set, icc_participant=icc_participant, icc_item=icc_item, estimate_every=estimate_every,
        sessions_in_flight=sessions_in_flight,
    )
    seconds = trials_per_participant * trial_s + fixed_s
    pay = math.ceil(round(rate_per_hour * seconds / 3600 * 100, 9)) / 100  # round() keeps 30.000000000000004 at 30
    lists = {"trials_per_participant": int(trials_per_participant), "participants_per_list": int(participants_per_list)}
    if items_per_set is None:
        needed = [max(min_answers, condition_answers_needed(p=float(q), half_width=half_width, design_effect=d))
                  for q, d in zip(expected, deffs)]
        answers_fixed = max(needed) * len(needed)
        participants_adaptive, per_design = _whole_lists(sum(needed), **lists), {}
    else:
        needed, answers_fixed, participants_adaptive, per_design = _plan_by_design(
            expected=expected, deffs=deffs, items_per_set=items_per_set, icc_participant=icc_participant,
            icc_item=icc_item, half_width=half_width, trials_per_participant=trials_per_participant,
            participants_per_list=participants_per_list, estimate_every=estimate_every,
            sessions_in_flight=sessions_in_flight, min_answers=min_answers, cap_participants=cap_participants,
        )
    return _plan_costed(
        needed=needed, answers_fixed=answers_fixed, participants_adaptive=participants_adaptive, per_design=per_design,
        seconds=seconds, pay=pay, fee=fee, rate_per_hour=rate_per_hour, currency=currency, half_width=half_width,
        cap_participants=cap_participants, lists=lists,
    )


def _plan_inputs(
    *, p, half_width, seconds_per_trial, seconds_per_participant, trials_per_participant, rate_per_hour, fee,
    design_effect, participants_per_list, cap_participants, currency, items_per_set, icc_participant, icc_item,
    estimate_every, sessions_in_flight,
) -> tuple[float, float, float, np.ndarray, list[float]]:
    """plan_budget's arguments checked, in order (ValueError naming the first field that is wrong): the hourly rate
    (Prolific's recommended one for None), seconds per trial and per participant, the expected shares and one design
    effect per condition."""
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
    return rate_per_hour, trial_s, fixed_s, expected, deffs


def _plan_by_design(
    *, expected, deffs, items_per_set, icc_participant, icc_item, half_width, trials_per_participant,
    participants_per_list, estimate_every, sessions_in_flight, min_answers, cap_participants,
) -> tuple[list, int, int, dict]:
    """With each set's items known: (answers per set under adaptive allocation, fixed answers, adaptive
    participants, the per-design fields of BudgetPlan), each design at the design effect it implies (plan_budget)."""
    k = expected.size
    items = _per_set(items_per_set, k, "items_per_set", check=lambda v: v >= 1 and v == int(v),
                     rule="must be whole numbers of at least 1")
    rho_p = _per_set(0.0 if icc_participant is None else icc_participant, k, "icc_participant",
                     check=lambda v: -1 <= v <= 1, rule="must lie in [-1, 1]")
    rho_i = _per_set(0.0 if icc_item is None else icc_item, k, "icc_item", check=lambda v: -1 <= v <= 1,
                     rule="must lie in [-1, 1]")
    # a negative correlation measured on a small pilot is noise: planned at 0
    sets = [SetModel(p=float(q), icc_participant=max(0.0, a), icc_item=max(0.0, b), items=int(n), floor=d)
            for q, a, b, n, d in zip(expected, rho_p, rho_i, items, deffs)]
    for c, s in enumerate(sets):
        if (limit := s.half_width_limit()) > half_width:
            raise ValueError(GOAL_ITEMS.format(half_width=half_width, items=s.items, name=f"condition {c}",
                                               icc=s.icc_item, limit=limit))
    fixed = fixed_forecast(sets=sets, goal=half_width, lists=int(participants_per_list), min_answers=min_answers)
    if fixed is None:
        raise ValueError(f"half_width: a goal of {half_width} needs more than {REPLAY_LIMIT} ratings of every "
                         "item under fixed N")
    adaptive = adaptive_forecast(sets=sets, goal=half_width, trials_per_participant=int(trials_per_participant),
                                 every=int(estimate_every), in_flight=int(sessions_in_flight),
                                 min_answers=min_answers, max_participants=REPLAY_LIMIT)
    if adaptive is None:
        raise ValueError(GOAL_UNREACHABLE.format(half_width=half_width, needed=f"more than {REPLAY_LIMIT}",
                                                 cap=cap_participants))
    per_design = {
        "ratings_fixed": fixed["ratings"],
        "design_effect_fixed": [round(d, 4) for d in fixed["design_effect"]],
        "design_effect_adaptive": [round(d, 4) for d in adaptive["design_effect"]],
        "answers_per_participant_fixed": [round(m, 3) for m in fixed["answers_per_participant"]],
        "answers_per_participant_adaptive": adaptive["answers_per_participant"],
    }
    return adaptive["answers_per_set"], sum(fixed["answers_per_set"]), adaptive["participants"], per_design


def _plan_costed(
    *, needed, answers_fixed, participants_adaptive, per_design, seconds, pay, fee, rate_per_hour, currency,
    half_width, cap_participants, lists,
) -> BudgetPlan:
    """The plan in whole trial lists and money, with its warnings; ValueError when adaptive allocation needs more
    participants than the cap."""
    warnings = []
    if rate_per_hour < PROLIFIC_RATES[currency]["minimum"]:
        warnings.append(RATE_BELOW_MINIMUM.format(rate=rate_per_hour, **PROLIFIC_RATES[currency]))
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
        cost_per_participant=round(pay * (1 + fee), 4),
        answers_needed=[int(n) for n in needed],
        answers_fixed=int(answers_fixed),
        answers_adaptive=int(sum(needed)),
        participants_fixed=int(participants_fixed),
        participants_adaptive=int(participants_adaptive),
        cost_fixed=round(participants_fixed * pay * (1 + fee), 2),
        cost_adaptive=round(participants_adaptive * pay * (1 + fee), 2),
        fixed_reachable=fixed_reachable,
        warnings=warnings,
        **per_design,
    )
