"""The full method in the loop: parametrisations, transforms, step rules, early stop, NaN, seeds, precision."""

import dataclasses

import pytest
import torch

from iri_worker.engine import InversionSpec, invert, load_backbone, losses
from iri_worker.engine.losses import Loss
from iri_worker.engine import recipes

SPEC = InversionSpec(backbone="tiny_cnn", steps=40, step_size=0.1, rng_seed=0)


def run(random_images, batch=2, **changes):
    return invert(dataclasses.replace(SPEC, **changes), random_images(batch, seed=4))


def test_the_fourier_parametrisation_lowers_the_loss_and_returns_images_in_the_box(random_images):
    result = run(random_images, param="fft", step_size=0.5)
    assert (result.losses < result.initial_losses).all()
    assert result.images.shape == (2, 3, 32, 32) and 0 <= result.images.min() and result.images.max() <= 1
    assert result.seeds.min() > 0 and result.seeds.max() < 1  # the decoded seed, through the sigmoid


def test_transformation_robustness_runs_deterministically_from_the_spec_seed(random_images):
    named = {"transforms": "cifar", "steps": 15, "channels_last": False}  # bit for bit once the layout is known
    first = run(random_images, **named)
    second = run(random_images, **named)
    other = run(random_images, **named, rng_seed=3)
    assert torch.equal(first.images, second.images)
    assert not torch.equal(first.images, other.images)
    assert (first.losses < first.initial_losses).all()


def test_transforms_are_seen_only_by_the_representation_term_never_by_the_stored_image(random_images):
    result = run(random_images, transforms="imagenet", steps=5)
    assert result.images.shape == (2, 3, 32, 32)


def test_adam_lowers_the_loss_too(random_images):
    result = run(random_images, step_rule="adam", step_size=0.02)
    assert (result.losses < 0.5 * result.initial_losses).all()


def test_the_adversarial_recipe_reports_the_weight_it_measured_on_the_first_batch(random_images):
    result = run(random_images, recipe="adv_ms_ssim", steps=5)
    assert isinstance(result.adversarial_c, float) and result.adversarial_c > 0
    again = run(random_images, recipe=recipes.with_adversarial_c("adv_ms_ssim", result.adversarial_c), steps=5)
    assert again.adversarial_c == pytest.approx(result.adversarial_c)
    assert torch.allclose(again.images, result.images, atol=1e-5)
    assert run(random_images, steps=2).adversarial_c is None


def test_an_image_that_reaches_the_stop_loss_stops_changing_and_the_loop_ends_when_all_have(random_images):
    seen = []
    spec = dataclasses.replace(SPEC, steps=500, stop_loss=0.5)
    result = invert(spec, random_images(2, seed=4), on_step=lambda i, l: seen.append(l.clone()))
    assert result.stopped.all() and (result.losses <= 0.5).all()
    assert result.steps_run < 500 and len(seen) == result.steps_run
    # after an image stopped, its loss never moves again (its pixels are frozen)
    history = torch.stack(seen)
    for b in range(2):
        first = int((history[:, b] <= 0.5).nonzero()[0])
        assert torch.allclose(history[first:, b], history[first, b].expand(len(history) - first))


def test_a_nan_loss_stops_that_image_marks_it_and_the_others_carry_on(random_images, monkeypatch):
    import sys

    def poisoned(ctx):  # image 1's loss is NaN (as if its own computation overflowed)
        return losses.representation_distance()(ctx) * torch.tensor([1.0, float("nan"), 1.0])

    loop = sys.modules["iri_worker.engine.invert"]
    monkeypatch.setattr(loop, "build_loss", lambda recipe: Loss(poisoned, "poisoned"))
    result = invert(SPEC, random_images(3, seed=4))
    assert result.nan_mask.tolist() == [False, True, False]
    assert (result.losses[[0, 2]] < result.initial_losses[[0, 2]]).all()
    assert torch.isfinite(result.images).all()
    assert torch.equal(result.images[1], result.seeds[1])  # never had a finite loss: keeps its seed


def test_a_photo_seed_must_be_given_and_is_used(random_images):
    spec = dataclasses.replace(SPEC, seed_kind="photo", steps=5)
    with pytest.raises(ValueError, match="seed_kind 'photo' needs the seed images"):
        invert(spec, random_images(2))
    photo = random_images(1, seed=9)[0]
    result = invert(spec, random_images(2), seeds=photo)
    assert torch.equal(result.seeds, photo.expand(2, -1, -1, -1))


def test_a_photo_seed_outside_the_box_is_clamped_where_it_is_first_evaluated(random_images):
    # The seed is fed unclipped once (the paper's normaliser clamps it); only later iterates, projected into
    # [0, 1], skip that clamp.
    spec = dataclasses.replace(SPEC, seed_kind="photo", steps=3)
    targets, photo = random_images(2), random_images(1, seed=9)[0] * 3 - 1
    raw = invert(spec, targets, seeds=photo)
    clipped = invert(spec, targets, seeds=photo.clamp(0, 1))
    assert torch.equal(raw.initial_losses, clipped.initial_losses)
    assert raw.images.min() >= 0 and raw.images.max() <= 1


def test_a_spatial_layer_with_a_transform_that_resizes_the_image_is_refused_with_a_reason(random_images):
    spec = dataclasses.replace(SPEC, layer="relu1", transforms="imagenet", steps=2)
    with pytest.raises(ValueError, match="Layer 'relu1' gives 50176 values per image here but 16384"):
        invert(spec, random_images(2))
    assert invert(dataclasses.replace(spec, layer="pool"), random_images(2)).steps_run == 2


def test_another_target_can_be_the_seed_of_each_image(random_images):
    targets = random_images(2)
    result = invert(dataclasses.replace(SPEC, seed_kind="photo", steps=5), targets, seeds=targets.flip(0))
    assert torch.equal(result.seeds, targets.flip(0))


@pytest.mark.parametrize("bad, reason", [
    (torch.rand(2, 1, 32, 32), r"got \(2, 1, 32, 32\).*photo_to_tensor"),
    (torch.rand(2, 3, 28, 28), r"\(B, 3, 32, 32\)"),
    (torch.randint(0, 255, (2, 3, 32, 32)), "floating point"),
    (torch.full((2, 3, 32, 32), float("nan")), "NaN"),
    ([[0.5]], "tensor"),
])
def test_images_of_the_wrong_mode_size_or_type_are_refused_with_a_reason(bad, reason):
    with pytest.raises(ValueError, match=reason):
        invert(SPEC, bad)


def test_seeds_of_the_wrong_shape_are_refused(random_images):
    with pytest.raises(ValueError, match="seeds must be"):
        invert(SPEC, random_images(2), seeds=torch.rand(3, 3, 32, 32))


def test_bf16_autocast_runs_on_cpu_and_ends_near_the_fp32_loss(random_images):
    fp32 = run(random_images, steps=30)
    bf16 = run(random_images, steps=30, precision="bf16")
    assert (bf16.losses < bf16.initial_losses).all()
    assert torch.allclose(bf16.losses, fp32.losses, atol=0.1)


def test_channels_last_gives_the_same_images(random_images, tiny):
    plain = run(random_images, steps=10, channels_last=False)
    fast = run(random_images, steps=10, channels_last=True)
    tiny.set_channels_last(False)
    assert torch.allclose(plain.images, fast.images, atol=1e-5)


def test_fake_relu_is_switched_on_for_the_run_only(random_images, tiny):
    on = run(random_images, steps=10, fake_relu=True)
    off = run(random_images, steps=10, fake_relu=False)
    assert not torch.equal(on.images, off.images)
    assert not any(m.fake for m in tiny.fake_relu_modules)


def test_the_loop_reads_nothing_back_to_the_host_per_step(random_images, monkeypatch):
    # .item() / bool() on a tensor is a host-device sync on an accelerator; the loop must not need one.
    calls = {"item": 0}
    real_item = torch.Tensor.item

    def counting_item(self):
        calls["item"] += 1
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    run(random_images, steps=30)
    assert calls["item"] == 0


def test_memory_does_not_grow_with_the_number_of_steps(random_images):
    import tracemalloc

    tracemalloc.start()
    run(random_images, steps=5)
    _, short_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    run(random_images, steps=60)
    _, long_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert long_peak < short_peak * 1.5 + 200_000


def test_an_unknown_layer_lists_the_valid_ones(random_images):
    with pytest.raises(ValueError, match="Valid layers.*conv1.*pool"):
        run(random_images, layer="conv9")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_same_run_works_on_a_gpu_with_and_without_bf16(random_images, precision):
    spec = dataclasses.replace(SPEC, precision=precision, transforms="cifar", recipe="adv_ms_ssim", stop_loss=0.01)
    result = invert(spec, random_images(4), device="cuda")
    assert result.images.device.type == "cpu" and (result.losses < result.initial_losses).all()


def test_every_option_at_once_on_the_cpu(random_images):
    spec = dataclasses.replace(SPEC, param="fft", transforms="imagenet", step_rule="adam", step_size=0.05,
                               recipe="adv_ssim_seed", precision="bf16", channels_last=True, stop_loss=0.0, steps=12)
    result = invert(spec, random_images(2))
    assert (result.losses < result.initial_losses).all() and result.adversarial_c == 10.0
    assert not result.nan_mask.any() and not result.stopped.any() and result.steps_run == 12
    load_backbone("tiny_cnn").set_channels_last(False)
