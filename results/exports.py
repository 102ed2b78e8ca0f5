"""Every streamed export by file name (EXPORTS): its content type and the module that writes it, one per kind of
file: results.export_answers (answers.csv, answers.json), results.export_model_vs_human (model-vs-human.csv and
.zip) and results.export_participants (participants.csv). Each streams from the arrays of
results.survey_data.survey_data_load; results.export_conditions writes the report's conditions.csv.
"""
from __future__ import annotations

from collections.abc import Iterator

from surveys.models import Survey

from .export_answers import answers_csv, answers_json
from .export_model_vs_human import mvh_csv, mvh_zip
from .export_participants import participants_csv
from .survey_data import survey_data_load

EXPORTS = {
    "answers.csv": ("text/csv", answers_csv),
    "answers.json": ("application/json", answers_json),
    "model-vs-human.csv": ("text/csv", mvh_csv),
    "model-vs-human.zip": ("application/zip", mvh_zip),
    "participants.csv": ("text/csv", participants_csv),
}
RAW_ID_EXPORTS = ["answers.csv", "answers.json", "participants.csv"]  # the ones with an external_id column


def export_stream(*, survey: Survey, name: str, raw_ids: bool = False) -> tuple[str, Iterator[str]]:
    """(content type, chunks) of one export by name (a key of EXPORTS); external IDs pseudonymised unless raw_ids."""
    content_type, write = EXPORTS[name]
    return content_type, write(survey=survey, data=survey_data_load(survey=survey, raw_ids=raw_ids))
