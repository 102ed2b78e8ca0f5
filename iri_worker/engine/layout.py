"""Memory layout by measurement: time a few steps in NCHW and in channels-last on this host, keep the faster.

Which layout is faster depends on the CPU (a rule tuned on an AVX-512 host ran resnet18 at 32 px at 0.73 of the
floor on an AVX2 host), so a run whose spec names no layout times both on its own batch shape and layer and caches
the choice per process. Timing uses ``time.perf_counter`` only; nothing is printed or written.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .backbones import Backbone

__all__ = ["LayoutCalibration", "layout_calibrate", "layout_named", "layout_cache_clear", "cpu_capability",
           "CALIBRATION_STEPS", "DECISIVE"]

# At most this many timed steps per layout, each layout after one untimed warm-up step. After one timed step each,
# a layout faster by DECISIVE or more wins at once: 2 x (1 + 1) steps, under 2 % of the demo's 300-step job (the
# warm-ups cost most); closer timings get the rest of the steps. Once per worker process and case.
CALIBRATION_STEPS = 2
DECISIVE = 1.15
NAMED_BY_SPEC = "named by the spec"
ONLY_LAYOUT = "the only layout this backbone runs"
CALIBRATED = "calibrated"

Clock = Callable[[], float]
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


_CACHE: dict[tuple, LayoutCalibration] = {}


def cpu_capability() -> str | None:
    """The CPU's vector extension as torch dispatches to it ("AVX2", "AVX512", ...), where torch says."""
    getter = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return getter() if getter is not None else None


def layout_cache_clear() -> None:
    """Forget every cached choice (tests; a worker never needs it)."""
    _CACHE.clear()


def layout_named(channels_last: bool) -> LayoutCalibration:
    """The record of a run whose spec names its layout: nothing timed."""
    return LayoutCalibration(channels_last=bool(channels_last), source=NAMED_BY_SPEC, cpu_capability=cpu_capability())


def _step_runner(backbone: Backbone, layer: str, images: torch.Tensor, amp: bool) -> StepRunner:
    """One forward to ``layer`` and backward to the input, as the loop's step spends its time (BatchNorms folded
    by the caller), on a copy of the job's batch in the layout under test."""

    def run(channels_last: bool) -> None:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = images.detach().contiguous(memory_format=fmt).requires_grad_(True)
        with torch.enable_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            out = backbone.features(x, layer, in_box=True, flat=False).float()
        (grad,) = torch.autograd.grad(out.square().sum(), x)
        if grad.device.type == "cuda":
            torch.cuda.synchronize(grad.device)  # the timing must include the device's work

    return run


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
    if key in _CACHE:
        choice = _CACHE[key]
        backbone.set_channels_last(choice.channels_last)
        return dataclasses.replace(choice, cached=True, cost_ms=0.0)
    if not backbone.supports_channels_last:
        backbone.set_channels_last(False)
        choice = LayoutCalibration(False, ONLY_LAYOUT, cpu_capability=capability)
        _CACHE[key] = choice
        return choice
    run_step = run_step or _step_runner(backbone, layer, images, amp)
    started = clock()
    totals = {False: 0.0, True: 0.0}

    def time_steps(channels_last: bool, count: int, *, warm_up: bool) -> None:
        backbone.set_channels_last(channels_last)
        with backbone.batchnorm_folded(keep_layer=layer):  # as the loop runs it
            if warm_up:  # first-call allocations and kernel choices stay out of the figure
                run_step(channels_last)
            begin = clock()
            for _ in range(count):
                run_step(channels_last)
            totals[channels_last] += clock() - begin

    for channels_last in (False, True):
        time_steps(channels_last, 1, warm_up=True)
    timed = 1
    # A clear winner after one step each is kept: a second round would cost 1 % of the demo's job for nothing.
    if steps > 1 and max(totals.values()) < DECISIVE * min(totals.values()):
        for channels_last in (False, True):
            time_steps(channels_last, steps - 1, warm_up=False)
        timed = steps
    ms_per_step = {"channels_last" if cl else "nchw": round(total * 1000 / timed, 3) for cl, total in totals.items()}
    chosen = ms_per_step["channels_last"] < ms_per_step["nchw"]
    backbone.set_channels_last(chosen)
    choice = LayoutCalibration(chosen, CALIBRATED, ms_per_step, timed, cached=False,
                               cost_ms=(clock() - started) * 1000, cpu_capability=capability)
    if len(_CACHE) >= 64:  # a handful of shapes per worker; never grow without bound
        _CACHE.clear()
    _CACHE[key] = choice
    return choice
