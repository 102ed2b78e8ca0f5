"""model-vs-human's raw human data (bethgelab/model-vs-human): every subject in one CSV (model-vs-human.csv), or
one CSV per subject in a zip laid out as their raw-data/ folder (model-vs-human.zip). Included main-trial answers
only; `subj` is the participant's row id.
"""
from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator

from surveys.models import Survey
from surveys.task_types import task_type_get

from .export_lookups import answer_categories, answer_lookups, condition_label, condition_of_trial
from .selectors import CONDITION_FIELDS
from .survey_data import SurveyData, survey_data_load

# model-vs-human's raw human data (raw-data/<experiment>/*.csv in bethgelab/model-vs-human; read back by
# modelvshuman/helper/plotting_helper.py, which lower-cases the header): one row per trial.
MVH_COLUMNS = ["subj", "Session", "trial", "rt", "object_response", "category", "condition", "imagename"]


def _mvh_conditions(data: SurveyData) -> list[str]:
    """A classification condition's name for model-vs-human: what differs between the survey's conditions (a layer
    sweep: the layer; several networks: the network and layer), as model-vs-human names a condition by the one thing
    its experiment varies; the layer where there is one condition."""
    varying = [f for f in CONDITION_FIELDS if len({str(c.get(f, "")) for c in data.conditions}) > 1] or ["layer"]
    return [" · ".join(str(c[f]) for f in varying if c.get(f)) or condition_label(c) for c in data.conditions]


def _mvh_rows(*, survey: Survey, data: SurveyData) -> Iterator[tuple[int, list]]:
    """(participant id, model-vs-human row) of every included main-trial answer, per participant then trial.

    A classification answer: object_response = the chosen category, category = the true one, condition = the layer
    or network (_mvh_conditions), so model-vs-human's accuracy (object_response == category) is the recognition
    accuracy. 2AFC and clustering: category = the target photo's name; object_response = the name of the chosen
    option (the target photo's name when the target was chosen, else "seed" or "foil-<sha12>"), so their accuracy
    is our correctness; condition = the full condition label. trial = the answer's ordinal within its subject.
    """
    ctx = answer_lookups(data)
    trials, answers = data.trials, data.answers
    classify_conditions = _mvh_conditions(data)
    previous, ordinal = -1, 0
    for i in ctx["order"]:
        if not data.included[i]:
            continue
        t, p = int(data.t_row[i]), int(data.p_row[i])
        ordinal = ordinal + 1 if p == previous else 1
        previous = p
        choice = int(answers["choice"][i])
        c = int(data.trial_condition[t])
        task_type = trials["task_type"][t]
        if task_type_get(task_type).options_are_categories:
            true_option = int(trials["target_option"][t])
            category, response = answer_categories(survey=survey, task_type=task_type, target_option=true_option, choice=choice)
            condition = classify_conditions[c] if c >= 0 else ""
        else:
            category = ctx["photo"].get(int(trials["target"][t]), f"target-{t}")
            if choice == trials["target_option"][t]:
                response = category
            elif 0 <= choice < 3 and trials["options"][t][choice] == trials["seed_image"][t]:
                response = "seed"
            else:
                option = int(trials["options"][t][choice]) if 0 <= choice < 3 else -1
                response = f"foil-{ctx['sha'].get(option, '')[:12]}"
            condition = condition_label(condition_of_trial(data, t))
        person = int(data.people["id"][p])
        yield person, [
            _mvh_subject(person), 1, ordinal, round(float(answers["rt_ms"][i]) / 1000, 4),
            response, category, condition, f"{ctx['sha'].get(int(trials['query'][t]), '')}.png",
        ]


def _mvh_subject(participant: int) -> str:
    return f"subject-{participant}"  # model-vs-human tells people from networks by the "subject-" prefix


def mvh_csv(*, survey: Survey, data: SurveyData | None = None) -> Iterator[str]:
    """model-vs-human raw-data layout, every subject in one CSV: subj, Session, trial, rt (s), object_response,
    category, condition, imagename (see _mvh_rows). Included main-trial answers only."""
    data = data or survey_data_load(survey=survey)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MVH_COLUMNS)
    for _, row in _mvh_rows(survey=survey, data=data):
        writer.writerow(row)
        if buffer.tell() > 1 << 16:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


class _ZipSink(io.RawIOBase):
    """A write-only, unseekable file that zipfile writes into (it then uses data descriptors); take() hands over
    what was written since the last call, so a zip streams out subject by subject."""

    def __init__(self):
        super().__init__()
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def mvh_experiment_name(*, survey: Survey) -> str:
    """The experiment (model-vs-human's dataset) name: the survey's slug; "_" separates the parts of their file
    names, so it becomes "-" (as their ResultPrinter does with model names)."""
    return survey.slug.replace("_", "-")


def mvh_file_name(*, experiment: str, subject: str, session: int = 1) -> str:
    """model-vs-human's raw-data file naming: <experiment>_<subject>_session_<n>.csv (e.g.
    raw-data/high-pass/high-pass_subject-01_session_1.csv in bethgelab/model-vs-human)."""
    return f"{experiment}_{subject}_session_{session}.csv"


def mvh_zip(*, survey: Survey, data: SurveyData | None = None) -> Iterator[bytes]:
    """model-vs-human's raw data as they ship it: one CSV per subject (MVH_COLUMNS, see _mvh_rows) under a folder
    named after the experiment, <experiment>/<experiment>_subject-<id>_session_1.csv, so unzipping into their
    raw-data/ folder makes an experiment their plotting code reads. Streamed one subject at a time; entries carry a
    fixed date, so the same answers give the same bytes."""
    data = data or survey_data_load(survey=survey)
    experiment = mvh_experiment_name(survey=survey)
    sink = _ZipSink()
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED)

    def entry(person: int, rows: list[list]) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(MVH_COLUMNS)
        writer.writerows(rows)
        info = zipfile.ZipInfo(f"{experiment}/{mvh_file_name(experiment=experiment, subject=_mvh_subject(person))}")
        info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
        archive.writestr(info, buffer.getvalue())
        return sink.take()

    person, rows = None, []
    for subject, row in _mvh_rows(survey=survey, data=data):
        if subject != person and rows:
            yield entry(person, rows)
            rows = []
        person = subject
        rows.append(row)
    if rows:
        yield entry(person, rows)
    archive.close()
    yield sink.take()
