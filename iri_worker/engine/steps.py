"""Step rules as small strategy objects (after MadryLab robustness ``attack_steps``)."""

from __future__ import annotations

import torch

__all__ = ["NormalizedGradientStep", "STEPS"]


class NormalizedGradientStep:
    """Unconstrained normalised-gradient descent on pixels, projected onto [0, 1].

    step:    x - step_size * g / (||g||_2 + 1e-10), the L2 norm taken per image
             over all its pixels, so every image moves exactly ``step_size``
             (in L2) per step whatever its loss scale (the paper's optimiser).
    project: clip to the box [0, 1]^n.
    Tensors are (B, 3, H, W); no state is kept between steps.
    """

    def __init__(self, step_size: float) -> None:
        self.step_size = float(step_size)

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        norm = grad.flatten(1).norm(dim=1).view(-1, *([1] * (grad.dim() - 1)))
        return x - self.step_size * grad / (norm + 1e-10)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, 1.0)


STEPS: dict[str, type[NormalizedGradientStep]] = {
    "normalized_gradient": NormalizedGradientStep,
}
