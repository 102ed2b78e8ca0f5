"""The tables the report reads beside its answers (which leave the database through surveys.counted_answers, as
columns): trials, participants and IRI sets are small tables and come back as arrays or plain dicts.

Fields that other parts add over time (trial kind and options, participant pilot/bot/exclusion flags,
IRI proxy scores, job checkpoints) are read only when the model has them, so this works before and after.
"""
from __future__ import annotations

import json

import numpy as np
from django.db.models import BooleanField, ExpressionWrapper, Q

from iri_worker.models import IriImage, IriJob
from iri_worker.validity_record import ValidityRecord
from stats.exclusions import KIND_CATCH, KIND_MAIN, KIND_PRACTICE, KIND_SCREENING
from surveys.models import Participant, Survey, Trial
from surveys.selectors import participant_pseudonym

from .models import TrialProxyChoice

KIND_CODES = {"main": KIND_MAIN, "catch": KIND_CATCH, "practice": KIND_PRACTICE, "screening": KIND_SCREENING}


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


# The fields of an IRI set that define its condition: sets equal in all of them are one condition of the report.
CONDITION_FIELDS = ("backbone", "checkpoint", "training", "recipe", "seed_kind", "layer")


def survey_iri_sets(*, survey: Survey, job_ids: list[int] | None = None) -> list[dict]:
    """The survey's IRI sets with the fields that define a condition (CONDITION_FIELDS)."""
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
