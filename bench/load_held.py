"""Load held, side by side: participants finish a survey over HTTP while a Celery worker generates IRIs.

    python bench/load_held.py --json            # 500 participants × 40 trials, resnet18 job, pgbench
    python bench/load_held.py --json --quick    # 50 participants: proves everything works

The whole stack runs on this machine: gunicorn (gunicorn.conf.py, the README configuration, started by
bench/survey_load.py's helper), PostgreSQL on 127.0.0.1:5432 (database BENCH_DB, default iri_load_held, dropped and
made again), Redis (CELERY_BROKER_URL, default redis://127.0.0.1:6379/0; its gpu and celery queues are purged) and
one real Celery worker process. A live 2AFC survey is built from an IRI set made here first (tiny_cnn, 32 px),
with 40 main trials per participant in 2 lists of N slots each. Then, at the same moment, the worker gets a real
IRI job (resnet18 at 32 px) and the participant bots of surveys/bots.py start, every participant at once (one
thread each, no think time): enroll, consent, fetch the trials, answer each (idempotency key, retried on 5xx and
broken connections), complete. Afterwards: answers counted in the database (lost = acknowledged but not stored,
duplicated = a second row for a participant and trial), the fill level (every list exactly N completed sessions,
every trial exactly N answers), whether the IRI job finished with its images, and PostgreSQL's own single-row
insert rate on the answer table's shape by pgbench at 32 clients in the same run (survey_load.pgbench).

Latency is each answer POST as the bots' HTTP client sees it (a retry is a request of its own). The bots are
Python threads on the same cores as the server, PostgreSQL and the worker, so the figures are a floor. Prints one
JSON line.
"""
import argparse
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENCH_DB", "iri_load_held")  # read by survey_load when imported
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

from bench import survey_load  # noqa: E402  (after BENCH_DB: its helpers use that database)

TRIALS_EACH, LISTS = 40, 2


class AnswerTimer:
    """Times every answer POST the bots send, by wrapping requests.Session.request in this process."""

    def __init__(self):
        self.latencies, self.server_errors, self.broken = [], 0, 0

    def install(self):
        import requests

        original, timer = requests.Session.request, self

        def timed(session, method, url, *args, **kwargs):
            if not url.endswith("/responses"):
                return original(session, method, url, *args, **kwargs)
            started = time.perf_counter()
            try:
                response = original(session, method, url, *args, **kwargs)
            except requests.RequestException:
                timer.broken += 1
                raise
            timer.latencies.append(time.perf_counter() - started)
            timer.server_errors += response.status_code >= 500
            return response

        requests.Session.request = timed

    def percentile(self, q: float) -> float | None:
        lat = sorted(self.latencies)
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1) if lat else None


def setup_django(media_root: str) -> None:
    os.environ.update({"DATABASE_URL": survey_load.DB_URL, "DJANGO_MEDIA_ROOT": media_root,
                       "DJANGO_SETTINGS_MODULE": "backend.settings"})
    survey_load.sh(survey_load.PSQL + ["-d", "postgres", "-c", f"DROP DATABASE IF EXISTS {survey_load.DB_NAME}"])
    survey_load.sh(survey_load.PSQL + ["-d", "postgres", "-c", f"CREATE DATABASE {survey_load.DB_NAME}"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def target_photos(count: int) -> list:
    """`count` distinct target photos: crops of the bundled photos (one photo per crop window and offset)."""
    from PIL import Image

    from iri_worker.demo_photos import bundled_photos
    from iri_worker.services import target_photo_create
    from teams.actors import Actor
    from teams.services import team_create

    team = team_create(name="load held", actor=Actor.command("bench/load_held.py"))
    rng = random.Random(0)
    sources = [(name, Image.open(io.BytesIO(data)).convert("RGB")) for name, data in bundled_photos().items()]
    photos = []
    for k in range(count):
        name, img = sources[k % len(sources)]
        side = int(min(img.size) * rng.uniform(0.5, 0.9))
        x, y = rng.randrange(img.width - side + 1), rng.randrange(img.height - side + 1)
        out = io.BytesIO()
        img.crop((x, y, x + side, y + side)).resize((64, 64)).save(out, format="PNG")
        photos.append(target_photo_create(team=team, name=f"{name}-{k}", data=out.getvalue(),
                                          actor=Actor.command("bench/load_held.py")))
    return photos


def survey_build(*, photos: list, ratings_per_list: int):
    """A live survey: 40 main trials per participant, LISTS lists, from an IRI set made here (tiny_cnn, 32 px)."""
    from iri_worker.models import IriJob
    from iri_worker.services import iri_job_run, iri_spec_validate
    from surveys.services import survey_create, survey_publish
    from teams.actors import Actor

    job = IriJob.objects.create(team=photos[0].team, name="survey set", spec=iri_spec_validate(
        {"backbone": "tiny_cnn", "steps": 5, "step_size": 0.5, "image_size": 32, "rng_seed": 0}))
    job.targets.set(photos)
    iri_job_run(job_id=job.pk)
    job.refresh_from_db()
    if job.status != IriJob.Status.DONE:
        raise SystemExit(f"load_held: the survey's IRI set failed: {job.error}")
    survey = survey_create(slug="held", title="Load held", iri_jobs=[job], trials_per_participant=TRIALS_EACH,
                           ratings_per_list=ratings_per_list, time_limit_minutes=60,
                           actor=Actor.command("bench/load_held.py"))
    return survey_publish(survey=survey, actor=Actor.command("bench/load_held.py"))


def worker_start() -> subprocess.Popen:
    from backend.celery import app

    with app.connection_for_write() as conn:  # nothing left over from earlier runs
        for queue in ("gpu", "celery"):
            conn.default_channel.queue_purge(queue)
    name = f"held-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "backend", "worker", "-Q", "gpu,celery", "-c", "1",
                             "-n", name, "--loglevel", "WARNING"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not app.control.ping(destination=[name], timeout=1.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("load_held: the Celery worker did not start")
    return proc


def fill_level(survey) -> dict:
    """Every list exactly N filled live slots, each a completed session; every main trial exactly N answers."""
    from django.db.models import Count, Q

    from surveys.models import Response, TrialList

    lists = TrialList.objects.filter(survey=survey).annotate(
        filled=Count("slots", filter=Q(slots__is_pilot=False, slots__filled_at__isnull=False), distinct=True),
        completed=Count("participants", filter=Q(participants__status="completed", participants__is_pilot=False), distinct=True),
    )
    per_trial = Response.objects.filter(trial__survey=survey, trial__kind="main").values("trial").annotate(n=Count("id"))
    n = survey.ratings_per_list
    return {
        "lists": [{"filled": tl.filled, "completed": tl.completed} for tl in lists],
        "answers_per_trial": sorted({row["n"] for row in per_trial}),
        "every_list_exactly_n": all(tl.filled == tl.completed == n for tl in lists)
        and {row["n"] for row in per_trial} == {n} and len(per_trial) == survey.trials.filter(kind="main").count(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line (the default output anyway)")
    parser.add_argument("--quick", action="store_true", help="50 participants, a short job: proves the benchmark works")
    parser.add_argument("--participants", type=int, default=None, help="default 500 (--quick 50); a multiple of 2")
    parser.add_argument("--iri-steps", type=int, default=None, help="steps of the concurrent resnet18 job (default 150: it runs through the whole load; --quick 10)")
    parser.add_argument("--iri-targets", type=int, default=8)
    parser.add_argument("--pgbench-seconds", type=int, default=None)
    args = parser.parse_args()
    participants = args.participants or (50 if args.quick else 500)
    steps = args.iri_steps or (10 if args.quick else 150)
    pgbench_s = args.pgbench_seconds or (5 if args.quick else 20)
    if participants % LISTS:
        raise SystemExit(f"load_held: --participants must be a multiple of {LISTS}")

    media = tempfile.mkdtemp(prefix="iri-load-held-")
    setup_django(media)
    from iri_worker.models import IriJob
    from iri_worker.services import iri_job_create
    from surveys.bots import bots_run
    from teams.actors import Actor

    photos = target_photos(TRIALS_EACH * LISTS)
    survey = survey_build(photos=photos, ratings_per_list=participants // LISTS)
    worker = worker_start()
    port = 8765 + random.randrange(1000)
    server = survey_load.start_server(port)
    timer = AnswerTimer()
    timer.install()
    result = {"quick": args.quick, "participants": participants, "trials_each": TRIALS_EACH, "lists": LISTS,
              "ratings_per_list": participants // LISTS, "server": "gunicorn -c gunicorn.conf.py"}
    try:
        job = iri_job_create(targets=photos[: args.iri_targets], name="held beside the load",
                             spec={"backbone": "resnet18", "image_size": 32, "steps": steps, "rng_seed": 0},
                             actor=Actor.command("bench/load_held.py"))
        load_started = time.time()
        summary = bots_run(base_url=f"http://127.0.0.1:{port}", slug=survey.slug, participants=participants,
                           concurrency=participants, policy="random", live=True, cases=("attentive",), seed=1)
        load_ended = time.time()
        deadline = time.monotonic() + (600 if args.quick else 1800)
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.status not in (IriJob.Status.QUEUED, IriJob.Status.RUNNING):
                break
            time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)
        worker.terminate()
        worker.wait(timeout=60)

    job_start = job.started_at.timestamp() if job.started_at else None
    job_end = job.finished_at.timestamp() if job.finished_at else time.time()
    overlap = max(0.0, min(job_end, load_ended) - max(job_start, load_started)) if job_start else 0.0
    answers_per_s = round(summary["responses"] / summary["elapsed_s"], 1)
    result.update({
        "answers": summary["responses"], "elapsed_s": summary["elapsed_s"], "answers_per_s": answers_per_s,
        "p50_ms": timer.percentile(0.5), "p99_ms": timer.percentile(0.99),
        "errors": summary["errors"], "http_5xx": timer.server_errors, "http_broken": timer.broken,
        "lost": summary["lost"], "duplicated": summary["duplicates"], "completed": summary["completed"],
        "fill_level": fill_level(survey),
        "iri_job": {"backbone": "resnet18", "image_size": 32, "steps": steps, "targets": args.iri_targets,
                    "status": job.status, "completed": job.status == IriJob.Status.DONE, "images": job.images.count(),
                    "seconds": round(job_end - job_start, 1) if job_start else None,
                    "share_of_load_overlapped": round(overlap / max(load_ended - load_started, 1e-9), 2)},
        "error_samples": summary["error_samples"],
    })
    shutil.rmtree(media, ignore_errors=True)
    result["pgbench_tps_32"] = survey_load.pgbench(pgbench_s, 32)
    result["ratio_answers_per_pgbench"] = round(answers_per_s / result["pgbench_tps_32"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
