"""The alignment estimate on hand-made arrays."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from results.alignment import alignment_estimate


def test_alignment_is_the_share_of_answers_that_chose_the_target():
    chose = np.array([1, 1, 0, 1, 0, 0, 1, 1], dtype=bool)
    people = np.array([1, 1, 1, 1, 2, 2, 2, 2])

    result = alignment_estimate(chose, people, n_boot=200)

    assert result.alignment == pytest.approx(5 / 8)
    assert (result.n_answers, result.n_participants) == (8, 2)
    # Two participants at 3/4 and 2/4: a participant bootstrap can only give 2/4, 5/8 or 3/4.
    assert result.ci_low == pytest.approx(0.5) and result.ci_high == pytest.approx(0.75)


def test_no_answers_gives_no_numbers_rather_than_nan():
    result = alignment_estimate(np.array([], dtype=bool), np.array([], dtype=int))

    assert result.as_dict() == {"alignment": None, "ci_low": None, "ci_high": None, "n_answers": 0, "n_participants": 0}


def test_the_same_seed_gives_the_same_interval():
    rng = np.random.default_rng(3)
    chose, people = rng.random(300) < 0.3, rng.integers(0, 30, 300)

    assert alignment_estimate(chose, people, seed=5) == alignment_estimate(chose, people, seed=5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=1, max_size=60))
def test_the_interval_holds_the_point_estimate(rows):
    chose = np.array([r[0] for r in rows])
    people = np.array([r[1] for r in rows])

    result = alignment_estimate(chose, people, n_boot=200)

    assert 0 <= result.ci_low <= result.alignment <= result.ci_high <= 1
