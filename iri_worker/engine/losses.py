"""Composable per-image losses (lucent-style objectives).

A ``Loss`` wraps ``fn(ctx) -> Tensor[B]`` (one value per image; the loop only
reduces it to take the gradient, so each image keeps its own best iterate).
Losses combine with ``+``, ``-``, unary ``-`` and scalar ``*`` / ``/``, and
``str(loss)`` prints the composed recipe, e.g. ``10*rep + 0.0005*tv``.

Terms (``TERMS``; the names recipes use), paper section 1.3 / 1.4:

=========================  ==========================================================
representation_distance    ||g(T(x)) - g(x_t)||_2 / ||g(x_t)||_2 (T: this step's random
                           transform, identity unless transformation robustness is on)
total_variation(beta=2)    (sum_c,i,j (x[i+1,j]-x[i,j])^2 + (x[i,j+1]-x[i,j])^2)^(beta/2)
blur                       0.5 * ||x - stopgrad(blur3x3(x))||^2, edge-renormalised kernel
l1(center=0.5)             sum |x - center|
lp(p=6)                    ||flatten(x)||_p
perceptual_distance        D(x, reference), D = 1 - MS-SSIM / 1 - SSIM / LPIPS (proxy.py),
  (metric, reference)      reference "target" or "seed" (the clipped seed)
adversarial                rep - c*D(x, x_t)  (reference "target": push away from it) or
  (metric, reference, c)   rep + c*D(x, x_0)  (reference "seed": stay close to it);
                           c a number or "adaptive" = mean(rep)/mean(D) on the first
                           evaluation of the run, then frozen (reported in the result)
=========================  ==========================================================

Regularisers act on the image in [0, 1] as the loop sees it (the decoded image
for the Fourier parametrisation), never on the normalised or transformed one.
D is never computed with the inverted network (that would be circular).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .backbones import Backbone
from .proxy import PROXY_METRICS, perceptual_distance as _distance

__all__ = [
    "LossContext",
    "Loss",
    "representation_distance",
    "total_variation",
    "blur",
    "l1",
    "lp",
    "perceptual",
    "adversarial",
    "TERMS",
]


@dataclass(frozen=True)
class LossContext:
    """What a loss may look at during one step.

    ``x``: current images (B, 3, H, W), in [0, 1] except the unclipped seed at
    step 0 (the backbone's normaliser clamps it). ``target_rep``: g(x_t), detached,
    (B, D) or, as the loop stores it, the layer's own output shape (B, ...).
    ``targets`` / ``seeds``: the target and clipped seed images.
    ``transform``: this step's random transform (applied only inside the
    representation term), or None. ``amp``: run the backbone under bf16
    autocast. ``channels_last``: feed the backbone channels-last tensors.
    ``state``: per-run scratch dict shared by every step of one run (the
    adaptive adversarial weight lives here); the loop reads it at the end.
    ``in_box``: ``x`` is known to lie in [0, 1] (the normaliser then skips its
    clamp). ``target_norm``: ||g(x_t)||_2 per image, computed once per run.
    """

    x: torch.Tensor
    backbone: Backbone
    layer: str
    target_rep: torch.Tensor
    targets: torch.Tensor | None = None
    seeds: torch.Tensor | None = None
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    amp: bool = False
    channels_last: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    in_box: bool = False
    target_norm: torch.Tensor | None = None

    def representation(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """g(T(x)) as float32 (B, D): transform, layout, autocast as configured."""
        return self.layer_output(x).flatten(1)

    def layer_output(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """g(T(x)) as float32 in the layer's own shape (B, ...) and memory layout: what the loop compares,
        without the copy that flattening a channels-last output costs forward and backward."""
        # A transform's interpolation may round just past 1, so only the untransformed iterate skips the clamp.
        in_box = x is None and self.in_box and self.transform is None
        x = self.x if x is None else x
        if self.transform is not None:
            x = self.transform(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.amp:  # entering even a disabled autocast costs a few microseconds per step
            return self.backbone.features(x, self.layer, in_box=in_box, flat=False).float()
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.backbone.features(x, self.layer, in_box=in_box, flat=False).float()


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


def _per_image_norm(values: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(values, dim=tuple(range(1, values.dim())))


def target_norm(target: torch.Tensor) -> torch.Tensor:
    """||g(x_t)||_2 per image, the relative gap's denominator (clamp_min only guards an all-zero target
    representation against 0/0)."""
    return _per_image_norm(target.detach().float()).clamp_min(1e-12)


def _relative_gap(rep: torch.Tensor, target: torch.Tensor, norm: torch.Tensor | None = None) -> torch.Tensor:
    """||rep - target|| / ||target|| per image, the norms over every non-batch dim (any shape, same for both)."""
    target = target.detach().float()
    return _per_image_norm(rep - target) / (target_norm(target) if norm is None else norm)


def _rep_term(ctx: LossContext) -> torch.Tensor:
    rep, target = ctx.layer_output(), ctx.target_rep
    if rep.shape != target.shape:  # a caller's flat (B, D) target
        rep, target = rep.flatten(1), target.flatten(1)
        if rep.shape != target.shape:
            raise ValueError(
                f"Layer '{ctx.layer}' gives {rep.shape[1]} values per image here but {target.shape[1]} for the "
                "target: a transform that changes the image size (the 'imagenet' transforms pad it by 12 px) needs a "
                "pooled layer (the backbone's default) or transforms null."
            )
    return _relative_gap(rep, target, ctx.target_norm)


def representation_distance() -> Loss:
    """||g(x) - g(x_t)||_2 / ||g(x_t)||_2 per image (the paper's reg-free loss)."""
    return Loss(_rep_term, "rep")


def total_variation(beta: float = 2.0) -> Loss:
    """Total variation per image, summed over channels, to the power beta/2 (paper 1.3)."""
    beta = _positive(beta, "total_variation", "beta")

    def fn(ctx: LossContext) -> torch.Tensor:
        x = ctx.x.float()
        dh = (x[..., 1:, :] - x[..., :-1, :]).pow(2).sum(dim=(1, 2, 3))
        dw = (x[..., :, 1:] - x[..., :, :-1]).pow(2).sum(dim=(1, 2, 3))
        total = dh + dw
        return total if beta == 2 else total.clamp_min(1e-12).pow(beta / 2)

    return Loss(fn, "tv" if beta == 2 else f"tv[beta={_fmt(beta)}]")


_BLUR_KERNEL = torch.tensor([[0.5, 0.5, 0.5], [0.5, 1.0, 0.5], [0.5, 0.5, 0.5]])


def _blur3x3(x: torch.Tensor) -> torch.Tensor:
    """Per-channel 3x3 blur (centre 1, neighbours 0.5), "same" padding, edge-renormalised."""
    channels = x.shape[1]
    kernel = _BLUR_KERNEL.to(x.device, x.dtype).expand(channels, 1, 3, 3)
    blurred = F.conv2d(x, kernel, padding=1, groups=channels)
    ones = torch.ones_like(x[:1, :1]).expand(1, channels, *x.shape[2:])
    return blurred / F.conv2d(ones, kernel, padding=1, groups=channels)


def blur() -> Loss:
    """0.5 * ||x - stopgrad(blur(x))||_2^2 per image: pulls x towards its own blur."""

    def fn(ctx: LossContext) -> torch.Tensor:
        x = ctx.x.float()
        with torch.no_grad():
            smooth = _blur3x3(x)
        return 0.5 * (x - smooth).pow(2).sum(dim=(1, 2, 3))

    return Loss(fn, "blur")


def l1(center: float = 0.5) -> Loss:
    """sum |x - center| per image (sparsity around mid-grey)."""
    center = float(_number(center, "l1", "center"))
    return Loss(lambda ctx: (ctx.x.float() - center).abs().sum(dim=(1, 2, 3)), "l1")


def lp(p: float = 6.0) -> Loss:
    """||flatten(x)||_p per image (Mahendran & Vedaldi's bounded-range prior, p = 6)."""
    p = _positive(p, "lp", "p")
    return Loss(lambda ctx: ctx.x.float().flatten(1).norm(p=p, dim=1), f"l{_fmt(p)}")


def _reference(ctx: LossContext, reference: str) -> torch.Tensor:
    image = ctx.targets if reference == "target" else ctx.seeds
    if image is None:
        raise RuntimeError(f"this loss compares with the {reference} image, but the context has none")
    return image


def _check_perceptual(term: str, metric: object, reference: object) -> None:
    if metric not in PROXY_METRICS:
        raise ValueError(f"{term}: unknown metric {metric!r}. Available: {', '.join(PROXY_METRICS)}.")
    if reference not in ("target", "seed"):
        raise ValueError(f"{term}: reference must be 'target' or 'seed', got {reference!r}.")


def perceptual(metric: str = "ms_ssim", reference: str = "target") -> Loss:
    """D(x, reference) per image; weight it negatively to push away from the reference."""
    _check_perceptual("perceptual_distance", metric, reference)
    return Loss(lambda ctx: _distance(ctx.x.float(), _reference(ctx, reference), metric), f"d_{metric}[{reference}]")


def adversarial(metric: str = "ms_ssim", reference: str = "target", c: float | str = "adaptive") -> Loss:
    """The adversarial regulariser (paper 1.4): rep -/+ c * D(x, reference).

    reference "target": rep - c * D(x, x_t) (match the representation while
    looking unlike the target); "seed": rep + c * D(x, x_0) (while still looking
    like the seed). ``c="adaptive"``: c = mean(rep) / mean(D) over the batch at
    the run's first evaluation, then frozen for the rest of the run; the value
    used is reported as ``InversionResult.adversarial_c``. To reuse one c across
    several runs (a job's later chunks), pass the reported number as ``c``.
    """
    _check_perceptual("adversarial", metric, reference)
    if c != "adaptive":
        c = _positive(c, "adversarial", "c")
    sign = -1.0 if reference == "target" else 1.0

    def fn(ctx: LossContext) -> torch.Tensor:
        rep = _rep_term(ctx)
        d = _distance(ctx.x.float(), _reference(ctx, reference), metric)
        weight = c
        if c == "adaptive":
            weight = ctx.state.get("adversarial_c")
            if weight is None:  # first evaluation of this run: measure, then freeze
                weight = (rep.detach().mean() / d.detach().mean().clamp_min(1e-12)).detach()
                ctx.state["adversarial_c"] = weight
        else:
            ctx.state.setdefault("adversarial_c", float(c))
        return rep + sign * weight * d

    op = "-" if sign < 0 else "+"
    return Loss(fn, f"rep {op} {c if c == 'adaptive' else _fmt(c)}*d_{metric}[{reference}]", compound=True)


def _number(value: object, term: str, name: str) -> float:
    if not _is_scalar(value):
        raise ValueError(f"{term}: {name} must be a number, got {value!r}.")
    return float(value)


def _positive(value: object, term: str, name: str) -> float:
    number = _number(value, term, name)
    if not number > 0 or number == float("inf"):
        raise ValueError(f"{term}: {name} must be a finite number > 0, got {value!r}.")
    return number


# Term name (as written in recipes) -> factory(**params). Recipes are data; this maps them to code.
TERMS: dict[str, Callable[..., Loss]] = {
    "representation_distance": representation_distance,
    "total_variation": total_variation,
    "blur": blur,
    "l1": l1,
    "lp": lp,
    "perceptual_distance": perceptual,
    "adversarial": adversarial,
}
