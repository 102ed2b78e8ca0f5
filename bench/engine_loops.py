"""The timed loops of bench/engine.py (see its docstring): the floor, the folded floor, the floor up to a layer, the
paper's reference loop and the engine, each giving steps/s after WARMUP untimed steps; the set-up they share and the
paired ratio of two loops' rates; the peak resident memory."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from iri_worker.engine import InversionSpec, invert, load_backbone  # noqa: E402
from iri_worker.engine.features import extract  # noqa: E402
from iri_worker.engine.layout import RUN_STEPS_NEEDED, layout_known  # noqa: E402

WARMUP = 2


def reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM (Linux)


def peak_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- the three loops


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_per_s(stamps: list[float]) -> float:
    """Steps per second of the median step between consecutive time stamps: a step the shared host interrupted
    (a neighbour's burst, a page-fault storm) is left out the same way in every loop compared, where the mean of a
    few steps took it in whole (a 2-core VM moved single rounds by 20-40 %)."""
    return 1 / statistics.median(b - a for a, b in zip(stamps, stamps[1:]))


def _timed(steps: int, body, device: torch.device = torch.device("cpu")) -> float:
    """Run body(i) for WARMUP + steps iterations; steps/s over the timed ones: on the CPU of the median step, on a
    GPU over all of them (drained at both ends: a sync per step would change what is timed)."""
    for i in range(WARMUP):
        body(i)
    _sync(device)
    stamps = [time.perf_counter()]
    for i in range(steps):
        body(WARMUP + i)
        if device.type != "cuda":
            stamps.append(time.perf_counter())
    _sync(device)
    if device.type != "cuda":
        return steps_per_s(stamps)
    return steps / (time.perf_counter() - stamps[0])


def floor_loop(module, x0: torch.Tensor, steps: int, channels_last: bool) -> float:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    module.to(memory_format=fmt).requires_grad_(False).eval()
    state = {"x": x0.clone().contiguous(memory_format=fmt)}

    def body(_i):
        x = state["x"].detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(module(x).square().sum(), x)
        state["x"] = x.detach() - 0.01 * grad

    return _timed(steps, body, x0.device)


def folded_floor_loop(backbone, x0: torch.Tensor, steps: int, channels_last: bool) -> float:
    with backbone.batchnorm_folded(keep_layer=backbone.default_layer):
        return floor_loop(backbone.module, x0, steps, channels_last)


def layer_floor_loop(backbone, layer: str, x0: torch.Tensor, steps: int, channels_last: bool) -> float:
    """The folded floor up to ``layer``: forward until that layer's output (the forward stopped there, as the
    engine stops it), backward to the input; BatchNorms folded as the engine folds them for that layer."""
    module = backbone.module
    layer_module = module.get_submodule(layer)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    module.to(memory_format=fmt).requires_grad_(False).eval()
    state = {"x": x0.clone().contiguous(memory_format=fmt)}

    def body(_i):
        x = state["x"].detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(extract(module, layer_module, x).square().sum(), x)
        state["x"] = x.detach() - 0.01 * grad

    with backbone.batchnorm_folded(keep_layer=layer):
        return _timed(steps, body, x0.device)


def interleaved_rates(backbone, spec: InversionSpec, targets: torch.Tensor, x0: torch.Tensor,
                      steps: int) -> tuple[float, float]:
    """(engine, folded floor) steps/s, each of its median step, with the two loops' steps taking turns inside one
    ``invert`` run: the floor's step (forward to the read layer, backward to the input) runs in the engine's
    ``on_step``, on the module as the engine holds it then (BatchNorms folded but the read layer's, the spec's
    layout, which the caller names). Both see the host in the same second, so its drift, which moves whole rounds by
    several %, cancels; each step starts after the other loop's, so neither keeps the cache to itself."""
    module = backbone.module
    layer = spec.layer if spec.layer is not None else backbone.default_layer
    layer_module = module.get_submodule(layer)
    fmt = torch.channels_last if spec.channels_last else torch.contiguous_format
    state = {"x": x0.clone().contiguous(memory_format=fmt), "resumed": None}
    engine_s: list[float] = []
    floor_s: list[float] = []

    def floor_step_after(step: int, _losses) -> None:
        began = time.perf_counter()
        if state["resumed"] is not None and step >= WARMUP:
            engine_s.append(began - state["resumed"])  # the engine's step, from the floor step before it
        x = state["x"].detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(extract(module, layer_module, x).square().sum(), x)
        state["x"] = x.detach() - 0.01 * grad
        state["resumed"] = time.perf_counter()
        if step >= WARMUP:
            floor_s.append(state["resumed"] - began)

    invert(dataclasses.replace(spec, steps=WARMUP + steps + 1), targets, backbone=backbone,
           on_step=floor_step_after)
    return 1 / statistics.median(engine_s), 1 / statistics.median(floor_s)


def reference_loop(backbone, x0: torch.Tensor, target_rep: torch.Tensor, steps: int) -> float:
    module = backbone.module
    module.to(memory_format=torch.contiguous_format).requires_grad_(True)  # as in the paper's code
    dev = x0.device
    mean = torch.tensor(backbone.mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std, device=dev).view(1, 3, 1, 1)
    layer = dict(module.named_modules())[backbone.default_layer]
    captured = {}
    handle = layer.register_forward_hook(lambda m, i, o: captured.__setitem__("rep", o))
    log = io.StringIO()
    state = {"x": x0.clone(), "best": x0.clone(), "best_loss": torch.full((x0.shape[0],), float("inf"), device=dev)}

    def body(i):
        x = state["x"].clone().requires_grad_(True)
        module((x.clamp(0, 1) - mean) / std)
        rep = captured["rep"].flatten(1)
        losses = (rep - target_rep).norm(dim=1) / target_rep.norm(dim=1)
        losses.mean().backward()
        with torch.no_grad():
            better = losses < state["best_loss"]
            state["best"][better] = x[better].detach()
            state["best_loss"] = torch.where(better, losses.detach(), state["best_loss"])
            grad = x.grad
            norm = grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            state["x"] = (x - 1.0 * grad / (norm + 1e-10)).clamp(0, 1)
        print(f"step {i} loss {losses.mean().item():.4f}", file=log)

    try:
        return _timed(steps, body, dev)
    finally:
        handle.remove()
        module.zero_grad(set_to_none=True)
        module.requires_grad_(False)


class EngineRun(NamedTuple):
    """One engine run: steps/s after WARMUP steps, the final mean loss, and the precision it ran in and why."""

    rate: float
    final_loss: float
    precision_calibration: dict | None


def engine_run(backbone, spec: InversionSpec, targets: torch.Tensor, steps: int) -> EngineRun:
    """``invert`` timed over its last ``steps`` steps (the median step, as ``steps_per_s``), between its on_step
    callbacks, after WARMUP steps and, where the run times its layout on its own first steps (no layout named, none
    cached), after those too: the rate is the run's in the layout it keeps. A calibration before step 0 (precision
    "auto") is not in it either."""
    layer = spec.layer if spec.layer is not None else backbone.default_layer
    timing_layout = (spec.channels_last is None and spec.precision != "auto" and layout_known(
        backbone=backbone, layer=layer, images=targets, amp=spec.precision == "bf16") is None)
    before = WARMUP + (RUN_STEPS_NEEDED if timing_layout else 0)
    stamps: list[float] = []
    result = invert(
        dataclasses.replace(spec, steps=before + steps), targets, backbone=backbone,
        on_step=lambda i, losses: stamps.append(time.perf_counter()),
    )
    return EngineRun(steps_per_s(stamps[-steps - 1:]), float(result.losses.mean()), result.precision_calibration)


def engine_loop(backbone, spec: InversionSpec, targets: torch.Tensor, steps: int) -> tuple[float, float]:
    run = engine_run(backbone, spec, targets, steps)
    return run.rate, run.final_loss


def paired_ratio(rates: dict[str, list[float]], other: str) -> float:
    """Median over rounds of engine / other within the same round: loops a few seconds apart share the
    machine's state, so drift between rounds on a shared host (up to 1.5x here) cancels out."""
    return round(statistics.median(e / o for e, o in zip(rates["engine"], rates[other])), 3)


# --------------------------------------------------------------------------- one configuration


class Setup(NamedTuple):
    """One configuration's model, inputs and spec on a device, and the floor's layout (whichever of NCHW /
    channels-last runs the bare loop faster, with both rates)."""

    backbone: object
    targets: torch.Tensor
    x0: torch.Tensor
    target_rep: torch.Tensor
    spec: InversionSpec
    layouts: dict
    floor_cl: bool


def setup(name: str, size: int, batch: int, steps: int, device: str = "cpu") -> Setup:
    backbone = load_backbone(name, device=device)
    generator = torch.Generator().manual_seed(0)
    targets = torch.rand(batch, 3, size, size, generator=generator).to(device)
    x0 = torch.rand(batch, 3, size, size, generator=generator).to(device)
    with torch.no_grad():
        target_rep = backbone.features(targets).detach()
    spec = InversionSpec(backbone=name, image_size=size, steps=steps, step_size=1.0, rng_seed=0)
    layouts = layouts_timed(lambda cl: floor_loop(backbone.module, x0, steps, cl))
    backbone.set_channels_last(backbone.channels_last)
    return Setup(backbone, targets, x0, target_rep, spec, layouts, max(layouts, key=layouts.get))


def layouts_timed(loop) -> dict[bool, float]:
    """{channels_last: steps/s} of ``loop(channels_last)``, the better of two timings each, NCHW, channels-last,
    channels-last, NCHW: the floor's layout must be its faster one (one short probe each once took the slower,
    and the engine then ran 1.2x "the floor")."""
    rates: dict[bool, float] = {}
    for channels_last in (False, True, True, False):
        rates[channels_last] = max(rates.get(channels_last, 0.0), loop(channels_last))
    return rates
