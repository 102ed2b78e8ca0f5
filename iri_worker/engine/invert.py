"""The IRI loop: pixel-space descent until g(x) matches g(x_t) (paper section 1.5).

No I/O, no printing: tensors in, tensors out. Progress goes to ``on_step``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .backbones import Backbone, load_backbone
from .losses import Loss, LossContext
from .recipes import build_loss
from .seeds import make_seed
from .spec import InversionSpec
from .steps import STEPS

__all__ = ["InversionResult", "invert"]

OnStep = Callable[[int, torch.Tensor], None]


@dataclass(frozen=True)
class InversionResult:
    """Outcome of ``invert``; all tensors detached, on CPU.

    images:         (B, 3, H, W) float in [0, 1], the lowest-loss iterate per image.
    seeds:          (B, 3, H, W) float, the seed clipped to [0, 1].
    losses:         (B,) the loss of ``images`` (the best loss seen per image).
    initial_losses: (B,) the loss of the seed.
    best_step:      (B,) long, which iterate won: 0 = the seed, k = after k updates
                    (``spec.steps`` = the final iterate).
    """

    images: torch.Tensor
    seeds: torch.Tensor
    losses: torch.Tensor
    initial_losses: torch.Tensor
    best_step: torch.Tensor


def invert(
    spec: InversionSpec,
    targets: torch.Tensor,
    *,
    backbone: Backbone | None = None,
    seeds: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
    on_step: OnStep | None = None,
) -> InversionResult:
    """Optimise one IRI per target image.

    targets: float (B, 3, S, S) in [0, 1], S = ``spec.image_size`` (or the
             backbone's input size when that is None); any device.
    backbone: a loaded ``Backbone``; default ``load_backbone(spec.backbone,
             device=device)``. Work happens on the backbone's device.
    seeds:   (3, S, S) or (B, 3, S, S) starting images, not clipped (the paper
             feeds the raw seed once; the normaliser clamps it). Default: one
             ``spec.seed_kind`` seed from ``spec.rng_seed``, shared by the batch.
    on_step: called as ``on_step(i, losses)`` after step i (0-based), with the
             (B,) losses of the iterate that step evaluated. Exceptions it
             raises propagate (that is how a caller cancels a run).

    Deterministic on CPU for a fixed spec, targets and seeds. The spec is
    trusted here; validate user input with ``InversionSpec.from_dict``.
    """
    if backbone is None:
        backbone = load_backbone(spec.backbone, device=device)
    dev = backbone.device
    layer = spec.layer if spec.layer is not None else backbone.default_layer
    size = spec.image_size if spec.image_size is not None else backbone.input_size

    if not isinstance(targets, torch.Tensor) or targets.dim() != 4 or targets.shape[1:] != (3, size, size):
        shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ValueError(f"targets must be a (B, 3, {size}, {size}) tensor, got {shape}")
    batch = targets.shape[0]
    targets = targets.to(dev, torch.float32)

    if seeds is None:
        # A CPU generator keeps the seed identical whichever device runs the loop.
        generator = torch.Generator().manual_seed(spec.rng_seed)
        seeds = make_seed(spec.seed_kind, (batch, 3, size, size), generator=generator)
    if seeds.dim() == 3:
        seeds = seeds.unsqueeze(0).expand(batch, -1, -1, -1)
    if seeds.shape != targets.shape:
        raise ValueError(
            f"seeds must have shape (3, {size}, {size}) or {tuple(targets.shape)}, got {tuple(seeds.shape)}"
        )
    seeds = seeds.to(dev, torch.float32)

    loss = build_loss(spec.recipe)
    rule = STEPS["normalized_gradient"](spec.step_size)

    with torch.enable_grad():  # also works when the caller sits in torch.no_grad()
        with torch.no_grad():
            target_rep = backbone.features(targets, layer)
        ctx = LossContext(
            x=seeds, backbone=backbone, layer=layer, target_rep=target_rep,
            targets=targets, seeds=seeds.clamp(0, 1),
        )
        return _run(loss, ctx, rule, spec.steps, on_step)


def _run(loss: Loss, ctx: LossContext, rule, steps: int, on_step: OnStep | None) -> InversionResult:
    x = ctx.x.clone()
    batch = x.shape[0]
    best_x = x.clamp(0, 1)
    best_loss = torch.full((batch,), float("inf"), device=x.device)
    best_step = torch.zeros(batch, dtype=torch.long, device=x.device)
    initial: torch.Tensor | None = None

    def keep_best(x_now: torch.Tensor, losses: torch.Tensor, index: int) -> None:
        nonlocal best_x, best_loss
        better = losses < best_loss
        # Store the clipped iterate: the loss is the same (the normaliser clamps)
        # and returned images must lie in [0, 1].
        best_x = torch.where(better.view(-1, 1, 1, 1), x_now.clamp(0, 1), best_x)
        best_loss = torch.where(better, losses, best_loss)
        best_step[better] = index

    for i in range(steps):
        x = x.detach().requires_grad_(True)
        losses = loss(dataclasses.replace(ctx, x=x))
        if losses.shape != (batch,):
            raise RuntimeError(f"loss '{loss}' must return shape ({batch},), got {tuple(losses.shape)}")
        # Gradient of the SUM: image b's gradient depends only on its own loss.
        # autograd.grad w.r.t. x only, so frozen model params never collect .grad.
        (grad,) = torch.autograd.grad(losses.sum(), x)
        with torch.no_grad():
            losses = losses.detach()
            if initial is None:
                initial = losses.clone()
            keep_best(x, losses, i)
            x = rule.project(rule.step(x, grad))
        if on_step is not None:
            on_step(i, losses)

    with torch.no_grad():  # the final iterate competes too
        losses = loss(dataclasses.replace(ctx, x=x))
        keep_best(x, losses, steps)
    if initial is None:  # steps == 0: the seed is the final iterate
        initial = losses.clone()

    return InversionResult(
        images=best_x.detach().cpu(),
        seeds=ctx.seeds.detach().cpu(),
        losses=best_loss.cpu(),
        initial_losses=initial.cpu(),
        best_step=best_step.cpu(),
    )
