"""Survey.adaptive_state through its contract (surveys.adaptive_state.AdaptiveState): every version stored so far
loads, the latest round-trips, and anything else is refused by name."""
import pytest

from surveys.adaptive_state import AdaptiveState
from surveys.models import Survey

# As adaptive_state_initial wrote it from the first adaptive surveys (2026-11-29) until blocks (2026-12-06): no
# version, no blocks_per_participant, and no stopped_at before the first estimate.
FIRST_SHAPE = {
    "conditions": [7, 9], "lists": {"31": [2, 0], "32": [0, 2]}, "half_width": [0.5, 0.5], "n_answers": [0, 0],
    "alignment": [None, None], "design_effect": [1.0, 1.0], "n_participants_set": [0, 0], "done": [False, False],
    "completed": 0, "stop": False, "reason": "", "estimated_at": None,
}
# The same survey after an estimate had stopped it (adaptive_estimate added stopped_at).
FIRST_SHAPE_STOPPED = {
    **FIRST_SHAPE, "half_width": [0.04, 0.049], "n_answers": [40, 36], "alignment": [0.9, 0.1],
    "design_effect": [1.2, 1.0], "n_participants_set": [20, 18], "done": [True, True], "completed": 19, "stop": True,
    "reason": "goal", "estimated_at": "2026-11-30T10:00:00+00:00", "stopped_at": "2026-11-30T10:00:00+00:00",
}
# Blocks (2026-12-06) until this contract: blocks_per_participant, still no version.
BLOCKS_SHAPE = {**FIRST_SHAPE, "blocks_per_participant": 3}


def test_a_state_stored_before_blocks_loads_with_one_list_per_participant_and_no_stop_time():
    state = AdaptiveState.from_dict(FIRST_SHAPE)

    assert state.blocks_per_participant == 1 and state.stopped_at is None
    assert state.conditions == [7, 9] and state.lists == {"31": [2, 0], "32": [0, 2]} and not state.stop


def test_a_stopped_state_of_the_first_shape_keeps_its_stop_time():
    state = AdaptiveState.from_dict(FIRST_SHAPE_STOPPED)

    assert state.stop and state.reason == "goal" and state.stopped_at == "2026-11-30T10:00:00+00:00"
    assert state.done == [True, True] and state.blocks_per_participant == 1


def test_a_state_with_blocks_but_no_version_loads_its_blocks():
    assert AdaptiveState.from_dict(BLOCKS_SHAPE).blocks_per_participant == 3


@pytest.mark.parametrize("stored", [FIRST_SHAPE, FIRST_SHAPE_STOPPED, BLOCKS_SHAPE])
def test_every_state_round_trips_through_the_latest_version(stored):
    state = AdaptiveState.from_dict(stored)

    data = state.to_dict()

    assert data["version"] == AdaptiveState.VERSION == 1
    assert AdaptiveState.from_dict(data) == state
    assert {key: data[key] for key in stored} == stored  # nothing it had is changed


def test_an_unknown_version_is_refused_with_the_versions_this_code_reads():
    with pytest.raises(ValueError, match=r"adaptive_state: version 2 is unknown; this code reads versions 0 .* to 1"):
        AdaptiveState.from_dict({**BLOCKS_SHAPE, "version": 2})


def test_an_unknown_key_is_refused_by_name():
    with pytest.raises(ValueError, match=r"adaptive_state has unknown keys pairs; allowed keys are conditions, lists"):
        AdaptiveState.from_dict({**BLOCKS_SHAPE, "pairs": [[0, 1]]})


def test_the_latest_version_must_have_every_key():
    data = AdaptiveState.from_dict(BLOCKS_SHAPE).to_dict()
    del data["blocks_per_participant"], data["stopped_at"]

    with pytest.raises(ValueError, match=r"adaptive_state lacks keys blocks_per_participant, stopped_at"):
        AdaptiveState.from_dict(data)


def test_a_survey_reads_its_stored_state_through_the_contract_and_none_when_it_has_none():
    assert Survey(adaptive_state={}).adaptive is None
    assert Survey(adaptive_state=FIRST_SHAPE).adaptive == AdaptiveState.from_dict(FIRST_SHAPE)
