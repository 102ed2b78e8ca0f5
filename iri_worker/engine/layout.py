"""Memory layout by measurement: time a few steps in NCHW and in channels-last on this host, keep the faster.

Which layout is faster depends on the CPU (a rule tuned on an AVX-512 host ran resnet18 at 32 px at 0.73 of the
floor on an AVX2 host), so a run whose spec names no layout times both on its own batch shape and layer and caches
the choice per process. Timing uses ``time.perf_counter`` only; nothing is printed or written.
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
    "layout_named",
]

NAMED_BY_SPEC = "named by the spec"
ONLY_LAYOUT = "the only layout this backbone runs"
CALIBRATED = "calibrated"

StepRunner = Callable[[bool], None]


@dataclass(frozen=True)
class LayoutCalibration:
    """The layout a run uses and why. ``ms_per_step``: {"nchw": ms, "channels_last": ms} for the layouts timed
    (empty when nothing was timed); ``cost_ms``: what timing took, warm-ups included (0 from the cache)."""

    channels_last: bool
    source: str
    ms_per_step: dict[str, float] = field(default_factory=dict)
    timed_steps: int = 0
    cached: bool = False
    cost_ms: float = 0.0
    cpu_capability: str | None = None

    @property
    def layout(self) -> str:
        return "channels_last" if self.channels_last else "nchw"

    def to_dict(self) -> dict:
        return {"layout": self.layout, "source": self.source, "ms_per_step": dict(self.ms_per_step),
                "timed_steps": self.timed_steps, "cached": self.cached, "cost_ms": round(self.cost_ms, 3),
                "cpu_capability": self.cpu_capability}


_CACHE = CalibrationCache()


def layout_cache_clear() -> None:
    """Forget every cached choice (tests; a worker never needs it)."""
    _CACHE.clear()


def layout_named(channels_last: bool) -> LayoutCalibration:
    """The record of a run whose spec names its layout: nothing timed."""
    return LayoutCalibration(channels_last=bool(channels_last), source=NAMED_BY_SPEC, cpu_capability=cpu_capability())


def layout_calibrate(*, backbone: Backbone, layer: str, images: torch.Tensor, amp: bool = False,
                     steps: int = CALIBRATION_STEPS, clock: Clock = time.perf_counter,
                     run_step: StepRunner | None = None) -> LayoutCalibration:
    """The faster layout for ``backbone`` at ``layer`` on a batch shaped like ``images``, from the cache when this
    process has timed the same case before.

    Each candidate layout (NCHW, then channels-last where the backbone runs it) gets one warm-up step and one
    step timed by ``clock``; unless one is ``DECISIVE`` times faster, each gets ``steps - 1`` more. Ties go to
    NCHW. ``run_step(channels_last)`` replaces the real step (tests make one layout slower with a fake clock).
    The backbone is left in the chosen layout.
    """
    capability = cpu_capability()
    key = (backbone.name, layer, tuple(images.shape), str(images.device), images.dtype, bool(amp), capability)
    cached = _CACHE.get(key)
    if cached is not None:
        backbone.set_channels_last(cached.channels_last)
        return dataclasses.replace(cached, cached=True, cost_ms=0.0)
    if not backbone.supports_channels_last:
        backbone.set_channels_last(False)
        choice = LayoutCalibration(False, ONLY_LAYOUT, cpu_capability=capability)
        _CACHE.put(key, choice)
        return choice
    if run_step is None:
        step = backbone_step_runner(backbone, layer, images)

        def run_step(channels_last: bool) -> None:
            step(channels_last, amp)

    @contextlib.contextmanager
    def in_layout(channels_last: bool):
        backbone.set_channels_last(channels_last)
        with backbone.batchnorm_folded(keep_layer=layer):  # as the loop runs it
            yield

    started = clock()
    timing = time_candidates(run_step, (False, True), steps=steps, clock=clock, around=in_layout)
    chosen = timing.fastest((False, True))
    backbone.set_channels_last(chosen)
    ms_per_step = {"channels_last" if cl else "nchw": ms for cl, ms in timing.ms_per_step.items()}
    choice = LayoutCalibration(chosen, CALIBRATED, ms_per_step, timing.timed_steps, cached=False,
                               cost_ms=(clock() - started) * 1000, cpu_capability=capability)
    _CACHE.put(key, choice)
    return choice
