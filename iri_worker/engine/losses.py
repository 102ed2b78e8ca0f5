"""Composable per-image losses (lucent-style objectives).

A ``Loss`` wraps ``fn(ctx) -> Tensor[B]`` (one value per image; the loop only
reduces it to take the gradient, so each image keeps its own best iterate).
Losses combine with ``+``, ``-``, unary ``-`` and scalar ``*`` / ``/``, and
``str(loss)`` prints the composed recipe, e.g. ``10*rep + 0.0005*tv``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .backbones import Backbone

__all__ = ["LossContext", "Loss", "representation_distance", "TERMS"]


@dataclass(frozen=True)
class LossContext:
    """What a loss may look at during one step.

    ``x``: current images (B, 3, H, W), in [0, 1] except the unclipped seed at
    step 0 (the backbone's normaliser clamps it). ``target_rep``: g(x_t), (B, D),
    detached. ``targets`` / ``seeds``: the target and clipped seed images, for
    terms that compare images (later: perceptual push-away / stay-close).
    """

    x: torch.Tensor
    backbone: Backbone
    layer: str
    target_rep: torch.Tensor
    targets: torch.Tensor | None = None
    seeds: torch.Tensor | None = None


LossFn = Callable[[LossContext], torch.Tensor]


def _is_scalar(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fmt(value: float) -> str:
    return format(float(value), "g")


class Loss:
    """A named per-image loss; see the module docstring for the algebra."""

    __slots__ = ("fn", "name", "_compound")

    def __init__(self, fn: LossFn, name: str, *, compound: bool = False) -> None:
        self.fn = fn
        self.name = name
        self._compound = compound  # needs parentheses when multiplied or subtracted

    def __call__(self, ctx: LossContext) -> torch.Tensor:
        return self.fn(ctx)

    def _wrapped(self) -> str:
        return f"({self.name})" if self._compound else self.name

    def named(self, name: str) -> Loss:
        """The same loss under another display name (e.g. its recipe name)."""
        return Loss(self.fn, name)

    def __add__(self, other: object) -> Loss:
        if not isinstance(other, Loss):
            return NotImplemented
        return Loss(lambda c: self(c) + other(c), f"{self.name} + {other.name}", compound=True)

    def __radd__(self, other: object) -> Loss:
        if _is_scalar(other) and other == 0:  # lets builtin sum([...]) work
            return self
        return NotImplemented

    def __sub__(self, other: object) -> Loss:
        if not isinstance(other, Loss):
            return NotImplemented
        return Loss(lambda c: self(c) - other(c), f"{self.name} - {other._wrapped()}", compound=True)

    def __neg__(self) -> Loss:
        return Loss(lambda c: -self(c), f"-{self._wrapped()}", compound=True)

    def __mul__(self, k: object) -> Loss:
        if not _is_scalar(k):  # Loss * Loss is meaningless here -> TypeError
            return NotImplemented
        return Loss(lambda c: k * self(c), f"{_fmt(k)}*{self._wrapped()}")

    __rmul__ = __mul__

    def __truediv__(self, k: object) -> Loss:
        if not _is_scalar(k):
            return NotImplemented
        if k == 0:
            raise ZeroDivisionError("cannot divide a Loss by zero")
        return Loss(lambda c: self(c) / k, f"{self._wrapped()}/{_fmt(k)}")

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"Loss({self.name!r})"


def representation_distance() -> Loss:
    """||g(x) - g(x_t)||_2 / ||g(x_t)||_2 per image (the paper's reg-free loss)."""

    def fn(ctx: LossContext) -> torch.Tensor:
        rep = ctx.backbone.features(ctx.x, ctx.layer)
        target = ctx.target_rep.detach()
        # clamp_min only guards an all-zero target representation against 0/0
        return (rep - target).norm(dim=1) / target.norm(dim=1).clamp_min(1e-12)

    return Loss(fn, "rep")


# Term name (as written in recipes) -> factory. Recipes are data; this maps them to code.
TERMS: dict[str, Callable[[], Loss]] = {
    "representation_distance": representation_distance,
}
