"""The answers CSV is written from pieces encoded once per participant, trial and choice (for speed: the study
archive writes it for 1,000,000 answers); it must stay, byte for byte, what csv.writer makes of answer_rows."""
import csv
import io
import operator

import pytest

from results.export_answers import ANSWER_COLUMNS, answer_rows, answers_csv
from tests.results.helpers import not_target, session_answer, survey_make, target
from tests.results.test_exports_study import DEVICE, classification, sweep, walk

pytestmark = pytest.mark.django_db


def rows_as_csv_writer_writes_them(survey) -> str:
    """The export's reference: every answer_rows dict through csv.writer, in ANSWER_COLUMNS order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ANSWER_COLUMNS)
    values = operator.itemgetter(*ANSWER_COLUMNS)
    for row in answer_rows(survey=survey):
        writer.writerow(values(row))
    return buffer.getvalue()


def test_a_classification_surveys_csv_with_timing_devices_and_mistimed_exclusions_is_the_rows_byte_for_byte(team):
    survey = classification(sweep(team), exclude_mistimed=True)
    walk(survey, "P1", device=DEVICE)
    # a user agent that must be quoted (a comma and a quote), and a person who gets some categories wrong
    walk(survey, "P2", device={**DEVICE, "user_agent": 'Mozilla/5.0 (Mac, "Intel") Safari', "touch": True},
         wrong_every=3)

    written = "".join(answers_csv(survey=survey))

    assert written == rows_as_csv_writer_writes_them(survey)
    assert '"Mozilla/5.0 (Mac, ""Intel"") Safari"' in written and ",mistimed," in written


def test_a_2afc_surveys_csv_with_too_fast_answers_and_no_timing_is_the_rows_byte_for_byte(photos, iri_set):
    from tests.conftest import finished_iri_set

    survey = survey_make(slug="two_sets", iri_jobs=[iri_set, finished_iri_set(photos, rng_seed=3)])
    session_answer(survey, pid="A", choose=target)
    session_answer(survey, pid="B", choose=not_target, rt_ms=150.0)  # under the rt floor: excluded

    written = "".join(answers_csv(survey=survey))

    assert written == rows_as_csv_writer_writes_them(survey)
    assert "rt_floor" in written and written.count("\n") == 1 + len(list(answer_rows(survey=survey)))
