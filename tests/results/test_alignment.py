"""The statistics of stats.alignment on hand-made arrays, with values computed by hand."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from stats.agreement import (
    KAPPA_CATEGORIES,
    agreement_kappa,
    correctness_counts,
    error_consistency,
    error_consistency_from_rates,
    fleiss_kappa,
    plurality_correct,
    rating_counts,
)
from stats.alignment import (
    alignment_estimate,
    bootstrap_shares,
    condition_alignment,
    difference_interval,
    multinomial_counts,
    wilson_interval,
)
from stats.ceiling import spearman_brown, split_half_ceiling, split_half_ceilings
from stats.exclusions import (
    KIND_CATCH,
    KIND_MAIN,
    KIND_PRACTICE,
    ExclusionRules,
    exclusions_apply,
    one_sided,
    position_counts,
    side_summary,
)


def test_alignment_is_the_share_of_answers_that_chose_the_target():
    chose = np.array([1, 1, 0, 1, 0, 0, 1, 1], dtype=bool)
    people = np.array([1, 1, 1, 1, 2, 2, 2, 2])

    result = alignment_estimate(chose, people, n_boot=200)

    assert result.alignment == pytest.approx(5 / 8)
    assert (result.n_answers, result.n_participants, result.n_correct) == (8, 2, 5)
    # Two participants at 3/4 and 2/4: reweighting participants gives shares between 2/4 and 3/4 only.
    assert 0.5 <= result.ci_low < 5 / 8 < result.ci_high <= 0.75


def test_the_wilson_interval_of_8_out_of_10():
    # p = 0.8, z = 1.96: centre = (0.8 + z²/20) / (1 + z²/10) = 0.71674,
    # half-width = z * sqrt(0.8 * 0.2 / 10 + z² / 400) / (1 + z²/10) = 0.22658.
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.49016, abs=1e-4) and high == pytest.approx(0.94331, abs=1e-4)
    assert wilson_interval(0, 0) == (None, None)
    assert wilson_interval(0, 5)[0] == 0.0


def test_no_answers_gives_no_numbers_rather_than_nan():
    result = alignment_estimate(np.array([], dtype=bool), np.array([], dtype=int))

    assert result.alignment is None and result.ci_low is None and result.wilson_low is None
    assert result.n_answers == 0


def test_the_same_seed_gives_the_same_interval():
    rng = np.random.default_rng(3)
    chose, people, items = rng.random(300) < 0.3, rng.integers(0, 30, 300), rng.integers(0, 20, 300)

    assert alignment_estimate(chose, people, items, seed=5) == alignment_estimate(chose, people, items, seed=5)


def test_conditions_get_their_own_share_counts_and_intervals():
    # condition 0: people 0 and 1 on items 0 and 1 (3 of 4 right); condition 1: person 2 alone on item 2.
    correct = np.array([1, 1, 1, 0, 0], dtype=bool)
    people = np.array([0, 0, 1, 1, 2])
    items = np.array([0, 1, 0, 1, 2])
    conditions = np.array([0, 0, 0, 0, 1])

    table = condition_alignment(correct, people, items, conditions, 3, n_boot=300)

    first, second, empty = table.estimates
    assert (first.alignment, first.n_answers, first.n_participants, first.n_items) == (0.75, 4, 2, 2)
    assert (second.alignment, second.n_participants, second.n_items) == (0.0, 1, 1)
    assert empty.alignment is None and empty.n_answers == 0
    assert table.draws.shape == (300, 3)


def test_a_resample_draws_whole_participants_with_replacement():
    # Participants at 3/4 and 2/4 (four answers each). Drawing two of them with replacement gives
    # (A, A) -> 3/4, (A, B) -> 5/8, (B, B) -> 2/4 with probabilities 1/4, 1/2, 1/4, and nothing in between.
    chose = np.array([1, 1, 1, 0, 1, 1, 0, 0], dtype=bool)
    people = np.array([0, 0, 0, 0, 1, 1, 1, 1])

    draws = bootstrap_shares(chose, people, None, np.zeros(8, dtype=int), 1, n_boot=4000, seed=1)[:, 0]

    values, counts = np.unique(draws, return_counts=True)
    assert values.tolist() == [0.5, 0.625, 0.75]
    assert counts / 4000 == pytest.approx([0.25, 0.5, 0.25], abs=0.03)


def test_multinomial_counts_draw_n_of_n_units_per_resample():
    counts = multinomial_counts(np.random.default_rng(0), 50, 400)

    assert counts.shape == (50, 400) and (counts.sum(axis=0) == 50).all() and (counts == np.round(counts)).all()
    assert counts.mean() == pytest.approx(1.0) and counts.var() == pytest.approx(1 - 1 / 50, abs=0.05)  # binomial(50, 1/50)
    assert (multinomial_counts(np.random.default_rng(0), 50, 400) == counts).all()


def test_the_sparse_bootstrap_sums_the_same_resamples_as_the_answer_by_answer_one():
    # Three conditions sharing people and photos, many (participant, photo) cells answered more than once,
    # and a fourth condition without answers.
    rng = np.random.default_rng(0)
    people, units, conditions = rng.integers(0, 25, 900), rng.integers(0, 15, 900), rng.integers(0, 3, 900)
    correct = rng.random(900) < 0.3 + 0.2 * conditions

    fast = bootstrap_shares(correct, people, units, conditions, 4, n_boot=300, seed=4)
    exact = bootstrap_shares(correct, people, units, conditions, 4, n_boot=300, seed=4, method="exact")

    np.testing.assert_allclose(fast, exact, rtol=1e-9)
    assert np.isnan(fast[:, 3]).all() and not np.isnan(fast[:, :3]).any()


def test_the_two_way_interval_is_wider_than_the_one_way_and_the_wilson_one_when_items_vary():
    rng = np.random.default_rng(0)
    people, items = rng.integers(0, 60, 3000), rng.integers(0, 40, 3000)
    ability, easiness = rng.normal(0, 1, 60), rng.normal(0, 1, 40)
    correct = rng.random(3000) < 1 / (1 + np.exp(-(ability[people] + easiness[items])))

    two_way = condition_alignment(correct, people, items, np.zeros(3000, dtype=int), 1, n_boot=500, seed=1).estimates[0]
    one_way = alignment_estimate(correct, people, n_boot=500, seed=1)  # participants only

    assert two_way.ci_low <= two_way.alignment <= two_way.ci_high
    assert two_way.ci_high - two_way.ci_low > one_way.ci_high - one_way.ci_low
    assert two_way.ci_high - two_way.ci_low > two_way.wilson_high - two_way.wilson_low


def test_a_paired_difference_is_narrower_than_an_unpaired_one():
    # Two conditions on the same 30 items and 40 people; items differ a lot, condition 1 is 0.1 easier.
    rng = np.random.default_rng(2)
    people = np.repeat(np.arange(40), 60)
    items = np.tile(np.arange(30), 80)
    conditions = np.tile(np.repeat([0, 1], 30), 40)
    easiness = rng.uniform(0.2, 0.8, 30)
    correct = rng.random(people.size) < easiness[items] + 0.1 * conditions

    table = condition_alignment(correct, people, items, conditions, 2, n_boot=500, units=items)
    low, high = difference_interval(table.draws[:, 1], table.draws[:, 0])

    point = table.estimates[1].alignment - table.estimates[0].alignment
    assert low <= point <= high
    unpaired = np.sqrt(sum((e.ci_high - e.ci_low) ** 2 for e in table.estimates))
    assert high - low < unpaired


def test_fleiss_kappa_of_the_textbook_example():
    # Fleiss (1971) as worked on Wikipedia: 10 items, 14 raters, 5 categories; P_bar = 0.378, P_e = 0.213.
    counts = np.array(
        [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
         [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    )
    assert fleiss_kappa(counts) == pytest.approx(0.2099, abs=1e-3)


def test_fleiss_kappa_uses_only_items_with_two_ratings():
    # Item A: both raters chose option 0 (P=1); item B: split (P=0); item C has one rating and is left out.
    # P_bar = 0.5; p = (3/4, 1/4); P_e = 10/16; kappa = (0.5 - 0.625) / 0.375 = -1/3.
    counts = rating_counts(np.array([0, 0, 1, 1, 2]), np.array([0, 0, 0, 1, 1]), 3, 2)
    assert fleiss_kappa(counts) == pytest.approx(-1 / 3)
    assert fleiss_kappa(np.array([[1, 0], [0, 1]])) is None
    assert fleiss_kappa(np.array([[3, 0], [2, 0]])) is None  # one category only: kappa undefined


def test_fleiss_kappa_on_four_items_by_hand():
    # Columns: chose the target, chose the foil. Raters per item 3, 3, 4, 4.
    #   P_A = (9 - 3) / (3 * 2) = 1;  P_B = (4 + 1 - 3) / 6 = 1/3;  P_C = (1 + 9 - 4) / 12 = 1/2;  P_D = (4 + 4 - 4) / 12 = 1/3
    #   P_bar = (1 + 1/3 + 1/2 + 1/3) / 4 = 13/24
    #   p_target = 8/14 = 4/7, p_foil = 3/7, P_e = 16/49 + 9/49 = 25/49
    #   kappa = (13/24 - 25/49) / (1 - 25/49) = 37/576 = 0.0642361...
    counts = np.array([[3, 0], [2, 1], [1, 3], [2, 2]])

    kappa = agreement_kappa(counts, categories=KAPPA_CATEGORIES["2afc"])

    assert kappa.value == pytest.approx(0.0642361, abs=1e-7) and kappa.value == pytest.approx(37 / 576)
    assert kappa.categories == ("chose_target", "chose_foil") and kappa.items == 4
    assert kappa.raters_per_item == {"min": 3, "median": 3.5, "max": 4}
    assert kappa.as_dict()["categories"] == ["chose_target", "chose_foil"] and kappa.note == ""


def _simulated_raters(*, n_items: int, n_raters: int, right: np.ndarray, seed: int):
    """Every rater answers every item; `right` (items x raters, bool) says who chose the target. Each item's target
    is on a random side, so a rater's option index is the target's side when right and the other side when not."""
    rng = np.random.default_rng(seed)
    target_side = rng.integers(0, 2, n_items)
    items = np.repeat(np.arange(n_items), n_raters)
    correct = right.ravel()
    choice = np.where(correct, target_side[items], 1 - target_side[items])
    return items, correct, choice


def test_independent_raters_who_are_each_right_nine_times_in_ten_do_not_agree_beyond_chance():
    # 300 items x 10 raters, each answer right with p = 0.9 independently of the item and of the other raters.
    # Being right is what they share with each other only by chance, so kappa over chose-target / chose-foil is ~0.
    n_items, n_raters = 300, 10
    right = np.random.default_rng(11).random((n_items, n_raters)) < 0.9
    items, correct, choice = _simulated_raters(n_items=n_items, n_raters=n_raters, right=right, seed=12)

    kappa = agreement_kappa(correctness_counts(items, correct, n_items), categories=KAPPA_CATEGORIES["2afc"])

    assert abs(kappa.value) < 0.05
    assert kappa.items == n_items and kappa.raters_per_item == {"min": 10, "median": 10.0, "max": 10}
    # Over option indices (what the report used to do) the same raters look as if they agreed: P_i = 0.82, P_e = 0.5,
    # kappa = (0.82 - 0.5) / 0.5 = 0.64. That figure is the alignment rate in disguise, not agreement between people.
    by_option = fleiss_kappa(rating_counts(items, choice, n_items, 2))
    assert by_option == pytest.approx(0.64, abs=0.05)


def test_raters_who_agree_item_by_item_have_kappa_one():
    # 200 items x 10 raters: a third of the items everybody gets wrong, the rest everybody gets right.
    n_items, n_raters = 200, 10
    easy = np.arange(n_items) % 3 != 0
    right = np.repeat(easy[:, None], n_raters, axis=1)
    items, correct, _ = _simulated_raters(n_items=n_items, n_raters=n_raters, right=right, seed=3)

    kappa = agreement_kappa(correctness_counts(items, correct, n_items), categories=KAPPA_CATEGORIES["2afc"])

    assert kappa.value == pytest.approx(1.0)


def test_kappa_says_why_it_is_missing_and_names_the_clustering_categories():
    everyone_right = agreement_kappa(np.array([[3, 0], [2, 0]]), categories=KAPPA_CATEGORIES["cluster"])
    assert everyone_right.value is None and everyone_right.categories == ("chose_right_reference", "chose_other_reference")
    assert "chose_right_reference" in everyone_right.note
    lonely = agreement_kappa(np.array([[1, 0], [0, 1], [0, 0]]), categories=KAPPA_CATEGORIES["2afc"])
    assert lonely.value is None and lonely.items == 0 and lonely.raters_per_item is None and lonely.note.startswith("Not enough data")
    with pytest.raises(ValueError):
        agreement_kappa(np.array([[1, 1, 1]]), categories=KAPPA_CATEGORIES["2afc"])


def test_correctness_counts_put_the_target_first():
    counts = correctness_counts(np.array([0, 0, 0, 1, 2]), np.array([1, 1, 0, 0, 1], dtype=bool), 4)
    assert counts.tolist() == [[2, 1], [0, 1], [1, 0], [0, 0]]


def test_error_consistency_of_the_worked_example():
    # p_model 0.8, p_human 0.7, c_obs 0.7 -> c_exp = 0.56 + 0.06 = 0.62, kappa = 0.08 / 0.38 = 0.2105.
    kappa, c_exp = error_consistency_from_rates(p_1=0.8, p_2=0.7, c_obs=0.7)
    assert c_exp == pytest.approx(0.62) and kappa == pytest.approx(0.08 / 0.38)

    # The same figures on 10 trials: model right on 8, human on 7, both agree on 7 of 10.
    model = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    human = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 0], dtype=bool)
    result = error_consistency(model, human)
    assert (result.p_1, result.p_2, result.c_obs, result.n_trials) == (0.8, 0.7, 0.7, 10)
    assert result.kappa == pytest.approx(0.2105, abs=1e-4)


def test_error_consistency_is_one_when_both_are_always_right_and_none_without_trials():
    assert error_consistency(np.ones(4, bool), np.ones(4, bool)).kappa == 1.0
    assert error_consistency(np.array([], bool), np.array([], bool)).kappa is None


def test_the_human_majority_per_item_is_the_plurality_choice_and_ties_are_left_out():
    counts = np.array([[3, 1], [1, 3], [2, 2], [0, 0]])
    assert plurality_correct(counts, np.array([0, 0, 0, 1])).tolist() == [1, 0, -1, -1]


def test_with_three_options_the_majority_is_the_most_chosen_option_even_under_half():
    # Clustering, 10 raters: 4 chose the right reference (option 0), 3 and 3 the two others. The most chosen option is
    # the right one, so the human answer to this item is right, although 6 of 10 raters were wrong. Counting over
    # right / wrong instead would call the item wrong: the majority is over options (option indices, not sides).
    counts = np.array([[4, 3, 3], [3, 4, 3], [2, 4, 4]])
    assert plurality_correct(counts, np.array([0, 0, 0])).tolist() == [1, 0, -1]


def test_the_split_half_ceiling_of_two_raters():
    # Two participants, so every split puts one in each half. Per-item accuracy x = (1,1,0,0), y = (1,0,0,0):
    # r = 0.5 / sqrt(1 * 0.75) = 0.57735; Spearman-Brown 2r / (1 + r) = 0.73205.
    correct = np.array([1, 1, 0, 0, 1, 0, 0, 0], dtype=bool)
    people = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    items = np.array([0, 1, 2, 3, 0, 1, 2, 3])

    ceiling = split_half_ceiling(correct, people, items, n_splits=10)

    assert ceiling.split_half_r == pytest.approx(0.57735, abs=1e-5)
    assert ceiling.ceiling == pytest.approx(0.73205, abs=1e-5)
    assert spearman_brown(0.5) == pytest.approx(2 / 3)


def test_the_split_half_ceiling_per_condition():
    # Condition 0: the two raters above (r = 0.57735, ceiling 0.73205). Condition 1: two raters who agree item
    # by item on (1, 0, 1, 0): r = 1, ceiling 1. Condition 2: one participant, so no split.
    # Over the 8 items of conditions 0 and 1, x = (1,1,0,0, 1,0,1,0), y = (1,0,0,0, 1,0,1,0) whichever rater lands in
    # which half: r = 1.5 / sqrt(2 * 1.875) = 0.774597, ceiling 2r / (1 + r) = 0.872983.
    correct = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 1], dtype=bool)
    people = np.repeat([0, 1, 2, 3, 4], 4)
    items = np.array([0, 1, 2, 3] * 2 + [4, 5, 6, 7] * 2 + [8, 9, 10, 11])
    conditions = np.repeat([0, 1, 2], [8, 8, 4])

    overall, (first, second, alone) = split_half_ceilings(correct, people, items, conditions, 3, n_splits=10)

    assert first.ceiling == pytest.approx(0.73205, abs=1e-5) and first.n_items == 4
    assert second.ceiling == pytest.approx(1.0) and second.split_half_r == pytest.approx(1.0)
    assert alone.ceiling is None and alone.split_half_r is None
    assert alone.note == (
        "Not enough data: the split-half ceiling needs at least two participants and three items; this condition has 1 participant and 4 items."
    )
    assert overall.split_half_r == pytest.approx(0.774597, abs=1e-6) and overall.ceiling == pytest.approx(0.872983, abs=1e-6)


def test_a_condition_whose_items_all_score_alike_has_no_ceiling():
    # Two raters, three items, everybody right on everything: per-item accuracy does not vary, r is undefined.
    overall, (only,) = split_half_ceilings(np.ones(6, bool), np.repeat([0, 1], 3), np.tile([0, 1, 2], 2), np.zeros(6, int), 1)
    assert only.ceiling is None and only.note.startswith("Not enough data") and "does not vary" in only.note
    assert overall.ceiling is None


def test_the_ceiling_says_why_it_is_missing():
    ceiling = split_half_ceiling(np.ones(3, bool), np.array([0, 0, 0]), np.array([0, 1, 2]))
    assert ceiling.ceiling is None and "two participants" in ceiling.note


def test_exclusions_count_every_rule_and_keep_only_main_answers():
    # Person 0: fine. Person 1: a pilot. Person 2: failed the catch trial. Person 3: never completed.
    participant = np.array([0, 0, 0, 1, 1, 2, 2, 3, 0])
    kind = np.array([KIND_MAIN, KIND_MAIN, KIND_CATCH, KIND_MAIN, KIND_CATCH, KIND_MAIN, KIND_CATCH, KIND_MAIN, KIND_PRACTICE])
    correct = np.array([1, 1, 1, 1, 1, 1, 0, 1, 0], dtype=bool)
    rt = np.array([900, 150, 800, 800, 800, 800, 800, 800, 800.0])  # one answer of person 0 is too fast
    flags = {"pilot": np.array([0, 1, 0, 0], bool), "completed": np.array([1, 1, 1, 0], bool)}

    included, counts = exclusions_apply(participant=participant, kind=kind, correct=correct, rt_ms=rt, participant_flags=flags, rules=ExclusionRules())

    assert included.tolist() == [True, False, False, False, False, False, False, False, False]
    by_rule = {c["rule"]: c for c in counts}
    assert (by_rule["pilot"]["participants"], by_rule["pilot"]["answers"]) == (1, 1)
    assert (by_rule["catch_accuracy"]["participants"], by_rule["catch_accuracy"]["answers"]) == (1, 1)
    assert (by_rule["incomplete"]["participants"], by_rule["incomplete"]["answers"]) == (1, 1)
    assert (by_rule["rt_floor"]["participants"], by_rule["rt_floor"]["answers"]) == (1, 1)
    assert by_rule["bot"]["applies"] is False


def _one_sided_table():
    """Six participants, main and catch answers (and some practice) with the screen position they clicked (0 = left):
    p0: 20 answers, 19 left (0.95)                      -> one-sided at 0.9
    p1: 19 answers, all left                             -> too few answers to judge (fewer than 20)
    p2: 20 answers, 10 left and 10 right                 -> fine
    p3: 20 answers (12 main, 8 catch), 18 right (0.9)    -> one-sided (at the threshold counts)
    p4: 22 answers, 3 of them without a position, 18 of the 19 others left -> 19 known answers: not judged
    p5: 18 main answers left + 5 practice answers left   -> practice does not count: 18 answers, not judged
    """
    rows = []  # (participant, kind, position)
    rows += [(0, KIND_MAIN, 0)] * 19 + [(0, KIND_MAIN, 1)]
    rows += [(1, KIND_MAIN, 0)] * 19
    rows += [(2, KIND_MAIN, 0)] * 10 + [(2, KIND_CATCH, 1)] * 10
    rows += [(3, KIND_MAIN, 1)] * 12 + [(3, KIND_CATCH, 1)] * 6 + [(3, KIND_CATCH, 0)] * 2
    rows += [(4, KIND_MAIN, 0)] * 18 + [(4, KIND_MAIN, 1)] + [(4, KIND_MAIN, -1)] * 3
    rows += [(5, KIND_MAIN, 0)] * 18 + [(5, KIND_PRACTICE, 0)] * 5
    participant, kind, position = (np.array([r[k] for r in rows]) for k in range(3))
    return participant, kind, position


def test_one_sided_responders_are_excluded_by_their_largest_share_on_one_screen_position():
    participant, kind, position = _one_sided_table()
    correct = np.ones(participant.size, dtype=bool)
    flags = {"completed": np.ones(6, dtype=bool)}
    rules = ExclusionRules(one_side_max_fraction=0.9, one_side_min_trials=20)

    included, counts = exclusions_apply(
        participant=participant, kind=kind, correct=correct, rt_ms=np.full(participant.size, 900.0),
        participant_flags=flags, rules=rules, shown_position=position, n_positions=2,
    )

    by_rule = {c["rule"]: c for c in counts}
    assert by_rule["one_sided"]["participants"] == 2  # p0 and p3
    assert by_rule["one_sided"]["answers"] == 20 + 12  # their main-trial answers
    assert not included[participant == 0].any() and not included[participant == 3].any()
    assert included[(participant == 2) & (kind == KIND_MAIN)].all()
    assert list(by_rule) == ["pilot", "bot", "flagged", "incomplete", "catch_accuracy", "one_sided", "rt_floor"]
    counted = kind != KIND_PRACTICE
    table = position_counts(participant[counted], position[counted], 6, 2)
    assert table.tolist() == [[19, 1], [19, 0], [10, 10], [2, 18], [18, 1], [18, 0]]
    assert one_sided(table, max_fraction=0.9, min_trials=20).tolist() == [True, False, False, True, False, False]
    assert one_sided(table, max_fraction=0.9, min_trials=19).tolist() == [True, True, False, True, True, False]


def test_the_one_sided_rule_is_off_by_default_and_then_does_not_apply():
    participant, kind, position = _one_sided_table()

    _, counts = exclusions_apply(
        participant=participant, kind=kind, correct=np.ones(participant.size, bool), rt_ms=np.full(participant.size, 900.0),
        participant_flags={"completed": np.ones(6, bool)}, rules=ExclusionRules(), shown_position=position,
    )

    rule = next(c for c in counts if c["rule"] == "one_sided")
    assert ExclusionRules().one_side_max_fraction is None and rule["applies"] is False and rule["participants"] == 0


def test_the_side_summary_of_the_hand_made_table():
    participant, kind, position = _one_sided_table()
    counted = kind != KIND_PRACTICE
    table = position_counts(participant[counted], position[counted], 7, 2)  # a seventh participant never answered

    summary = side_summary(table, max_fraction=0.9, min_trials=20)

    # Left: 19 + 19 + 10 + 2 + 18 + 18 = 86 of 116 answers with a known position.
    assert summary["answers"] == 116 and summary["shares"] == pytest.approx([86 / 116, 30 / 116])
    assert summary["largest_share"] == pytest.approx(86 / 116) and summary["participants"] == 6
    assert summary["participant_position_0_share"] == pytest.approx({"min": 0.1, "median": (0.95 + 18 / 19) / 2, "max": 1.0})
    assert summary["participant_largest_share"] == pytest.approx({"min": 0.5, "median": (0.95 + 18 / 19) / 2, "max": 1.0})
    assert summary["participants_judged"] == 3 and summary["one_sided"] == 2
    assert side_summary(table, max_fraction=None, min_trials=20)["one_sided"] is None
    empty = side_summary(np.zeros((2, 3), dtype=int), max_fraction=None, min_trials=20)
    assert empty["shares"] == [None, None, None] and empty["largest_share"] is None and empty["participant_largest_share"] is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6), st.integers(0, 4)), min_size=1, max_size=60), st.integers(0, 1000))
def test_the_interval_holds_the_point_estimate(rows, seed):
    chose = np.array([r[0] for r in rows])
    people = np.array([r[1] for r in rows])
    items = np.array([r[2] for r in rows])

    result = alignment_estimate(chose, people, items, n_boot=200, seed=seed)

    assert 0 <= result.ci_low <= result.alignment <= result.ci_high <= 1
    assert 0 <= result.wilson_low <= result.alignment <= result.wilson_high <= 1


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 6), st.integers(0, 4), st.integers(0, 2)), min_size=1, max_size=80),
    st.integers(0, 1000),
)
def test_every_condition_s_interval_holds_its_point_estimate(rows, seed):
    chose, people, items, conditions = (np.array([r[k] for r in rows]) for k in range(4))

    table = condition_alignment(chose, people, items, conditions, 3, n_boot=200, seed=seed)

    for estimate in table.estimates:
        if estimate.n_answers:
            assert 0 <= estimate.ci_low <= estimate.alignment <= estimate.ci_high <= 1
        else:
            assert estimate.alignment is None and estimate.ci_low is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=50))
def test_error_consistency_is_one_for_identical_vectors_and_symmetric(pairs):
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])

    assert error_consistency(a, a).kappa == pytest.approx(1.0)
    ab, ba = error_consistency(a, b), error_consistency(b, a)
    assert ab.kappa == pytest.approx(ba.kappa) and ab.c_obs == ba.c_obs and ab.c_exp == pytest.approx(ba.c_exp)
    assert -1 - 1e-9 <= ab.kappa <= 1 + 1e-9
