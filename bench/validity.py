"""Benchmark: what the IRI validity record costs per job, next to the IRI run itself, at the demo's settings.

    python bench/validity.py --json            # EfficientNet-Lite0, reg_free, 300 steps, 128 px, the 4 bundled photos
    python bench/validity.py --json --quick    # tiny_cnn, 32 px, 50 steps: proves the script works (seconds)

Runs real jobs through iri_worker.services (iri_job_run: chunks, engine, proxies, validity, storage) on a
throw-away SQLite database and media folder, in this process, and reads each chunk's own timings:

  run_s        the IRI run: the engine's loop plus the perceptual proxies (chunk details "seconds");
  validity_s   the validity record: null distribution (unless cached), the IRIs' and targets' representations
               and labels (batched forward passes), percentiles and the loss curve read back once
               (chunk details "validity_seconds").

Jobs, in order: A (the demo's job; the null distribution is computed), B (the same settings, another seed: the
null comes from the cache), C (after --pool-photos more photos were uploaded: a new pool of NULL_POOL_MAX = 128
photos, the most a null ever uses, so the costliest first job). Also the loss curve's sampling inside on_step, timed in a
run of the engine alone (the sampler's own seconds over the run's). Prints one JSON line (with --json) with the
ratios validity_s / run_s per job; the goal is <= 0.10.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEMO = {"backbone": "efficientnet_lite0", "recipe": "reg_free", "seed_kind": "super-noise", "steps": 300,
        "step_size": 1.0, "image_size": 128, "rng_seed": 0}
QUICK = {**DEMO, "backbone": "tiny_cnn", "steps": 50, "image_size": 32}
GOAL = 0.10


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--quick", action="store_true", help="tiny model and size, few steps")
    parser.add_argument("--pool-photos", type=int, default=None,
                        help="photos added before job C (default: enough to fill the pool; 20 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return parser.parse_args()


def django_setup(folder: str) -> None:
    """A fresh SQLite database and media folder of our own: nothing of a real installation is touched."""
    os.environ["DATABASE_URL"] = f"sqlite:///{folder}/bench.sqlite3"
    os.environ["DJANGO_MEDIA_ROOT"] = f"{folder}/media"
    os.environ["CELERY_BROKER_URL"] = f"filesystem://{folder}/broker"  # never used: jobs run in this process
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def noise_png(seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    # smooth random colour fields (upsampled noise): photo-sized, PNG-compressible, all different
    small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    Image.fromarray(small).resize((400, 300), Image.Resampling.BICUBIC).save(out, format="PNG")
    return out.getvalue()


def run_job(photos, spec: dict, name: str) -> dict:
    from iri_worker.models import IriJob, NullDistribution
    from iri_worker.services import iri_job_run, iri_spec_default_chunk_size, iri_spec_validate

    full = iri_spec_validate(spec)
    job = IriJob.objects.create(team=photos[0].team, name=name, spec=full, chunk_size=iri_spec_default_chunk_size(image_size=full["image_size"]))
    job.targets.set(photos)
    started = time.perf_counter()
    iri_job_run(job_id=job.pk)
    wall = time.perf_counter() - started
    job.refresh_from_db()
    if job.status != IriJob.Status.DONE:
        raise SystemExit(f"job {name} failed: {job.error}")
    chunks = [c.details for c in job.chunks.all()]
    records = list(job.images.values_list("validity", flat=True))
    key = records[0]["null"]["key"]
    null = NullDistribution.objects.filter(key=key).first()
    run_s = sum(c["seconds"] for c in chunks)
    validity_s = sum(c["validity_seconds"] for c in chunks)
    return {
        "job": name, "targets": len(records), "chunks": len(chunks), "wall_s": round(wall, 2),
        "run_s": round(run_s, 3), "validity_s": round(validity_s, 3),
        "validity_over_run": round(validity_s / run_s, 4),
        "null_cached": all(c["null_cached"] for c in chunks),
        "null_s": null.seconds if null is not None and not any(c["null_cached"] for c in chunks) else 0.0,
        "null_photos": records[0]["null"]["photos"], "null_pairs": records[0]["null"]["pairs"],
        "percentiles": [r["percentile"] for r in records],
        "label_matches": [r["label_match"] for r in records],
        "loss_curve_points": len(records[0]["loss_curve"]),
    }


def loss_curve_sampling(spec: dict) -> dict:
    """The engine alone at the job's settings, with the worker's on_step sampler timed from inside."""
    import torch

    from iri_worker import engine

    spec = engine.InversionSpec.from_dict(spec)
    backbone = engine.load_backbone(spec.backbone)
    targets = torch.rand(4, 3, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(0))
    at = frozenset(engine.validity.loss_curve_steps(spec.steps))
    curve, spent = [], [0.0]

    def on_step(step, losses):
        t0 = time.perf_counter()
        if step in at:
            curve.append((step, losses))
        spent[0] += time.perf_counter() - t0

    started = time.perf_counter()
    engine.invert(spec, targets, backbone=backbone, on_step=on_step)
    run = time.perf_counter() - started
    t0 = time.perf_counter()
    torch.stack([loss for _, loss in curve]).cpu()  # the one read-back, after the run
    readback = time.perf_counter() - t0
    return {"points": len(curve), "sampler_s": round(spent[0], 6), "readback_s": round(readback, 6),
            "run_s": round(run, 3), "over_run": round((spent[0] + readback) / run, 6)}


def main() -> None:
    args = parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = QUICK if args.quick else DEMO
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-validity-") as folder:
        django_setup(folder)
        from iri_worker.demo_photos import bundled_photos
        from iri_worker.services import NULL_POOL_MAX, target_photo_create
        from teams.actors import Actor
        from teams.services import team_create

        bench = Actor.command("bench/validity.py")
        team = team_create(name="bench", actor=bench)
        photos = [target_photo_create(team=team, name=name, data=data, actor=bench)
                  for name, data in bundled_photos().items()]
        extra = args.pool_photos if args.pool_photos is not None else (20 if args.quick else NULL_POOL_MAX - len(photos))
        a = run_job(photos, spec, "A: demo job, null computed")
        b = run_job(photos, {**spec, "rng_seed": 1}, "B: same settings, null cached")
        for i in range(extra):
            target_photo_create(team=team, name=f"extra {i}", data=noise_png(i), actor=bench)
        c = run_job(photos, {**spec, "rng_seed": 2}, f"C: after {extra} more photos, new null")
    curve = loss_curve_sampling(spec)
    report = {
        "benchmark": "validity", "quick": args.quick, "spec": spec, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "jobs": [a, b, c],
        "validity_over_run_first_job": a["validity_over_run"],
        "validity_over_run_cached": b["validity_over_run"],
        "validity_over_run_largest_pool": c["validity_over_run"],
        "cached_over_first_validity_s": round(b["validity_s"] / a["validity_s"], 4) if a["validity_s"] else None,
        "loss_curve": curve,
        "goal": {"validity_over_run": GOAL},
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for job in report["jobs"]:
            null = "cached" if job["null_cached"] else f"{job['null_s']:.2f} s"
            print(f"{job['job']:<40} run {job['run_s']:.2f} s  validity {job['validity_s']:.3f} s  "
                  f"({job['validity_over_run']:.1%}; null {job['null_photos']} photos, {job['null_pairs']} pairs, {null})")
        print(f"loss curve sampling: {curve['over_run']:.4%} of the run")


if __name__ == "__main__":
    main()
