"""The IRI loop's steps: one update per call, the best iterate kept, the result at the end (see ``invert``).

No I/O, no printing. The loop never reads a value back to the host per step (no ``.item()``, no boolean indexing):
keep-best, the per-image step, NaN and early-stop masks are all tensor ops; only with ``stop_loss`` set does it
check "all stopped?" once every ``STOP_CHECK_EVERY`` steps. Buffers are allocated once per run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .losses import Loss, LossContext
from .params import Parametrization
from .spec import InversionSpec
from .steps import round_starts, round_step_size

__all__ = ["InversionResult", "Loop", "OnStep", "STOP_CHECK_EVERY"]

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
                    layout, source, ms per step of each layout timed, timed steps, the run's own
                    steps among them, cached, cost in ms). Record it with the job.
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


def _in_format(value, fmt: torch.memory_format):
    """An image-shaped (4-d) tensor in the memory format ``fmt``; anything else as it is."""
    return value.contiguous(memory_format=fmt) if isinstance(value, torch.Tensor) and value.dim() == 4 else value


class Loop:
    """One run of the loop, a step at a time: ``advance`` runs the next update (and ``on_step``), ``result`` ends
    the run. ``relayout`` moves the run to the other memory layout between two steps, which is how the layout is
    timed on the run's own first steps (``invert``); ``context_in(channels_last)`` gives the loss context for a
    layout (the target representation as the backbone computes it in that layout), the run starting in
    ``channels_last``. ``clock``: the time spent in the steps' own work, ``on_step`` left out (a worker's heartbeat
    may write to its database there)."""

    def __init__(self, *, loss: Loss, context_in: Callable[[bool], LossContext], channels_last: bool,
                 param: Parametrization, rule, variable: torch.Tensor, spec: InversionSpec, transform,
                 generator: torch.Generator, on_step: OnStep | None):
        ctx = context_in(channels_last)
        self.loss, self.ctx, self.param, self.rule, self.spec = loss, ctx, param, rule, spec
        self._contexts = {channels_last: ctx}  # one target representation per layout, computed once
        self._context_in = context_in
        self.transform, self.generator, self.on_step = transform, generator, on_step
        self.variable = variable
        batch = variable.shape[0]
        self.batch_view = (batch,) + (1,) * (variable.dim() - 1)
        self.best = _Best(ctx.seeds)
        self.active = torch.ones(batch, dtype=torch.bool, device=variable.device)
        self.stopped = torch.zeros(batch, dtype=torch.bool, device=variable.device)
        self.state = rule.init(variable)
        self.initial: torch.Tensor | None = None
        self.context = _context_maker(ctx, transform, generator)
        # The step-size schedule (spec.step_rounds): halved at each round start after the first; a dict lookup per
        # step, nothing read from the device.
        self.round_at = {start: k for k, start in enumerate(round_starts(spec.steps, spec.step_rounds)[1:], start=1)}
        self.steps_run = 0
        self._outside_s = 0.0  # time spent in on_step, which the clock leaves out

    def clock(self) -> float:
        return time.perf_counter() - self._outside_s

    def relayout(self, channels_last: bool) -> None:
        """The backbone, the loss context, the optimiser's state and (pixel parametrisation) the variable in the
        given layout, as ``invert`` sets them up for a run in that layout from the start; the loss's scratch state
        (the adaptive c) carries over."""
        if channels_last == self.ctx.channels_last:
            return
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.ctx.backbone.set_channels_last(channels_last)
        if channels_last not in self._contexts:
            self._contexts[channels_last] = self._context_in(channels_last)
        self.ctx = dataclasses.replace(self._contexts[channels_last], state=self.ctx.state)
        self.context = _context_maker(self.ctx, self.transform, self.generator)
        self.best.x = _in_format(self.best.x, fmt)
        if self.param.name == "pixel":
            self.variable = _in_format(self.variable, fmt)
        if isinstance(self.state, dict):
            self.state = {key: _in_format(value, fmt) for key, value in self.state.items()}

    def advance(self) -> None:
        """The next update (step ``steps_run``), then ``on_step`` with its losses."""
        i, spec, batch = self.steps_run, self.spec, self.batch_view[0]
        if i in self.round_at:
            self.rule.step_size = round_step_size(spec.step_size, self.round_at[i])
        in_box = self.param.image_in_box(projected=i > 0)
        variable = self.variable.detach().requires_grad_(True)
        image = self.param.to_image(variable)
        losses = self.loss(self.context(image, in_box))
        if losses.shape != (batch,):
            raise RuntimeError(f"loss '{self.loss}' must return shape ({batch},), got {tuple(losses.shape)}")
        # Gradient of the SUM: image b's gradient depends only on its own loss.
        # autograd.grad w.r.t. the variable only: frozen model params never collect .grad.
        (grad,) = torch.autograd.grad(losses.sum(), variable)
        with torch.no_grad():
            losses = losses.detach().float()
            if self.initial is None:
                self.initial = losses.clone()
            self.best.keep(image, losses, i, in_box, self.active)
            self.active &= torch.isfinite(losses)  # a NaN/inf loss stops that image (nan_mask below)
            stepped = self.rule.step(variable, grad, self.state)
            if spec.stop_loss is not None:
                reached = self.active & (losses <= spec.stop_loss)
                self.stopped |= reached
                self.active &= ~reached
                # A stopped image keeps its pixels (its loss stays put in on_step). Without stop_loss only a
                # NaN stops an image, and keep ignores it from then on, so the loop saves this pass.
                stepped = torch.where(self.active.view(self.batch_view), stepped, variable)
            # Projected after the freeze, so every iterate after the first is in the box (see image_in_box).
            self.variable = self.param.project(stepped)
        self.steps_run = i + 1
        if self.on_step is not None:
            began = time.perf_counter()
            self.on_step(i, losses)
            self._outside_s += time.perf_counter() - began

    def all_stopped(self) -> bool:
        """Every image stopped early; one host read, so asked only every ``STOP_CHECK_EVERY`` steps."""
        return (self.spec.stop_loss is not None and self.steps_run % STOP_CHECK_EVERY == 0
                and not bool(self.active.any()))

    def result(self) -> InversionResult:
        """The final iterate competes too; then the result (NaN mask: inactive for a non-finite loss, not the
        stop)."""
        best, stopped, initial = self.best, self.stopped, self.initial
        nan_mask = ~self.active & ~stopped
        with torch.no_grad():
            in_box = self.param.image_in_box(projected=self.steps_run > 0)
            image = self.param.to_image(self.variable)
            losses = self.loss(self.context(image, in_box)).float()
            best.keep(image, losses, self.steps_run, in_box, self.active)
            if initial is None:  # steps == 0: the seed is the final iterate
                initial = losses.clone()
                nan_mask |= ~torch.isfinite(losses)
            if self.spec.stop_loss is not None:
                stopped |= ~nan_mask & (best.loss <= self.spec.stop_loss)

        c = self.ctx.state.get("adversarial_c")
        return InversionResult(
            images=best.x.detach().contiguous().cpu(),
            seeds=self.ctx.seeds.detach().contiguous().cpu(),
            losses=best.loss.cpu(),
            initial_losses=initial.cpu(),
            best_step=best.step.cpu(),
            nan_mask=nan_mask.cpu(),
            stopped=stopped.cpu(),
            steps_run=self.steps_run,
            adversarial_c=None if c is None else float(c),
        )
