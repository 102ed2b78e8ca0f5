"""Each exported answer carries the validity record of the IRI it was about."""
import pytest

from results.exports import ANSWER_COLUMNS, answer_rows
from tests.results.helpers import session_answer, target

pytestmark = pytest.mark.django_db


def test_every_answer_row_names_its_iris_null_percentile_and_label_check(live_survey):
    session_answer(live_survey, pid="A", choose=target)

    rows = list(answer_rows(survey=live_survey))

    assert rows and {"iri_null_percentile", "iri_rep_distance", "iri_label_match", "iri_model_label",
                     "target_model_label"} <= set(ANSWER_COLUMNS)
    records = {iri.image.sha256: iri.validity for iri in live_survey.trials.first().iri.job.images.all()}
    for row in rows:
        record = records[row["query_image"]]
        assert row["iri_null_percentile"] == record["percentile"] and 0 <= row["iri_null_percentile"] <= 100
        assert row["iri_rep_distance"] == record["distance"]
        assert row["iri_label_match"] == record["label_match"]
        assert (row["iri_model_label"], row["target_model_label"]) == (record["iri_label"], record["target_label"])
