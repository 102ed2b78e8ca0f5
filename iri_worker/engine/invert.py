"""The IRI loop: descend until g(x) matches g(x_t) (paper section 1.5).

No I/O, no printing: tensors in, tensors out. Progress goes to ``on_step``.
This module checks the inputs and sets the run up (its memory layout and
precision); ``loop.py`` runs the steps.
"""

from __future__ import annotations

import dataclasses
import json

import torch

from .backbones import Backbone, load_backbone
from .layout import LayoutCalibration, layout_calibrate, layout_known, layout_named
from .loop import STOP_CHECK_EVERY, InversionResult, Loop, OnStep
from .losses import LossContext, target_norm
from .params import Parametrization, build_param
from .precision import PrecisionCalibration, precision_calibrate, precision_check, precision_named
from .recipes import build_loss, recipe_has_adaptive_c
from .seeds import PHOTO_SEED
from .spec import InversionSpec
from .steps import build_step_rule
from .transforms import build_transform

__all__ = ["InversionResult", "invert", "measure_adaptive_c", "STOP_CHECK_EVERY"]

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


def _layout(spec: InversionSpec, backbone: Backbone, *, layer: str, targets: torch.Tensor) -> LayoutCalibration | None:
    """The memory layout of the run where it is known before the run starts: the spec's, this process's earlier
    choice, the backbone's only one, NCHW for a run too short to time both; for precision "auto", timed apart (its
    own calibration runs in the run's layout). None: the faster of the two, timed on the run's own first steps,
    since which one is faster depends on the CPU."""
    if spec.channels_last and not backbone.supports_channels_last:
        raise ValueError(f"channels_last: backbone '{backbone.name}' runs only the NCHW layout; "
                         "set channels_last to false or null.")
    if spec.channels_last is not None:
        return layout_named(spec.channels_last)
    amp = spec.precision == "bf16"
    if spec.precision == "auto":
        return layout_calibrate(backbone=backbone, layer=layer, images=targets, amp=amp)
    return layout_known(backbone=backbone, layer=layer, images=targets, amp=amp, run_steps=spec.steps)


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

    Deterministic on CPU for a fixed spec, targets and seeds once the layout is
    known (the random transforms draw from a generator seeded by
    ``spec.rng_seed``): a spec that names ``channels_last`` gives the same bits
    every time, as does every run after the first of its shape in a process. The
    run that times the layout on its own first steps differs from those by float
    rounding only (about 1e-6; the two layouts differ only there). The spec is
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
    layout = _layout(spec, backbone, layer=layer, targets=targets)
    channels_last = layout.channels_last if layout is not None else False  # a timed layout's run starts in NCHW
    if channels_last and spec.param == "pixel":
        variable = variable.contiguous(memory_format=torch.channels_last)
    backbone.set_channels_last(channels_last)
    backbone.set_fake_relu(spec.fake_relu)
    try:
        # BatchNorms folded into their convolutions: same function, fewer passes per step.
        with backbone.batchnorm_folded(keep_layer=layer), torch.enable_grad():
            result, layout, precision = _optimise(spec, backbone, layer=layer, targets=targets, param=param,
                                                  variable=variable, layout=layout, generator=generator,
                                                  on_step=on_step)
        return dataclasses.replace(result, layout_calibration=layout.to_dict(),
                                   precision_calibration=precision.to_dict())
    finally:
        backbone.set_fake_relu(False)  # the cached backbone is shared: leave it plain
        # a layout switched inside the folded block left the unfolded weights behind: the whole backbone in the
        # run's layout, as other users of the cached backbone (validity, the next run) expect
        backbone.set_channels_last(layout.channels_last if layout is not None else channels_last)


def _optimise(spec: InversionSpec, backbone: Backbone, *, layer: str, targets: torch.Tensor,
              param: Parametrization, variable: torch.Tensor, layout: LayoutCalibration | None,
              generator: torch.Generator, on_step: OnStep | None
              ) -> tuple[InversionResult, LayoutCalibration, PrecisionCalibration]:
    """The run in its precision (``_precision``), inside the folded block with the layout set; a layout not known
    yet (None) is timed on the run's first steps. A precision calibration's loss check runs the same loop from the
    same start for a few steps in each precision, with its own step rule state, loss state and generator, so the
    run itself is the one it would have been without it."""
    transform = build_transform(spec.transforms)
    loss = build_loss(spec.recipe_terms if spec.recipe_terms is not None else spec.recipe)
    with torch.no_grad():
        start_image = param.to_image(variable).clamp(0, 1)

    def context(amp: bool, channels_last: bool) -> LossContext:
        """The loss context with the target representation as the backbone, in ``channels_last``, computes it."""
        base = LossContext(x=targets, backbone=backbone, layer=layer, target_rep=targets.new_zeros(0), amp=amp,
                           channels_last=channels_last)
        with torch.no_grad():
            target_rep = base.layer_output(targets).detach()  # compared in the layer's own shape
        seeds = start_image.contiguous(memory_format=torch.channels_last) if channels_last else start_image
        return dataclasses.replace(base, target_rep=target_rep, target_norm=target_norm(target_rep),
                                   targets=targets, seeds=seeds)

    def loop(amp: bool, run_spec: InversionSpec, start: torch.Tensor, run_generator: torch.Generator,
             run_on_step: OnStep | None, channels_last: bool) -> Loop:
        return Loop(loss=loss, context_in=lambda cl: context(amp, cl), channels_last=channels_last, param=param,
                    rule=build_step_rule(spec.step_rule, spec.step_size), variable=start, spec=run_spec,
                    transform=transform, generator=run_generator, on_step=run_on_step)

    def final_loss(amp: bool, steps: int) -> float:
        trial = loop(amp, dataclasses.replace(spec, steps=steps, stop_loss=None, step_rounds=1), variable.clone(),
                     torch.Generator().manual_seed(spec.rng_seed), None, layout.channels_last)
        while trial.steps_run < steps:
            trial.advance()
        return float(trial.result().losses.mean())

    # precision "auto" always has its layout here (``_layout``); a named precision needs none
    precision = _precision(spec, backbone, layer=layer, targets=targets,
                           channels_last=layout is not None and layout.channels_last, final_loss=final_loss)
    run = loop(precision.amp, spec, variable, generator, on_step, layout is not None and layout.channels_last)
    if layout is None:
        layout = layout_calibrate(backbone=backbone, layer=layer, images=targets, amp=precision.amp,
                                  clock=run.clock, run_step=lambda _channels_last: _timed(run),
                                  switch_layout=run.relayout)
    while run.steps_run < spec.steps:
        run.advance()
        if run.all_stopped():
            break  # one host read every STOP_CHECK_EVERY steps, only when early stop is on
    return run.result(), layout, precision


def _timed(run: Loop) -> None:
    """The run's next step as a calibration times it: on a GPU, until the device has done its work."""
    run.advance()
    if run.variable.device.type == "cuda":
        torch.cuda.synchronize(run.variable.device)


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
