"""Transformation robustness and the Fourier parametrisation keep shapes and ranges."""

import pytest
import torch

from iri_worker.engine.params import COLOR_DECORRELATION, FFTParam, PixelParam, build_param
from iri_worker.engine.transforms import (
    ANGLES,
    SCALES,
    TRANSFORMS,
    build_transform,
    compose,
    jitter,
    pad,
    random_rotate,
    random_scale,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_the_papers_scale_and_angle_menus():
    assert len(SCALES) == 11 and SCALES[0] == pytest.approx(0.9) and SCALES[-1] == pytest.approx(1.1)
    assert len(ANGLES) == 26 and ANGLES.count(0) == 6 and min(ANGLES) == -10 and max(ANGLES) == 10


def test_pad_adds_a_grey_border():
    x = torch.zeros(1, 3, 8, 8)
    out = pad(12, 0.5)(x, gen())
    assert out.shape == (1, 3, 32, 32) and out[0, 0, 0, 0] == 0.5 and out[0, 0, 12, 12] == 0


def test_jitter_is_a_non_negative_integer_shift_with_zero_fill():
    x = torch.rand(2, 3, 16, 16)
    for seed in range(10):
        out = jitter(8)(x, gen(seed))
        assert out.shape == x.shape
        # find the shift: the content must equal the input moved right/down by (dx, dy) < 8
        found = [(dx, dy) for dx in range(8) for dy in range(8)
                 if torch.equal(out[..., dy:, dx:], x[..., : 16 - dy, : 16 - dx])]
        assert found


def test_random_scale_shrinks_with_zero_padding_and_grows_without_cropping():
    x = torch.ones(1, 3, 50, 50)
    sizes = {random_scale()(x, gen(seed)).shape[-1] for seed in range(60)}
    assert sizes <= {50, 51, 52, 53, 54, 55, 45, 46, 47, 48, 49}
    assert max(sizes) > 50
    small = random_scale([0.9])(x, gen())
    assert small.shape == x.shape and small[0, 0, 0, 0] == 0 and small[0, 0, 25, 25] == 1


def test_random_rotate_keeps_the_size_and_zero_fills_the_corners():
    x = torch.ones(1, 3, 32, 32)
    out = random_rotate([10])(x, gen())
    assert out.shape == x.shape and out[0, 0, 0, 0] < 0.5 and out[0, 0, 16, 16] == pytest.approx(1.0)
    assert torch.equal(random_rotate([0])(x, gen()), x)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_the_paper_settings_keep_batch_and_channels_and_stay_in_range(name):
    x = torch.rand(4, 3, 32, 32)
    out = build_transform(name)(x, gen())
    assert out.shape[:2] == (4, 3) and out.shape[-1] >= 28 and out.min() >= 0 and out.max() <= 1


def test_the_imagenet_setting_starts_with_a_12_px_grey_pad():
    x = torch.zeros(1, 3, 32, 32)
    out = compose(pad(12, 0.5))(x, gen())
    assert out.shape[-1] == 56


def test_the_same_generator_seed_gives_the_same_draw_and_the_global_rng_is_untouched():
    x = torch.rand(2, 3, 32, 32)
    t = build_transform("imagenet")
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a, b = t(x, gen(7)), t(x, gen(7))
    assert torch.equal(a, b)
    assert torch.equal(torch.rand(1), before)
    assert any(not torch.equal(t(x, gen(s)), a) for s in range(8))


def test_an_unknown_setting_lists_the_valid_ones():
    with pytest.raises(ValueError, match="cifar, imagenet"):
        build_transform("mnist")
    assert build_transform(None) is None


# --------------------------------------------------------------------------- parametrisations


def test_the_fft_image_is_in_the_open_unit_interval_for_any_coefficients():
    param = FFTParam()
    huge = 100 * torch.randn(2, 3, 32, 17, 2, generator=gen())
    image = param.to_image(huge)
    assert image.shape == (2, 3, 32, 32) and image.min() >= 0 and image.max() <= 1


def test_the_fft_parametrisation_never_clamps_its_coefficients():
    param = FFTParam()
    coeff = torch.full((1, 3, 8, 5, 2), 3.0)
    assert torch.equal(param.project(coeff), coeff)


def test_fft_seeds_are_drawn_in_coefficient_space_and_shared_by_the_batch():
    coeff = build_param("fft").seed_variable("super-noise", 3, 32, gen())
    assert coeff.shape == (3, 3, 32, 17, 2)
    assert torch.equal(coeff[0], coeff[2])
    assert torch.equal(build_param("fft").seed_variable("black", 1, 8, gen()), torch.zeros(1, 3, 8, 5, 2))


def test_a_photo_is_encoded_into_coefficients_that_decode_back_to_it():
    photo = torch.rand(2, 3, 32, 32, generator=gen()) * 0.98 + 0.01
    param = FFTParam()
    assert torch.allclose(param.to_image(param.encode(photo)), photo, atol=1e-4)


def test_the_colour_matrix_is_lucids_normalised_by_its_largest_column_norm():
    assert COLOR_DECORRELATION.norm(dim=0).max() == pytest.approx(1.0)
    assert COLOR_DECORRELATION[0, 0] / COLOR_DECORRELATION[1, 0] == pytest.approx(0.26 / 0.27)


def test_pixels_are_boxed_into_the_unit_interval():
    x = torch.tensor([-0.5, 0.5, 1.5]).view(1, 3, 1, 1)
    assert PixelParam().project(x).flatten().tolist() == [0.0, 0.5, 1.0]
