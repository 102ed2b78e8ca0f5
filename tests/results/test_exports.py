"""Each exported answer carries the validity record of the IRI it was about."""
import pytest

from results.export_answers import ANSWER_COLUMNS, answer_rows
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


def test_the_answer_pages_walk_back_and_forth_and_cap_the_limit(live_survey, researcher_client):
    session_answer(live_survey, pid="A", choose=target)
    session_answer(live_survey, pid="B", choose=target)
    url = f"/api/results/surveys/{live_survey.slug}/answers"

    last = researcher_client.get(url, {"offset": 4, "limit": 2}).json()
    middle = researcher_client.get(last["previous"]).json()
    first = researcher_client.get(middle["previous"]).json()
    everything = researcher_client.get(url, {"limit": 10**6}).json()

    assert (last["count"], len(last["results"]), last["next"]) == (6, 2, None)
    assert first["previous"] is None and researcher_client.get(first["next"]).json() == middle
    assert len(everything["results"]) == 6 and everything["next"] is None
    assert first["results"] + middle["results"] + last["results"] == everything["results"]
