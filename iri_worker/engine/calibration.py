"""What the layout and precision calibrations share: timing candidates on a few steps of the job's own batch.

Each candidate (two layouts, or two precisions) gets one untimed warm-up step and one timed step; a candidate
``DECISIVE`` times faster wins at once, closer ones get more steps. Where a candidate may be many times slower
(bf16 on a CPU without native bf16 runs 12-25x slower), its steps are held to ``give_up`` times the first
candidate's: a step that runs past that is stopped between two modules and the candidate loses without costing a
whole step. Choices are cached per worker process. Timing uses an injected clock; nothing is printed or written.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass

import torch

from .backbones import Backbone

__all__ = [
    "CALIBRATION_STEPS",
    "DECISIVE",
    "CalibrationCache",
    "Clock",
    "Deadline",
    "Timing",
    "TooSlow",
    "backbone_step_runner",
    "cpu_capability",
    "time_candidates",
]

# At most this many timed steps per candidate, each after one untimed warm-up step. After one timed step each, a
# candidate faster by DECISIVE or more wins at once: 2 x (1 + 1) steps, about 2-3 % of the demo's 300-step job on a
# 2-core VM (bench/engine.py's demo_layout_calibration); closer timings get the rest of the steps.
CALIBRATION_STEPS = 2
DECISIVE = 1.15

Clock = Callable[[], float]


def cpu_capability() -> str | None:
    """The CPU's vector extension as torch dispatches to it ("AVX2", "AVX512", ...), where torch says."""
    getter = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return getter() if getter is not None else None


class CalibrationCache:
    """The choices this process has measured, per case; a handful of shapes per worker, never grown without bound."""

    def __init__(self, limit: int = 64):
        self._choices: dict[Hashable, object] = {}
        self._limit = limit

    def get(self, key: Hashable):
        return self._choices.get(key)

    def put(self, key: Hashable, choice) -> None:
        if len(self._choices) >= self._limit:
            self._choices.clear()
        self._choices[key] = choice

    def clear(self) -> None:
        self._choices.clear()


class TooSlow(Exception):
    """Raised inside a step that ran past its deadline: that candidate is clearly slower."""


class Deadline:
    """When the step under way is stopped: ``check`` (which the step calls between modules) raises ``TooSlow``
    once ``clock()`` is past ``at``; no deadline (``at`` infinite) outside a held step."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.at = math.inf

    def check(self) -> None:
        if self.clock() > self.at:
            raise TooSlow


@dataclass(frozen=True)
class Timing:
    """ms per step of each candidate (of a given-up one: how long its stopped step ran, a lower bound), the timed
    steps each got, and the candidates given up."""

    ms_per_step: dict
    timed_steps: int
    given_up: tuple = ()

    def fastest(self, candidates: Sequence):
        """The candidate with the fewest ms per step; a tie goes to the first."""
        return min(candidates, key=lambda candidate: (self.ms_per_step[candidate], candidates.index(candidate)))


def time_candidates(run_step: Callable[[Hashable], None], candidates: Sequence, *, steps: int = CALIBRATION_STEPS,
                    clock: Clock, around: Callable[[Hashable], contextlib.AbstractContextManager] | None = None,
                    deadline: Deadline | None = None, give_up: float = math.inf) -> Timing:
    """Time ``run_step(candidate)`` for each candidate: a warm-up and one timed step each, then, unless one is
    ``DECISIVE`` times faster, ``steps - 1`` more each. ``around(candidate)``: the block each candidate's steps run
    in (its layout, the BatchNorms folded). With a ``deadline`` (which ``run_step`` checks), every step of a later
    candidate is stopped once it runs ``give_up`` times as long as the first candidate's same step (warm-up against
    warm-up, timed against timed); that candidate is given up and timed no further."""
    first = candidates[0]
    reference: dict[str, float] = {}  # the first candidate's warm-up and timed step, in seconds
    totals = dict.fromkeys(candidates, 0.0)
    given_up: list = []

    def held_step(candidate, phase: str) -> float:
        begin = clock()
        if deadline is not None and candidate != first and phase in reference:
            deadline.at = begin + give_up * reference[phase]
        try:
            run_step(candidate)
        except TooSlow:
            given_up.append(candidate)
        finally:
            if deadline is not None:
                deadline.at = math.inf
        elapsed = clock() - begin
        if candidate == first:
            reference.setdefault(phase, elapsed)
        return elapsed

    def time_steps(candidate, count: int, *, warm_up: bool) -> None:
        with around(candidate) if around is not None else contextlib.nullcontext():
            phases = ["warm-up"] * warm_up + ["timed"] * count  # the warm-up's first-call costs stay out
            for phase in phases:
                elapsed = held_step(candidate, phase)
                if candidate in given_up:  # its figure: how long the stopped step ran
                    totals[candidate] = elapsed
                    return
                if phase == "timed":
                    totals[candidate] += elapsed

    for candidate in candidates:
        time_steps(candidate, 1, warm_up=True)
    timed = 1
    # A clear winner after one step each is kept: a second round would cost 1 % of the demo's job for nothing.
    if not given_up and steps > 1 and max(totals.values()) < DECISIVE * min(totals.values()):
        for candidate in candidates:
            time_steps(candidate, steps - 1, warm_up=False)
        timed = steps
    ms_per_step = {candidate: round(total * 1000 / (1 if candidate in given_up else timed), 3)
                   for candidate, total in totals.items()}
    return Timing(ms_per_step, timed, tuple(given_up))


@contextlib.contextmanager
def _watched(module: torch.nn.Module, deadline: Deadline) -> Iterator[None]:
    """``deadline.check`` after every module's forward and every module output's backward, for one step."""

    def on_gradient(_grad: torch.Tensor) -> None:
        deadline.check()

    def on_forward(_module, _inputs, output) -> None:
        deadline.check()
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(on_gradient)

    handles = [sub.register_forward_hook(on_forward) for sub in module.modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def backbone_step_runner(backbone: Backbone, layer: str, images: torch.Tensor,
                         deadline: Deadline | None = None) -> Callable[[bool, bool], None]:
    """``run(channels_last, amp)``: one forward to ``layer`` and backward to the input, as the loop's step spends
    its time (BatchNorms folded by the caller), on a copy of the job's batch in that layout and precision. With a
    ``deadline``, the step checks it between modules."""

    def run(channels_last: bool, amp: bool) -> None:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = images.detach().contiguous(memory_format=fmt).requires_grad_(True)
        watch = _watched(backbone.module, deadline) if deadline is not None else contextlib.nullcontext()
        with watch, torch.enable_grad():
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                out = backbone.features(x, layer, in_box=True, flat=False).float()
            (grad,) = torch.autograd.grad(out.square().sum(), x)
        if grad.device.type == "cuda":
            torch.cuda.synchronize(grad.device)  # the timing must include the device's work

    return run
