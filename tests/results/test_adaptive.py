"""Adaptive collection (stats.adaptive): the interval under adaptive stopping, the allocation of the next trial list,
the stopping rule and the budget planner, on hand-made arrays with values computed by hand."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from stats.adaptive.blocks import blocks_choose, max_blocks_per_set
from stats.adaptive.interval import condition_answers_needed, condition_half_width, condition_intervals
from stats.adaptive.planner import CAP_BELOW_ONE_LIST, plan_budget
from stats.adaptive.stopping import MIN_ANSWERS, collection_stop, conditions_done, stopping_rule_describe
from stats.alignment import Z95, wilson_interval

ROOT = Path(__file__).resolve().parents[2]
T_1 = 12.706205  # Student t, 97.5 % quantile, 1 degree of freedom


# ---------------------------------------------------------------------------------------------
# The interval


def test_a_participant_who_always_agrees_and_one_who_never_does_triple_the_variance():
    # Two participants x two items, one condition: person 0 chose the target twice, person 1 never. p̂ = 1/2,
    # residuals +½ +½ -½ -½. Participant sums +1, -1: (1 + 1) x G/(G-1) = 2 x 2 = 4. Item sums 0, 0: 0.
    # Cells (one answer each): 4 x ¼ = 1. Two-way variance = (4 + 0 - 1) / 4² = 3/16; binomial ¼ / 4 = 1/16:
    # design effect 3, effective n 4/3; two participants and two items leave df = 1, t_1 = 12.7062, so the effective
    # n shrinks to 4/3 x (1.96 / 12.7062)² = 0.031725. Wilson at p = ½ on n: centre ½, half-width (z/2)/sqrt(n + z²).
    table = condition_intervals(
        correct=np.array([1, 1, 0, 0]), participants=np.array([0, 0, 1, 1]), items=np.array([0, 1, 0, 1]),
        conditions=np.zeros(4, dtype=int), n_conditions=1,
    )

    (only,) = table
    assert only.alignment == 0.5 and only.n_answers == 4
    assert only.design_effect == pytest.approx(3.0)
    assert only.n_effective == pytest.approx(4 / 3 * (Z95 / T_1) ** 2) == pytest.approx(0.031725, abs=1e-6)
    half = (Z95 / 2) / np.sqrt(only.n_effective + Z95**2)  # 0.49795: two people say next to nothing
    assert only.half_width == pytest.approx(half) == pytest.approx(0.49795, abs=1e-5)
    assert (only.low, only.high) == pytest.approx((0.5 - half, 0.5 + half))
    assert (only.n_participants, only.n_items) == (2, 2)


def test_answers_that_balance_within_every_person_and_item_have_no_design_effect():
    # Person 0 answered (1, 0), person 1 (0, 1): every participant and item sums to 0, so the cluster-robust
    # variance is below the binomial one; the design effect is floored at 1 and the interval is Wilson's 2 of 4
    # on the df-adjusted n = 4 x (z / t_1)².
    correct, people, items = np.array([1, 0, 0, 1]), np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])

    (only,) = condition_intervals(correct=correct, participants=people, items=items, conditions=np.zeros(4, int), n_conditions=1)

    assert only.design_effect == 1.0
    n = 4 * (Z95 / T_1) ** 2
    assert (only.low, only.high) == pytest.approx(wilson_interval(n / 2, n))


def test_half_widths_come_per_condition_and_an_empty_condition_is_half():
    # Condition 0 is the tripled example above; condition 1 saw 0 of 10 answers from 10 people on 10 items
    # (df = 9, t_9 = 2.26216: n = 10 x (z / t_9)² = 7.5067, Wilson [0, z²/(n + z²)]); condition 2 none.
    correct = np.array([1, 1, 0, 0] + [0] * 10)
    people = np.array([0, 0, 1, 1] + list(range(2, 12)))
    items = np.array([0, 1, 0, 1] + list(range(2, 12)))
    conditions = np.array([0] * 4 + [1] * 10)

    widths = condition_half_width(correct=correct, participants=people, items=items, conditions=conditions, n_conditions=3)

    assert widths[0] == pytest.approx(0.49795, abs=1e-5)
    n = 10 * (Z95 / 2.262157) ** 2
    assert widths[1] == pytest.approx(Z95**2 / (n + Z95**2) / 2) == pytest.approx(0.16925, abs=1e-5)
    assert widths[2] == 0.5
    assert condition_intervals(correct=correct, participants=people, items=items, conditions=conditions, n_conditions=3)[2].alignment is None


def test_the_answers_needed_at_one_half_and_at_zero_by_hand():
    # Wilson at p̂ = ½: half-width (z/2)/sqrt(n + z²) <= 0.05  <=>  n >= (z/0.1)² - z² = 380.3, so 381.
    # At p̂ = 0: the interval is [0, z²/(n + z²)], half-width z²/(2(n + z²)) <= 0.05  <=>  n >= 34.6, so 35.
    assert condition_answers_needed(p=0.5, half_width=0.05) == 381
    assert condition_answers_needed(p=0.0, half_width=0.05) == 35
    # a design effect of 2 doubles the answers on the effective scale: n / 2 >= 380.3
    assert condition_answers_needed(p=0.5, half_width=0.05, design_effect=2.0) == 761


def test_importing_the_module_loads_no_django():
    code = ("import sys, stats.adaptive.blocks, stats.adaptive.forecast, stats.adaptive.interval, "
            "stats.adaptive.planner, stats.adaptive.stopping; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Stopping


def test_collection_stops_when_every_condition_meets_its_goal():
    verdict = collection_stop(half_width=np.array([0.04, 0.05]), goal=0.05, n_answers=np.array([40, 400]), n_participants=30)

    assert verdict.stop and verdict.reason == "goal" and verdict.done.tolist() == [True, True]


def test_one_condition_above_its_goal_keeps_collection_going():
    verdict = collection_stop(half_width=np.array([0.04, 0.06]), goal=0.05, n_answers=np.array([40, 400]), n_participants=30)

    assert not verdict.stop and verdict.reason == "" and verdict.done.tolist() == [True, False]


def test_a_narrow_interval_on_too_few_answers_is_not_done():
    verdict = collection_stop(half_width=np.array([0.01]), goal=0.05, n_answers=np.array([MIN_ANSWERS - 1]), n_participants=5)

    assert not verdict.stop


def test_the_caps_stop_collection_before_the_goal():
    widths, counts = np.array([0.2, 0.3]), np.array([100, 100])

    assert collection_stop(half_width=widths, goal=0.05, n_answers=counts, n_participants=10, cap_participants=10).reason == "cap_participants"
    assert collection_stop(half_width=widths, goal=0.05, n_answers=counts, n_participants=10, cap_answers=200).reason == "cap_answers"
    assert not collection_stop(half_width=widths, goal=0.05, n_answers=counts, n_participants=9, cap_participants=10).stop


def test_the_report_states_the_stopping_rule_with_its_goal_and_cap():
    text = stopping_rule_describe(goal=0.05, cap_participants=500)

    assert f"at least {MIN_ANSWERS} answers" in text
    assert text.endswith("Goal half-width: 0.05; cap: 500 participants.")


def test_goals_may_differ_per_condition():
    done = conditions_done(half_width=np.array([0.08, 0.08]), goal=np.array([0.1, 0.05]), n_answers=np.array([50, 50]))

    assert done.tolist() == [True, False]


# ---------------------------------------------------------------------------------------------
# Allocation


def one_set_blocks(blocks_per_set: list[int], *, size: int = 2):
    """Block arrays for sets with this many blocks each, every block `size` trials of one set."""
    conditions = np.repeat(np.arange(len(blocks_per_set)), blocks_per_set)
    return conditions, np.full(conditions.size, size)


def test_the_widest_set_relative_to_its_goal_gets_the_most_blocks_and_a_set_at_its_goal_none():
    conditions, sizes = one_set_blocks([10, 10, 10, 10])
    chosen = blocks_choose(
        block_conditions=conditions, block_sizes=sizes, free=np.full(40, 3), held=np.zeros(40),
        half_width=np.array([0.10, 0.06, 0.20, 0.04]), n_answers=np.array([100, 100, 100, 100]),
        done=np.array([False, False, False, True]), goal=0.05, blocks=10, rng=np.random.default_rng(0),
    )

    counts = np.bincount(conditions[chosen], minlength=4)
    assert len(chosen) == len(set(chosen)) == 10  # one place in each of ten different blocks
    assert counts[3] == 0  # already at its goal
    assert counts[2] > counts[0] > 0 and counts[1] >= 1  # no unfinished set starved
    # By hand: ratios 2, 1.2, 4 on 100 answers; after one block each (102 answers), each further block goes to the
    # largest ratio × sqrt(101 / (101 + given)): set 2 would keep winning until 4·sqrt(101/(101+2k)) < 2·sqrt(101/103)
    # but stops at half the session (5 blocks); set 0 then beats set 1 (2·sqrt(101/105) > 1.2·sqrt(101/103)).
    assert counts.tolist() == [4, 1, 5, 0]


def test_answers_under_way_count_as_if_given_and_a_block_without_free_places_is_skipped():
    conditions, sizes = one_set_blocks([2, 2])
    free = np.array([0, 0, 1, 1])  # set 0's blocks are full (held by sessions under way)
    held = np.array([5, 5, 0, 0])
    chosen = blocks_choose(block_conditions=conditions, block_sizes=sizes, free=free, held=held,
                           half_width=np.array([0.3, 0.1]), n_answers=np.array([10, 10]), done=np.array([False, False]),
                           goal=0.05, blocks=3, rng=np.random.default_rng(0))

    assert chosen == [2, 3]  # only set 1 has places; fewer blocks than asked rather than a full block


def test_a_set_the_answers_under_way_will_bring_to_its_goal_waits_and_nobody_gets_a_set_that_is_done():
    conditions, sizes = one_set_blocks([3, 3, 3])
    arguments = dict(block_conditions=conditions, block_sizes=sizes, free=np.ones(9), goal=0.05, blocks=6,
                     n_answers=np.array([100, 100, 100]), done=np.array([False, False, True]))
    # Set 0: 0.06 on 100 answers, 60 under way: 0.06 × sqrt(101 / 161) = 0.0475, at the goal once they are in.
    # Set 1: 0.08 on 100, 20 under way: 0.08 × sqrt(101 / 121) = 0.073, still above it. Set 2 is done.
    held = np.array([10, 10, 10, 10, 0, 0, 0, 0, 0])
    chosen = blocks_choose(**arguments, held=held, half_width=np.array([0.06, 0.08, 0.03]),
                           rng=np.random.default_rng(0))

    assert conditions[chosen].tolist() == [1, 1, 1]  # set 1 only, all its free blocks: fewer than the 6 asked
    # When the sessions under way would bring every open set to its goal, an arrival gets nothing (for now): set 1 at
    # 0.054 with 20 under way projects to 0.054 × sqrt(101 / 121) = 0.0493.
    assert blocks_choose(**arguments, held=held, half_width=np.array([0.06, 0.054, 0.03]),
                         rng=np.random.default_rng(0)) == []
    # If those sessions leave, their places are free again and both sets are open once more.
    assert set(conditions[blocks_choose(**arguments, held=np.zeros(9), half_width=np.array([0.06, 0.054, 0.03]),
                                        rng=np.random.default_rng(0))].tolist()) == {0, 1}
    # Every set done: nobody gets a block (the estimate that said so stopped collection, or waits on sessions).
    assert blocks_choose(**{**arguments, "done": np.array([True, True, True])}, held=np.zeros(9),
                         half_width=np.array([0.01, 0.02, 0.03]), rng=np.random.default_rng(0)) == []


def test_a_participant_gets_at_most_half_a_session_of_one_set_unless_the_survey_has_one():
    assert [max_blocks_per_set(blocks=b, sets=k) for b, k in ((10, 12), (10, 2), (9, 3), (1, 4), (10, 1))] == [
        5, 5, 5, 1, 10]
    conditions, sizes = one_set_blocks([20, 20])
    chosen = blocks_choose(block_conditions=conditions, block_sizes=sizes, free=np.ones(40), held=np.zeros(40),
                           half_width=np.array([0.3, 0.01]), n_answers=np.array([10, 500]),
                           done=np.array([False, True]), goal=0.05, blocks=10, rng=np.random.default_rng(0))

    assert len(chosen) == 5 and set(conditions[chosen].tolist()) == {0}  # a shorter session, not ten blocks of set 0


conditions_state = st.integers(1, 10).flatmap(
    lambda k: st.tuples(
        st.lists(st.floats(0.001, 0.5), min_size=k, max_size=k),
        st.lists(st.floats(0.01, 0.2), min_size=k, max_size=k),
        st.lists(st.integers(0, 600), min_size=k, max_size=k),
        st.lists(st.booleans(), min_size=k, max_size=k),
        st.lists(st.integers(1, 4), min_size=k, max_size=k),
    )
)


@settings(max_examples=150, deadline=None)
@given(conditions_state, st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_blocks_never_starve_an_open_set_nor_feed_a_finished_one(state, blocks, seed):
    widths, goals, counts, done, per_set = (np.array(x) for x in state)
    conditions, sizes = one_set_blocks(per_set.tolist())
    rng = np.random.default_rng(seed)
    free = rng.integers(0, 3, size=conditions.size)
    held = rng.integers(0, 3, size=conditions.size)
    arguments = dict(block_conditions=conditions, block_sizes=sizes, free=free, held=held, half_width=widths,
                     n_answers=counts, done=done, goal=goals, blocks=blocks)
    chosen = blocks_choose(**arguments, rng=np.random.default_rng(seed))

    assert len(chosen) == len(set(chosen)) <= blocks  # a place in each of distinct blocks, never over the session
    assert all(free[b] > 0 for b in chosen)  # never a block without a free place
    # by hand: a set waits when the answers under way project it to its goal
    pending = np.bincount(conditions, weights=held * sizes, minlength=widths.size)
    waiting = ((pending > 0) & (widths / goals * np.sqrt((counts + 1) / (counts + 1 + pending)) <= 1)
               & (counts >= MIN_ANSWERS))
    candidates = set(conditions[free > 0].tolist()) - set(np.flatnonzero(done | waiting).tolist())
    got = set(conditions[chosen].tolist())
    assert got <= candidates  # never a set that is done or waiting
    if len(candidates) <= blocks:
        assert got == candidates  # every set still above its goal, and not waiting, gets a block
    per_set = np.bincount(conditions[chosen], minlength=widths.size)
    cap = max_blocks_per_set(blocks=blocks, sets=widths.size)
    assert per_set.max(initial=0) <= max(cap, 1)
    # fewer blocks than asked only when each candidate set has no free block left or has half the session
    if len(chosen) < blocks:
        for c in candidates:
            assert per_set[c] == cap or per_set[c] == int(np.sum((free > 0) & (conditions == c)))
    # the same rng state gives the same blocks
    assert blocks_choose(**arguments, rng=np.random.default_rng(seed)) == chosen


# ---------------------------------------------------------------------------------------------
# The budget planner


def test_the_plan_for_one_condition_at_one_half_by_hand():
    # 20 trials x 3 s + 60 s = 120 s = 2 min; at £9/h that is £0.30; with a 33 % fee £0.399 per participant.
    # p = ½ needs 381 answers (see above): 381 / 20 = 19.05, so 20 participants; 20 x £0.399 = £7.98.
    plan = plan_budget(p=[0.5], half_width=0.05, seconds_per_trial=3, seconds_per_participant=60,
                       trials_per_participant=20, rate_per_hour=9, fee=0.33)

    assert plan.seconds_per_participant == 120
    assert plan.pay_per_participant == 0.30
    assert plan.cost_per_participant == pytest.approx(0.399)
    assert (plan.answers_fixed, plan.participants_fixed, plan.cost_fixed) == (381, 20, 7.98)
    assert plan.warnings == []


def test_adaptive_allocation_pays_only_for_what_each_condition_needs():
    # p = ½ needs 381, p = 0 needs 35. Fixed N: 2 x 381 = 762 answers, 38.1 -> 39 participants, x £0.399 = £15.56.
    # Adaptive: 381 + 35 = 416 answers, 20.8 -> 21 participants, £8.38.
    plan = plan_budget(p=[0.5, 0.0], half_width=0.05, seconds_per_trial=3, seconds_per_participant=60,
                       trials_per_participant=20, fee=0.33)

    assert plan.answers_needed == [381, 35]
    assert (plan.answers_fixed, plan.participants_fixed, plan.cost_fixed) == (762, 39, 15.56)
    assert (plan.answers_adaptive, plan.participants_adaptive, plan.cost_adaptive) == (416, 21, 8.38)


def test_no_condition_is_planned_below_the_stopping_rules_minimum():
    # p = 0 at a goal of 0.2 would need 6 answers (z²/(2(n + z²)) <= 0.2), but a condition is done only at 20.
    plan = plan_budget(p=[0.0], half_width=0.2, seconds_per_trial=3, seconds_per_participant=60, trials_per_participant=20)

    assert condition_answers_needed(p=0.0, half_width=0.2) == 6
    assert plan.answers_needed == [MIN_ANSWERS]


def test_participants_come_in_whole_trial_lists():
    plan = plan_budget(p=[0.5], half_width=0.05, seconds_per_trial=3, seconds_per_participant=60,
                       trials_per_participant=20, participants_per_list=8)

    assert plan.participants_fixed == 24  # 20 rounded up to whole lists of 8


def test_a_rate_below_six_pounds_an_hour_is_a_warning():
    plan = plan_budget(p=[0.5], half_width=0.05, seconds_per_trial=3, seconds_per_participant=60,
                       trials_per_participant=20, rate_per_hour=5)

    assert plan.warnings and plan.warnings[0].startswith("rate_per_hour:")


def test_a_cap_that_only_fixed_n_misses_is_a_warning_not_an_error():
    plan = plan_budget(p=[0.5, 0.0], half_width=0.05, seconds_per_trial=3, seconds_per_participant=60,
                       trials_per_participant=20, cap_participants=30)

    assert not plan.fixed_reachable and plan.participants_adaptive == 21
    assert any(w.startswith("cap_participants:") for w in plan.warnings)


BASE = {"p": [0.5], "half_width": 0.05, "seconds_per_trial": 3, "seconds_per_participant": 60, "trials_per_participant": 20}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"half_width": 0}, "half_width"),
        ({"half_width": 0.5}, "half_width"),
        ({"half_width": -0.1}, "half_width"),
        ({"rate_per_hour": 0}, "rate_per_hour"),
        ({"rate_per_hour": -9}, "rate_per_hour"),
        ({"fee": 1.5}, "fee"),
        ({"seconds_per_trial": 0}, "seconds_per_trial"),
        ({"seconds_per_participant": -1}, "seconds_per_participant"),
        ({"trials_per_participant": 0}, "trials_per_participant"),
        ({"p": [1.2]}, "p"),
        ({"p": []}, "p"),
        ({"design_effect": 0.5}, "design_effect"),
        ({"design_effect": float("inf")}, "design_effect"),
        ({"participants_per_list": 8, "cap_participants": 5}, "cap_participants"),  # a cap below one list
        ({"cap_participants": 10}, "half_width"),  # 20 participants needed: unreachable under the cap
    ],
)
def test_bad_input_is_refused_naming_the_field(change, field):
    with pytest.raises(ValueError) as error:
        plan_budget(**{**BASE, **change})

    assert str(error.value).startswith(f"{field}:")


def test_an_unreachable_goal_says_how_many_participants_it_needs():
    with pytest.raises(ValueError, match="needs 20 participants even with adaptive allocation, above cap_participants 10"):
        plan_budget(**BASE, cap_participants=10)
    with pytest.raises(ValueError, match=re.escape(CAP_BELOW_ONE_LIST.format(value=5, per_list=8))):
        plan_budget(**BASE, participants_per_list=8, cap_participants=5)


# ---------------------------------------------------------------------------------------------
# Coverage under adaptive stopping (a small version of bench/adaptive.py)


def simulated_study(rng, *, mu, goal, items=40, slots=10, kappa=20.0, person_sd=0.5):
    """One adaptive study: item probabilities ~ Beta around mu, a logit shift and a lapse rate per participant."""
    q = np.array([rng.beta(m * kappa, (1 - m) * kappa, size=items) for m in mu])
    logit_q = np.log(q) - np.log1p(-q)
    answers = {"correct": [], "participants": [], "items": [], "conditions": []}
    counts, widths, person = np.zeros(len(mu), dtype=int), np.full(len(mu), 0.5), 0
    while True:
        conditions, sizes = one_set_blocks([items] * len(mu), size=1)
        chosen = blocks_choose(block_conditions=conditions, block_sizes=sizes, free=np.ones(conditions.size),
                               held=np.zeros(conditions.size), half_width=widths, n_answers=counts,
                               done=conditions_done(half_width=widths, goal=goal, n_answers=counts), goal=goal,
                               blocks=slots, rng=rng)
        picks = np.sort(conditions[chosen])
        chosen_items = rng.integers(0, items, size=picks.size)
        lapse = rng.beta(1, 49)
        prob = (1 - lapse) / (1 + np.exp(-(logit_q[picks, chosen_items] + rng.normal(0, person_sd)))) + lapse / 2
        answers["correct"] += list(rng.random(picks.size) < prob)
        answers["participants"] += [person] * picks.size
        answers["items"] += list(picks * items + chosen_items)
        answers["conditions"] += list(picks)
        counts += np.bincount(picks, minlength=len(mu))
        person += 1
        arrays = {key: np.array(value) for key, value in answers.items()}
        widths = condition_half_width(**arrays, n_conditions=len(mu))
        if collection_stop(half_width=widths, goal=goal, n_answers=counts, n_participants=person, cap_participants=400).stop:
            return condition_intervals(**arrays, n_conditions=len(mu))


def test_the_interval_covers_the_true_alignment_under_adaptive_stopping():
    mu = [0.03, 0.3, 0.6]
    # the true alignment: the mean over items (Beta mean mu) and participants (logit shift, lapses) by Monte Carlo
    rng = np.random.default_rng(0)
    truth = []
    for m in mu:
        q = rng.beta(m * 20, (1 - m) * 20, size=200_000)
        lapse = rng.beta(1, 49, size=q.size)
        logit = np.log(q) - np.log1p(-q) + rng.normal(0, 0.5, size=q.size)
        truth.append(float(np.mean((1 - lapse) / (1 + np.exp(-logit)) + lapse / 2)))
    studies, covered = 60, np.zeros(len(mu))
    for _ in range(studies):
        intervals = simulated_study(rng, mu=mu, goal=0.1)
        covered += [i.low <= t <= i.high for i, t in zip(intervals, truth)]

    # nominal 0.95; 60 studies leave a Monte Carlo sd of about 0.03, so the bound here is loose
    assert (covered / studies >= 0.85).all(), covered / studies
