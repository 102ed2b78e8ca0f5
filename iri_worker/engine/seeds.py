"""Seed images x0 that the optimisation starts from (paper section 1.6)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["SEED_KINDS", "PHOTO_SEED", "SEED_DRAWS", "PIXEL_SPACE_SEEDS", "make_seed"]

# Values in pixel space, before any clipping (the loop clips after its first step).
_SEEDS: dict[str, Callable[[tuple[int, int, int], torch.Generator], torch.Tensor]] = {
    "super-noise": lambda shape, g: torch.randn(shape, generator=g, device=g.device),
    "light-noise": lambda shape, g: 0.01 * torch.randn(shape, generator=g, device=g.device),
    "white": lambda shape, g: torch.ones(shape, device=g.device),
    "black": lambda shape, g: torch.zeros(shape, device=g.device),
    # Feather et al. 2023 (model metamers): pixels ~ Normal(mean 0.5, sd 0.05), a grey image with faint noise.
    "feather-noise": lambda shape, g: 0.5 + 0.05 * torch.randn(shape, generator=g, device=g.device),
}
SEED_KINDS: tuple[str, ...] = tuple(_SEEDS)
SEED_DRAWS = _SEEDS  # kind -> draw(shape, generator); any shape (the FFT seed is drawn in coefficient space)
# Kinds defined by their pixel statistics: a Fourier parametrisation encodes the pixel image drawn here instead of
# drawing its coefficients from the same law (which would be another image altogether).
PIXEL_SPACE_SEEDS: frozenset[str] = frozenset({"feather-noise"})
# Spec value meaning "the caller passes the seed images" (another target, an uploaded photo).
PHOTO_SEED = "photo"


def make_seed(kind: str, shape: Sequence[int], *, generator: torch.Generator) -> torch.Tensor:
    """One seed image of ``kind``; float32 on the generator's device.

    ``shape`` is (3, H, W) or (B, 3, H, W). For a batch the SAME seed image is
    repeated B times (the paper shares one seed across a run), as a real copy
    so callers may modify it in place.
    """
    if kind == PHOTO_SEED:
        raise ValueError("Seed kind 'photo' has no generated image: pass the seed images to invert(seeds=...).")
    if kind not in _SEEDS:
        raise ValueError(f"Unknown seed kind '{kind}'. Available: {', '.join(SEED_KINDS)}.")
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (3, 4) or shape[-3] != 3:
        raise ValueError(f"seed shape must be (3, H, W) or (B, 3, H, W), got {shape}")
    image = _SEEDS[kind](shape[-3:], generator)
    if len(shape) == 4:
        image = image.unsqueeze(0).expand(shape[0], -1, -1, -1).clone()
    return image
