import dataclasses
import importlib
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
        "param": "pixel",
        "transforms": None,
        "step_rule": "normalized_gradient",
        "step_rounds": 1,
        "stop_loss": None,
        "fake_relu": True,
        "precision": "fp32",  # the default until "auto" is measured on enough hosts
        "channels_last": None,  # not named: measured by the worker on its host
        "weights_path": None,
        "checkpoint_sha256": None,
        "recipe_terms": [{"term": "representation_distance", "weight": 1.0, "params": {}}],
    }
    assert json.loads(json.dumps(data)) == data


def test_a_stored_spec_reads_back_to_the_same_run():
    spec = InversionSpec.from_dict({**TINY, "layer": "conv2", "image_size": 24, "seed_kind": "white", "rng_seed": 7})
    assert InversionSpec.from_dict(spec.to_dict()) == spec.resolved()
    assert InversionSpec.from_dict(spec.to_dict()).to_dict() == spec.to_dict()
    assert InversionSpec.from_dict(InversionSpec().to_dict()) == InversionSpec().resolved()


def test_an_old_spec_with_only_the_original_fields_still_loads():
    old = {"backbone": "tiny_cnn", "layer": "pool", "recipe": "reg_free", "seed_kind": "super-noise",
           "steps": 20, "step_size": 0.1, "image_size": 32, "rng_seed": 0}
    spec = InversionSpec.from_dict(old)
    assert spec.param == "pixel" and spec.step_rule == "normalized_gradient" and spec.transforms is None
    assert spec.fake_relu is True and spec.precision == "fp32" and spec.stop_loss is None


@pytest.mark.parametrize(("amp", "precision"), [(True, "bf16"), (False, "fp32")])
def test_a_stored_spec_with_amp_reads_as_its_precision_and_is_stored_with_precision_alone(amp, precision):
    spec = InversionSpec.from_dict({**TINY, "amp": amp})
    assert spec.precision == precision
    data = spec.to_dict()
    assert "amp" not in data and data["precision"] == precision
    assert InversionSpec.from_dict(data) == spec.resolved()
    assert InversionSpec.from_dict({**TINY, "amp": amp, "precision": precision}) == spec  # the two agree: fine


def test_precision_auto_is_stored_as_auto_for_the_worker_to_measure():
    data = InversionSpec.from_dict({**TINY, "precision": "auto"}).to_dict()
    assert data["precision"] == "auto" and InversionSpec.from_dict(data).precision == "auto"


def test_a_precision_this_host_cannot_run_is_refused_with_what_it_supports(monkeypatch):
    monkeypatch.setattr(importlib.import_module("iri_worker.engine.precision"), "bf16_supported", lambda _: False)
    for data in ({**TINY, "precision": "bf16"}, {**TINY, "amp": True}):
        with pytest.raises(ValueError) as error:
            InversionSpec.from_dict(data)
        assert "precision: this host cannot run 'bf16' on cpu" in str(error.value)
        assert "it supports fp32, auto." in str(error.value)
    assert InversionSpec.from_dict({**TINY, "precision": "auto"}).precision == "auto"


def test_a_researcher_defined_recipe_round_trips_with_its_weights():
    recipe = [{"term": "representation_distance", "weight": 10}, {"term": "total_variation", "weight": 0.001}]
    spec = InversionSpec.from_dict({**TINY, "recipe": recipe})
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["recipe"] == recipe
    assert data["recipe_terms"][1] == {"term": "total_variation", "weight": 0.001, "params": {}}
    assert InversionSpec.from_dict(data) == spec.resolved()


def test_the_stored_recipe_terms_are_what_runs_even_if_the_named_recipe_changes(monkeypatch):
    from iri_worker.engine import recipes

    stored = InversionSpec.from_dict({**TINY, "recipe": "freq_tv"}).to_dict()
    monkeypatch.setitem(recipes.RECIPES, "freq_tv", [{"term": "representation_distance", "weight": 3.0}])
    assert InversionSpec.from_dict(stored).recipe_terms[1]["term"] == "total_variation"


def test_every_option_of_the_full_method_is_recorded():
    spec = InversionSpec.from_dict({
        **TINY, "recipe": "adv_ssim", "param": "fft", "transforms": "cifar", "step_rule": "adam",
        "stop_loss": 0.05, "precision": "bf16", "channels_last": True, "fake_relu": False, "seed_kind": "photo",
    })
    data = spec.to_dict()
    for key, value in {"param": "fft", "transforms": "cifar", "step_rule": "adam", "stop_loss": 0.05,
                       "precision": "bf16", "channels_last": True, "fake_relu": False,
                       "seed_kind": "photo"}.items():
        assert data[key] == value
    assert data["recipe_terms"][0]["params"]["c"] == "adaptive"


def test_fake_relu_is_recorded_as_off_where_the_backbone_has_none():
    assert InversionSpec().to_dict()["fake_relu"] is False  # EfficientNet-Lite0 ends in ReLU6
    assert InversionSpec.from_dict(TINY).to_dict()["fake_relu"] is True


def test_a_weights_file_is_recorded_by_its_sha256_and_a_mismatch_is_refused(tmp_path):
    import torch

    from iri_worker.engine.architectures import TinyCNN
    from iri_worker.engine.checkpoints import checkpoint_sha256

    path = tmp_path / "w.pt"
    torch.save(TinyCNN().state_dict(), path)
    data = InversionSpec.from_dict({**TINY, "weights_path": str(path)}).to_dict()
    assert data["checkpoint_sha256"] == checkpoint_sha256(str(path))
    with pytest.raises(ValueError, match="checkpoint_sha256 does not match"):
        InversionSpec.from_dict({**data, "checkpoint_sha256": "0" * 64})


def test_integer_step_sizes_are_stored_as_floats():
    assert InversionSpec.from_dict({**TINY, "step_size": 1}).step_size == 1.0


def test_a_spec_cannot_be_changed_after_creation():
    with pytest.raises(dataclasses.FrozenInstanceError):
        InversionSpec().steps = 5


@pytest.mark.parametrize(
    ("change", "field", "hint"),
    [
        ({"colour": "red"}, "colour", "allowed keys"),
        ({"backbone": "resnet81"}, "backbone", "resnet18"),
        ({"backbone": 3}, "backbone", ""),
        ({"layer": "conv"}, "layer", "layer_names('tiny_cnn')"),
        ({"layer": 5}, "layer", ""),
        ({"recipe": "frek"}, "recipe", "freq"),
        ({"recipe": ["rep"]}, "recipe", ""),
        ({"recipe": [{"term": "tv"}]}, "recipe", "total_variation"),
        ({"recipe": 5}, "recipe", ""),
        ({"recipe_terms": "freq"}, "recipe_terms", ""),
        ({"recipe": "adv_lpips"}, "recipe", "Use ssim or ms_ssim"),
        ({"param": "wavelet"}, "param", "fft"),
        ({"transforms": "mnist"}, "transforms", "imagenet"),
        ({"step_rule": "sgd"}, "step_rule", "adam"),
        ({"stop_loss": "low"}, "stop_loss", ""),
        ({"stop_loss": float("nan")}, "stop_loss", ""),
        ({"fake_relu": 1}, "fake_relu", ""),
        ({"amp": "yes"}, "amp", "precision"),
        ({"precision": "fp16"}, "precision", "fp32, bf16, auto"),
        ({"precision": True}, "precision", "fp32, bf16, auto"),
        ({"amp": True, "precision": "fp32"}, "precision", "set precision alone"),
        ({"amp": False, "precision": "auto"}, "precision", "amp false"),
        ({"channels_last": 0}, "channels_last", ""),
        ({"weights_path": "/nonexistent.pt"}, "weights_path", "existing local file"),
        ({"checkpoint_sha256": "abc"}, "checkpoint_sha256", "64"),
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
        ({"backbone": "alexnet", "image_size": 32}, "image_size", "at least 63"),
        ({"backbone": "vit_b_16", "image_size": 32}, "image_size", "only 224"),
        ({"backbone": "vit_b_16", "transforms": "imagenet"}, "transforms", "one input size"),
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
