"""stats.recognition (timed classification: people vs the network on the same stimuli) on hand-made arrays,
with every expected number computed by hand; and the accuracy-by-layer plot."""
import io
import json

import numpy as np
import pytest

from stats.recognition import (
    KAPPA_UNDEFINED,
    NETWORK_ITEM_MIXED,
    NO_ANSWERS,
    ONE_PARTICIPANT,
    recognition_by_condition,
    recognition_overall,
)

# Condition 0: participant 1 saw items 0-3, participant 2 saw items 0, 1, 4, 5 (items 0 and 1 are shared).
#   person 1: human 1 1 0 0, network 1 0 0 1      person 2: human 1 0 1 0, network 1 0 1 1
# Condition 1: both saw items 6 and 7; the network is right on every answer.
# Condition 2: no answers.
HUMAN = [1, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1, 1]
NETWORK = [1, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1]
PEOPLE = [1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 2, 2]
ITEMS = [0, 1, 2, 3, 0, 1, 4, 5, 6, 7, 6, 7]
CONDITIONS = [0] * 8 + [1] * 4


def _rows(n_boot=300, **overrides):
    data = dict(correct=HUMAN, network_correct=NETWORK, participants=PEOPLE, items=ITEMS, conditions=CONDITIONS,
                n_conditions=3, n_categories=16, n_boot=n_boot)
    data.update(overrides)
    return recognition_by_condition(**data)


def test_the_hand_computed_condition():
    first = _rows()[0]

    # human 4/8; network on the answers 5/8 (items 0 and 1 count once per person who saw them);
    # network on the distinct items 0..5: right on 0, 3, 4, 5 -> 4/6.
    assert (first["n_answers"], first["n_participants"], first["n_items"]) == (8, 2, 6)
    assert first["accuracy"] == 0.5 and first["n_correct"] == 4
    assert first["network_accuracy"] == 5 / 8 and first["network_n_correct"] == 5
    assert first["network_accuracy_items"] == pytest.approx(4 / 6)
    assert first["accuracy_difference"] == pytest.approx(0.5 - 5 / 8)
    # both right or both wrong on answers 1, 3, 5, 6, 7 (1-based) -> c_obs = 5/8;
    # c_exp = 0.5 * 5/8 + 0.5 * 3/8 = 0.5; kappa = (5/8 - 1/2) / (1 - 1/2) = 1/4.
    assert first["observed_consistency"] == pytest.approx(5 / 8)
    assert first["expected_consistency"] == pytest.approx(0.5)
    assert first["error_consistency"] == pytest.approx(0.25)
    # per participant: person 1 p_h = p_n = c_obs = 1/2 -> c_exp = 1/2, kappa 0;
    # person 2 p_h = 1/2, p_n = 3/4, c_obs = 3/4 -> c_exp = 1/2, kappa 1/2; mean 1/4 over 2 people.
    assert first["error_consistency_participant_mean"] == pytest.approx(0.25)
    assert first["error_consistency_participants"] == 2
    assert first["chance"] == 1 / 16 and first["n_categories"] == 16
    assert first["note"] == ""
    assert "two-way" in first["ci"] and "participants" in first["ci"] and "items" in first["ci"]
    assert "300 resamples" in first["ci"] and "paired" in first["ci"]


def test_every_interval_holds_its_estimate():
    first = _rows()[0]

    for name, low, high in (
        ("accuracy", "ci_low", "ci_high"),
        ("network_accuracy", "network_ci_low", "network_ci_high"),
        ("accuracy_difference", "difference_ci_low", "difference_ci_high"),
        ("observed_consistency", "observed_consistency_ci_low", "observed_consistency_ci_high"),
        ("error_consistency", "error_consistency_ci_low", "error_consistency_ci_high"),
    ):
        assert first[low] <= first[name] <= first[high], name


def test_the_network_never_wrong_leaves_kappa_undefined_with_a_note():
    second = _rows()[1]

    # human 3/4, network 4/4: difference -1/4; c_obs = 3/4 = c_exp = 3/4 * 1 + 1/4 * 0, kappa would be 0 by construction.
    assert second["accuracy"] == 0.75 and second["network_accuracy"] == 1.0 and second["accuracy_difference"] == -0.25
    assert second["observed_consistency"] == 0.75 and second["expected_consistency"] == 0.75
    assert second["error_consistency"] is None and second["error_consistency_ci_low"] is None
    assert second["error_consistency_participant_mean"] is None and second["error_consistency_participants"] == 0
    assert second["note"] == KAPPA_UNDEFINED.format(who="the network", what="is right")


def test_people_always_right_and_network_always_wrong_are_undefined_too():
    everyone = dict(participants=[1, 2, 3], items=[0, 1, 2], conditions=[0, 0, 0], n_conditions=1, n_categories=16, n_boot=50)

    people_right = recognition_by_condition(correct=[1, 1, 1], network_correct=[1, 0, 1], **everyone)[0]
    network_wrong = recognition_by_condition(correct=[1, 0, 1], network_correct=[0, 0, 0], **everyone)[0]
    both_right = recognition_by_condition(correct=[1, 1, 1], network_correct=[1, 1, 1], **everyone)[0]

    assert people_right["error_consistency"] is None and people_right["note"] == KAPPA_UNDEFINED.format(who="people", what="are right")
    assert network_wrong["error_consistency"] is None and network_wrong["note"] == KAPPA_UNDEFINED.format(who="the network", what="is wrong")
    assert both_right["error_consistency"] is None and both_right["observed_consistency"] == 1.0
    assert both_right["expected_consistency"] == 1.0 and both_right["accuracy_difference"] == 0.0


def test_a_condition_without_answers_gives_none_not_nan():
    empty = _rows()[2]

    assert empty["n_answers"] == 0 and empty["note"] == NO_ANSWERS
    for key in ("accuracy", "ci_low", "network_accuracy", "network_accuracy_items", "accuracy_difference",
                "observed_consistency", "expected_consistency", "error_consistency"):
        assert empty[key] is None, key
    assert empty["chance"] == 1 / 16  # known from the number of categories even without answers
    json.dumps(_rows(), allow_nan=False)  # no NaN anywhere


def test_kappa_is_one_when_people_err_exactly_where_the_network_errs():
    rng = np.random.default_rng(1)
    network = rng.random(400) < 0.7
    people, items = rng.integers(0, 20, 400), np.arange(400)

    row = recognition_overall(correct=network, network_correct=network, participants=people, items=items,
                              n_categories=16, n_boot=100)

    assert row["error_consistency"] == pytest.approx(1.0) and row["observed_consistency"] == 1.0
    assert row["accuracy_difference"] == 0.0


def test_kappa_is_about_zero_for_independent_errors():
    rng = np.random.default_rng(7)
    n = 20_000
    human, network = rng.random(n) < 0.6, rng.random(n) < 0.7

    row = recognition_overall(correct=human, network_correct=network, participants=rng.integers(0, 200, n),
                              items=np.arange(n), n_categories=16, n_boot=100)

    assert abs(row["error_consistency"]) < 0.03
    assert row["expected_consistency"] == pytest.approx(0.6 * 0.7 + 0.4 * 0.3, abs=0.02)
    assert row["error_consistency_ci_low"] < 0 < row["error_consistency_ci_high"]


def test_kappa_is_negative_when_people_are_right_exactly_where_the_network_errs():
    # p_h = 3/4, p_n = 1/4, c_obs = 0: c_exp = 3/16 + 3/16 = 3/8, kappa = -3/8 / (5/8) = -3/5.
    human = np.array([1, 1, 1, 0] * 10, dtype=bool)

    row = recognition_overall(correct=human, network_correct=~human, participants=np.arange(40) % 5,
                              items=np.arange(40), n_categories=16, n_boot=100)

    assert row["observed_consistency"] == 0.0 and row["expected_consistency"] == pytest.approx(3 / 8)
    assert row["error_consistency"] == pytest.approx(-0.6)
    assert row["accuracy_difference"] == pytest.approx(0.5)


def test_the_interval_narrows_with_more_participants():
    def width(n_people):
        rng = np.random.default_rng(3)
        people = np.repeat(np.arange(n_people), 16)
        items = np.tile(np.arange(16), n_people)
        skill = rng.normal(0, 0.8, n_people)[people]  # people differ: the participant side of the bootstrap matters
        correct = rng.random(people.size) < 1 / (1 + np.exp(-(0.4 + skill)))
        row = recognition_overall(correct=correct, network_correct=rng.random(people.size) < 0.9, participants=people,
                                  items=items, n_categories=16, n_boot=400)
        assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
        return row["ci_high"] - row["ci_low"]

    assert width(200) < width(10) * 0.6


def test_the_bootstrap_is_seeded_and_paired_with_the_alignment_report():
    from stats.alignment import condition_alignment

    rows = _rows(seed=4)
    table = condition_alignment(np.array(HUMAN, bool), np.array(PEOPLE), np.array(ITEMS), np.array(CONDITIONS), 3,
                                n_boot=300, seed=4)

    assert rows == _rows(seed=4)
    assert (rows[0]["ci_low"], rows[0]["ci_high"]) == (table.estimates[0].ci_low, table.estimates[0].ci_high)


def test_one_participant_is_noted():
    row = recognition_overall(correct=[1, 0, 1, 1], network_correct=[1, 1, 0, 1], participants=[5, 5, 5, 5],
                              items=[0, 1, 2, 3], n_categories=16, n_boot=100)

    assert row["note"].startswith(ONE_PARTICIPANT) and row["n_participants"] == 1


def test_a_network_that_answers_one_stimulus_two_ways_is_noted():
    row = recognition_overall(correct=[1, 0, 1, 1], network_correct=[1, 0, 1, 1], participants=[1, 2, 1, 2],
                              items=[0, 0, 1, 1], n_categories=16, n_boot=100)

    # item 0: the network is right for person 1 and wrong for person 2 -> counted at 1/2; item 1 right: (1/2 + 1) / 2.
    assert row["network_accuracy_items"] == 0.75 and row["network_accuracy"] == 0.75
    assert NETWORK_ITEM_MIXED.format(n=1) in row["note"]


def test_chance_per_answer_and_per_condition():
    base = dict(correct=HUMAN, network_correct=NETWORK, participants=PEOPLE, items=ITEMS, conditions=CONDITIONS,
                n_conditions=3, n_boot=50)

    per_condition = recognition_by_condition(n_categories=[16, 8, 4], **base)
    per_answer = recognition_by_condition(n_categories=[16] * 8 + [8, 8, 4, 4], **base)

    assert [r["chance"] for r in per_condition] == [1 / 16, 1 / 8, 1 / 4]
    # condition 1 mixes 8 and 4 buttons: chance is the mean of 1/8 and 1/4 over its answers, n_categories None
    assert per_answer[1]["chance"] == pytest.approx(3 / 16) and per_answer[1]["n_categories"] is None
    assert per_answer[0]["n_categories"] == 16 and per_answer[2]["chance"] is None
    with pytest.raises(ValueError, match="at least 2 categories"):
        recognition_by_condition(n_categories=1, **base)
    with pytest.raises(ValueError, match="n_categories"):
        recognition_by_condition(n_categories=[16, 16], **base)


def test_overall_pools_every_condition():
    row = recognition_overall(correct=HUMAN, network_correct=NETWORK, participants=PEOPLE, items=ITEMS,
                              n_categories=16, n_boot=100)

    # human 7/12, network 9/12, c_obs 8/12, c_exp = 7/12 * 9/12 + 5/12 * 3/12 = 78/144, kappa = 18/66.
    assert row["accuracy"] == pytest.approx(7 / 12) and row["network_accuracy"] == pytest.approx(9 / 12)
    assert row["observed_consistency"] == pytest.approx(8 / 12)
    assert row["expected_consistency"] == pytest.approx(78 / 144)
    assert row["error_consistency"] == pytest.approx(18 / 66)
    assert "condition" not in row and row["n_items"] == 8


def test_mismatched_lengths_and_codes_are_refused():
    with pytest.raises(ValueError, match="same length"):
        _rows(network_correct=NETWORK[:-1])
    with pytest.raises(ValueError, match="condition codes"):
        _rows(n_conditions=1)


# ---------------------------------------------------------------------------------------------
# The plot


def _plot_rows():
    rows = []
    for backbone in ("resnet50", "alexnet"):
        for checkpoint in ("standard", "robust"):
            for k, layer in enumerate(("layer1", "layer2", "layer3", "fc")):
                acc = 0.9 - 0.2 * k
                rows.append({"backbone": backbone, "checkpoint": checkpoint, "recipe": "feather", "layer": layer,
                             "accuracy": acc, "ci_low": acc - 0.05, "ci_high": acc + 0.05,
                             "network_accuracy": 1.0, "chance": 1 / 16})
    rows[1].update(accuracy=None, ci_low=None, ci_high=None)  # a layer without answers leaves a gap
    return rows


def test_the_plot_has_one_people_and_one_network_line_per_group_and_chance():
    import matplotlib.pyplot as plt

    from results.plots import recognition_by_layer_figure

    fig = recognition_by_layer_figure(_plot_rows(), layer_order=["layer1", "layer2", "layer3", "fc"])
    try:
        assert len(fig.axes) == 2  # one panel per backbone
        for ax, backbone in zip(fig.axes, ("resnet50", "alexnet")):
            labels = [line.get_label() for line in ax.get_lines()]
            people = [container.get_label() for container in ax.containers]  # errorbar: line + CI bars
            assert sorted(people) == [f"{backbone} · {c} · feather: people" for c in ("robust", "standard")]
            assert sorted(l for l in labels if l.endswith(": network")) == [f"{backbone} · {c} · feather: network" for c in ("robust", "standard")]
            chance = [line for line in ax.get_lines() if line.get_label() == "chance"]
            assert len(chance) == 1 and chance[0].get_linestyle() == "--" and chance[0].get_ydata()[0] == 1 / 16
            assert [t.get_text() for t in ax.get_xticklabels()] == ["layer1", "layer2", "layer3", "fc"]
    finally:
        plt.close(fig)


def test_the_plot_renders_png_and_svg_bytes():
    from PIL import Image

    from results.plots import recognition_by_layer_plot

    png = recognition_by_layer_plot(_plot_rows())
    svg = recognition_by_layer_plot(_plot_rows(), fmt="svg")

    assert png.startswith(b"\x89PNG\r\n\x1a\n") and Image.open(io.BytesIO(png)).size[0] > 100
    assert b"<svg" in svg and b"resnet50 \xc2\xb7 standard \xc2\xb7 feather: people" in svg
    assert recognition_by_layer_plot([]).startswith(b"\x89PNG")
    with pytest.raises(ValueError):
        recognition_by_layer_plot(_plot_rows(), fmt="gif")


def test_the_plot_takes_the_analysis_rows_as_they_come():
    from results.plots import recognition_by_layer_plot

    rows = _rows(n_boot=50)
    for row, layer in zip(rows, ("layer1", "layer2", "layer3")):
        row.update(backbone="resnet50", checkpoint="standard", recipe="feather", layer=layer)

    assert recognition_by_layer_plot(rows).startswith(b"\x89PNG")
