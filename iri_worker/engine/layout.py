"""Memory layout by measurement: time a few steps in NCHW and in channels-last on this host, keep the faster.

Which layout is faster depends on the CPU (a rule tuned on an AVX-512 host ran resnet18 at 32 px at 0.73 of the
floor on an AVX2 host), so a run whose spec names no layout times both on its own batch shape and layer and caches
the choice per process. The timed steps are the run's own first steps (``invert`` passes them): their work is the
job's, so calibration adds only the other layout's first call and the slower layout's extra milliseconds: 0.6-0.8 %
of the demo's job, where timing steps of its own cost 2.0-2.7 % (bench/engine.py's demo_layout_calibration). Timing uses
``time.perf_counter`` only; nothing is printed or written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .backbones import Backbone
from .calibration import (
    CALIBRATION_STEPS,
    DECISIVE,
    CalibrationCache,
    Clock,
    backbone_step_runner,
    cpu_capability,
    time_candidates,
)

__all__ = [
    "CALIBRATION_STEPS",
    "DECISIVE",
    "LayoutCalibration",
    "cpu_capability",
    "layout_cache_clear",
    "layout_calibrate",
    "layout_known",
    "layout_named",
    "RUN_STEPS_NEEDED",
]

NAMED_BY_SPEC = "named by the spec"
ONLY_LAYOUT = "the only layout this backbone runs"
CALIBRATED = "calibrated"
TOO_SHORT = "too few steps to time both layouts"

# The most steps a calibration runs: a warm-up and CALIBRATION_STEPS timed steps in each layout. A run with fewer
# steps runs NCHW untimed (its speed hardly matters) and caches nothing.
RUN_STEPS_NEEDED = 2 * (1 + CALIBRATION_STEPS)

StepRunner = Callable[[bool], None]


@dataclass(frozen=True)
class LayoutCalibration:
    """The layout a run uses and why. ``ms_per_step``: {"nchw": ms, "channels_last": ms} for the layouts timed
    (empty when nothing was timed); ``cost_ms``: what timing took, warm-ups included (0 from the cache);
    ``run_steps``: how many of those steps were the run's own (their work is the job's, not added by timing)."""

    channels_last: bool
    source: str
    ms_per_step: dict[str, float] = field(default_factory=dict)
    timed_steps: int = 0
    cached: bool = False
    cost_ms: float = 0.0
    cpu_capability: str | None = None
    run_steps: int = 0

    @property
    def layout(self) -> str:
        return "channels_last" if self.channels_last else "nchw"

    def to_dict(self) -> dict:
        return {"layout": self.layout, "source": self.source, "ms_per_step": dict(self.ms_per_step),
                "timed_steps": self.timed_steps, "cached": self.cached, "cost_ms": round(self.cost_ms, 3),
                "cpu_capability": self.cpu_capability, "run_steps": self.run_steps}


_CACHE = CalibrationCache()


def layout_cache_clear() -> None:
    """Forget every cached choice (tests; a worker never needs it)."""
    _CACHE.clear()


def layout_named(channels_last: bool) -> LayoutCalibration:
    """The record of a run whose spec names its layout: nothing timed."""
    return LayoutCalibration(channels_last=bool(channels_last), source=NAMED_BY_SPEC, cpu_capability=cpu_capability())


def _case(backbone: Backbone, layer: str, images: torch.Tensor, amp: bool) -> tuple:
    return (backbone.name, layer, tuple(images.shape), str(images.device), images.dtype, bool(amp), cpu_capability())


def layout_known(*, backbone: Backbone, layer: str, images: torch.Tensor, amp: bool = False,
                 run_steps: int | None = None) -> LayoutCalibration | None:
    """The layout without timing anything, where it is known: this process's choice for the same case, or the
    only layout the backbone runs; NCHW for a run whose ``run_steps`` are fewer than ``RUN_STEPS_NEEDED`` (not
    cached: nothing was measured). None: it must be timed."""
    cached = _CACHE.get(_case(backbone, layer, images, amp))
    if cached is not None:
        return dataclasses.replace(cached, cached=True, cost_ms=0.0, run_steps=0)
    if not backbone.supports_channels_last:
        choice = LayoutCalibration(False, ONLY_LAYOUT, cpu_capability=cpu_capability())
        _CACHE.put(_case(backbone, layer, images, amp), choice)
        return choice
    if run_steps is not None and run_steps < RUN_STEPS_NEEDED:
        return LayoutCalibration(False, TOO_SHORT, cpu_capability=cpu_capability())
    return None


def layout_calibrate(*, backbone: Backbone, layer: str, images: torch.Tensor, amp: bool = False,
                     steps: int = CALIBRATION_STEPS, clock: Clock = time.perf_counter,
                     run_step: StepRunner | None = None,
                     switch_layout: Callable[[bool], None] | None = None) -> LayoutCalibration:
    """The faster layout for ``backbone`` at ``layer`` on a batch shaped like ``images``, where not known already
    (``layout_known``), cached for this process.

    Each candidate layout (NCHW, then channels-last) gets one warm-up step and one step timed by ``clock``; unless
    one is ``DECISIVE`` times faster, each gets ``steps - 1`` more. Ties go to NCHW. The steps: by default steps of
    its own on a copy of the batch with the BatchNorms folded, whose work is thrown away (precision "auto" must
    know the layout before the run starts). ``invert`` passes the run's own next step as
    ``run_step(channels_last)`` and ``switch_layout(channels_last)``, which moves the run to a layout; tests pass a
    fake step with a fake clock. The backbone (and the run) is left in the chosen layout.
    """
    switch = switch_layout or backbone.set_channels_last
    known = layout_known(backbone=backbone, layer=layer, images=images, amp=amp)
    if known is not None:
        switch(known.channels_last)
        return known
    if run_step is None:
        step = backbone_step_runner(backbone, layer, images)

        def run_step(channels_last: bool) -> None:
            step(channels_last, amp)

    @contextlib.contextmanager
    def in_layout(channels_last: bool):
        if switch_layout is not None:  # the run's own steps, in the run's folded block
            switch_layout(channels_last)
            yield
            return
        backbone.set_channels_last(channels_last)
        with backbone.batchnorm_folded(keep_layer=layer):  # as the loop runs it
            yield

    started = clock()
    timing = time_candidates(run_step, (False, True), steps=steps, clock=clock, around=in_layout)
    chosen = timing.fastest((False, True))
    switch(chosen)
    ms_per_step = {"channels_last" if cl else "nchw": ms for cl, ms in timing.ms_per_step.items()}
    run_steps = 2 * (1 + timing.timed_steps) if switch_layout is not None else 0  # a warm-up and the timed, each
    choice = LayoutCalibration(chosen, CALIBRATED, ms_per_step, timing.timed_steps, cached=False,
                               cost_ms=(clock() - started) * 1000, cpu_capability=cpu_capability(),
                               run_steps=run_steps)
    _CACHE.put(_case(backbone, layer, images, amp), choice)
    return choice
