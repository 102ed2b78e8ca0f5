"""The one place where answers leave the database and become arrays for results.alignment.

Answers are fetched as columns, never as model instances: on PostgreSQL as one binary string per column
parsed with ``np.frombuffer`` (no Python object per answer), elsewhere (SQLite) by ``fetchall``.
Trials, participants and IRI sets are small tables and come back as plain dicts.

Fields that other parts add over time (trial kind and options, participant pilot/bot/exclusion flags,
IRI proxy scores, job checkpoints) are read only when the model has them, so this works before and after.
"""
from __future__ import annotations

import json

import numpy as np
from django.db import connection
from django.db.models import Q

from iri_worker.models import IriImage, IriJob
from surveys.models import Participant, Response, Survey, Trial

from .alignment import KIND_CATCH, KIND_MAIN, KIND_PRACTICE
from .models import TrialProxyChoice

KIND_CODES = {"main": KIND_MAIN, "catch": KIND_CATCH, "practice": KIND_PRACTICE}


def _has(model, name: str) -> bool:
    try:
        model._meta.get_field(name)
    except Exception:  # FieldDoesNotExist
        return False
    return True


def _column(model, name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


def _answers_from(survey_id: int) -> str:
    r, t = connection.ops.quote_name(Response._meta.db_table), connection.ops.quote_name(Trial._meta.db_table)
    return (
        f"FROM {r} r JOIN {t} t ON t.{_column(Trial, 'id')} = r.{_column(Response, 'trial')} "
        f"WHERE t.{_column(Trial, 'survey')} = {int(survey_id)}"
    )


def survey_answer_arrays(*, survey: Survey) -> dict[str, np.ndarray]:
    """Every answer of the survey as columns: participant id, trial id, choice (-1 = none), rt_ms (NaN = none).

    On PostgreSQL each column comes back as ONE bytea (string_agg of the values' binary send form) parsed with
    np.frombuffer: the rows never become Python objects, and the query costs about what a GROUP BY over the
    same rows costs (see bench/analysis.py). All four aggregates see the rows in the same order.
    """
    participant, trial = _column(Response, "participant"), _column(Response, "trial")
    choice, rt_ms = _column(Response, "choice"), _column(Response, "rt_ms")
    if connection.vendor == "postgresql":
        sql = (
            f"SELECT string_agg(int8send(r.{participant}::int8), ''::bytea), string_agg(int8send(r.{trial}::int8), ''::bytea), "
            f"string_agg(int2send(COALESCE(r.{choice}, -1)::int2), ''::bytea), "
            f"string_agg(float8send(COALESCE(r.{rt_ms}, 'NaN')::float8), ''::bytea) {_answers_from(survey.pk)}"
        )
        connection.ensure_connection()
        import psycopg

        with psycopg.Cursor(connection.connection) as cursor:  # Django's own cursors are client-side (text only)
            cursor.execute(sql, binary=True)
            row = cursor.fetchone()
        row = [bytes(v) if v is not None else b"" for v in row]
        return {
            "participant": np.frombuffer(row[0], dtype=">i8").astype(np.int64),
            "trial": np.frombuffer(row[1], dtype=">i8").astype(np.int64),
            "choice": np.frombuffer(row[2], dtype=">i2").astype(np.int64),
            "rt_ms": np.frombuffer(row[3], dtype=">f8").astype(np.float64),
        }
    sql = f"SELECT r.{participant}, r.{trial}, r.{choice}, r.{rt_ms} {_answers_from(survey.pk)}"
    with connection.cursor() as cursor:
        cursor.execute(sql)
        data = np.array(cursor.fetchall(), dtype=np.float64).reshape(-1, 4)
    return {
        "participant": data[:, 0].astype(np.int64),
        "trial": data[:, 1].astype(np.int64),
        "choice": np.nan_to_num(data[:, 2], nan=-1).astype(np.int64),
        "rt_ms": data[:, 3],
    }


def survey_trial_table(*, survey: Survey) -> dict[str, np.ndarray | list]:
    """One entry per trial of the survey: ids, kind code, target option, option count, IRI set, target photo,
    IRI, option image ids and (where the IRI has them) the proxy's stored verdicts per metric."""
    fields = ["id", "public_id", "target_option", "iri_id", "iri__job_id", "iri__target_id", "iri__seed_id", "query_id"]
    optional = [name for name in ("kind", "task_type", "n_options", "trial_list_id", "screen", "foil_kind") if _has(Trial, name.removesuffix("_id"))]
    option_fields = [f"option_{k}_id" for k in range(3) if _has(Trial, f"option_{k}")]
    if _has(IriImage, "proxy"):
        fields.append("iri__proxy")
    rows = list(Trial.objects.filter(survey=survey).order_by("id").values(*fields, *optional, *option_fields))
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


def survey_participant_table(*, survey: Survey) -> dict[str, np.ndarray | list]:
    """One entry per participant: id, external id, completed, and the pilot/bot/exclusion flags where they exist."""
    optional = [name for name in ("is_pilot", "is_bot", "excluded", "exclusion_reasons", "status", "worker_id") if _has(Participant, name)]
    rows = list(Participant.objects.filter(survey=survey).order_by("id").values("id", "prolific_pid", "completed_at", *optional))
    table = {
        "id": np.array([r["id"] for r in rows], dtype=np.int64),
        "external_id": [r["prolific_pid"] or r.get("worker_id") or "" for r in rows],
        "completed": np.array([r["completed_at"] is not None for r in rows], dtype=bool),
        "status": [r.get("status", "") for r in rows],
        "exclusion_reasons": [list(r.get("exclusion_reasons") or []) for r in rows],
    }
    for flag, name in (("pilot", "is_pilot"), ("bot", "is_bot"), ("flagged", "excluded")):
        if name in optional:
            table[flag] = np.array([bool(r[name]) for r in rows], dtype=bool)
    return table


def _checkpoint_of(job: IriJob) -> str:
    checkpoint = getattr(job, "checkpoint", None) if _has(IriJob, "checkpoint") else None
    if checkpoint is not None:
        return checkpoint.sha256[:12]
    spec = job.spec or {}
    value = spec.get("checkpoint_sha256") or spec.get("checkpoint") or ""
    return str(value)[:12]


def _training_of(job: IriJob) -> str:
    spec = job.spec or {}
    value = spec.get("training_label") or spec.get("training") or ""
    if not value and _has(IriJob, "checkpoint") and job.checkpoint_id:
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
    jobs = IriJob.objects.filter(Q(pk__in=set(job_ids or [])) | Q(surveys=survey))
    if _has(IriJob, "checkpoint"):
        jobs = jobs.select_related("checkpoint")
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


def target_photo_names(*, ids: set[int]) -> dict[int, str]:
    from iri_worker.models import TargetPhoto

    return dict(TargetPhoto.objects.filter(pk__in=ids).values_list("id", "name"))


def survey_get(*, slug: str) -> Survey | None:
    return Survey.objects.filter(slug=slug).first()
