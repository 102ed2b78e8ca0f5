import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iri_worker.engine import InversionSpec

TINY = {"backbone": "tiny_cnn", "steps": 20, "step_size": 0.1}


def test_an_empty_dict_gives_the_default_spec():
    spec = InversionSpec.from_dict({})
    assert spec == InversionSpec()
    assert spec.backbone == "efficientnet_lite0" and spec.recipe == "reg_free"
    assert spec.seed_kind == "super-noise" and spec.steps == 1000 and spec.step_size == 1.0


def test_to_dict_writes_every_field_with_the_backbone_defaults_resolved():
    data = InversionSpec.from_dict(TINY).to_dict()
    assert data == {
        "backbone": "tiny_cnn",
        "layer": "pool",
        "recipe": "reg_free",
        "seed_kind": "super-noise",
        "steps": 20,
        "step_size": 0.1,
        "image_size": 32,
        "rng_seed": 0,
    }
    assert json.loads(json.dumps(data)) == data


def test_a_stored_spec_reads_back_to_the_same_run():
    spec = InversionSpec.from_dict({**TINY, "layer": "conv2", "image_size": 24, "seed_kind": "white", "rng_seed": 7})
    assert InversionSpec.from_dict(spec.to_dict()) == spec
    assert InversionSpec.from_dict(InversionSpec().to_dict()) == InversionSpec().resolved()


def test_integer_step_sizes_are_stored_as_floats():
    assert InversionSpec.from_dict({**TINY, "step_size": 1}).step_size == 1.0


def test_a_spec_cannot_be_changed_after_creation():
    with pytest.raises(dataclasses.FrozenInstanceError):
        InversionSpec().steps = 5


@pytest.mark.parametrize(
    ("change", "field", "hint"),
    [
        ({"colour": "red"}, "colour", "allowed fields"),
        ({"backbone": "resnet81"}, "backbone", "resnet18"),
        ({"backbone": 3}, "backbone", ""),
        ({"layer": "conv"}, "layer", "layer_names('tiny_cnn')"),
        ({"layer": 5}, "layer", ""),
        ({"recipe": "freq"}, "recipe", "reg_free"),
        ({"recipe": ["rep"]}, "recipe", ""),
        ({"seed_kind": "grey"}, "seed_kind", "super-noise"),
        ({"steps": 0}, "steps", "positive integer"),
        ({"steps": 100_001}, "steps", "100000"),
        ({"steps": 10.0}, "steps", ""),
        ({"steps": True}, "steps", ""),
        ({"steps": "10"}, "steps", ""),
        ({"step_size": 0}, "step_size", "> 0"),
        ({"step_size": -1.0}, "step_size", ""),
        ({"step_size": float("nan")}, "step_size", ""),
        ({"step_size": float("inf")}, "step_size", ""),
        ({"step_size": "1"}, "step_size", ""),
        ({"image_size": 7}, "image_size", "between 8 and 1024"),
        ({"image_size": 1025}, "image_size", ""),
        ({"image_size": 32.0}, "image_size", ""),
        ({"rng_seed": -1}, "rng_seed", ""),
        ({"rng_seed": "0"}, "rng_seed", ""),
    ],
)
def test_each_invalid_value_is_refused_naming_its_field(change, field, hint):
    with pytest.raises(ValueError) as error:
        InversionSpec.from_dict({**TINY, **change})
    assert field in str(error.value)
    assert hint in str(error.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ValueError) as error:
        InversionSpec.from_dict({"backbone": "tiny_cnn", "steps": 0, "step_size": 0, "seed_kind": "grey"})
    message = str(error.value)
    assert "steps" in message and "step_size" in message and "seed_kind" in message


def test_a_spec_must_be_a_dict():
    with pytest.raises(ValueError, match="dict"):
        InversionSpec.from_dict([("steps", 3)])


@settings(max_examples=50, deadline=None)
@given(steps=st.integers(max_value=0))
def test_no_non_positive_step_count_is_ever_accepted(steps):
    with pytest.raises(ValueError, match="steps"):
        InversionSpec.from_dict({**TINY, "steps": steps})


@settings(max_examples=50, deadline=None)
@given(steps=st.integers(min_value=1, max_value=100_000), step_size=st.floats(min_value=1e-6, max_value=100))
def test_any_positive_step_count_and_step_size_in_range_is_accepted(steps, step_size):
    spec = InversionSpec.from_dict({**TINY, "steps": steps, "step_size": step_size})
    assert spec.steps == steps and spec.step_size == step_size
