"""A fourth task type, defined in this module alone: "odd one out among three images". Registered for these tests,
it runs end to end through the HTTP API — a researcher creates and publishes a survey of it, a participant enrolls,
gets its screens, answers them and completes, and the report and the export show the type's own summary — so a new
paradigm touches one module (its TaskType and design), nothing else in surveys or results."""
from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass

import numpy as np
import pytest
from rest_framework.test import APIClient

from backend.exceptions import ApplicationError
from surveys.models import Assignment, Participant, Survey, Trial
from surveys.services.building import lists_build, lists_store, survey_built
from surveys.task_types import (
    AnswerRows,
    SurveyDesign,
    TaskType,
    option,
    task_type_get,
    task_type_register,
    task_type_unregister,
)
from tests.conftest import new_key, queued_runs_perform

pytestmark = pytest.mark.django_db


@dataclass(frozen=True, kw_only=True)
class OddOneOutDesign(SurveyDesign):
    # no column of its own: a type may only refine the common options (here: three positions, so a stricter rule)
    one_side_max_fraction: float | None = option(
        None, valid=lambda v: 0.5 <= v <= 1, rule="empty or between 0.5 and 1",
        help="Exclude one-sided responders: at least this share of answers on one of the three positions.")


class OddOneOut(TaskType):
    """Three images on a screen: an IRI, the target photo it was made from, and its seed. Which is the odd one?
    A person who sees the IRI as its target picks the seed (option 2)."""

    name = "odd_one_out"
    label = "Odd one out (IRI, its target, its seed)"
    design = OddOneOutDesign
    texts = {"consent_md": "**Consent.** You will pick the odd image out of three.",
             "instructions_md": "Click the image that does not belong with the other two."}
    description = "For each screen, look at three images and pick the one that does not belong."
    screen_positions = 3
    kappa_categories = ("found_the_odd_one", "chose_another")

    def build(self, *, survey, iris, rng, pool, report):
        main = [[Trial(survey=survey, task_type=self.name, iri=iri, query=iri.image, option_0=iri.image,
                       option_1=iri.target_image, option_2=iri.seed, n_options=3, target_option=2,
                       screen=f"odd-{k}")]  # each screen its own rotation of the three positions (surveys.layouts)
                for k, iri in enumerate(iris)]
        random.Random(survey.rng_seed).shuffle(main)
        lists = lists_build(survey=survey, units=main)
        lists_store(survey=survey, lists=lists, catch_for=lambda trial_list, rows: [])
        return survey_built(survey=survey, lists=lists, build_report=report)

    def screen_add(self, *, out, trial, shown, url):
        # three images and nothing else: a query URL would show which option is the IRI
        out["trials"].append({"id": trial.public_id,
                              "images": [url(image_id, f"{trial.public_id}.{k}") for k, image_id in enumerate(shown)]})

    def report_summary(self, rows: AnswerRows) -> dict:
        found = [float(rows.correct[rows.condition == c].mean()) if (rows.condition == c).any() else None
                 for c in range(len(rows.conditions))]
        return {"odd_one_found": float(rows.correct.mean()) if rows.correct.size else None,
                "answers": int(rows.correct.size),
                "by_condition": [{"condition": c["condition"], "odd_one_found": f} for c, f in zip(rows.conditions, found)],
                "chance": float(np.mean(1 / rows.n_options)) if rows.n_options.size else None}


@pytest.fixture
def odd_one_out():
    task = task_type_register(OddOneOut())
    yield task
    task_type_unregister(task.name)


def create(client, iri_set, **body):
    return client.post("/api/surveys/", {"slug": "odd", "title": "Odd one out", "iri_jobs": [iri_set.pk],
                                         "task_type": "odd_one_out", **body}, format="json")


def test_a_task_type_defined_in_a_test_runs_end_to_end_through_the_api(odd_one_out, researcher_client, iri_set):
    created = create(researcher_client, iri_set, ratings_per_list=2, rng_seed=3)
    assert created.status_code == 201, created.json()
    (build,) = queued_runs_perform()  # a worker builds the trials through the type's build
    assert build.status == "DONE", build.error
    shown = researcher_client.get("/api/surveys/odd").json()
    assert shown["task_type"] == "odd_one_out" and shown["trials"] == iri_set.images.count()
    survey = Survey.objects.get(slug="odd")
    assert survey.instructions_md == OddOneOut.texts["instructions_md"]  # the type's own words
    assert researcher_client.post("/api/surveys/odd/publish").status_code == 200

    participant = APIClient()
    enrolled = participant.post("/api/p/surveys/odd/enroll", {"prolific_pid": "P1"}, format="json")
    assert enrolled.status_code == 201, enrolled.json()
    token = enrolled.json()["token"]
    assert enrolled.json()["task_type"] == "odd_one_out"
    screens = participant.get(f"/api/p/sessions/{token}/trials").json()["trials"]
    assert [set(screen) for screen in screens] == [{"id", "images"}] * 3  # never which image is which
    assert participant.post(f"/api/p/sessions/{token}/consent").status_code == 200
    odd_at = {a.trial.public_id: a.option_order.index("2")
              for a in Assignment.objects.filter(participant__token=token).select_related("trial")}
    assert len(set(odd_at.values())) > 1, "the odd one moves between positions"
    for k, screen in enumerate(screens):  # the odd one found on all screens but the last
        position = odd_at[screen["id"]] if k < 2 else (odd_at[screen["id"]] + 1) % 3
        answer = {"trial": screen["id"], "choice": position, "rt_ms": 900.0, "idempotency_key": new_key()}
        assert participant.post(f"/api/p/sessions/{token}/responses", answer, format="json").status_code == 201
    assert participant.post(f"/api/p/sessions/{token}/complete").status_code == 200
    assert Participant.objects.get(token=token).status == Participant.Status.COMPLETED

    report = researcher_client.get("/api/results/surveys/odd/alignment").json()
    assert report["task_type"] == "odd_one_out" and report["chance"] == pytest.approx(1 / 3)
    assert report["task_summary"]["odd_one_found"] == pytest.approx(2 / 3)
    assert report["task_summary"]["answers"] == 3 and "recognition" not in report
    assert report["agreement"]["fleiss_kappa"]["categories"] == ["found_the_odd_one", "chose_another"]
    export = researcher_client.get("/api/results/surveys/odd/export/answers.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [r["task_type"] for r in rows] == ["odd_one_out"] * 3
    assert sorted(r["correct"] for r in rows) == ["False", "True", "True"]


def test_its_design_refuses_an_option_it_does_not_take_naming_it(odd_one_out, researcher_client, iri_set):
    foil = create(researcher_client, iri_set, foil_rule="same_set")
    unknown = create(researcher_client, iri_set, colour="red")
    bad = create(researcher_client, iri_set, one_side_max_fraction=0.4)

    assert foil.status_code == 400 and foil.json()["message"] == (
        "foil_rule: an option of 2afc surveys, not of odd_one_out surveys.")
    assert unknown.status_code == 400 and unknown.json()["message"].startswith("colour: not a survey option")
    assert bad.status_code == 400 and bad.json()["extra"] == {"field": "one_side_max_fraction"}
    assert not Survey.objects.exists()


def test_the_schema_describes_each_task_types_options(odd_one_out, researcher_client):
    schema = researcher_client.get("/api/schema/", {"format": "json"}).json()["components"]["schemas"]

    assert {"foil_rule"} <= set(schema["SurveyCreate2afc"]["properties"])
    assert "foil_rule" not in schema["SurveyCreateCluster"]["properties"]
    assert {"fixation_ms", "image_ms", "mask_ms"} <= set(schema["SurveyCreateClassification"]["properties"])


def test_the_admin_builds_it_from_the_same_design(odd_one_out, admin_client, iri_set):
    page = admin_client.get("/admin/surveys/survey/add/")
    form = page.context["adminform"].form
    assert ("odd_one_out", OddOneOut.label) in form.fields["task_type"].choices
    values = {name: field.initial() if callable(field.initial) else field.initial
              for name, field in form.fields.items() if field.initial is not None}

    response = admin_client.post("/admin/surveys/survey/add/", {
        **values, "slug": "odd-admin", "title": "t", "iri_jobs": [iri_set.pk], "task_type": "odd_one_out",
        "foil_rule": "same_set", "trials_per_participant": "", "consent_md": "ok", "instructions_md": "go"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    (build,) = queued_runs_perform()  # a worker builds the trials
    assert build.kind == "survey_build" and build.status == "DONE", build.error
    survey = Survey.objects.get(slug="odd-admin")
    assert survey.task_type == "odd_one_out" and survey.foil_rule == "seed"  # another type's option is not passed on
    assert set(survey.trials.values_list("task_type", "n_options")) == {("odd_one_out", 3)}


def test_an_unknown_task_type_fails_early_naming_the_known_ones(odd_one_out):
    with pytest.raises(ApplicationError) as refused:
        task_type_get("same_different")

    assert refused.value.extra == {"field": "task_type"}
    assert "'2afc', 'cluster', 'classification', 'odd_one_out'" in refused.value.message


def test_after_the_test_the_type_is_gone():
    with pytest.raises(ApplicationError):
        task_type_get("odd_one_out")
