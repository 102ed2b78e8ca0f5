"""Step rules as small strategy objects (after MadryLab robustness ``attack_steps``).

A rule maps (variable, gradient) to the next variable; ``init`` makes its state.
Every rule treats each image of the batch on its own (the gradient of the summed
loss w.r.t. image b depends only on image b's loss). Projection onto the
constraint set belongs to the parametrisation (params.py), not the rule.
No rule reads values back to the host.

Rounds (Feather et al. 2023, "model metamers"): a run of ``steps`` split into
``rounds`` equal rounds, the step size halved at the start of each new round
(their schedule: 3,000 steps x 8 rounds, i.e. ``steps=24000, step_rounds=8``).
``round_starts`` gives the steps where a round begins; the loop sets the rule's
``step_size`` there (``round_step_size``), one integer compare per step.
"""

from __future__ import annotations

import torch

__all__ = ["NormalizedGradientStep", "AdamStep", "STEPS", "build_step_rule", "round_starts", "round_step_size"]


class NormalizedGradientStep:
    """Unconstrained normalised-gradient descent (the paper's optimiser, default).

    step: x - step_size * g / (||g||_2 + 1e-10), the L2 norm taken per image over
    all its elements, so every image moves exactly ``step_size`` (in L2) per
    step whatever its loss scale. No state.
    """

    name = "normalized_gradient"

    def __init__(self, step_size: float) -> None:
        self.step_size = float(step_size)

    def init(self, variable: torch.Tensor) -> None:
        return None

    def step(self, x: torch.Tensor, grad: torch.Tensor, state: object = None) -> torch.Tensor:
        # The norm over all non-batch dims reads a channels-last gradient in place (flatten(1) would copy it),
        # and addcmul moves x in one pass instead of a multiply and a subtract.
        norm = torch.linalg.vector_norm(grad, dim=tuple(range(1, grad.dim())), keepdim=True)
        return torch.addcmul(x, grad, self.step_size / (norm + 1e-10), value=-1.0)

    def project(self, x: torch.Tensor) -> torch.Tensor:  # kept for older callers: the pixel box
        return x.clamp(0.0, 1.0)


class AdamStep:
    """Adam (Kingma & Ba) with lr = ``step_size``, betas (0.9, 0.999), eps 1e-8.

    Element-wise, so images stay independent. The state is a dict of tensors
    updated in place (no allocation that grows with the number of steps).
    """

    name = "adam"

    def __init__(self, step_size: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.step_size = float(step_size)
        self.beta1, self.beta2 = betas
        self.eps = eps

    def init(self, variable: torch.Tensor) -> dict:
        return {"m": torch.zeros_like(variable), "v": torch.zeros_like(variable), "t": 0}

    def step(self, x: torch.Tensor, grad: torch.Tensor, state: dict) -> torch.Tensor:
        state["t"] += 1
        t = state["t"]
        m, v = state["m"], state["v"]
        m.mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
        v.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        lr = self.step_size / (1 - self.beta1**t)
        denom = (v / (1 - self.beta2**t)).sqrt_().add_(self.eps)
        return x - lr * m / denom


STEPS: dict[str, type] = {
    "normalized_gradient": NormalizedGradientStep,
    "adam": AdamStep,
}


def build_step_rule(name: str, step_size: float):
    if name not in STEPS:
        raise ValueError(f"Unknown step_rule '{name}'. Available: {', '.join(STEPS)}.")
    return STEPS[name](step_size)


def round_starts(steps: int, rounds: int) -> list[int]:
    """The 0-based steps at which rounds 0, 1, ..., rounds-1 begin: round k covers
    ``[k * steps // rounds, (k + 1) * steps // rounds)`` (equal rounds; when ``rounds`` does not divide
    ``steps`` the later rounds are one step longer). ``rounds`` <= 1 is one round starting at 0."""
    rounds = max(1, int(rounds))
    return [k * steps // rounds for k in range(rounds)]


def round_step_size(step_size: float, round_index: int) -> float:
    """The step size used in round ``round_index`` (0-based): halved each round."""
    return float(step_size) * 0.5**round_index
