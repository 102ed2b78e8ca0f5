"""The perceptual proxy: near images are close, far images are far, ties count aligned."""

import pytest
import pytorch_msssim
import torch

from iri_worker.engine import PROXY_METRICS, perceptual_distance, proxy_alignment


@pytest.fixture(scope="module")
def pair():
    """A smooth 'photo', a slightly noisy copy of it (near) and uniform noise (far)."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(2, 3, 8, 8, generator=g)
    photo = torch.nn.functional.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
    near = (photo + 0.03 * torch.randn(photo.shape, generator=g)).clamp(0, 1)
    far = torch.rand(photo.shape, generator=g)
    return photo, near, far


@pytest.mark.parametrize("metric", ["ssim", "ms_ssim"])
def test_a_noisy_copy_is_nearer_than_noise_and_an_image_is_at_distance_zero_from_itself(metric, pair):
    photo, near, far = pair
    d_near, d_far = perceptual_distance(photo, near, metric), perceptual_distance(photo, far, metric)
    assert d_near.shape == (2,) and d_near.dtype == torch.float32
    assert (d_near < d_far).all()
    assert torch.allclose(perceptual_distance(photo, photo, metric), torch.zeros(2), atol=1e-5)


def test_ssim_distance_is_one_minus_pytorch_msssim(pair):
    photo, near, _ = pair
    expected = 1 - pytorch_msssim.ssim(photo, near, data_range=1.0, size_average=False)
    assert torch.allclose(perceptual_distance(photo, near, "ssim"), expected, atol=1e-6)


def test_ms_ssim_equals_the_library_on_large_images_and_upsamples_small_ones(pair):
    photo, near, _ = pair
    big = torch.nn.functional.interpolate(photo, size=192, mode="bilinear")
    big_near = torch.nn.functional.interpolate(near, size=192, mode="bilinear")
    expected = 1 - pytorch_msssim.ms_ssim(big, big_near, data_range=1.0, size_average=False)
    assert torch.allclose(perceptual_distance(big, big_near, "ms_ssim"), expected, atol=1e-5)
    # 32 px would trip the library's 160 px assertion; here it just works.
    assert torch.isfinite(perceptual_distance(photo, near, "ms_ssim")).all()


@pytest.mark.parametrize("metric", ["ssim", "ms_ssim"])
def test_the_distance_has_a_finite_gradient_even_for_unrelated_images(metric, pair):
    photo, _, far = pair
    x = far.clone().requires_grad_(True)
    perceptual_distance(x, photo, metric).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_lpips_without_local_backbone_weights_says_so_and_downloads_nothing(pair, tmp_path, monkeypatch):
    from iri_worker.engine import proxy

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    proxy._lpips_model.cache_clear()
    photo, near, _ = pair
    with pytest.raises(RuntimeError, match="Use ssim or ms_ssim"):
        perceptual_distance(photo, near, "lpips")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_metric_lists_the_valid_ones(pair):
    photo, near, _ = pair
    with pytest.raises(ValueError, match="ssim, ms_ssim, lpips"):
        perceptual_distance(photo, near, "psnr")
    assert PROXY_METRICS == ("ssim", "ms_ssim", "lpips")


@pytest.mark.parametrize("metric", ["ssim", "ms_ssim"])
def test_an_iri_that_looks_like_its_target_is_aligned_and_one_that_looks_like_its_seed_is_not(metric, pair):
    photo, near, far = pair
    iris = torch.stack([near[0], far[1]])  # image 0 resembles its target, image 1 is its seed
    result = proxy_alignment(iris, photo, far, metric)
    assert result["aligned"].tolist() == [True, False]
    assert set(result) == {"aligned", "to_target", "to_seed"}
    assert result["to_target"][0] < result["to_seed"][0]
    assert result["to_seed"][1] == pytest.approx(0.0, abs=1e-5)


def test_ties_count_as_aligned_and_a_single_seed_is_shared(pair):
    photo, _, _ = pair
    grey = torch.full((3, 32, 32), 0.5)
    result = proxy_alignment(photo, photo, photo[0], "ssim")  # target == seed for image 0: a tie
    assert result["aligned"][0]
    shared = proxy_alignment(photo, photo, grey, "ssim")
    assert shared["aligned"].all() and shared["to_seed"].shape == (2,)
