"""Benchmark: the IRI engine's optimisation steps per second against two loops written here.

    python bench/engine.py --json            # resnet18 @32 and @224 (batch 32), Lite0 @224 (batch 32 and 8)
    python bench/engine.py --json --quick    # tiny sizes, a few steps: proves the script works (~1 min)
    python bench/engine.py --json --sweep-only   # only the layer sweeps (Lite0 and resnet18 b8 at 3 stages each)

For each configuration (same model, batch, image size and thread count) it runs, alternating
A B C D D C B A for --rounds rounds, four loops and keeps the median steps/s of each (ratios: the
median of the per-round ratios). A loop's steps/s on the CPU is that of its median step, so a step the shared
host interrupted counts in no loop (``bench.engine_loops.steps_per_s``; until 2026-12-06 it was the mean of the
timed steps, which let single rounds move by 20-40 %):

  floor      a bare loop of only forward + backward to the input (weights frozen, eval mode, no
             normalisation, no keep-best) in the fastest memory layout for that model: both NCHW and
             channels-last are tried first, twice each, and the faster one is the floor;
  reference  the loop as the paper's code runs it: weights left with requires_grad (their
             gradients are computed and accumulated), NCHW, normalisation, relative L2 loss, the
             normalised-gradient step with clipping, keep-best, and a ``.item()`` plus a log line per step;
  engine     ``iri_worker.engine.invert`` with the default spec (reg_free, normalised gradient,
             keep-best, the layout it measures faster on the host, BatchNorms folded into their convolutions),
             timed between its on_step callbacks;
  folded floor  the floor loop on the model with its BatchNorms folded as the engine runs it, so that
             engine_over_folded_floor is what keep-best, clipping and the per-image step cost on their
             own (the floor as the issue defines it keeps the BatchNorms).

Reported per configuration: steps/s of each loop, engine_over_floor, engine_over_reference, the
peak resident memory of each loop (VmHWM, reset between loops; with freed memory kept, see below, a loop's peak
includes the heap earlier loops left, so use --glibc-malloc for per-loop peaks), and the effect of bf16 autocast
(``precision="bf16"``): engine steps/s and the final mean loss with and without it, after the same steps.
Precision by measurement (issue 23, ``precision_auto`` per configuration): the engine with ``precision="auto"``,
which times fp32 against bf16 on the run's batch and keeps bf16 only where it is faster and its loss after the same
steps within 1 % of fp32's (``iri_worker.engine.precision``): its choice and reason, its speed-up over fp32 (auto
steps/s / the fp32 engine's median), the final-loss difference after the same steps (auto - fp32, and relative),
and what a fresh calibration cost (its share of a 300-step job at the fp32 engine rate). ``demo_precision_calibration``:
the same cost against the demo's job, measured before anything else ran bf16 in the process (a fresh worker's).
Where CUDA is present (``--cuda-only`` skips the CPU part), the same comparison runs on the GPU with
larger batches (the GPU drained before and after each timing), plus images*steps/s in fp32 and bf16,
peak GPU memory, and host-device synchronisations per step counted by torch's sync debug mode.
Layer sweep (``layer_sweep`` in the JSON): the same backbone and images at several of its stages, as a
layer-sweep job runs them (one job per layer). Per layer, alternating A B, B A for --rounds rounds, the engine
with ``spec.layer`` set against the folded floor up to that layer (forward to the layer, stopped there as the
engine stops, BatchNorms folded except the read layer's, the faster of NCHW / channels-last), and
engine_over_folded_floor, the median of the per-round ratios (goal >= 0.95 on CPU), and engine_added_ms_per_step,
what the engine's own work adds to each step (the median over rounds of 1/engine - 1/floor); ``interleaved``, the same
ratio with the two loops' steps taking turns inside one engine run (the floor's step in the engine's on_step, in the
layout the engine chose), steps x rounds steps each, where the host's drift between loops cancels. The overhead probe
(``overhead_probe``) runs the same at two layers of tiny_cnn, a 0.5 ms step, to show that added time nearly bare.
Layout calibration (issue 23): the engine times NCHW and channels-last on the run's own first steps and goes on in
the faster (``iri_worker.engine.layout``); per configuration ``engine_layout`` is its choice and ``layout_calibration``
its timings, beside a fresh calibration on steps of its own (as precision "auto" runs it) and that time ÷ a 300-step
job (``inside_share_of_job``). ``demo_layout_calibration``: what calibration adds to the demo's own job (`make demo`:
Lite0, 4 bundled photos, 128 px, 300 steps), the job run end to end in new processes, in 6 alternating pairs (2 of
100 steps at 64 px with --quick) with the layout measured and named: ``added_share_of_job_by_step_10`` (goal <= 0.02)
with ``later_steps_measured_over_named`` and the whole job's ``added_share_of_job`` (every figure:
bench/engine_demo.py).
Every loop runs with the C allocator set up as a worker sets it up (``keep_freed_memory``: freed blocks stay in the
heap for the next step; ``--glibc-malloc`` leaves glibc's defaults, under which each step faults in fresh pages).
Prints one JSON line (with --json; a readable table otherwise). Targets: engine_over_floor >= 0.95,
engine_over_reference >= 1.8.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from iri_worker.engine import InversionSpec, invert, keep_freed_memory, load_backbone  # noqa: E402
from iri_worker.engine import layout_cache_clear, layout_calibrate, precision_cache_clear  # noqa: E402
from iri_worker.engine.fold import batchnorm_pairs  # noqa: E402
from iri_worker.engine.layout import layout_known  # noqa: E402

from bench.engine_demo import demo_job_pairs  # noqa: E402
from bench.engine_loops import (  # noqa: E402
    WARMUP, engine_loop, engine_run, floor_loop, folded_floor_loop, interleaved_rates, layer_floor_loop, layouts_timed,
    paired_ratio, peak_rss_mb, reference_loop, reset_peak_rss, setup,
)

FULL = [("resnet18", 32, 32, 30), ("resnet18", 224, 32, 4), ("efficientnet_lite0", 224, 32, 3),
        ("efficientnet_lite0", 224, 8, 8)]
QUICK = [("resnet18", 32, 8, 6), ("efficientnet_lite0", 64, 4, 4)]
# Layer sweeps: (model, image size, batch, timed steps, layers): three stages each, shallow, middle, pooled.
SWEEP = [("efficientnet_lite0", 224, 8, 8, ("_blocks.2", "_blocks.7", "_avg_pooling")),
         ("resnet18", 224, 8, 6, ("layer1", "layer3", "avgpool"))]
QUICK_SWEEP = [("efficientnet_lite0", 64, 4, 4, ("_blocks.2", "_avg_pooling"))]
# The overhead probe: the test model tiny_cnn, whose whole step takes about 0.5 ms, so the engine's own fixed work
# per step (a few dozen small tensor ops and their Python calls) is measured nearly bare. Reported in ms; no ratio
# goal applies to it (no network anyone sweeps is this small).
PROBE = [("tiny_cnn", 32, 8, 300, ("relu1", "pool"))]
QUICK_PROBE = [("tiny_cnn", 32, 8, 60, ("relu1",))]
# The demo's job (`make demo`: Lite0, its 4 photos in one chunk, 128 px, 300 steps), to which the layout calibration
# adds at most 2 % (issue 23): (model, px, batch, job steps, engine steps timed, pairs of jobs, bench/engine_demo.py)
DEMO = ("efficientnet_lite0", 128, 4, 300, 6, 6)
QUICK_DEMO = ("efficientnet_lite0", 64, 4, 100, 3, 2)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps")
    parser.add_argument("--rounds", type=int, default=None, help="A B C rounds (default 2; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--no-cuda", action="store_true", help="skip the CUDA figures")
    parser.add_argument("--cuda-only", action="store_true", help="only the CUDA figures (on a GPU machine)")
    parser.add_argument("--sweep-only", action="store_true", help="only the layer-sweep case (CPU)")
    parser.add_argument("--glibc-malloc", action="store_true",
                        help="leave glibc's allocator as it is (workers call keep_freed_memory, as this does by "
                             "default)")
    return parser.parse_args()


# --------------------------------------------------------------------------- memory


def layout_figures(backbone, targets: torch.Tensor, engine_ms_per_step: float, job_steps: int = DEMO[3]) -> dict:
    """The layout the engine chose in the timed runs (its cached calibration), then a fresh calibration on the same
    batch: the time inside it and that time's share of a ``job_steps`` job at ``engine_ms_per_step``
    (``inside_share_of_job``: more than calibration adds, see ``bench.engine_demo``). After the timed loops."""
    used = layout_calibrate(backbone=backbone, layer=backbone.default_layer, images=targets)
    layout_cache_clear()
    fresh = layout_calibrate(backbone=backbone, layer=backbone.default_layer, images=targets)
    job_ms = job_steps * engine_ms_per_step
    return {"layout": used.layout, "ms_per_step": used.ms_per_step, "timed_steps": used.timed_steps,
            "fresh_layout": fresh.layout, "fresh_ms_per_step": fresh.ms_per_step, "cost_ms": round(fresh.cost_ms, 1),
            "job_steps": job_steps, "inside_share_of_job": round(fresh.cost_ms / (fresh.cost_ms + job_ms), 4)}


def auto_figures(backbone, spec: InversionSpec, targets: torch.Tensor, steps: int, fp32_rate: float,
                 final_fp32: float, job_steps: int = DEMO[3]) -> dict:
    """The engine with precision "auto" on a fresh calibration cache: its choice, its rate over the fp32 engine's,
    the final-loss difference after the same steps, and the calibration's cost and share of a ``job_steps`` job."""
    precision_cache_clear()
    auto = engine_run(backbone, dataclasses.replace(spec, precision="auto"), targets, steps)
    record = auto.precision_calibration
    job_ms = job_steps * 1000 / fp32_rate
    return {
        "precision": record["precision"], "reason": record["reason"], "calibration": record,
        "engine_steps_per_s": round(auto.rate, 3), "speedup_over_fp32": round(auto.rate / fp32_rate, 3),
        "final_loss_fp32": round(final_fp32, 5), "final_loss_auto": round(auto.final_loss, 5),
        "final_loss_diff": round(auto.final_loss - final_fp32, 6),
        "final_loss_rel_diff": round(abs(auto.final_loss - final_fp32) / abs(final_fp32), 5) if final_fp32 else None,
        "calibration_cost_ms": round(record["cost_ms"], 1), "job_steps": job_steps,
        "calibration_share_of_job": round(record["cost_ms"] / (record["cost_ms"] + job_ms), 4),
    }


def time_inside_calibration(name: str, size: int, batch: int, job_steps: int, steps: int) -> dict:
    """The time spent inside ``layout_calibrate`` ÷ (that time + the job's steps × the engine's ms per step at the
    demo's settings, the median of three short runs): a cold process's first calibration, then a fresh one again.
    An upper bound on what calibration adds to the job (see ``bench.engine_demo``)."""
    backbone = load_backbone(name)
    targets = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    layout_cache_clear()
    first = layout_calibrate(backbone=backbone, layer=backbone.default_layer, images=targets)
    spec = InversionSpec(backbone=name, image_size=size, steps=steps, step_size=1.0, rng_seed=0)
    engine_ms = 1000 / statistics.median(engine_loop(backbone, spec, targets, steps)[0] for _ in range(3))
    row = layout_figures(backbone, targets, engine_ms, job_steps)
    backbone.set_channels_last(backbone.channels_last)
    first_share = first.cost_ms / (first.cost_ms + job_steps * engine_ms)
    precision_cache_clear()  # the first bf16 steps of this process: a fresh worker's precision calibration
    auto = invert(dataclasses.replace(spec, precision="auto", steps=1), targets, backbone=backbone)
    cost = auto.precision_calibration["cost_ms"]
    demo_precision = {"precision": auto.precision_calibration["precision"], "cost_ms": round(cost, 1),
                      "share_of_job": round(cost / (cost + job_steps * engine_ms), 4),
                      "calibration": auto.precision_calibration}
    return {"precision_calibration": demo_precision,
            "what": "time inside layout_calibrate / (it + job steps x engine ms per step), warm-ups included",
            "batch": batch, "engine_ms_per_step": round(engine_ms, 2), "first_cost_ms": round(first.cost_ms, 1),
            "first_inside_share_of_job": round(first_share, 4), "first_layout": first.layout,
            "first_ms_per_step": first.ms_per_step, **row}


def run_demo_calibration(name: str, size: int, batch: int, job_steps: int, steps: int, pairs: int, *,
                         threads: int | None, keep_freed: bool) -> dict:
    """What the layout calibration adds to the demo's job (``bench.engine_demo``), the time inside it ÷ the job, and
    (``precision_calibration``) what a fresh worker's precision calibration costs the same job."""
    inside = time_inside_calibration(name, size, batch, job_steps, steps)  # first: this process is still cold
    job = demo_job_pairs(model=name, image_size=size, steps=job_steps, pairs=pairs, threads=threads,
                         keep_freed_memory=keep_freed)
    return {"precision_calibration": inside.pop("precision_calibration"), "model": name, "image_size": size, **job,
            "goal_share_at_most": 0.02, "time_inside_calibration": inside}


def run_config(name: str, size: int, batch: int, steps: int, rounds: int) -> dict:
    backbone, targets, x0, target_rep, spec, layouts, floor_cl = setup(name, size, batch, steps)

    rates: dict[str, list[float]] = {"floor": [], "engine": [], "folded_floor": [], "reference": []}
    peaks: dict[str, float | None] = {}
    final_fp32 = None
    for round_index in range(rounds):  # A B C D, D C B A, ...: the engine next to the floor, drift cancels
        for method in list(rates)[:: 1 if round_index % 2 == 0 else -1]:
            reset_peak_rss()
            if method == "floor":
                rates[method].append(floor_loop(backbone.module, x0, steps, floor_cl))
            elif method == "folded_floor":
                rates[method].append(folded_floor_loop(backbone, x0, steps, floor_cl))
            elif method == "reference":
                rates[method].append(reference_loop(backbone, x0, target_rep, steps))
            else:
                rate, final_fp32 = engine_loop(backbone, spec, targets, steps)
                rates[method].append(rate)
            peaks[method] = max(filter(None, [peaks.get(method), peak_rss_mb()]), default=None)
    bf16_rate, final_bf16 = engine_loop(backbone, dataclasses.replace(spec, precision="bf16"), targets, steps)
    med = {k: statistics.median(v) for k, v in rates.items()}
    auto = auto_figures(backbone, spec, targets, steps, med["engine"], final_fp32)
    calibration = layout_figures(backbone, targets, 1000 / med["engine"])
    backbone.set_channels_last(backbone.channels_last)

    return {
        "model": name, "image_size": size, "batch": batch, "timed_steps": steps, "rounds": rounds,
        "floor_layout": "channels_last" if floor_cl else "nchw",
        "floor_nchw_steps_per_s": round(layouts[False], 3),
        "floor_channels_last_steps_per_s": round(layouts[True], 3),
        "engine_layout": calibration["layout"],  # measured by the engine on this host (layout_calibration)
        "layout_calibration": calibration,
        "floor_steps_per_s": round(med["floor"], 3),
        "reference_steps_per_s": round(med["reference"], 3),
        "engine_steps_per_s": round(med["engine"], 3),
        "folded_floor_steps_per_s": round(med["folded_floor"], 3),
        "batchnorms_folded": len(batchnorm_pairs(backbone.module)),
        "engine_over_floor": paired_ratio(rates, "floor"),
        "engine_over_reference": paired_ratio(rates, "reference"),
        "engine_over_folded_floor": paired_ratio(rates, "folded_floor"),
        "engine_images_steps_per_s": round(med["engine"] * batch, 2),
        "steps_per_s_by_round": {k: [round(r, 3) for r in v] for k, v in rates.items()},
        "peak_rss_mb": peaks,
        "bf16": {
            "engine_steps_per_s": round(bf16_rate, 3),
            "speedup": round(bf16_rate / med["engine"], 3),
            "final_loss_fp32": round(final_fp32, 5),
            "final_loss_bf16": round(final_bf16, 5),
        },
        "precision_auto": auto,
    }


def run_sweep(name: str, size: int, batch: int, steps: int, layers: tuple[str, ...], rounds: int) -> list[dict]:
    """Per layer of a sweep: the engine at that layer next to the folded floor up to it (A B, B A, ...)."""
    backbone = load_backbone(name)
    generator = torch.Generator().manual_seed(0)
    targets = torch.rand(batch, 3, size, size, generator=generator)
    x0 = torch.rand(batch, 3, size, size, generator=generator)
    rows = []
    for layer in layers:
        spec = InversionSpec(backbone=name, layer=layer, image_size=size, steps=steps, step_size=1.0, rng_seed=0)
        layouts = layouts_timed(lambda cl: layer_floor_loop(backbone, layer, x0, steps, cl))
        floor_cl = max(layouts, key=layouts.get)
        rates: dict[str, list[float]] = {"engine": [], "folded_floor": []}
        for round_index in range(rounds):
            for method in list(rates)[:: 1 if round_index % 2 == 0 else -1]:
                if method == "engine":
                    rates[method].append(engine_loop(backbone, spec, targets, steps)[0])
                else:
                    rates[method].append(layer_floor_loop(backbone, layer, x0, steps, floor_cl))
        # the same comparison with the two loops' steps taking turns, in the layout the engine chose
        kept = layout_known(backbone=backbone, layer=layer, images=targets)
        engine_rate, floor_rate = interleaved_rates(
            backbone, dataclasses.replace(spec, channels_last=kept.channels_last), targets, x0, steps * rounds)
        backbone.set_channels_last(backbone.channels_last)
        with torch.no_grad():
            width = backbone.features(targets[:1], layer).shape[1]
        rows.append({
            "model": name, "image_size": size, "batch": batch, "layer": layer, "representation_width": width,
            "timed_steps": steps, "rounds": rounds, "floor_layout": "channels_last" if floor_cl else "nchw",
            "engine_steps_per_s": round(statistics.median(rates["engine"]), 3),
            "folded_floor_steps_per_s": round(statistics.median(rates["folded_floor"]), 3),
            "engine_over_folded_floor": paired_ratio(rates, "folded_floor"),
            # what the engine adds to each step (normalising, the loss, keep-best, the step, Python), in ms
            "engine_added_ms_per_step": round(statistics.median(
                1000 / e - 1000 / f for e, f in zip(rates["engine"], rates["folded_floor"])), 3),
            "steps_per_s_by_round": {k: [round(r, 3) for r in v] for k, v in rates.items()},
            "interleaved": {"layout": kept.layout, "steps": steps * rounds, "engine_steps_per_s": round(engine_rate, 3),
                            "folded_floor_steps_per_s": round(floor_rate, 3),
                            "engine_over_folded_floor": round(engine_rate / floor_rate, 3)},
        })
    return rows


CUDA = [("resnet18", 32, 256, 40), ("resnet18", 224, 64, 20), ("efficientnet_lite0", 224, 64, 20),
        ("efficientnet_lite0", 224, 8, 40)]


def engine_rate_cuda(backbone, spec: InversionSpec, targets: torch.Tensor, steps: int) -> tuple[float, float]:
    """Engine steps/s on the GPU: two runs of different length, so set-up and the final copy cancel out."""
    times, final = [], None
    for n in (WARMUP, WARMUP + steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        result = invert(dataclasses.replace(spec, steps=n), targets, backbone=backbone, device="cuda")
        torch.cuda.synchronize()  # invert returns CPU tensors, so this is already drained
        times.append(time.perf_counter() - start)
        final = float(result.losses.mean())
    return steps / (times[1] - times[0]), final


def host_syncs_per_step(backbone, spec: InversionSpec, targets: torch.Tensor) -> float:
    """Host-device synchronisations per optimisation step, counted by torch's sync debug mode
    (each sync raises a warning) over runs of 5 and 15 steps; the difference / 10 excludes set-up."""
    import warnings

    counts = []
    for n in (5, 15):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                invert(dataclasses.replace(spec, steps=n), targets, backbone=backbone, device="cuda")
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(w.message) for w in caught))
    return (counts[1] - counts[0]) / 10


def run_cuda(configs, rounds: int) -> list[dict]:
    """The floor / reference / engine comparison on the GPU, then bf16, peak memory and host syncs."""
    out = []
    for name, size, batch, steps in configs:
        backbone, targets, x0, target_rep, spec, _, floor_cl = setup(name, size, batch, steps, device="cuda")
        rates: dict[str, list[float]] = {"floor": [], "reference": [], "engine": [], "engine_bf16": [],
                                         "folded_floor": []}
        finals = {}
        for _ in range(rounds):  # A B C D E A B C D E
            rates["floor"].append(floor_loop(backbone.module, x0, steps, floor_cl))
            rates["folded_floor"].append(folded_floor_loop(backbone, x0, steps, floor_cl))
            backbone.set_channels_last(backbone.channels_last)
            rates["reference"].append(reference_loop(backbone, x0, target_rep, steps))
            backbone.set_channels_last(backbone.channels_last)
            for label, precision in (("engine", "fp32"), ("engine_bf16", "bf16")):
                torch.cuda.reset_peak_memory_stats()
                rate, finals[label] = engine_rate_cuda(backbone, dataclasses.replace(spec, precision=precision),
                                                       targets, steps)
                rates[label].append(rate)
                finals[f"{label}_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        med = {k: statistics.median(v) for k, v in rates.items()}
        out.append({
            "model": name, "image_size": size, "batch": batch, "timed_steps": steps, "rounds": rounds,
            "floor_layout": "channels_last" if floor_cl else "nchw",
            **{f"{k}_steps_per_s": round(v, 2) for k, v in med.items()},
            "engine_over_floor": paired_ratio(rates, "floor"),
            "engine_over_reference": paired_ratio(rates, "reference"),
            "engine_over_folded_floor": paired_ratio(rates, "folded_floor"),
            "fp32_images_steps_per_s": round(med["engine"] * batch, 1),
            "bf16_images_steps_per_s": round(med["engine_bf16"] * batch, 1),
            "bf16_speedup": round(med["engine_bf16"] / med["engine"], 3),
            "final_loss_fp32": round(finals["engine"], 5), "final_loss_bf16": round(finals["engine_bf16"], 5),
            "fp32_peak_mb": finals["engine_peak_mb"], "bf16_peak_mb": finals["engine_bf16_peak_mb"],
            "host_syncs_per_step": host_syncs_per_step(backbone, spec, targets),
        })
    return out


def main() -> None:
    args = parse_args()
    kept = False if args.glibc_malloc else keep_freed_memory()  # as a worker process runs the engine
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = QUICK if args.quick else FULL
    rounds = args.rounds or (1 if args.quick else 2)
    started = time.perf_counter()
    # first, so that its first calibration is a fresh worker's (nothing loaded, nothing cached yet)
    demo = None if args.cuda_only or args.sweep_only else run_demo_calibration(
        *(QUICK_DEMO if args.quick else DEMO), threads=args.threads, keep_freed=kept)
    demo_precision = demo.pop("precision_calibration") if demo else None
    rows = [] if args.cuda_only or args.sweep_only else [run_config(*config, rounds=rounds) for config in configs]
    sweep, probe = ([[row for config in configs for row in run_sweep(*config, rounds=rounds)]
                     for configs in ((QUICK_SWEEP, QUICK_PROBE) if args.quick else (SWEEP, PROBE))]
                    if not args.cuda_only else ([], []))
    report = {
        "benchmark": "engine", "quick": args.quick, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "keeps_freed_memory": kept,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # bf16 pays only with AVX512-BF16 / AMX
        "configs": rows,
        "layer_sweep": sweep,
        "overhead_probe": probe,
        "demo_layout_calibration": demo,
        "demo_precision_calibration": demo_precision,
        "targets": {"engine_over_floor": 0.95, "engine_over_reference": 1.8, "sweep_engine_over_folded_floor": 0.95},
    }
    if torch.cuda.is_available() and not args.no_cuda and not args.sweep_only:
        report["cuda"] = run_cuda(QUICK if args.quick else CUDA, rounds)
        report["cuda_device"] = torch.cuda.get_device_name(0)
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(report))
    else:
        for row in rows:
            print(f"{row['model']:>20} {row['image_size']:>4}px b{row['batch']:<3} "
                  f"floor {row['floor_steps_per_s']:.2f}/s "
                  f"ref {row['reference_steps_per_s']:.2f}/s engine {row['engine_steps_per_s']:.2f}/s  "
                  f"engine/floor {row['engine_over_floor']:.2f} engine/ref {row['engine_over_reference']:.2f} "
                  f"engine/folded floor {row['engine_over_folded_floor']:.2f} "
                  f"auto: {row['precision_auto']['precision']} x{row['precision_auto']['speedup_over_fp32']:.2f} "
                  f"loss {row['precision_auto']['final_loss_rel_diff']}")
        for row in sweep + probe:
            print(f"{row['model']:>20} {row['image_size']:>4}px b{row['batch']:<3} layer {row['layer']:<14} "
                  f"engine {row['engine_steps_per_s']:.2f}/s folded floor {row['folded_floor_steps_per_s']:.2f}/s "
                  f"engine/folded floor {row['engine_over_folded_floor']:.3f} "
                  f"engine adds {row['engine_added_ms_per_step']:.3f} ms/step")


if __name__ == "__main__":
    main()
