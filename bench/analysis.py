"""Benchmark: the full alignment report on a large survey in PostgreSQL.

    python bench/analysis.py --json            # 1,000,000 answers: 20,000 participants x 50 items, 5,000 items, 12 conditions
    python bench/analysis.py --json --quick    # 50,000 answers (1,000 participants), same shape

Creates a dedicated database (default iri_bench_analysis on postgres://postgres@127.0.0.1:5432, override with
BENCH_DATABASE_URL), migrates it, builds the survey through surveys.services, bulk-loads participants and
answers (answers with COPY), then times
  - report_s: results.services.alignment_report (selectors + numpy + scipy.sparse: every statistic, the two-way
    bootstrap with 1,000 resamples, the split-half ceilings),
  - query_s: the report's answer query alone (surveys.counted_answers.survey_answer_arrays: string_agg of binary values,
    one aggregate per block range of the table so PostgreSQL runs them in its parallel workers, into numpy arrays),
  - group_by_s: the bare GROUP BY (answers and hits per IRI set) over the same rows, in PostgreSQL (it checks that
    the GROUP BY counts exactly the rows the query returns),
  - query_serial_s and group_by_serial_s: the same two with max_parallel_workers_per_gather = 0 (one process
    each; query_serial_s is the single-aggregate query the report used before),
best of --repeat runs each, and prints one JSON line with the ratio query_s / group_by_s. Drops the database
at the end (unless --keep). Targets: report_s <= 3 s, query / group_by <= 2.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON line (default: a readable summary)")
    parser.add_argument("--quick", action="store_true", help="50,000 answers instead of 1,000,000")
    parser.add_argument("--participants", type=int)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--conditions", type=int, default=12)
    parser.add_argument("--per-participant", type=int, default=50, help="answers per participant")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", default="iri_bench_analysis")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    return parser.parse_args()


def database_create(base: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def database_drop(base: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def survey_build(*, n_items: int, n_conditions: int):
    """12 finished IRI sets sharing target photos (so conditions pair over photos), and a live 2AFC survey."""
    from iri_worker.models import IriImage, IriJob, StoredImage, TargetPhoto
    from surveys.services import survey_create, survey_publish
    from teams.actors import Actor
    from teams.services import team_create

    bench = Actor.command("bench/analysis.py")
    team = team_create(name="bench", actor=bench)
    per_condition = -(-n_items // n_conditions)
    images = StoredImage.objects.bulk_create(
        StoredImage(sha256=f"{i:064x}", file=f"img/{i:064x}.png", width=32, height=32)
        for i in range(per_condition + n_conditions + n_items)
    )
    photos = TargetPhoto.objects.bulk_create(TargetPhoto(team=team, name=f"photo {i}", image=images[i]) for i in range(per_condition))
    backbones, recipes = ["resnet18", "resnet50", "vgg16"], ["reg_free", "adv_lpips"]
    trainings = ["standard", "robust_l2_3"]
    jobs = IriJob.objects.bulk_create(
        IriJob(
            team=team,
            name=f"set {c}",
            status=IriJob.Status.DONE,
            progress=1.0,
            spec={"backbone": backbones[c % 3], "recipe": recipes[(c // 3) % 2], "training": trainings[(c // 6) % 2],
                  "seed_kind": "super-noise", "layer": "", "steps": 1, "image_size": 32},
        )
        for c in range(n_conditions)
    )
    iris, k = [], per_condition + n_conditions
    for item in range(n_items):
        c, t = item % n_conditions, item // n_conditions
        iris.append(IriImage(job=jobs[c], target=photos[t], seed=images[per_condition + c], image=images[k + item],
                             target_image=photos[t].image, initial_loss=1.0, final_loss=0.1, best_step=1))
    IriImage.objects.bulk_create(iris, batch_size=2000)
    survey = survey_create(slug="bench", title="bench", iri_jobs=jobs, rng_seed=0, actor=bench)
    survey.one_side_max_fraction = 0.9  # the one-sided rule on, so the report runs every exclusion rule
    survey.save(update_fields=["one_side_max_fraction"])
    return survey_publish(survey=survey, actor=bench)


def participants_load(*, survey, n: int) -> list[int]:
    from django.utils import timezone

    from surveys.models import Participant

    now = timezone.now()
    rows = Participant.objects.bulk_create(
        (Participant(survey=survey, token=f"bench-{i}", consented_at=now, completed_at=now) for i in range(n)), batch_size=5000
    )
    if rows and rows[0].pk is None:
        return list(Participant.objects.filter(survey=survey).order_by("id").values_list("id", flat=True))
    return [p.pk for p in rows]


def answers_load(*, survey, people: list[int], per_participant: int, n_conditions: int, seed: int = 0) -> int:
    """COPY the answers in: participant p answers items (p + k*step) mod n_items; P(target) rises with the condition."""
    import numpy as np
    from django.db import connection

    from surveys.models import Response, Trial

    trials = list(Trial.objects.filter(survey=survey, iri__isnull=False).order_by("id").values_list("id", "target_option", "iri__job_id"))
    trial_id = np.array([t[0] for t in trials])
    target = np.array([t[1] for t in trials])
    job_ids = sorted({t[2] for t in trials})
    condition = np.searchsorted(job_ids, np.array([t[2] for t in trials]))
    n_items = trial_id.size
    step = max(1, n_items // per_participant)
    p = np.repeat(np.arange(len(people)), per_participant)
    k = np.tile(np.arange(per_participant), len(people))
    item = (p + k * step) % n_items
    rng = np.random.default_rng(seed)
    rate = 0.1 + 0.8 * condition[item] / max(1, n_conditions - 1)
    hit = rng.random(p.size) < rate
    choice = np.where(hit, target[item], 1 - target[item])
    rt = np.round(rng.lognormal(np.log(900), 0.4, p.size), 1)
    shown = choice ^ rng.integers(0, 2, p.size)  # each participant's own layout: the chosen option on either side
    participant_ids = np.asarray(people)[p]
    columns = {"participant": participant_ids, "trial": trial_id[item], "choice": choice, "rt_ms": rt, "shown_position": shown}
    fields = [f for f in Response._meta.concrete_fields if not f.primary_key]
    names, constants = [], {}
    for f in fields:
        names.append(f.column)
        if f.name in columns or f.name == "idempotency_key" or f.name == "created_at":
            continue
        if f.has_default():
            constants[f.name] = f.get_db_prep_value(f.get_default(), connection)
        elif f.null:
            constants[f.name] = None
        else:
            raise SystemExit(f"bench: Response.{f.name} needs a value; teach bench/analysis.py about it")
    now = time.strftime("%Y-%m-%d %H:%M:%S+00")
    table = connection.ops.quote_name(Response._meta.db_table)
    cols = ", ".join(connection.ops.quote_name(n) for n in names)
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        with cursor.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            chunk = 100_000
            for start in range(0, p.size, chunk):
                stop = min(p.size, start + chunk)
                buffer = io.StringIO()
                for i in range(start, stop):
                    values = []
                    for f in fields:
                        if f.name in columns:
                            values.append(str(columns[f.name][i]))
                        elif f.name == "idempotency_key":
                            values.append(f"{i + 1:032x}")
                        elif f.name == "created_at":
                            values.append(now)
                        else:
                            v = constants[f.name]
                            values.append("\\N" if v is None else str(v))
                    buffer.write("\t".join(values) + "\n")
                copy.write(buffer.getvalue())
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return int(p.size)


def group_by_seconds(survey) -> tuple[float, list]:
    from django.db import connection

    from iri_worker.models import IriImage
    from surveys.models import Response, Trial

    q = connection.ops.quote_name
    sql = (
        f"SELECT i.job_id, count(*), sum((r.choice = t.target_option)::int) FROM {q(Response._meta.db_table)} r "
        f"JOIN {q(Trial._meta.db_table)} t ON t.id = r.trial_id JOIN {q(IriImage._meta.db_table)} i ON i.id = t.iri_id "
        f"WHERE t.survey_id = %s GROUP BY i.job_id"
    )
    with connection.cursor() as cursor:
        start = time.perf_counter()
        cursor.execute(sql, [survey.pk])
        rows = cursor.fetchall()
    return time.perf_counter() - start, rows


def best(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), sorted(times)[len(times) // 2], result


def main() -> int:
    args = parse_args()
    participants = args.participants or (1000 if args.quick else 20000)
    base = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")
    database_create(base, args.database)
    os.environ["DATABASE_URL"] = f"{base}/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    os.environ["DJANGO_CONN_MAX_AGE"] = "0"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    try:
        t0 = time.perf_counter()
        call_command("migrate", verbosity=0)
        survey = survey_build(n_items=args.items, n_conditions=args.conditions)
        people = participants_load(survey=survey, n=participants)
        n_answers = answers_load(survey=survey, people=people, per_participant=args.per_participant, n_conditions=args.conditions)
        setup_s = time.perf_counter() - t0

        from surveys.counted_answers import survey_answer_arrays
        from results.services import alignment_report

        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        alignment_report(survey=survey, n_boot=10)  # warm caches and imports
        group_by_s = min(group_by_seconds(survey)[0] for _ in range(args.repeat))
        query_s, _, arrays = best(lambda: survey_answer_arrays(survey=survey), args.repeat)
        grouped = group_by_seconds(survey)[1]
        assert arrays["trial"].size == n_answers == sum(row[1] for row in grouped), "GROUP BY and query must see the same rows"
        del arrays
        with connection.cursor() as cursor:
            cursor.execute("SET max_parallel_workers_per_gather = 0")
        group_by_serial_s = min(group_by_seconds(survey)[0] for _ in range(args.repeat))
        query_serial_s = best(lambda: survey_answer_arrays(survey=survey)["trial"].size, args.repeat)[0]
        with connection.cursor() as cursor:
            cursor.execute("RESET max_parallel_workers_per_gather")
        report_s, report_median_s, report = best(lambda: alignment_report(survey=survey, n_boot=args.n_boot), args.repeat)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        figures = {
            "benchmark": "analysis",
            "answers": n_answers,
            "participants": participants,
            "items": args.items,
            "conditions": len(report["conditions"]),
            "n_boot": args.n_boot,
            "report_s": round(report_s, 3),
            "report_median_s": round(report_median_s, 3),
            "query_s": round(query_s, 3),
            "group_by_s": round(group_by_s, 3),
            "query_over_group_by": round(query_s / group_by_s, 2),
            "query_serial_s": round(query_serial_s, 3),
            "group_by_serial_s": round(group_by_serial_s, 3),
            "query_serial_over_group_by_serial": round(query_serial_s / group_by_serial_s, 2),
            "report_over_group_by": round(report_s / group_by_s, 2),
            "target_report_s": 3.0,
            "target_query_over_group_by": 2.0,
            "peak_rss_mb": round(rss_after / 1024, 1),
            "rss_growth_mb": round((rss_after - rss_before) / 1024, 1),
            "setup_s": round(setup_s, 1),
            "alignment_first_last": [report["conditions"][0]["alignment"], report["conditions"][-1]["alignment"]],
            "kappa": report["agreement"]["fleiss_kappa"]["value"],
            "left_share": report["sides"]["left_share"],
            "one_sided": report["sides"]["one_sided"],
        }
    finally:
        connection.close()
        if not args.keep:
            database_drop(base, args.database)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>28}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
