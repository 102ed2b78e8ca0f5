"""Precision by measurement: bf16 autocast where this host runs it faster and the loss does not suffer, else fp32.

bf16 ran resnet18 1.28-1.81x faster on a CPU with native bf16 and 12-25x slower on an AVX2 one, so a run whose
spec says ``precision: "auto"`` measures. It times a few steps (forward to the layer, backward to the input) in
fp32 and under bf16 autocast on its own batch and layer, with the layout calibration's protocol (calibration.py);
a bf16 step is stopped once it runs ``GIVE_UP`` times as long as the fp32 one, so a host without native bf16 pays
for a few fp32 steps, not for whole bf16 ones. Only when bf16 is faster does it run ``LOSS_STEPS`` steps of the
run's own loop in each precision from the run's own start, and keep bf16 when the final loss is within
``LOSS_TOLERANCE`` (relative) of fp32's. The choice is cached per process like the layout's. Nothing is printed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import torch

from .backbones import Backbone
from .calibration import (
    CALIBRATION_STEPS,
    CalibrationCache,
    Clock,
    Deadline,
    backbone_step_runner,
    cpu_capability,
    time_candidates,
)

__all__ = [
    "DEFAULT_PRECISION",
    "GIVE_UP",
    "LOSS_STEPS",
    "LOSS_TOLERANCE",
    "PRECISIONS",
    "PrecisionCalibration",
    "bf16_supported",
    "host_device_type",
    "precision_cache_clear",
    "precision_calibrate",
    "precision_check",
    "precision_named",
    "precisions_supported",
]

PRECISIONS = ("fp32", "bf16", "auto")
DEFAULT_PRECISION = "fp32"  # until "auto" has been measured on enough hosts to be the default (issue 23)
GIVE_UP = 4.0  # a bf16 step 4x the fp32 one is stopped: decisively slower, and a whole one costs up to 25 fp32 steps
LOSS_STEPS = 3
LOSS_TOLERANCE = 0.01
NAMED_BY_SPEC = "named by the spec"
CALIBRATED = "calibrated"
UNSUPPORTED = "bf16 not supported on this device"

StepRunner = Callable[[bool, Deadline], None]  # (amp, deadline): one step; checks the deadline between modules
FinalLoss = Callable[[bool, int], float]  # (amp, steps) -> the mean loss after that many steps of the run's loop


@dataclass(frozen=True)
class PrecisionCalibration:
    """The precision a run uses and why. ``ms_per_step``: {"fp32": ms, "bf16": ms} as timed (a given-up bf16 step:
    how long it ran before it was stopped); ``final_loss``: the mean loss after ``loss_steps`` steps of the run's
    loop in each precision (empty when bf16 was not faster); ``loss_rel_diff``: |bf16 - fp32| / |fp32|."""

    precision: str
    source: str
    reason: str = ""
    ms_per_step: dict[str, float] = field(default_factory=dict)
    timed_steps: int = 0
    bf16_given_up: bool = False
    loss_steps: int = 0
    final_loss: dict[str, float] = field(default_factory=dict)
    loss_rel_diff: float | None = None
    cached: bool = False
    cost_ms: float = 0.0
    cpu_capability: str | None = None

    @property
    def amp(self) -> bool:
        return self.precision == "bf16"

    def to_dict(self) -> dict:
        return {"precision": self.precision, "source": self.source, "reason": self.reason,
                "ms_per_step": dict(self.ms_per_step), "timed_steps": self.timed_steps,
                "bf16_given_up": self.bf16_given_up, "loss_steps": self.loss_steps,
                "final_loss": dict(self.final_loss), "loss_rel_diff": self.loss_rel_diff, "cached": self.cached,
                "cost_ms": round(self.cost_ms, 3), "cpu_capability": self.cpu_capability}


_CACHE = CalibrationCache()


def precision_cache_clear() -> None:
    """Forget every cached choice (tests; a worker never needs it)."""
    _CACHE.clear()


def host_device_type() -> str:
    """The device a worker on this host runs jobs on: CUDA when the process sees a GPU, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=4)
def bf16_supported(device_type: str) -> bool:
    """Whether torch runs bf16 autocast on this host's ``device_type`` ("cpu", "cuda"): asked of torch, and on the
    CPU tried once on a 2 x 2 matrix product (no model is built)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            product = torch.ones(2, 2) @ torch.ones(2, 2)
    except (RuntimeError, AssertionError):
        return False
    return product.dtype == torch.bfloat16


def precisions_supported(device_type: str | None = None) -> tuple[str, ...]:
    """The precisions a spec may name on this host (``device_type``: default the worker's device here)."""
    supported = bf16_supported(device_type or host_device_type())
    return tuple(p for p in PRECISIONS if supported or p != "bf16")


def precision_check(precision: object, device_type: str | None = None) -> None:
    """A ValueError naming ``precision`` and the choices (or what this host supports), unless the host runs it."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}. Available: {', '.join(PRECISIONS)}.")
    device_type = device_type or host_device_type()
    supported = precisions_supported(device_type)
    if precision not in supported:
        raise ValueError(f"precision: this host cannot run '{precision}' on {device_type} "
                         f"(torch {torch.__version__}); it supports {', '.join(supported)}.")


def precision_named(precision: str) -> PrecisionCalibration:
    """The record of a run whose spec names its precision ("fp32", "bf16"): nothing timed."""
    return PrecisionCalibration(precision, NAMED_BY_SPEC, cpu_capability=cpu_capability())


def precision_calibrate(*, backbone: Backbone, layer: str, images: torch.Tensor, channels_last: bool,
                        final_loss: FinalLoss, case: Hashable = None, steps: int = CALIBRATION_STEPS,
                        clock: Clock = time.perf_counter, run_step: StepRunner | None = None) -> PrecisionCalibration:
    """fp32 or bf16 for ``backbone`` at ``layer`` on a batch shaped like ``images`` in the run's layout, from the
    cache when this process has measured the same case before.

    Call it where the run's loop runs (BatchNorms folded, the layout set): it folds nothing itself. Each precision
    gets a warm-up and a timed step, more when they are close (``time_candidates``), a bf16 step given up at
    ``GIVE_UP`` times the fp32 one. When bf16 is faster, ``final_loss(amp, LOSS_STEPS)`` runs that many steps
    of the run's loop in each precision and bf16 is kept when its loss is within ``LOSS_TOLERANCE`` of fp32's.
    ``case``: what else shapes that loss (the recipe, parametrisation, step rule...), part of the cache key.
    ``run_step(amp, deadline)`` replaces the real step (tests make one precision slower with a fake clock).
    """
    capability = cpu_capability()
    key = (backbone.name, layer, tuple(images.shape), str(images.device), images.dtype, bool(channels_last),
           capability, case)
    cached = _CACHE.get(key)
    if cached is not None:
        return dataclasses.replace(cached, cached=True, cost_ms=0.0)
    if not bf16_supported(images.device.type):
        choice = PrecisionCalibration("fp32", UNSUPPORTED, f"torch cannot run bf16 autocast on {images.device.type} "
                                      "here", cpu_capability=capability)
        _CACHE.put(key, choice)
        return choice
    deadline = Deadline(clock)
    if run_step is None:
        step = backbone_step_runner(backbone, layer, images, deadline)

        def run_step(amp: bool, _deadline: Deadline) -> None:
            step(channels_last, amp)

    started = clock()
    timing = time_candidates(lambda amp: run_step(amp, deadline), (False, True), steps=steps, clock=clock,
                             deadline=deadline, give_up=GIVE_UP)
    ms = {"bf16" if amp else "fp32": value for amp, value in timing.ms_per_step.items()}
    record = {"ms_per_step": ms, "timed_steps": timing.timed_steps, "bf16_given_up": True in timing.given_up,
              "cpu_capability": capability}
    if record["bf16_given_up"]:
        choice = PrecisionCalibration("fp32", CALIBRATED, f"a bf16 step ran over {GIVE_UP:g}x the fp32 step and was "
                                      "stopped", **record)
    elif timing.fastest((False, True)) is False:
        choice = PrecisionCalibration("fp32", CALIBRATED, "bf16 is not faster on this host", **record)
    else:
        choice = _by_final_loss(final_loss, record)
    choice = dataclasses.replace(choice, cost_ms=(clock() - started) * 1000)
    _CACHE.put(key, choice)
    return choice


def _by_final_loss(final_loss: FinalLoss, record: dict) -> PrecisionCalibration:
    """bf16 (found faster) when its loss after the same ``LOSS_STEPS`` steps is within ``LOSS_TOLERANCE`` of fp32's."""
    losses = {"fp32": float(final_loss(False, LOSS_STEPS)), "bf16": float(final_loss(True, LOSS_STEPS))}
    fp32, bf16 = losses["fp32"], losses["bf16"]
    if not (math.isfinite(fp32) and math.isfinite(bf16)):
        diff = math.inf
    else:
        diff = abs(bf16 - fp32) / abs(fp32) if fp32 != 0 else (0.0 if bf16 == 0 else math.inf)
    kept = diff <= LOSS_TOLERANCE
    if kept:
        reason = f"bf16 is faster and its loss after {LOSS_STEPS} steps is within {LOSS_TOLERANCE:.0%} of fp32's"
    elif math.isfinite(diff):
        reason = (f"bf16 is faster but its loss after {LOSS_STEPS} steps is {diff:.1%} off fp32's "
                  f"(more than {LOSS_TOLERANCE:.0%})")
    else:
        reason = f"bf16 is faster but the losses after {LOSS_STEPS} steps cannot be compared (not finite, or fp32's 0)"
    return PrecisionCalibration("bf16" if kept else "fp32", CALIBRATED, reason, loss_steps=LOSS_STEPS,
                                final_loss={k: round(v, 6) for k, v in losses.items()},
                                loss_rel_diff=round(diff, 6) if math.isfinite(diff) else None, **record)
