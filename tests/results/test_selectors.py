"""What results.selectors hands to the analysis: the same answers the ORM sees, as columns."""
import uuid
from itertools import product

import numpy as np
import pytest
from django.db import connection

from iri_worker.models import IriJob
from results.selectors import survey_iri_sets, survey_trial_table
from surveys.counted_answers import _answer_branches, survey_answer_arrays
from surveys.models import Participant, Response, Trial
from tests.results.helpers import session_answer, survey_make, target

pytestmark = pytest.mark.django_db


def test_the_answer_columns_are_the_answers_in_the_database(live_survey):
    session_answer(live_survey, pid="A", choose=target, rt_ms=812.5)
    b = session_answer(live_survey, pid="B", choose=lambda t: 1 - t.target_option, rt_ms=90.0)
    Response.objects.filter(participant=b, trial__in=Response.objects.filter(participant=b).values("trial")[:1]).update(shown_position=None)

    arrays = survey_answer_arrays(survey=live_survey)

    rows = Response.objects.filter(trial__survey=live_survey).values_list("participant_id", "trial_id", "choice", "rt_ms", "shown_position")
    expected = sorted((*row[:4], -1 if row[4] is None else row[4]) for row in rows)
    columns = ("participant", "trial", "choice", "rt_ms", "shown_position")
    got = sorted(zip(*(arrays[c].tolist() for c in columns)))
    assert got == expected and sum(position == -1 for *_, position in got) == 1  # NULL: not recorded
    assert arrays["participant"].dtype == np.int64 and arrays["rt_ms"].dtype == np.float64 and arrays["shown_position"].dtype == np.int64


def test_answers_spread_over_many_table_blocks_come_back_once_each(live_survey):
    # Enough answers to fill a few dozen blocks, so each block range (one aggregate per range, run side by side
    # by PostgreSQL's parallel workers) has rows of its own. PostgreSQL is told to go parallel even for a table
    # this small (for this transaction only), so the workers must see the test's uncommitted answers too.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for setting in ("min_parallel_table_scan_size", "parallel_setup_cost", "parallel_tuple_cost"):
                cursor.execute(f"SET LOCAL {setting} = 0")
    trials = list(Trial.objects.filter(survey=live_survey).values_list("id", flat=True))
    people = Participant.objects.bulk_create(Participant(survey=live_survey, token=f"bulk-{i}") for i in range(800))
    Response.objects.bulk_create(
        Response(participant=p, trial_id=t, choice=i % 2, rt_ms=100.0 + i, idempotency_key=uuid.uuid4())
        for i, (p, t) in enumerate(product(people, trials))
    )

    arrays = survey_answer_arrays(survey=live_survey)

    expected = sorted(Response.objects.filter(trial__survey=live_survey).values_list("participant_id", "trial_id", "choice", "rt_ms"))
    got = sorted(zip(arrays["participant"].tolist(), arrays["trial"].tolist(), arrays["choice"].tolist(), arrays["rt_ms"].tolist()))
    assert got == expected and len(got) == 800 * len(trials)
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        branches = _answer_branches(cursor, Response._meta.db_table)
        per_branch = []
        for where in branches:
            cursor.execute(f"SELECT count(*) FROM {Response._meta.db_table} r WHERE {where}")
            per_branch.append(cursor.fetchone()[0])
        cursor.execute("SHOW max_parallel_workers_per_gather")
        workers = int(cursor.fetchone()[0])
        cursor.execute("EXPLAIN " + " UNION ALL ".join(f"SELECT count(*) FROM {Response._meta.db_table} r WHERE {w}" for w in branches))
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert sum(per_branch) == Response.objects.count()  # the ranges cover the table, and no row twice
    assert len(branches) == min(workers + 1, 8) and sum(n > 0 for n in per_branch) == len(branches)
    assert workers == 0 or "Parallel Append" in plan


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
