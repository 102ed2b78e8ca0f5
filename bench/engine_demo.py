"""What the layout calibration adds to the demo's job, measured on the job itself (bench/engine.py, issue 23 A).

Calibration times the job's own first steps (a warm-up and one or two timed steps in each layout), so the time spent
inside it is mostly the job's own work; what it adds is the other layout's first call and the slower layout's extra
milliseconds, which only a comparison with the same job run in the chosen layout shows. Here the demo's job (as
`make demo` runs it) runs end to end through ``iri_worker.engine.invert``, each time in a new process, as a
worker's first job runs, timed from just before ``invert`` to just after it (imports, photos and the backbone's
loading left out): alternately with the layout left to the engine (it calibrates) and with the spec naming the layout
calibration chose (nothing is timed). Pairs alternate measured/named, named/measured, ... so drift on a shared host
falls on both arms alike.

Figures (``demo_layout_calibration`` in bench/engine.py's JSON): ``job_s_by_pair``; ``job_s_layout_measured`` and
``job_s_layout_named``, the medians; ``added_s`` = their difference and ``added_share_of_job`` = it ÷ the named job;
``pair_added_s_median`` / ``pair_added_share_median``, the pairs' own differences; ``added_s_by_step_10`` /
``added_share_of_job_by_step_10``, the same difference at the end of step 10 ÷ the named job: the goal's figure
(<= 0.02), since calibration ends within the first 6 steps and the whole job's seconds swing by more than it on a shared
host; ``later_steps_measured_over_named``, the median over pairs of the ratio of the two arms' median ms per step after
step 10, shows that nothing of it lasts (about 1); ``calibration_cost_ms_recorded``, the median time the measured
jobs recorded inside calibration (their own steps' work included), and ``calibration_run_steps_by_run``, how many of
the job's steps each timed; ``layouts_chosen_by_measured_run`` and ``named_runs_timed_nothing`` (must be true).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from iri_worker.demo_photos import demo_job_spec

ROOT = Path(__file__).resolve().parent.parent
MEASURED, NAMED = "layout_measured", "layout_named"
# Calibration and the first steps' one-off work (primitives, allocations) end within the first few steps; the time to
# the end of step EARLY_STEPS holds all of it and little of the later steps' noise, which on a shared host is as
# large as what calibration adds to the whole job.
EARLY_STEPS = 10


def demo_spec(*, model: str, image_size: int, steps: int, channels_last: bool | None = None) -> dict:
    """The demo's job spec, the one `manage.py demo` submits (``channels_last`` only when named)."""
    spec = {**demo_job_spec(steps=steps, image_size=image_size), "backbone": model}
    if channels_last is not None:
        spec["channels_last"] = channels_last
    return spec


def demo_job_once(settings_json: str) -> None:
    """In a fresh process: the demo's job once, as a worker's first chunk runs it (the allocator and threads set up,
    the bundled photos preprocessed, the backbone loaded), timed from just before ``invert`` to just after it.
    Prints one JSON line: the job's seconds, the backbone's load seconds and the job's ``layout_calibration``."""
    import io

    import torch
    from PIL import Image

    from iri_worker import engine
    from iri_worker.demo_photos import bundled_photos

    settings = json.loads(settings_json)
    if settings["keep_freed_memory"]:
        engine.keep_freed_memory()
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    spec = engine.InversionSpec.from_dict(settings["spec"])
    targets = torch.stack([engine.photo_to_tensor(Image.open(io.BytesIO(data)), spec.image_size)
                           for data in bundled_photos().values()])
    loading = time.perf_counter()
    backbone = engine.load_backbone(spec.backbone)
    ended: list[float] = []  # when each step ended (a worker passes an on_step too)

    def on_step(_step: int, _losses) -> None:
        ended.append(time.perf_counter())

    started = time.perf_counter()
    result = engine.invert(spec, targets, backbone=backbone, on_step=on_step)
    job_s = time.perf_counter() - started
    later_ms = [(b - a) * 1000 for a, b in zip(ended[EARLY_STEPS - 1:], ended[EARLY_STEPS:])]
    print(json.dumps({"job_s": job_s, "early_s": ended[EARLY_STEPS - 1] - started,
                      "later_ms_per_step": statistics.median(later_ms), "backbone_load_s": started - loading,
                      "batch": int(targets.shape[0]), "threads": torch.get_num_threads(),
                      "layout_calibration": result.layout_calibration}))


def _job_in_new_process(settings: dict) -> dict:
    code = f"from bench.engine_demo import demo_job_once; demo_job_once({json.dumps(settings)!r})"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the demo's job failed in its own process:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _most_chosen(calibrations: list[dict]) -> str | None:
    """The layout most measured runs chose (the first's on a tie): one noisy calibration cannot put every named
    run in the slower layout."""
    return Counter(c["layout"] for c in calibrations).most_common(1)[0][0] if calibrations else None


def _pairs_run(*, model: str, image_size: int, steps: int, pairs: int, threads: int | None,
               keep_freed_memory: bool) -> tuple[list[dict], list[dict], list[dict]]:
    """The runs: per pair its order, each arm's job seconds and seconds to the end of step EARLY_STEPS, and the
    layout the named run named; then the measured runs' and the named runs' ``layout_calibration``."""
    base = {"threads": threads, "keep_freed_memory": keep_freed_memory}
    by_pair, measured, named = [], [], []
    for index in range(pairs):
        order = (MEASURED, NAMED) if index % 2 == 0 else (NAMED, MEASURED)
        pair = {"first": order[0]}
        for arm in order:
            layout = None if arm == MEASURED else _most_chosen(measured) == "channels_last"
            run = _job_in_new_process({**base, "spec": demo_spec(model=model, image_size=image_size, steps=steps,
                                                                 channels_last=layout)})
            (measured if arm == MEASURED else named).append({**run["layout_calibration"], "run": run})
            pair[arm] = round(run["job_s"], 3)
            pair[f"{arm}_to_step_{EARLY_STEPS}"] = round(run["early_s"], 3)
            pair[f"{arm}_later_ms_per_step"] = round(run["later_ms_per_step"], 2)
        pair["named_layout"] = named[-1]["layout"]
        by_pair.append(pair)
    return by_pair, measured, named


def demo_job_pairs(*, model: str, image_size: int, steps: int, pairs: int, threads: int | None,
                   keep_freed_memory: bool) -> dict:
    """``pairs`` pairs of the demo's job in new processes, layout measured and layout named (the first pair
    measured first). The figures: each arm's median job seconds, the added seconds (median measured - median named)
    and their share of the named job, the median of the pairs' own differences, the same difference up to the end
    of step EARLY_STEPS, and the calibration's cost as the measured jobs recorded it."""
    by_pair, measured, named = _pairs_run(model=model, image_size=image_size, steps=steps, pairs=pairs,
                                          threads=threads, keep_freed_memory=keep_freed_memory)
    job = {arm: statistics.median(p[arm] for p in by_pair) for arm in (MEASURED, NAMED)}
    early = {arm: statistics.median(p[f"{arm}_to_step_{EARLY_STEPS}"] for p in by_pair) for arm in (MEASURED, NAMED)}
    pair_added = [p[MEASURED] - p[NAMED] for p in by_pair]
    cost_ms = statistics.median(c["cost_ms"] for c in measured)
    last = measured[-1]["run"]
    return {
        "job_steps": steps, "pairs": pairs, "batch": last["batch"], "threads": last["threads"],
        "layout_chosen": _most_chosen(measured), "layouts_chosen_by_measured_run": [c["layout"] for c in measured],
        "job_s_by_pair": by_pair,
        f"job_s_{MEASURED}": round(job[MEASURED], 3), f"job_s_{NAMED}": round(job[NAMED], 3),
        "added_s": round(job[MEASURED] - job[NAMED], 3),
        "added_share_of_job": round((job[MEASURED] - job[NAMED]) / job[NAMED], 4),
        "pair_added_s_median": round(statistics.median(pair_added), 3),
        "pair_added_share_median": round(statistics.median(a / p[NAMED] for a, p in zip(pair_added, by_pair)), 4),
        # the same difference over the first steps only: what calibration adds, with less of the host's noise
        f"added_s_by_step_{EARLY_STEPS}": round(early[MEASURED] - early[NAMED], 3),
        f"added_share_of_job_by_step_{EARLY_STEPS}": round((early[MEASURED] - early[NAMED]) / job[NAMED], 4),
        # after step EARLY_STEPS both arms run the same layout: the steps' median ms (spikes left out) must match
        "later_steps_measured_over_named": round(statistics.median(
            p[f"{MEASURED}_later_ms_per_step"] / p[f"{NAMED}_later_ms_per_step"] for p in by_pair), 4),
        "calibration_cost_ms_recorded": round(cost_ms, 1),
        "calibration_cost_ms_recorded_by_run": [round(c["cost_ms"], 1) for c in measured],
        "calibration_ms_per_step_by_run": [c["ms_per_step"] for c in measured],
        "calibration_timed_steps_by_run": [c["timed_steps"] for c in measured],
        "calibration_run_steps_by_run": [c.get("run_steps", 0) for c in measured],
        "backbone_load_s_median": round(statistics.median(c["run"]["backbone_load_s"] for c in measured + named), 3),
        "named_runs_timed_nothing": all(c["source"] == "named by the spec" and not c["cost_ms"] for c in named),
    }
