"""Benchmark: the study archive (results.archive) of a large survey, next to the report's own time.

    python bench/archive.py --json            # 1,000,000 answers: 20,000 participants x 50, 5,000 items, 12 conditions
    python bench/archive.py --json --quick    # 50,000 answers (1,000 participants), same shape
    python bench/archive.py --json --database iri_bench_archive_a   # another database name (several at once)

Builds the survey of bench/analysis.py in a dedicated database (default iri_bench_archive; BENCH_DATABASE_URL
overrides the server), with a small real PNG behind every stored image (the archive copies them) and an assignment
behind every answer (the counterbalancing table), then times
  - archive_s: manage.py study_archive's service (the report, the answers written row by row into the zip, the
    stimuli, the plan, the manifest), its size in bytes and the growth of the process's peak memory while it ran;
  - report_s: results.services.alignment_report alone (the archive computes it once inside archive_s);
  - reanalyse_s: the archive's reanalyse.py (checksums, the arrays rebuilt from the CSVs, the report recomputed and
    compared), run in a child process; it must end with every number identical (exit status 0).
Prints one JSON line (--json) or a summary. Goal: archive_s under 60 s at 1,000,000 answers, streamed.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_spec = importlib.util.spec_from_file_location("bench_analysis", ROOT / "bench" / "analysis.py")
bench_analysis = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_analysis)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON line (default: a readable summary)")
    parser.add_argument("--quick", action="store_true", help="50,000 answers instead of 1,000,000")
    parser.add_argument("--participants", type=int)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--conditions", type=int, default=12)
    parser.add_argument("--per-participant", type=int, default=50, help="answers per participant")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--database", default="iri_bench_archive")
    parser.add_argument("--no-reanalyse", action="store_true", help="skip running the archive's reanalyse.py")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database and the archive's folder")
    return parser.parse_args()


def images_write(*, media: Path) -> int:
    """A small PNG behind every StoredImage the bench survey made (the bench stores names, not files)."""
    import numpy as np
    from PIL import Image

    from iri_worker.models import StoredImage

    n = 0
    for pk, name in StoredImage.objects.values_list("id", "file").iterator():
        path = media / name
        path.parent.mkdir(parents=True, exist_ok=True)
        out = io.BytesIO()
        Image.fromarray(np.full((32, 32, 3), pk % 256, dtype=np.uint8)).save(out, format="PNG")
        path.write_bytes(out.getvalue())
        n += 1
    return n


def assignments_load(*, survey) -> int:
    """Each answer's assignment (its place in the participant's sequence and its option order), as a real session
    has: the archive writes them as the counterbalancing table (bench/analysis.py makes answers only)."""
    from django.db import connection

    from surveys.models import Assignment, Participant, Response

    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Assignment._meta.db_table} (participant_id, trial_id, position, option_order) "
            "SELECT r.participant_id, r.trial_id, ROW_NUMBER() OVER (PARTITION BY r.participant_id ORDER BY r.id) - 1, "
            "CASE WHEN r.shown_position = r.choice THEN '01' ELSE '10' END "
            f"FROM {Response._meta.db_table} r JOIN {Participant._meta.db_table} p ON p.id = r.participant_id "
            "WHERE p.survey_id = %s",
            [survey.pk],
        )
        return cursor.rowcount


def archive_timed(*, survey, out: Path, n_boot: int) -> tuple[dict, float, dict]:
    """Write the study archive; what it wrote, its seconds, and the seconds of each step (from its start to the
    next step's)."""
    from results.archive import study_archive_write
    from teams.actors import Actor

    start = time.perf_counter()
    steps = {}  # step -> when it began ("answers (50,000 of ...)" is the answers step going on)
    written = study_archive_write(
        survey=survey, out=out, n_boot=n_boot, actor=Actor.command("bench/archive.py"),
        progress=lambda share, step: steps.setdefault(step.split(" (")[0], time.perf_counter() - start))
    archive_s = time.perf_counter() - start
    names = list(steps)
    step_s = {name: round((steps[names[k + 1]] if k + 1 < len(names) else archive_s) - steps[name], 2)
              for k, name in enumerate(names)}
    return written, archive_s, step_s


def reanalyse_run(*, folder: Path, work: Path) -> dict:
    """Run the unpacked archive's reanalyse.py as a reviewer would: its seconds, exit status and comparison."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "reanalyse.py", "--json", str(work / "reanalysis.json")], cwd=folder,
                          capture_output=True, text=True)
    result = json.loads((work / "reanalysis.json").read_text()) if (work / "reanalysis.json").exists() else {}
    if done.returncode:
        print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
    return {"reanalyse_s": round(time.perf_counter() - start, 2), "reanalyse_exit": done.returncode,
            "reanalyse_compared": result.get("compared"), "reanalyse_different": len(result.get("different", []))}


def main() -> int:
    args = parse_args()
    participants = args.participants or (1000 if args.quick else 20000)
    base = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")
    bench_analysis.database_create(base, args.database)
    work = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    os.environ["DATABASE_URL"] = f"{base}/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    os.environ["DJANGO_CONN_MAX_AGE"] = "0"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    settings.MEDIA_ROOT = str(work / "media")
    try:
        t0 = time.perf_counter()
        call_command("migrate", verbosity=0)
        survey = bench_analysis.survey_build(n_items=args.items, n_conditions=args.conditions)
        people = bench_analysis.participants_load(survey=survey, n=participants)
        n_answers = bench_analysis.answers_load(survey=survey, people=people, per_participant=args.per_participant,
                                                n_conditions=args.conditions)
        n_assignments = assignments_load(survey=survey)
        n_images = images_write(media=work / "media")
        setup_s = time.perf_counter() - t0

        from results.services import alignment_report

        out = work / "bench.zip"
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        written, archive_s, step_s = archive_timed(survey=survey, out=out, n_boot=args.n_boot)
        rss_archive = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        alignment_report(survey=survey, n_boot=args.n_boot)
        report_s = time.perf_counter() - start
        with zipfile.ZipFile(out) as archive:
            answers_csv = next(i for i in archive.infolist() if i.filename.endswith("_data-answers_data.csv"))
            csv_bytes, csv_compressed = answers_csv.file_size, answers_csv.compress_size
            folder = work / "archive"
            archive.extractall(folder)
        reanalyse = {} if args.no_reanalyse else reanalyse_run(folder=folder, work=work)
        figures = {
            "benchmark": "archive",
            "answers": n_answers,
            "participants": participants,
            "items": args.items,
            "assignments": n_assignments,
            "images": n_images,
            "n_boot": args.n_boot,
            "archive_s": round(archive_s, 2),
            "report_s": round(report_s, 2),
            "archive_minus_report_s": round(archive_s - report_s, 2),
            "archive_steps_s": step_s,
            "archive_bytes": written["bytes"],
            "archive_files": written["files"],
            "answers_csv_bytes": csv_bytes,
            "answers_csv_compressed_bytes": csv_compressed,
            "peak_rss_growth_mb_during_archive": round((rss_archive - rss_before) / 1024, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            **reanalyse,
            "target_archive_s": 60.0,
            "setup_s": round(setup_s, 1),
        }
    finally:
        connection.close()
        if not args.keep:
            bench_analysis.database_drop(base, args.database)
            shutil.rmtree(work, ignore_errors=True)  # the zip, its unpacked copy and the images
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>36}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
