"""What results.selectors hands to the analysis: the same answers the ORM sees, as columns."""
import numpy as np
import pytest

from iri_worker.models import IriJob
from results.selectors import survey_answer_arrays, survey_iri_sets, survey_trial_table
from surveys.models import Response
from tests.results.helpers import session_answer, survey_make, target

pytestmark = pytest.mark.django_db


def test_the_answer_columns_are_the_answers_in_the_database(live_survey):
    session_answer(live_survey, pid="A", choose=target, rt_ms=812.5)
    session_answer(live_survey, pid="B", choose=lambda t: 1 - t.target_option, rt_ms=90.0)

    arrays = survey_answer_arrays(survey=live_survey)

    expected = sorted(Response.objects.filter(trial__survey=live_survey).values_list("participant_id", "trial_id", "choice", "rt_ms"))
    got = sorted(zip(arrays["participant"].tolist(), arrays["trial"].tolist(), arrays["choice"].tolist(), arrays["rt_ms"].tolist()))
    assert got == expected
    assert arrays["participant"].dtype == np.int64 and arrays["rt_ms"].dtype == np.float64


def test_a_survey_without_answers_gives_empty_columns(live_survey):
    arrays = survey_answer_arrays(survey=live_survey)
    assert all(a.size == 0 for a in arrays.values())


def test_iri_sets_carry_the_fields_of_a_condition_and_custom_recipes_become_labels(live_survey, iri_set):
    IriJob.objects.filter(pk=iri_set.pk).update(spec={**iri_set.spec, "recipe": [["representation_distance", 1.0]], "param": "fft"})

    (row,) = survey_iri_sets(survey=live_survey)

    assert set(row) >= {"backbone", "checkpoint", "training", "recipe", "seed_kind", "layer"}
    assert row["recipe"].startswith("custom:") and row["recipe"].endswith("+fft")
    trials = survey_trial_table(survey=live_survey)
    assert (trials["job"] == iri_set.pk).all() and (trials["target_option"] < trials["n_options"]).all()


def test_two_iri_sets_of_one_condition_are_pooled(photos, iri_set):
    from results.services import alignment_report
    from tests.conftest import finished_iri_set

    twin = finished_iri_set(photos, rng_seed=5)  # same backbone, recipe, seed kind and layer
    survey = survey_make(slug="twins", iri_jobs=[iri_set, twin])
    session_answer(survey, pid="A", choose=target)

    (condition,) = alignment_report(survey=survey)["conditions"]
    assert sorted(condition["iri_sets"]) == sorted([iri_set.pk, twin.pk]) and condition["n_items"] == 6
