"""Parametrisations: what the optimiser moves, and how that becomes an image.

``pixel`` (default): the variable is the image itself; projected onto [0, 1]
after every step (the paper's box constraint).

``fft`` (Lucid ``fft_image`` with decorrelated colour, paper section 1.3): the
variable is the real/imaginary spectrum, shape (B, 3, H, W//2+1, 2), and

    image = sigmoid( C @ ( irfft2( s * coeff, norm="ortho", size=(H, W) ) / 4 ) )

with s(f) = 1 / max(|f|, 1/max(H, W)) (decay power 1) and C Lucid's colour
matrix divided by its largest column norm, applied per pixel. The sigmoid keeps
the image in (0, 1), so the coefficients are NOT clamped (the authors' code
clamps them to [0, 1] after every step: a bug we do not copy). Seeds of the
paper's four kinds are drawn in coefficient space, a pixel-space kind
(``feather-noise``) is drawn as pixels and encoded; a photo seed is encoded exactly
(up to the sigmoid's open interval) by inverting the map.
"""

from __future__ import annotations

import torch

from .seeds import PIXEL_SPACE_SEEDS, SEED_DRAWS

__all__ = ["Parametrization", "PixelParam", "FFTParam", "PARAMS", "build_param"]

_COLOR = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_DECORRELATION = _COLOR / _COLOR.norm(dim=0).max()


class Parametrization:
    """Interface: ``init`` builds the variable, ``to_image`` decodes, ``project`` constrains."""

    name = "abstract"

    def seed_variable(self, kind: str, batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to_image(self, variable: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def project(self, variable: torch.Tensor) -> torch.Tensor:
        return variable

    def image_in_box(self, *, projected: bool) -> bool:
        """Whether ``to_image`` of the variable surely lies in [0, 1] (``projected``: the variable has been
        through ``project``), so the normaliser's clamp is the identity and can be skipped."""
        return False


class PixelParam(Parametrization):
    name = "pixel"

    def seed_variable(self, kind, batch, size, generator):
        image = SEED_DRAWS[kind]((3, size, size), generator)
        return image.unsqueeze(0).expand(batch, -1, -1, -1).clone()

    def encode(self, images):
        return images.clone()

    def to_image(self, variable):
        return variable

    def project(self, variable):
        return variable.clamp(0.0, 1.0)

    def image_in_box(self, *, projected):
        return projected  # the seed is fed unclipped once; every later iterate went through the clamp


class FFTParam(Parametrization):
    name = "fft"

    def __init__(self) -> None:
        self._scales: dict[tuple, torch.Tensor] = {}

    def _scale(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        key = (height, width, str(device))
        if key not in self._scales:
            fy = torch.fft.fftfreq(height).view(-1, 1)
            fx = torch.fft.rfftfreq(width).view(1, -1)
            freqs = (fx * fx + fy * fy).sqrt()
            scale = 1.0 / freqs.clamp_min(1.0 / max(height, width))
            self._scales[key] = scale.view(1, 1, height, width // 2 + 1, 1).to(device)
        return self._scales[key]

    def seed_variable(self, kind, batch, size, generator):
        if kind in PIXEL_SPACE_SEEDS:  # e.g. feather-noise: the law is about pixels, so encode a pixel draw
            image = SEED_DRAWS[kind]((3, size, size), generator)
            return self.encode(image.unsqueeze(0)).expand(batch, -1, -1, -1, -1).clone()
        coeff = SEED_DRAWS[kind]((3, size, size // 2 + 1, 2), generator)
        return coeff.unsqueeze(0).expand(batch, -1, -1, -1, -1).clone()

    def to_image(self, variable):
        height = width = variable.shape[2]  # images are square
        spectrum = torch.view_as_complex((self._scale(height, width, variable.device) * variable).contiguous())
        spatial = torch.fft.irfft2(spectrum, s=(height, width), norm="ortho") / 4.0
        color = COLOR_DECORRELATION.to(variable.device, spatial.dtype)
        mixed = torch.einsum("ij,bjhw->bihw", color, spatial)
        return torch.sigmoid(mixed)

    def image_in_box(self, *, projected):
        return True  # a sigmoid

    def encode(self, images):
        """Coefficients whose image is ``images`` (clamped into (0, 1) first)."""
        height, width = images.shape[-2:]
        y = torch.logit(images.float().clamp(1e-4, 1 - 1e-4))
        spatial = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(COLOR_DECORRELATION).to(y.device), y) * 4.0
        spectrum = torch.view_as_real(torch.fft.rfft2(spatial, norm="ortho"))
        return spectrum / self._scale(height, width, y.device)


PARAMS: dict[str, type[Parametrization]] = {"pixel": PixelParam, "fft": FFTParam}


def build_param(name: str) -> Parametrization:
    if name not in PARAMS:
        raise ValueError(f"Unknown param '{name}'. Available: {', '.join(PARAMS)}.")
    return PARAMS[name]()
