"""The one place where answers leave the database and become arrays for stats.alignment.

Answers are fetched as columns, never as model instances: on PostgreSQL as binary strings per column (one per
block range of the table, aggregated side by side) parsed with ``np.frombuffer`` (no Python object per answer),
elsewhere (SQLite) by ``fetchall``.
Trials, participants and IRI sets are small tables and come back as plain dicts.

Fields that other parts add over time (trial kind and options, participant pilot/bot/exclusion flags,
IRI proxy scores, job checkpoints) are read only when the model has them, so this works before and after.
"""
from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
from django.db import connection
from django.db.models import BooleanField, ExpressionWrapper, FloatField, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from iri_worker.models import IriImage, IriJob
from iri_worker.validity_record import ValidityRecord
from stats.exclusions import KIND_CATCH, KIND_MAIN, KIND_PRACTICE, KIND_SCREENING
from surveys.models import Participant, Response, Survey, Trial
from surveys.selectors import participant_pseudonym

from .models import SurveyTaskRun, TrialProxyChoice

KIND_CODES = {"main": KIND_MAIN, "catch": KIND_CATCH, "practice": KIND_PRACTICE, "screening": KIND_SCREENING}


def _column(model, name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


def _answers_from(survey_id: int) -> str:
    r, t = connection.ops.quote_name(Response._meta.db_table), connection.ops.quote_name(Trial._meta.db_table)
    return (
        f"FROM {r} r JOIN {t} t ON t.{_column(Trial, 'id')} = r.{_column(Response, 'trial')} "
        f"WHERE t.{_column(Trial, 'survey')} = {int(survey_id)}"
    )


# The answer columns, each as one bytea of the values' binary send form (parsed with np.frombuffer).
# shown_position: the screen position of the chosen option (0 = left); -1 where it was not recorded.
_ANSWER_COLUMNS = (
    ("participant", "int8send(r.{participant}::int8)", ">i8"),
    ("trial", "int8send(r.{trial}::int8)", ">i8"),
    ("choice", "int2send(COALESCE(r.{choice}, -1)::int2)", ">i2"),
    ("shown_position", "int2send(COALESCE({shown_position}, -1)::int2)", ">i2"),
    ("rt_ms", "float8send(COALESCE(r.{rt_ms}, 'NaN')::float8)", ">f8"),
)
_MAX_BRANCHES = 8


def _answer_branches(cursor, table: str) -> list[str]:
    """TID-range conditions that split the answers table into as many block ranges as PostgreSQL may run at once.

    string_agg has no parallel (partial) form before PostgreSQL 16, so one aggregate runs in one process while
    a GROUP BY over the same rows runs in the leader and its workers. One aggregate per block range, joined
    with UNION ALL, lets the planner run them side by side (Parallel Append over TID Range Scans): the same
    rows, each block read once. The last range is open, so rows added meanwhile are not lost. A table smaller
    than PostgreSQL's own threshold for a parallel scan (min_parallel_table_scan_size) per range stays whole.
    """
    cursor.execute(
        "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int8, "
        "current_setting('max_parallel_workers_per_gather')::int, "
        "(SELECT setting::int8 FROM pg_settings WHERE name = 'min_parallel_table_scan_size')",  # in blocks
        [connection.ops.quote_name(table)],
    )
    blocks, workers, min_blocks = cursor.fetchone()
    n = max(1, min(_MAX_BRANCHES, int(workers) + 1, int(blocks) // max(1, int(min_blocks))))  # the workers and the leader
    if n == 1:
        return ["TRUE"]
    bounds = [int(blocks) * i // n for i in range(1, n)]
    ranges = zip([None, *bounds], [*bounds, None])
    return [
        " AND ".join([f"r.ctid >= '({low},0)'::tid"] * (low is not None) + [f"r.ctid < '({high},0)'::tid"] * (high is not None))
        for low, high in ranges
    ]


def survey_answer_arrays(*, survey: Survey) -> dict[str, np.ndarray]:
    """Every answer of the survey as columns: participant id, trial id, choice (-1 = none), shown_position (the
    chosen option's screen position, 0 = left; -1 = not recorded), rt_ms (NaN = none).

    On PostgreSQL each column comes back as binary strings (string_agg of the values' binary send form, one per
    block range, see _answer_branches) parsed with np.frombuffer: the rows never become Python objects, and the
    query costs about what a GROUP BY over the same rows costs (see bench/analysis.py). The aggregates of one
    branch see its rows in the same order, so the columns stay aligned. Answers come in no particular order.
    """
    names = {name: _column(Response, name) for name in ("participant", "trial", "choice", "rt_ms")}
    names["shown_position"] = f"r.{_column(Response, 'shown_position')}"
    if connection.vendor == "postgresql":
        aggregates = ", ".join(f"string_agg({expr.format(**names)}, ''::bytea)" for _, expr, _ in _ANSWER_COLUMNS)
        connection.ensure_connection()
        import psycopg

        with psycopg.Cursor(connection.connection) as cursor:  # Django's own cursors are client-side (text only)
            branches = _answer_branches(cursor, Response._meta.db_table)
            sql = " UNION ALL ".join(f"SELECT {aggregates} {_answers_from(survey.pk)} AND {where}" for where in branches)
            cursor.execute(sql, binary=True)
            rows = cursor.fetchall()
        out = {}
        for j, (key, _, dtype) in enumerate(_ANSWER_COLUMNS):
            parts = [np.frombuffer(row[j], dtype=dtype) for row in rows if row[j] is not None]
            column = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
            out[key] = column.astype(np.float64 if key == "rt_ms" else np.int64)
        return out
    sql = (
        f"SELECT r.{names['participant']}, r.{names['trial']}, r.{names['choice']}, r.{names['rt_ms']}, {names['shown_position']} "
        f"{_answers_from(survey.pk)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        data = np.array(cursor.fetchall(), dtype=np.float64).reshape(-1, 5)  # NULL -> NaN
    return {
        "participant": data[:, 0].astype(np.int64),
        "trial": data[:, 1].astype(np.int64),
        "choice": np.nan_to_num(data[:, 2], nan=-1).astype(np.int64),
        "shown_position": np.nan_to_num(data[:, 4], nan=-1).astype(np.int64),
        "rt_ms": data[:, 3],
    }


def survey_trial_table(*, survey: Survey) -> dict[str, np.ndarray | list]:
    """One entry per trial of the survey: ids, kind code, target option, option count, IRI set, target photo,
    IRI, option image ids and (where the IRI has them) the proxy's stored verdicts per metric."""
    fields = ["id", "public_id", "target_option", "iri_id", "iri__job_id", "iri__target_id", "iri__seed_id", "query_id"]
    fields += ["iri__proxy", "kind", "task_type", "n_options", "trial_list_id", "screen", "foil_kind"]
    option_fields = [f"option_{k}_id" for k in range(3)]
    rows = list(Trial.objects.filter(survey=survey).order_by("id").values(*fields, *option_fields))
    n = len(rows)
    options = np.full((n, 3), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        for k, name in enumerate(option_fields):
            options[i, k] = row[name] if row[name] is not None else -1
    n_options = np.array([row.get("n_options") or int((options[i] >= 0).sum()) or 2 for i, row in enumerate(rows)], dtype=np.int64)
    return {
        "id": np.array([r["id"] for r in rows], dtype=np.int64),
        "public_id": [r["public_id"] for r in rows],
        "kind": np.array([KIND_CODES.get(r.get("kind", "main"), KIND_MAIN) for r in rows], dtype=np.int64),
        "task_type": [r.get("task_type") or survey.task_type for r in rows],
        "target_option": np.array([r["target_option"] for r in rows], dtype=np.int64),
        "n_options": n_options,
        "job": np.array([r["iri__job_id"] if r["iri__job_id"] is not None else -1 for r in rows], dtype=np.int64),
        "target": np.array([r["iri__target_id"] if r["iri__target_id"] is not None else -1 for r in rows], dtype=np.int64),
        "iri": np.array([r["iri_id"] if r["iri_id"] is not None else -1 for r in rows], dtype=np.int64),
        "seed_image": np.array([r["iri__seed_id"] if r["iri__seed_id"] is not None else -1 for r in rows], dtype=np.int64),
        "query": np.array([r["query_id"] for r in rows], dtype=np.int64),
        "options": options,
        "trial_list": np.array([r.get("trial_list_id") or -1 for r in rows], dtype=np.int64),
        "foil_kind": [r.get("foil_kind") or "" for r in rows],
        "iri_proxy": [r.get("iri__proxy") or {} for r in rows],
    }


def survey_participant_table(*, survey: Survey, raw_ids: bool = False) -> dict[str, np.ndarray | list]:
    """One entry per participant: id, external id, completed, and the pilot/bot/exclusion flags where they exist.
    The external id (Prolific PID, else MTurk worker ID) is the survey's pseudonym of it unless raw_ids.

    Tuples, not dicts; whether completed as a bool, not a parsed datetime; and the JSON list of exclusion reasons
    only for the participants who have any: with tens of thousands of participants, decoding a timestamp and an
    empty list per row cost more than the rest of the table.
    """
    optional = ["is_pilot", "is_bot", "excluded", "status", "worker_id"]
    people = Participant.objects.filter(survey=survey)
    done = ExpressionWrapper(Q(completed_at__isnull=False), output_field=BooleanField())  # a bool, not a parsed datetime
    rows = list(people.order_by("id").annotate(done=done).values_list("id", "prolific_pid", "done", *optional))
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    column = {name: [r[3 + k] for r in rows] for k, name in enumerate(optional)}
    external = column.get("worker_id", [""] * len(rows))
    reasons: list[list] = [[] for _ in rows]
    with_reasons = people.exclude(Q(exclusion_reasons=[]) | Q(exclusion_reasons__isnull=True)).values_list("id", "exclusion_reasons")
    for pk, value in with_reasons:
        reasons[int(np.searchsorted(ids, pk))] = list(value or [])
    external_ids = [r[1] or external[i] or "" for i, r in enumerate(rows)]
    if not raw_ids:
        external_ids = [participant_pseudonym(survey=survey, external_id=e) for e in external_ids]
    table = {
        "id": ids,
        "external_id": external_ids,
        "completed": np.array([r[2] for r in rows], dtype=bool),
        "status": column.get("status", [""] * len(rows)),
        "exclusion_reasons": reasons,
    }
    for flag, name in (("pilot", "is_pilot"), ("bot", "is_bot"), ("flagged", "excluded")):
        if name in optional:
            table[flag] = np.array(column[name], dtype=bool)
    return table


def _checkpoint_of(job: IriJob) -> str:
    if job.checkpoint is not None:
        return job.checkpoint.sha256[:12]
    spec = job.spec or {}
    value = spec.get("checkpoint_sha256") or spec.get("checkpoint") or ""
    return str(value)[:12]


def _training_of(job: IriJob) -> str:
    spec = job.spec or {}
    value = spec.get("training_label") or spec.get("training") or ""
    if not value and job.checkpoint_id:
        value = job.checkpoint.name
    return str(value)


def _recipe_of(job: IriJob) -> str:
    """The recipe's name (a custom term list as compact JSON), with a non-default parametrisation/transforms."""
    spec = job.spec or {}
    recipe = spec.get("recipe", "")
    label = recipe if isinstance(recipe, str) else "custom:" + json.dumps(recipe, sort_keys=True, separators=(",", ":"))
    if spec.get("param") not in (None, "pixel"):
        label += f"+{spec['param']}"
    if spec.get("transforms"):
        label += f"+{spec['transforms']}-transforms"
    return label


def survey_iri_sets(*, survey: Survey, job_ids: list[int] | None = None) -> list[dict]:
    """The survey's IRI sets with the fields that define a condition."""
    jobs = IriJob.objects.filter(Q(pk__in=set(job_ids or [])) | Q(surveys=survey)).select_related("checkpoint")
    out = []
    for job in jobs.distinct().order_by("id"):
        out.append(
            {
                "id": job.pk,
                "name": str(job),
                "backbone": job.backbone,
                "checkpoint": _checkpoint_of(job),
                "training": _training_of(job),
                "recipe": _recipe_of(job),
                "seed_kind": (job.spec or {}).get("seed_kind", ""),
                "layer": job.layer,
            }
        )
    return out


def trial_proxy_choice_table(*, survey: Survey, metrics: tuple[str, ...]) -> dict[str, dict[int, int]]:
    """Cached proxy choices of the survey's trials: metric -> {trial id: chosen option index}."""
    out: dict[str, dict[int, int]] = {m: {} for m in metrics}
    rows = TrialProxyChoice.objects.filter(trial__survey=survey, metric__in=metrics).values_list("metric", "trial_id", "choice")
    for metric, trial_id, choice in rows:
        out[metric][trial_id] = choice
    return out


def stored_image_table(*, ids: set[int]) -> dict[int, str]:
    """StoredImage id -> sha256 (what exports name images by)."""
    from iri_worker.models import StoredImage

    return dict(StoredImage.objects.filter(pk__in=ids).values_list("id", "sha256"))


def iri_validity_table(*, ids: set[int]) -> dict[int, ValidityRecord]:
    """IriImage id -> its validity record (percentile in the null distribution, label check, ...; every field None
    where it has none)."""
    if not ids:
        return {}
    rows = IriImage.objects.filter(pk__in=ids).values_list("id", "validity")
    return {pk: ValidityRecord.from_dict(record or {}) for pk, record in rows}


def survey_mistimed_pairs(*, survey: Survey) -> list[tuple[int, int]]:
    """(participant id, trial id) of every answer flagged as mistimed."""
    return list(Response.objects.filter(trial__survey=survey, mistimed=True).values_list("participant_id", "trial_id"))


# The browser's timing of a classification answer (Response.timing, as surveys.apis stores it), in export order.
ANSWER_TIMING_FIELDS = ("image_onset_ms", "image_offset_ms", "shown_ms", "frames", "refresh_hz")


def survey_answer_timing_rows(*, survey: Survey) -> Iterator[tuple]:
    """(participant id, trial id, *ANSWER_TIMING_FIELDS, mistimed) of every answer the browser timed or that was
    flagged as mistimed, ordered by participant then trial and streamed: the exports join it to the answer arrays
    in that order. Each timing field comes out of the database as a float (None where absent), so no row's JSON is
    decoded in Python. Read only on the export path, so the report's answer query (bench/analysis.py) stays as it is.
    """
    fields = {f"t_{name}": Cast(KT(f"timing__{name}"), FloatField()) for name in ANSWER_TIMING_FIELDS}
    answers = Response.objects.filter(trial__survey=survey).filter(Q(timing__isnull=False) | Q(mistimed=True))
    rows = answers.annotate(**fields).order_by("participant_id", "trial_id")
    return rows.values_list("participant_id", "trial_id", *fields, "mistimed").iterator(chunk_size=5000)


def survey_device_table(*, survey: Survey) -> dict[int, dict]:
    """Participant id -> the session's device facts (Participant.client_info: what the browser reported at enrollment
    and after, the refresh rate it measured); participants with none are left out. For the exports only."""
    people = Participant.objects.filter(survey=survey).exclude(client_info={})
    return {pk: info or {} for pk, info in people.values_list("id", "client_info")}


def target_photo_names(*, ids: set[int]) -> dict[int, str]:
    from iri_worker.models import TargetPhoto

    return dict(TargetPhoto.objects.filter(pk__in=ids).values_list("id", "name"))


def survey_get(*, slug: str) -> Survey | None:
    return Survey.objects.filter(slug=slug).first()


def report_cached(*, survey: Survey, n_boot: int = 1000, seed: int = 0) -> dict:
    """The alignment report, reused while no answer or proxy choice has been added or erased (the admin's survey
    page, report page and plots share it rather than computing it on every view)."""
    from django.core.cache import cache
    from django.db.models import Count, Max

    from .services import alignment_report  # services read through this module: imported when first needed

    answers = Response.objects.filter(trial__survey=survey).aggregate(n=Count("id"), last=Max("id"))
    proxies = TrialProxyChoice.objects.filter(trial__survey=survey).count()
    key = f"results:report:{survey.pk}:{survey.data_version}:{n_boot}:{seed}:{answers['n']}:{answers['last']}:{proxies}"
    return cache.get_or_set(key, lambda: alignment_report(survey=survey, n_boot=n_boot, seed=seed), 300)


def survey_task_run_list(*, survey: Survey, kind: str | None = None, limit: int = 5) -> list[SurveyTaskRun]:
    """The survey's latest runs of work handed to a worker (newest first), for the admin pages."""
    runs = SurveyTaskRun.objects.filter(survey=survey)
    if kind is not None:
        runs = runs.filter(kind=kind)
    return list(runs.order_by("-id")[:limit])
