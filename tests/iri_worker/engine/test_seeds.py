import pytest
import torch

from iri_worker.engine import SEED_KINDS, make_seed


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_four_seed_kinds_of_the_paper_are_offered_and_feather_et_al_s_noise():
    assert SEED_KINDS == ("super-noise", "light-noise", "white", "black", "feather-noise")


def test_each_seed_kind_has_the_paper_values():
    super_noise = make_seed("super-noise", (3, 64, 64), generator=gen())
    light_noise = make_seed("light-noise", (3, 64, 64), generator=gen())
    assert abs(super_noise.mean()) < 0.05 and abs(super_noise.std() - 1) < 0.05
    assert abs(light_noise.std() - 0.01) < 0.001
    assert torch.equal(make_seed("white", (3, 4, 4), generator=gen()), torch.ones(3, 4, 4))
    assert torch.equal(make_seed("black", (3, 4, 4), generator=gen()), torch.zeros(3, 4, 4))


def test_light_noise_is_super_noise_scaled_down():
    light = make_seed("light-noise", (3, 8, 8), generator=gen(5))
    assert torch.allclose(light, 0.01 * make_seed("super-noise", (3, 8, 8), generator=gen(5)))


def test_a_batch_shares_one_seed_image_held_as_separate_copies():
    seeds = make_seed("super-noise", (4, 3, 8, 8), generator=gen())
    assert seeds.shape == (4, 3, 8, 8)
    assert all(torch.equal(seeds[0], seeds[i]) for i in range(4))
    assert torch.equal(seeds[0], make_seed("super-noise", (3, 8, 8), generator=gen()))
    seeds[0].zero_()
    assert not torch.equal(seeds[0], seeds[1])


def test_the_generator_seed_decides_the_noise():
    def noise(seed):
        return make_seed("super-noise", (3, 8, 8), generator=gen(seed))

    assert torch.equal(noise(1), noise(1))
    assert not torch.equal(noise(1), noise(2))


def test_an_unknown_seed_kind_is_refused_with_the_list():
    with pytest.raises(ValueError, match="Unknown seed kind 'grey'.*super-noise, light-noise, white, black, feather-noise"):
        make_seed("grey", (3, 8, 8), generator=gen())


def test_a_seed_needs_three_colour_channels():
    with pytest.raises(ValueError, match="shape"):
        make_seed("white", (1, 8, 8), generator=gen())
