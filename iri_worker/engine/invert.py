"""The IRI loop: descend until g(x) matches g(x_t) (paper section 1.5).

No I/O, no printing: tensors in, tensors out. Progress goes to ``on_step``.
The loop never reads a value back to the host per step (no ``.item()``, no
boolean indexing): keep-best, the per-image step, NaN and early-stop masks are
all tensor ops; only with ``stop_loss`` set does it check "all stopped?" once
every ``STOP_CHECK_EVERY`` steps. Buffers are allocated once per run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .backbones import Backbone, load_backbone
from .layout import layout_calibrate, layout_named
from .losses import Loss, LossContext, target_norm
from .params import Parametrization, build_param
from .precision import PrecisionCalibration, precision_calibrate, precision_check, precision_named
from .recipes import build_loss, recipe_has_adaptive_c
from .seeds import PHOTO_SEED
from .spec import InversionSpec
from .steps import build_step_rule, round_starts, round_step_size
from .transforms import build_transform

__all__ = ["InversionResult", "invert", "measure_adaptive_c", "STOP_CHECK_EVERY"]

OnStep = Callable[[int, torch.Tensor], None]
STOP_CHECK_EVERY = 16


@dataclass(frozen=True)
class InversionResult:
    """Outcome of ``invert``; all tensors detached, on CPU.

    images:         (B, 3, H, W) float in [0, 1], the lowest-loss iterate per image.
    seeds:          (B, 3, H, W) float in [0, 1], the image each run started from
                    (the clipped seed; for ``param="fft"`` the decoded seed).
    losses:         (B,) the loss of ``images`` (the best loss seen per image).
    initial_losses: (B,) the loss of the seed.
    best_step:      (B,) long, which iterate won: 0 = the seed, k = after k updates.
    nan_mask:       (B,) bool, True where the loss became NaN/inf; that image stopped
                    there and keeps its best finite iterate (its seed if none).
    stopped:        (B,) bool, True where the loss reached ``spec.stop_loss``.
    steps_run:      updates performed (< spec.steps when every image stopped early).
    adversarial_c:  the weight c the adversarial term used (measured on the first
                    evaluation when adaptive), else None. Record it with the job.
    layout_calibration: the memory layout the run used and why (``LayoutCalibration.to_dict``:
                    layout, source, ms per step of each layout timed, timed steps, cached,
                    cost in ms). Record it with the job.
    precision_calibration: the precision the run used and why (``PrecisionCalibration.to_dict``:
                    precision, source, reason, ms per step of each, final losses and their relative
                    difference, cached, cost in ms). Record it with the job.
    """

    images: torch.Tensor
    seeds: torch.Tensor
    losses: torch.Tensor
    initial_losses: torch.Tensor
    best_step: torch.Tensor
    nan_mask: torch.Tensor | None = None
    stopped: torch.Tensor | None = None
    steps_run: int = 0
    adversarial_c: float | None = None
    layout_calibration: dict | None = None
    precision_calibration: dict | None = None


def _check_images(name: str, images: object, size: int, batch: int | None = None) -> torch.Tensor:
    want = f"(B, 3, {size}, {size})" if batch is None else f"(3, {size}, {size}) or ({batch}, 3, {size}, {size})"
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a {want} float tensor, got {type(images).__name__}")
    if batch is not None and images.dim() == 3:
        images = images.unsqueeze(0).expand(batch, -1, -1, -1)
    if images.dim() != 4 or images.shape[1:] != (3, size, size) or (batch is not None and images.shape[0] != batch):
        hint = " (convert photos with photo_to_tensor, which makes RGB and resizes)" if images.dim() in (3, 4) else ""
        raise ValueError(f"{name} must be a {want} tensor, got {tuple(images.shape)}{hint}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be floating point in [0, 1], got {images.dtype}")
    if images.numel() and not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} contain NaN or infinite values")
    return images


def _start_variable(spec: InversionSpec, param: Parametrization, seeds: torch.Tensor | None, *, batch: int,
                    size: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """The optimised variable at step 0: the given seed images encoded, else a ``spec.seed_kind`` seed drawn."""
    if seeds is not None:
        return param.encode(_check_images("seeds", seeds, size, batch).to(device, torch.float32))
    if spec.seed_kind == PHOTO_SEED:
        raise ValueError("seed_kind 'photo' needs the seed images: pass seeds=(B, 3, S, S) or (3, S, S).")
    return param.seed_variable(spec.seed_kind, batch, size, generator).to(device)


def _layout(spec: InversionSpec, backbone: Backbone, *, layer: str, targets: torch.Tensor):
    """The memory layout of the run: the spec's, else the faster of the two timed on this batch and layer (cached
    per process), since which one is faster depends on the CPU."""
    if spec.channels_last and not backbone.supports_channels_last:
        raise ValueError(f"channels_last: backbone '{backbone.name}' runs only the NCHW layout; "
                         "set channels_last to false or null.")
    if spec.channels_last is not None:
        return layout_named(spec.channels_last)
    return layout_calibrate(backbone=backbone, layer=layer, images=targets, amp=spec.precision == "bf16")


def _loss_case(spec: InversionSpec) -> str:
    """What shapes the loss the precision calibration compares, besides the backbone, layer and batch shape: part of
    its cache key, so a job with another recipe or step rule is measured anew."""
    # recipe, not recipe_terms: a job's chunks run its recipe with the adaptive c frozen, as measured on its first
    # batch by a probe run that calibrates the same case
    fields = ("recipe", "param", "transforms", "step_rule", "step_size", "fake_relu", "seed_kind",
              "checkpoint_sha256", "weights_path")
    return json.dumps({name: getattr(spec, name) for name in fields}, sort_keys=True, default=str)


def _precision(spec: InversionSpec, backbone: Backbone, *, layer: str, targets: torch.Tensor, channels_last: bool,
               final_loss) -> PrecisionCalibration:
    """The precision of the run: the spec's ("fp32", "bf16"), or for "auto" bf16 where it is faster on this host
    with the same loss, measured on this batch in the run's layout (cached per process)."""
    if spec.precision != "auto":
        return precision_named(spec.precision)
    return precision_calibrate(backbone=backbone, layer=layer, images=targets, channels_last=channels_last,
                               final_loss=final_loss, case=_loss_case(spec))


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
             backbone's input size when that is None); any device. Anything
             else is refused with a ``ValueError`` that says why.
    backbone: a loaded ``Backbone``; default ``load_backbone(spec.backbone,
             weights_path=spec.weights_path, device=device)``. Work happens on
             the backbone's device (``device="cuda"`` for a GPU).
    seeds:   (3, S, S) or (B, 3, S, S) starting images (any photo: another
             target, an upload), not clipped (the paper feeds the raw seed once;
             the normaliser clamps it). Required when ``spec.seed_kind ==
             "photo"``. Default: one ``spec.seed_kind`` seed drawn from
             ``spec.rng_seed``, shared by the batch (in coefficient space for
             ``param="fft"``).
    on_step: called as ``on_step(i, losses)`` after step i (0-based), with the
             (B,) loss tensor (on the device) of the iterate that step
             evaluated. Exceptions it raises propagate (that is how a caller
             cancels a run).

    Deterministic on CPU for a fixed spec, targets and seeds (the random
    transforms draw from a generator seeded by ``spec.rng_seed``). The spec is
    trusted here; validate user input with ``InversionSpec.from_dict``.
    """
    if backbone is None:
        backbone = load_backbone(spec.backbone, weights_path=spec.weights_path, device=device)
    if spec.checkpoint_sha256 and backbone.checkpoint_sha256 and spec.checkpoint_sha256 != backbone.checkpoint_sha256:
        raise ValueError("The backbone's checkpoint does not match spec.checkpoint_sha256; refusing to run.")
    dev = backbone.device
    precision_check(spec.precision, dev.type)  # a worker that cannot run the named precision says so at once
    layer = spec.layer if spec.layer is not None else backbone.default_layer
    size = spec.image_size if spec.image_size is not None else backbone.input_size
    backbone.check_size(size)
    if spec.transforms is not None and backbone.fixed_size:
        raise ValueError(f"Backbone '{backbone.name}' accepts one input size only; transforms must be null.")

    targets = _check_images("targets", targets, size)
    batch = targets.shape[0]
    targets = targets.to(dev, torch.float32)
    generator = torch.Generator().manual_seed(spec.rng_seed)  # CPU: same draws on every device
    param = build_param(spec.param)
    variable = _start_variable(spec, param, seeds, batch=batch, size=size, generator=generator, device=dev)
    calibration = _layout(spec, backbone, layer=layer, targets=targets)
    channels_last = calibration.channels_last
    if channels_last and spec.param == "pixel":
        variable = variable.contiguous(memory_format=torch.channels_last)
    backbone.set_channels_last(channels_last)
    backbone.set_fake_relu(spec.fake_relu)
    try:
        # BatchNorms folded into their convolutions: same function, fewer passes per step.
        with backbone.batchnorm_folded(keep_layer=layer), torch.enable_grad():
            result, precision = _optimise(spec, backbone, layer=layer, targets=targets, param=param,
                                          variable=variable, channels_last=channels_last, generator=generator,
                                          on_step=on_step)
            return dataclasses.replace(result, layout_calibration=calibration.to_dict(),
                                       precision_calibration=precision.to_dict())
    finally:
        backbone.set_fake_relu(False)  # the cached backbone is shared: leave it plain


def _optimise(spec: InversionSpec, backbone: Backbone, *, layer: str, targets: torch.Tensor,
              param: Parametrization, variable: torch.Tensor, channels_last: bool, generator: torch.Generator,
              on_step: OnStep | None) -> tuple[InversionResult, PrecisionCalibration]:
    """The run in its precision (``_precision``), inside the folded block with the layout set. A precision
    calibration's loss check runs the same loop from the same start for a few steps in each precision, with its own
    step rule state, loss state and generator, so the run itself is the one it would have been without it."""
    transform = build_transform(spec.transforms)
    loss = build_loss(spec.recipe_terms if spec.recipe_terms is not None else spec.recipe)
    with torch.no_grad():
        start_image = param.to_image(variable).clamp(0, 1)

    def context(amp: bool) -> LossContext:
        base = LossContext(x=targets, backbone=backbone, layer=layer, target_rep=targets.new_zeros(0), amp=amp,
                           channels_last=channels_last)
        with torch.no_grad():
            target_rep = base.layer_output(targets).detach()  # compared in the layer's own shape
        return dataclasses.replace(base, target_rep=target_rep, target_norm=target_norm(target_rep),
                                   targets=targets, seeds=start_image)

    def final_loss(amp: bool, steps: int) -> float:
        trial = dataclasses.replace(spec, steps=steps, stop_loss=None, step_rounds=1)
        result = _run(loss, context(amp), param, build_step_rule(spec.step_rule, spec.step_size), variable.clone(),
                      trial, transform, torch.Generator().manual_seed(spec.rng_seed), None)
        return float(result.losses.mean())

    precision = _precision(spec, backbone, layer=layer, targets=targets, channels_last=channels_last,
                           final_loss=final_loss)
    rule = build_step_rule(spec.step_rule, spec.step_size)
    result = _run(loss, context(precision.amp), param, rule, variable, spec, transform, generator, on_step)
    return result, precision


def measure_adaptive_c(
    spec: InversionSpec,
    targets: torch.Tensor,
    *,
    backbone: Backbone | None = None,
    seeds: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
) -> float | None:
    """The adaptive weight c that ``invert(spec, targets, ...)`` measures at its first step, without the loop.

    One evaluation of the loss at the seed, drawing the first step's random transform exactly as step 0
    of the run does (no update, no gradient), so the value equals that run's ``adversarial_c``. None
    when the recipe has no adaptive c. A job split into chunks measures c once, on its first batch, and
    runs every chunk with ``with_adversarial_c(recipe, c)`` (the paper: "measured on the first batch at
    the first step, then frozen for all later batches").
    """
    recipe = spec.recipe_terms if spec.recipe_terms is not None else spec.recipe
    if not recipe_has_adaptive_c(recipe):
        return None
    # steps=0: the loop does not run; the one evaluation of the final iterate is the seed's, with the
    # generator's first transform draw, which is what step 0 of a full run evaluates.
    probe = dataclasses.replace(spec, steps=0, stop_loss=None)
    return invert(probe, targets, backbone=backbone, seeds=seeds, device=device).adversarial_c


class _Best:
    """The best iterate per image so far, as tensor ops (no host read): the lowest loss among the iterates seen
    while the image was active; NaN never wins, nor an iterate after the image stopped (not its own any more)."""

    def __init__(self, seeds: torch.Tensor):
        batch = seeds.shape[0]
        self.x = seeds.clone()
        self.loss = torch.full((batch,), math.inf, device=seeds.device)
        self.step = torch.zeros(batch, dtype=torch.long, device=seeds.device)
        self.image_view = (batch, 1, 1, 1)

    def keep(self, image: torch.Tensor, losses: torch.Tensor, index: int, in_box: bool, active: torch.Tensor):
        better = (losses < self.loss) & active
        # Store the clipped image: the loss is the same (the normaliser clamps) and returned images must lie
        # in [0, 1]; an iterate known to be in the box needs no clipping.
        clipped = image.detach() if in_box else image.detach().clamp(0, 1)
        self.x = torch.where(better.view(self.image_view), clipped, self.x)
        self.loss = torch.where(better, losses, self.loss)
        self.step = torch.where(better, index, self.step)


def _context_maker(ctx: LossContext, transform, generator: torch.Generator):
    """The loss context of one step's image: one random transform draw per step, shared by every term that looks
    through the transform."""
    def context(x: torch.Tensor, in_box: bool) -> LossContext:
        if transform is None:
            return dataclasses.replace(ctx, x=x, in_box=in_box)
        step_seed = int(torch.randint(2**62, (1,), generator=generator))
        return dataclasses.replace(
            ctx, x=x, in_box=in_box, transform=lambda img: transform(img, torch.Generator().manual_seed(step_seed))
        )
    return context


def _run(loss: Loss, ctx: LossContext, param: Parametrization, rule, variable: torch.Tensor,
         spec: InversionSpec, transform, generator: torch.Generator, on_step: OnStep | None) -> InversionResult:
    batch = variable.shape[0]
    view = (1,) * (variable.dim() - 1)
    best = _Best(ctx.seeds)
    active = torch.ones(batch, dtype=torch.bool, device=variable.device)
    stopped = torch.zeros(batch, dtype=torch.bool, device=variable.device)
    stop_loss = spec.stop_loss
    state = rule.init(variable)
    initial: torch.Tensor | None = None
    context = _context_maker(ctx, transform, generator)
    # The step-size schedule (spec.step_rounds): halved at each round start after the first; a dict lookup per
    # step, nothing read from the device.
    round_at = {start: k for k, start in enumerate(round_starts(spec.steps, spec.step_rounds)[1:], start=1)}
    steps_run = 0
    for i in range(spec.steps):
        if i in round_at:
            rule.step_size = round_step_size(spec.step_size, round_at[i])
        in_box = param.image_in_box(projected=i > 0)
        variable = variable.detach().requires_grad_(True)
        image = param.to_image(variable)
        losses = loss(context(image, in_box))
        if losses.shape != (batch,):
            raise RuntimeError(f"loss '{loss}' must return shape ({batch},), got {tuple(losses.shape)}")
        # Gradient of the SUM: image b's gradient depends only on its own loss.
        # autograd.grad w.r.t. the variable only: frozen model params never collect .grad.
        (grad,) = torch.autograd.grad(losses.sum(), variable)
        with torch.no_grad():
            losses = losses.detach().float()
            if initial is None:
                initial = losses.clone()
            best.keep(image, losses, i, in_box, active)
            active &= torch.isfinite(losses)  # a NaN/inf loss stops that image (nan_mask below)
            stepped = rule.step(variable, grad, state)
            if stop_loss is not None:
                reached = active & (losses <= stop_loss)
                stopped |= reached
                active &= ~reached
                # A stopped image keeps its pixels (its loss stays put in on_step). Without stop_loss only a
                # NaN stops an image, and keep ignores it from then on, so the loop saves this pass.
                stepped = torch.where(active.view(batch, *view), stepped, variable)
            # Projected after the freeze, so every iterate after the first is in the box (see image_in_box).
            variable = param.project(stepped)
        steps_run = i + 1
        if on_step is not None:
            on_step(i, losses)
        if stop_loss is not None and steps_run % STOP_CHECK_EVERY == 0 and not bool(active.any()):
            break  # one host read every STOP_CHECK_EVERY steps, only when early stop is on
    return _result_with_final_iterate(loss, ctx, param, context, variable, best, active=active, stopped=stopped,
                                      initial=initial, steps_run=steps_run, stop_loss=stop_loss)


def _result_with_final_iterate(loss: Loss, ctx: LossContext, param: Parametrization, context, variable, best: _Best,
                               *, active, stopped, initial, steps_run: int, stop_loss) -> InversionResult:
    """The final iterate competes too; then the result (NaN mask: inactive for a non-finite loss, not the stop)."""
    nan_mask = ~active & ~stopped
    with torch.no_grad():
        in_box = param.image_in_box(projected=steps_run > 0)
        image = param.to_image(variable)
        losses = loss(context(image, in_box)).float()
        best.keep(image, losses, steps_run, in_box, active)
        if initial is None:  # steps == 0: the seed is the final iterate
            initial = losses.clone()
            nan_mask |= ~torch.isfinite(losses)
        if stop_loss is not None:
            stopped |= ~nan_mask & (best.loss <= stop_loss)

    c = ctx.state.get("adversarial_c")
    return InversionResult(
        images=best.x.detach().contiguous().cpu(),
        seeds=ctx.seeds.detach().contiguous().cpu(),
        losses=best.loss.cpu(),
        initial_losses=initial.cpu(),
        best_step=best.step.cpu(),
        nan_mask=nan_mask.cpu(),
        stopped=stopped.cpu(),
        steps_run=steps_run,
        adversarial_c=None if c is None else float(c),
    )
