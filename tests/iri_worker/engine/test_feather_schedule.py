"""Feather et al.'s metamer settings in the engine: the step size halved each round, the mean-0.5/sd-0.05 seed,
and each backbone's stages for layer sweeps."""

import dataclasses
import importlib

import pytest
import torch

from iri_worker.engine import (
    SEED_KINDS,
    InversionSpec,
    invert,
    layer_names,
    list_backbones,
    load_backbone,
    make_seed,
    round_starts,
    round_step_size,
    stage_names,
)
from iri_worker.engine.params import FFTParam
from iri_worker.engine.steps import AdamStep, NormalizedGradientStep

from .test_backbones import HEAVY

invert_module = importlib.import_module("iri_worker.engine.invert")  # the module (the package's `invert` is the function)

# the layout named: runs compared bit for bit must not depend on which of them timed the layout
SPEC = InversionSpec(backbone="tiny_cnn", steps=12, step_size=0.4, rng_seed=0, seed_kind="feather-noise",
                     channels_last=False)


# --------------------------------------------------------------------------- the schedule


def test_rounds_split_the_steps_equally_as_in_feather_et_al():
    assert round_starts(24_000, 8) == [0, 3000, 6000, 9000, 12000, 15000, 18000, 21000]
    assert round_starts(10, 3) == [0, 3, 6]  # the later rounds take the remainder
    assert round_starts(7, 1) == [0]
    assert [round_step_size(1.0, k) for k in range(4)] == [1.0, 0.5, 0.25, 0.125]


def recording(monkeypatch, rule_class):
    """Make invert build ``rule_class`` with a record of the L2 distance each image actually moved per step
    (before the [0, 1] projection) and of the rule's step size at that step."""
    moves: list[torch.Tensor] = []
    sizes: list[float] = []

    class Recording(rule_class):
        def step(self, x, grad, state=None):
            new = super().step(x, grad, state)
            moves.append((new - x).flatten(1).norm(dim=1))
            sizes.append(self.step_size)
            return new

    monkeypatch.setattr(invert_module, "build_step_rule", lambda name, step_size: Recording(step_size))
    return moves, sizes


def test_the_step_size_actually_used_halves_each_round(monkeypatch, random_images):
    moves, sizes = recording(monkeypatch, NormalizedGradientStep)
    s = SPEC.step_size

    result = invert(dataclasses.replace(SPEC, step_rounds=3), random_images(2, seed=4))

    assert sizes == [s] * 4 + [s / 2] * 4 + [s / 4] * 4
    # the normalised-gradient step moves every image by exactly the step size (L2): s, s/2, s/4 per round
    moved = torch.stack(moves)  # (steps, batch)
    expected = torch.tensor([s] * 4 + [s / 2] * 4 + [s / 4] * 4).unsqueeze(1).expand_as(moved)
    assert torch.allclose(moved, expected, rtol=1e-4)
    assert result.steps_run == 12 and (result.losses < result.initial_losses).all()


def test_one_round_is_the_constant_step_of_before(monkeypatch, random_images):
    moves, sizes = recording(monkeypatch, NormalizedGradientStep)
    plain = invert(SPEC, random_images(2, seed=4))
    assert sizes == [SPEC.step_size] * SPEC.steps
    monkeypatch.undo()
    assert torch.equal(invert(dataclasses.replace(SPEC, step_rounds=1), random_images(2, seed=4)).images, plain.images)


def test_adam_learning_rate_halves_per_round_too(monkeypatch, random_images):
    _, sizes = recording(monkeypatch, AdamStep)
    invert(dataclasses.replace(SPEC, step_rule="adam", step_size=0.02, steps=6, step_rounds=2), random_images(1))
    assert sizes == [0.02] * 3 + [0.01] * 3


def test_rounds_do_not_read_from_the_device_per_step(monkeypatch, random_images):
    """The schedule is integer bookkeeping: a run with rounds makes no more host reads than one without."""
    reads = {"n": 0}
    original = torch.Tensor.item

    def counting(self):
        reads["n"] += 1
        return original(self)

    monkeypatch.setattr(torch.Tensor, "item", counting)
    invert(dataclasses.replace(SPEC, step_rounds=4), random_images(1))
    with_rounds = reads["n"]
    reads["n"] = 0
    invert(SPEC, random_images(1))
    assert with_rounds == reads["n"]


def test_step_rounds_is_recorded_and_checked_by_the_spec():
    data = InversionSpec.from_dict({"backbone": "tiny_cnn", "steps": 24000, "step_rounds": 8}).to_dict()
    assert data["step_rounds"] == 8
    assert InversionSpec.from_dict(data).step_rounds == 8
    assert InversionSpec.from_dict({"backbone": "tiny_cnn"}).step_rounds == 1  # older specs: one round
    for bad in (0, -1, 33, 2.5, True, "8"):
        with pytest.raises(ValueError, match="step_rounds"):
            InversionSpec.from_dict({"backbone": "tiny_cnn", "steps": 100, "step_rounds": bad})
    with pytest.raises(ValueError, match=r"step_rounds \(8\) cannot exceed steps \(4\)"):
        InversionSpec.from_dict({"backbone": "tiny_cnn", "steps": 4, "step_rounds": 8})


# --------------------------------------------------------------------------- the seed


def test_the_feather_seed_is_grey_with_sd_0_05():
    assert "feather-noise" in SEED_KINDS
    seed = make_seed("feather-noise", (3, 128, 128), generator=torch.Generator().manual_seed(0))
    assert abs(float(seed.mean()) - 0.5) < 0.002
    assert abs(float(seed.std()) - 0.05) < 0.002
    assert 0 < float(seed.min()) and float(seed.max()) < 1  # 10 sd from either bound


def test_the_feather_seed_has_the_same_pixels_under_the_fourier_parametrisation():
    variable = FFTParam().seed_variable("feather-noise", 2, 64, torch.Generator().manual_seed(0))
    image = FFTParam().to_image(variable)
    assert abs(float(image.mean()) - 0.5) < 0.002 and abs(float(image.std()) - 0.05) < 0.003
    assert torch.equal(image[0], image[1])


def test_a_run_starts_from_the_feather_seed(random_images):
    result = invert(dataclasses.replace(SPEC, steps=3), random_images(2))
    assert abs(float(result.seeds.mean()) - 0.5) < 0.01 and abs(float(result.seeds.std()) - 0.05) < 0.01


# --------------------------------------------------------------------------- stages


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.heavy) if n in HEAVY else n for n in list_backbones()]
)
def test_every_backbone_offers_a_short_list_of_valid_stages_ending_at_its_default_layer(name):
    stages = stage_names(name)
    assert 2 <= len(stages) <= 10 and len(set(stages)) == len(stages)
    assert set(stages) <= set(layer_names(name))
    assert stages[-1] == load_backbone(name).default_layer
    order = layer_names(name)
    assert [order.index(s) for s in stages] == sorted(order.index(s) for s in stages)  # shallow to deep


def test_the_stages_of_the_sweep_backbones():
    assert stage_names("tiny_cnn") == ["relu1", "relu2", "pool"]
    assert stage_names("efficientnet_lite0") == [
        "_blocks.0", "_blocks.2", "_blocks.4", "_blocks.7", "_blocks.10", "_blocks.14", "_blocks.15", "_avg_pooling"
    ]


def test_a_run_at_each_tiny_stage_lowers_the_loss(random_images):
    for layer in stage_names("tiny_cnn"):
        result = invert(dataclasses.replace(SPEC, layer=layer, steps=8), random_images(2, seed=4))
        assert (result.losses < result.initial_losses).all(), layer
