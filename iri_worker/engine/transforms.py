"""Transformation robustness (Lucid style; paper section 1.3).

Each transform is ``t(x, generator) -> x'`` on a (B, 3, H, W) batch; the random
draw (one per call, shared by the batch) comes from the ``torch.Generator``
passed in (a CPU generator: drawing never syncs with an accelerator), never
from a global RNG. The loop draws once per step and applies the result only
inside the representation term; the stored IRI is never transformed.

Settings (``TRANSFORMS``):
  cifar:    jitter(8) -> random_scale -> random_rotate -> jitter(4)
  imagenet: pad(12, 0.5) -> jitter(8) -> random_scale -> random_rotate -> jitter(4)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "Transform",
    "pad",
    "jitter",
    "random_scale",
    "random_rotate",
    "compose",
    "TRANSFORMS",
    "build_transform",
    "SCALES",
    "ANGLES",
]

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

SCALES: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))  # 0.90, 0.92, ..., 1.10
ANGLES: tuple[int, ...] = (*range(-10, 11), 0, 0, 0, 0, 0)  # degrees; 26 entries, 0 six times


def _choice(options: Sequence, generator: torch.Generator):
    return options[int(torch.randint(len(options), (1,), generator=generator))]


def pad(width: int, value: float = 0.5) -> Transform:
    """Pad every side by ``width`` pixels with the constant ``value`` (no randomness)."""

    def t(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.pad(x, (width, width, width, width), mode="constant", value=value)

    return t


def _shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate right by dx and down by dy (non-negative), zero fill, same size."""
    if dx == 0 and dy == 0:
        return x
    height, width = x.shape[-2:]
    return F.pad(x, (dx, 0, dy, 0))[..., :height, :width]


def jitter(d: int) -> Transform:
    """Translate by (dx, dy), each uniform in {0, ..., d-1}, zero fill (an exact integer shift)."""

    def t(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        dx, dy = (int(v) for v in torch.randint(d, (2,), generator=generator))
        return _shift(x, dx, dy)

    return t


def random_scale(scales: Sequence[float] = SCALES) -> Transform:
    """Bilinear resize (align_corners=True) by a factor from ``scales``; zero-pad back if smaller.

    A factor > 1 grows the image (no crop), as in the paper's code.
    """

    def t(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        factor = _choice(scales, generator)
        height, width = x.shape[-2:]
        new_h, new_w = max(1, round(height * factor)), max(1, round(width * factor))
        if (new_h, new_w) == (height, width):
            return x
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=True)
        if new_h < height or new_w < width:
            ph, pw = max(0, height - new_h), max(0, width - new_w)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return x

    return t


def random_rotate(angles: Sequence[float] = ANGLES) -> Transform:
    """Rotate about the centre by an angle (degrees) from ``angles``; bilinear, zero fill."""

    def t(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        angle = _choice(angles, generator)
        if angle == 0:
            return x
        theta = math.radians(angle)
        cos, sin = math.cos(theta), math.sin(theta)
        matrix = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(matrix.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    return t


def compose(*transforms: Transform) -> Transform:
    """Apply ``transforms`` left to right, each drawing from the same generator."""

    def t(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for transform in transforms:
            x = transform(x, generator)
        return x

    return t


TRANSFORMS: dict[str, Callable[[], Transform]] = {
    "cifar": lambda: compose(jitter(8), random_scale(), random_rotate(), jitter(4)),
    "imagenet": lambda: compose(pad(12, 0.5), jitter(8), random_scale(), random_rotate(), jitter(4)),
}


def build_transform(name: str | None) -> Transform | None:
    """The named setting, or None for ``None`` (no transformation robustness)."""
    if name is None:
        return None
    if name not in TRANSFORMS:
        raise ValueError(f"Unknown transforms '{name}'. Available: {', '.join(TRANSFORMS)} (or null for none).")
    return TRANSFORMS[name]()
