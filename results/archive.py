"""A study archive: one Psych-DS dataset (a zip) that carries a finished survey and recomputes its report.

What it holds (see docs/results.md):
- dataset_description.json (Psych-DS / schema.org) and datapackage.json (a Frictionless data package: one table
  schema per CSV, every column with its meaning and unit);
- data/study-SLUG_data-{answers,trials,sessions,conditions,assignments}_data.csv, written row by row into the zip;
- stimuli/: every image the trials show (PNG, named by SHA-256), the IRI sets' specs, checkpoint hashes, library
  versions and each IRI's validity record;
- design/design.json: the survey's settings, trial lists and the analysis settings the report used;
- plan/: the frozen analysis plan and its deviations (results.plan_export.plan_files); report/report.json;
- analysis/: copies of the pure-numpy statistics modules, and reanalyse.py, which needs only Python and numpy;
- manifest.json: the SHA-256 and size of every other file (reanalyse.py refuses an archive that does not match).

The zip is written to a temporary name beside the target and renamed at the end: an error leaves nothing half.
External IDs are the survey's pseudonyms unless ``identified`` (audit-logged).
"""
from __future__ import annotations

import hashlib
import os
import platform
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone

import stats
import stats.adaptive.blocks
import stats.adaptive.forecast
import stats.adaptive.interval
import stats.adaptive.planner
import stats.adaptive.stopping
import stats.agreement
import stats.alignment
import stats.ceiling
import stats.exclusions
import stats.recognition
from backend.exceptions import ApplicationError
from iri_worker.models import IriImage, IriJob, StoredImage
from iri_worker.validity_record import ValidityRecord
from operations.models import OperationRun
from operations.registry import Progress
from operations.selectors import operation_run_list_of_subject
from operations.services import operation_run_create
from surveys.counted_answers import Purpose, answers_counted
from surveys.models import Assignment, Participant, Survey, Trial
from surveys.task_types import task_type_get
from teams.actors import Actor
from teams.services import audit_record

from .archive_columns import COLUMNS, column_schema
from .archive_writer import ArchiveWriter
from .export_answers import ANSWER_COLUMNS, answers_csv
from .plan_export import plan_files
from .selectors import CONDITION_FIELDS, KIND_CODES
from .services import alignment_report
from .survey_data import survey_data_load

ARCHIVE_NO_ANSWERS = "The survey '{slug}' has no answers yet: there is nothing to archive, and no file was written."
ARCHIVE_FILES = Path(__file__).resolve().parent / "archive_files"
LICENSE = "CC-BY-4.0"
PSYCH_DS_VERSION = "1.4.0"
TABLES = ("answers", "trials", "sessions", "conditions", "assignments")
ANSWERS_PER_PROGRESS = 50_000
# The statistics modules copied under analysis/ (at their paths inside stats/) for reanalyse.py.
STATS_ROOT = Path(stats.__file__).resolve().parent
ANALYSIS_MODULES = (
    stats.alignment, stats.exclusions, stats.agreement, stats.ceiling, stats.recognition, stats.adaptive,
    stats.adaptive.interval, stats.adaptive.stopping, stats.adaptive.blocks, stats.adaptive.forecast,
    stats.adaptive.planner,
)

def _table_name(*, survey: Survey, table: str) -> str:
    return f"data/study-{survey.slug}_data-{table}_data.csv"


def _trial_rows(*, survey: Survey, data, validity: dict, sha: dict, photos: dict) -> Iterable[list]:
    trials = data.trials
    kinds = {code: name for name, code in KIND_CODES.items()}
    masks = dict(Trial.objects.filter(survey=survey).values_list("id", "mask_id"))
    screens = dict(Trial.objects.filter(survey=survey).values_list("id", "screen"))
    categories = survey.categories or []
    named = {task: task_type_get(task).options_are_categories for task in set(trials["task_type"])}  # buttons
    for t in range(trials["id"].size):
        condition = int(data.trial_condition[t])
        target = int(trials["target"][t])
        iri = int(trials["iri"][t])
        task = trials["task_type"][t]
        target_option = int(trials["target_option"][t])
        mask = masks.get(int(trials["id"][t]))
        yield [
            int(trials["id"][t]), trials["public_id"][t],
            int(trials["trial_list"][t]) if trials["trial_list"][t] >= 0 else None,
            kinds[int(trials["kind"][t])], task, int(trials["n_options"][t]), target_option,
            condition if condition >= 0 else None, int(trials["job"][t]) if trials["job"][t] >= 0 else None,
            iri if iri >= 0 else None, target if target >= 0 else None, photos.get(target, ""),
            categories[target_option] if named[task] and target_option < len(categories) else "",
            sha.get(int(trials["query"][t]), ""), *(sha.get(int(o), "") for o in trials["options"][t]),
            sha.get(mask, "") if mask else "", trials["foil_kind"][t], screens.get(int(trials["id"][t]), ""),
            validity[iri].label_match if iri in validity else None,
        ]


ASSIGNMENT_FIELDS = ("participant_id", "trial_id", "position", "option_order")


def _assignments_write(w: "ArchiveWriter", *, name: str, survey: Survey) -> None:
    """Each participant's trial order and option order. On PostgreSQL, the server writes the CSV (COPY ... TO STDOUT:
    8.5 s against under 1 s for 1,000,000 rows through the ORM); the bytes are csv.writer's (every column is a
    number or a short string of digits; an empty option order is NULL, written empty, as csv.writer writes "")."""
    assignments = Assignment.objects.filter(participant__survey=survey).order_by("participant_id", "position")
    header = list(COLUMNS["assignments"])
    if connection.vendor != "postgresql":
        w.csv(name, header, assignments.values_list(*ASSIGNMENT_FIELDS).iterator(chunk_size=5000))
        return
    table, participants = Assignment._meta.db_table, Participant._meta.db_table
    query = (  # the ORM's query above, by hand: COPY takes no ORM query
        f'COPY (SELECT a.participant_id, a.trial_id, a.position, NULLIF(a.option_order, \'\') FROM "{table}" a '
        f'JOIN "{participants}" p ON p.id = a.participant_id WHERE p.survey_id = %s '
        "ORDER BY a.participant_id, a.position) TO STDOUT WITH (FORMAT csv)"
    )
    entry = w.entry(name)
    entry.write((",".join(header) + "\n").encode("utf-8"))
    connection.ensure_connection()
    with connection.connection.cursor() as cursor, cursor.copy(query, (survey.pk,)) as copy:
        rows, size = [], 0
        for row in copy:  # one message per row: hashed and compressed a megabyte at a time
            rows.append(bytes(row))
            size += len(row)
            if size >= 1 << 20:
                entry.write(b"".join(rows))
                rows, size = [], 0
        entry.write(b"".join(rows))
    entry.close()


def _session_rows(*, data) -> Iterable[list]:
    people = data.people
    lists = dict(Participant.objects.filter(survey=data.survey).values_list("id", "trial_list_id"))
    for p in range(people["id"].size):
        yield [
            int(people["id"][p]), people["external_id"][p], lists.get(int(people["id"][p])), people["status"][p],
            bool(people["completed"][p]),
            *(bool(people[f][p]) if f in people else None for f in ("pilot", "bot", "flagged")),
            people["exclusion_reasons"][p],
        ]


def _condition_rows(*, data) -> Iterable[list]:
    for c, condition in enumerate(data.conditions):
        label = " · ".join(str(condition[f]) for f in CONDITION_FIELDS if condition[f])
        fields = (condition[f] for f in CONDITION_FIELDS)
        yield [c, label, " + ".join(condition["names"]), *fields, condition["iri_sets"]]


def _stimuli(*, survey: Survey, data) -> tuple[dict, list[dict], list[dict]]:
    """(image id -> sha256 of every image the trials show, the IRI sets' provenance, every IRI's record)."""
    trials = data.trials
    image_ids = set(trials["query"].tolist()) | set(trials["options"][trials["options"] >= 0].tolist())
    image_ids |= {m for m in Trial.objects.filter(survey=survey, mask__isnull=False).values_list("mask_id", flat=True)}
    iri_ids = {int(i) for i in trials["iri"] if i >= 0}
    iris = []
    records = IriImage.objects.filter(pk__in=iri_ids).select_related("image", "target_image", "target", "seed")
    for iri in records.order_by("id"):
        image_ids |= {iri.image_id, iri.target_image_id}
        iris.append({
            "id": iri.pk, "iri_set": iri.job_id, "target_photo_id": iri.target_id, "target_photo": iri.target.name,
            "target_label": iri.target.label, "image": iri.image.sha256, "target_image": iri.target_image.sha256,
            "seed_image": iri.seed.sha256, "initial_loss": iri.initial_loss, "final_loss": iri.final_loss,
            "best_step": iri.best_step, "nan_loss": iri.nan_loss, "proxy": iri.proxy, "validity": iri.validity,
        })
    job_ids = {int(j) for j in trials["job"] if j >= 0} | set(survey.iri_jobs.values_list("pk", flat=True))
    jobs = []
    for job in IriJob.objects.filter(pk__in=job_ids).select_related("checkpoint").order_by("id"):
        checkpoint = job.checkpoint
        jobs.append({
            "id": job.pk, "name": job.name, "spec": job.spec, "versions": job.versions,
            "checkpoint": {"name": checkpoint.name, "sha256": checkpoint.sha256} if checkpoint else
            {"sha256": (job.spec or {}).get("checkpoint_sha256") or "", "note": "the backbone's published weights"},
        })
    sha = dict(StoredImage.objects.filter(pk__in=image_ids).values_list("id", "sha256"))
    return sha, jobs, iris


def _design(*, survey: Survey, report: dict, data) -> dict:
    settings = {f.name: getattr(survey, f.name) for f in Survey._meta.concrete_fields if f.name not in (
        "team", "pilot_key", "pseudonym_salt", "consent_md", "instructions_md") and not f.name.startswith("code_")
        and f.name != "completion_code"}
    lists = {}
    listed = Trial.objects.filter(survey=survey, trial_list__isnull=False)
    for list_id, trial_id in listed.values_list("trial_list__index", "id"):
        lists.setdefault(int(list_id), []).append(trial_id)
    state = survey.adaptive
    return {
        "survey": settings,
        "build": report.get("design"),
        "trial_lists": [{"index": k, "trial_ids": sorted(v)} for k, v in sorted(lists.items())],
        "counterbalancing": "Each participant's trial order and option order (screen position of each option) is in "
                            "data/...data-assignments_data.csv; masks per trial in the trials table.",
        # What reanalyse.py needs to rebuild the report exactly: the report's own settings.
        "analysis": {
            "n_boot": report["n_boot"], "seed": report["seed"], "level": report["level"],
            "rules": data.rules.describe(), "exclude_mistimed": bool(survey.exclude_mistimed),
            "task_type": survey.task_type, "n_options": survey.n_options,
            "ratings_per_list": survey.ratings_per_list, "precision_goal": survey.precision_goal,
            "adaptive_sets": state.conditions if state and state.conditions
            else sorted(survey.iri_jobs.values_list("pk", flat=True)),
        },
    }


def _description(*, survey: Survey, report: dict) -> dict:
    """Psych-DS's dataset_description.json: schema.org Dataset keys."""
    tables = COLUMNS["answers"]
    return {
        "@context": "https://schema.org/",
        "@type": "Dataset",
        "name": f"{survey.title} ({survey.slug})",
        "schemaVersion": f"Psych-DS {PSYCH_DS_VERSION}",
        "description": (
            f"Human judgements on identically represented inputs (IRIs): a {survey.get_task_type_display()} survey of "
            f"{report['n_participants']} participants and {report['n_answers']} answers over "
            f"{len(report['conditions'])} "
            "condition(s). The archive carries the answers, the trials and their stimuli with provenance, the design, "
            "the frozen analysis plan, the report, and reanalyse.py, which recomputes the report with Python and numpy."
        ),
        "author": [{"@type": "Organization", "name": survey.team.name}],
        "license": LICENSE,
        "datePublished": timezone.now().date().isoformat(),
        "date": timezone.now().isoformat(),
        "keywords": ["model metamers", "invariance", "alignment", "psychophysics", survey.task_type],
        "variableMeasured": [
            {"@type": "PropertyValue", "name": name, "description": tables[name][0],
             **({"unitText": tables[name][2]} if tables[name][2] else {})}
            for name in ("choice", "correct", "rt_ms", "shown_position", "mistimed")
        ],
    }


def _answers_told(blocks: Iterable[str], *, total: int, say: Callable[[float, str], None]) -> Iterator[str]:
    """The answers CSV's blocks, telling progress every 50,000 answers (0.1 to 0.6 of the archive's time)."""
    written, told = 0, 0
    for block in blocks:
        yield block
        written += block.count("\n")
        if written - told >= ANSWERS_PER_PROGRESS:
            told = written
            say(0.1 + 0.5 * min(1.0, written / max(total, 1)), f"answers ({min(written, total):,} of {total:,})")


def study_archive_write(
    *, survey: Survey, out: str | os.PathLike, identified: bool = False, actor: Actor | None = None,
    n_boot: int = 1000, seed: int = 0, progress: Callable[[float, str], None] | None = None,
) -> dict:
    """Write the survey's study archive to ``out`` (a .zip); returns {path, bytes, files, answers}.

    Refuses a survey without answers (ApplicationError, nothing written). ``identified`` keeps the raw Prolific PID /
    MTurk worker ID in the sessions and answers tables, and is audit-logged as done by ``actor`` (teams.actors)."""
    if not answers_counted(survey=survey, purpose=Purpose.ALL).exists():
        raise ApplicationError(ARCHIVE_NO_ANSWERS.format(slug=survey.slug))
    say = progress or (lambda share, step: None)
    out = Path(out)
    partial = out.with_name(f".{out.name}.partial")
    say(0.0, "report")
    report = alignment_report(survey=survey, n_boot=n_boot, seed=seed)
    data = survey_data_load(survey=survey, raw_ids=identified)
    sha, jobs, iris = _stimuli(survey=survey, data=data)
    validity = {i["id"]: ValidityRecord.from_dict(i["validity"] or {}) for i in iris}
    photos = dict(IriImage.objects.filter(pk__in=list(validity)).values_list("target_id", "target__name"))
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            w = ArchiveWriter(archive)
            w.json("dataset_description.json", _description(survey=survey, report=report))
            answers = int(data.answers["trial"].size)
            say(0.1, "answers")
            # the answers export itself (results.export_answers), streamed in blocks of 8,192 answers
            w.blocks(_table_name(survey=survey, table="answers"),
                     _answers_told(answers_csv(survey=survey, data=data), total=answers, say=say))
            say(0.6, "trials and sessions")
            w.csv(_table_name(survey=survey, table="trials"), list(COLUMNS["trials"]),
                  _trial_rows(survey=survey, data=data, validity=validity, sha=sha, photos=photos))
            w.csv(_table_name(survey=survey, table="sessions"), list(COLUMNS["sessions"]), _session_rows(data=data))
            w.csv(_table_name(survey=survey, table="conditions"), list(COLUMNS["conditions"]),
                  _condition_rows(data=data))
            _assignments_write(w, name=_table_name(survey=survey, table="assignments"), survey=survey)
            w.json("datapackage.json", {
                "name": f"study-{survey.slug}".lower(), "title": survey.title, "licenses": [{"name": LICENSE}],
                "resources": [
                    {"name": table, "path": _table_name(survey=survey, table=table), "format": "csv",
                     "encoding": "utf-8",
                     "schema": {"fields": [column_schema(c, table)
                                           for c in (ANSWER_COLUMNS if table == "answers" else COLUMNS[table])]}}
                    for table in TABLES
                ],
            })
            say(0.7, "stimuli")
            for image in StoredImage.objects.filter(pk__in=list(sha)).order_by("sha256"):
                with image.file.open("rb") as source:
                    w.copy(f"stimuli/images/{image.sha256}.png", source)
            w.json("stimuli/iri_sets.json", jobs)
            w.json("stimuli/iris.json", iris)
            w.json("design/design.json", _design(survey=survey, report=report, data=data))
            for name, text in plan_files(survey=survey).items():
                w.text(f"plan/{name}", text)
            w.json("report/report.json", report)
            say(0.9, "analysis")
            w.text("analysis/__init__.py", '"""Copies of the platform\'s statistics modules, for reanalyse.py."""\n')
            for module in ANALYSIS_MODULES:
                path = Path(module.__file__).resolve()
                w.text(f"analysis/{path.relative_to(STATS_ROOT).as_posix()}", path.read_text(encoding="utf-8"))
            w.text("analysis/scipy_stand_in.py", (ARCHIVE_FILES / "scipy_stand_in.py").read_text(encoding="utf-8"))
            w.text("reanalyse.py", (ARCHIVE_FILES / "reanalyse.py").read_text(encoding="utf-8"))
            w.text("README.md", (ARCHIVE_FILES / "README.md").read_text(encoding="utf-8").format(slug=survey.slug))
            w.json("manifest.json", {
                "algorithm": "sha256", "created": timezone.now().isoformat(), "survey": survey.slug,
                "identified": identified, "numpy": np.__version__, "python": platform.python_version(),
                "files": dict(sorted(w.manifest.items())),
            })
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if identified:
        audit_record(actor=actor, action="study_archive.identified", obj=survey,
                     details={"file": out.name, "note": "raw Prolific PIDs / MTurk worker IDs in the archive"})
    say(1.0, "done")
    return {"path": str(out), "bytes": out.stat().st_size, "files": len(w.manifest) + 1, "answers": answers}


# ---------------------------------------------------------------------------------------------
# The archive as a background run (the survey report page's button): an operation run of kind "archive"

ARCHIVE_STORAGE_DIR = "archives"  # in Django's default storage, beside checkpoints/: never served (only img/ is)
ARCHIVE_STALE = timedelta(hours=6)  # a run queued or running this long is taken as lost: it blocks no new one
ARCHIVE_KIND = "archive"  # registered by results.apps


def study_archive_run_start(*, survey: Survey, actor: Actor | None = None) -> tuple[OperationRun, bool]:
    """(the run, whether it is new): a worker builds the survey's archive (pseudonymised IDs); while one is queued or
    running, that one is returned and nothing new starts (a second click, two researchers at once). A new run is
    audited (survey.archive) as started by ``actor``."""
    with transaction.atomic():
        Survey.objects.select_for_update().filter(pk=survey.pk).first()  # two requests at once: one waits here
        active = operation_run_list_of_subject(subject=survey, kind=ARCHIVE_KIND).filter(
            created_at__gte=timezone.now() - ARCHIVE_STALE,
            status__in=(OperationRun.Status.QUEUED, OperationRun.Status.RUNNING),
        ).first()
        if active is not None:
            return active, False
        return operation_run_create(kind=ARCHIVE_KIND, subject=survey, params={}, actor=actor), True


def study_archive_build(run: OperationRun, progress: Progress) -> dict:
    """The worker's side of an archive run: the archive written to a temporary file, then stored privately under
    archives/ in the default storage. Returns what the report page shows: {file, bytes, sha256, answers, files}."""
    survey = run.subject
    with tempfile.TemporaryDirectory(prefix="study-archive-") as folder:
        local = Path(folder) / f"study-{survey.slug}.zip"
        written = study_archive_write(survey=survey, out=local, actor=Actor.of_user(run.created_by), progress=progress)
        with local.open("rb") as f:
            sha = hashlib.file_digest(f, "sha256")
        with local.open("rb") as f:
            name = default_storage.save(f"{ARCHIVE_STORAGE_DIR}/{survey.pk}/run-{run.pk}-{survey.slug}.zip", File(f))
    return {"file": name, "bytes": written["bytes"], "sha256": sha.hexdigest(), "answers": written["answers"],
            "files": written["files"]}


def study_archive_file_open(*, survey: Survey):
    """(the latest finished archive run of the survey, its file opened for reading), or None where there is none
    (or its file is gone). The caller has checked that the user may see the survey."""
    runs = operation_run_list_of_subject(subject=survey, kind=ARCHIVE_KIND).filter(status=OperationRun.Status.DONE)
    for run in runs[:1]:
        name = (run.result or {}).get("file")
        if name and default_storage.exists(name):
            return run, default_storage.open(name, "rb")
    return None
