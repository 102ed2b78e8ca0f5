"""Researchers build 2AFC surveys from finished IRI sets."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from iri_worker.demo_photos import bundled_photos
from iri_worker.models import IriJob, TargetPhoto
from surveys.models import Survey
from tests.conftest import finished_iri_set, queued_runs_perform, survey_posted

pytestmark = pytest.mark.django_db


def test_a_survey_has_one_trial_per_iri_with_its_target_and_seed_as_options(researcher_client, iri_set):
    shown = survey_posted(researcher_client, {"slug": "s1", "title": "t", "iri_jobs": [iri_set.pk]})

    survey = Survey.objects.get(slug="s1")
    assert survey.status == Survey.Status.DRAFT and shown["url"] == "/s/s1/" and shown["build"] == "built"
    assert shown["trials"] == survey.trials.count() == 3
    for trial in survey.trials.select_related("iri"):
        options = [trial.option_0_id, trial.option_1_id]
        assert trial.query_id == trial.iri.image_id
        assert options[trial.target_option] == trial.iri.target_image_id
        assert options[1 - trial.target_option] == trial.iri.seed_id


def test_the_foil_can_be_another_target(researcher_client, iri_set):
    assert survey_posted(researcher_client, {"slug": "s2", "title": "t", "iri_jobs": [iri_set.pk],
                                             "foil_rule": "other_target"})["trials"] == 3

    for trial in Survey.objects.get(slug="s2").trials.select_related("iri"):
        foil = [trial.option_0_id, trial.option_1_id][1 - trial.target_option]
        other_targets = {i.target_image_id for i in iri_set.images.exclude(pk=trial.iri_id)}
        assert foil in other_targets


def test_a_survey_without_a_finished_iri_set_is_refused(researcher_client, photos):
    queued = IriJob.objects.create(team=photos[0].team, spec={"backbone": "tiny_cnn"})

    response = researcher_client.post("/api/surveys/", {"slug": "s3", "title": "t", "iri_jobs": [queued.pk]}, format="json")

    assert response.status_code == 400
    assert "not finished" in response.json()["message"]
    assert not Survey.objects.exists()


def test_a_taken_slug_is_refused(researcher_client, live_survey, iri_set):
    response = researcher_client.post(
        "/api/surveys/", {"slug": live_survey.slug, "title": "t", "iri_jobs": [iri_set.pk]}, format="json"
    )

    assert response.status_code == 400
    assert "exists already" in response.json()["message"]


def test_publishing_makes_the_survey_live_once_a_worker_built_it(researcher_client, iri_set):
    created = researcher_client.post("/api/surveys/", {"slug": "s4", "title": "t", "iri_jobs": [iri_set.pk]},
                                     format="json")
    too_early = researcher_client.post("/api/surveys/s4/publish")
    queued_runs_perform()  # the worker builds the trials

    response = researcher_client.post("/api/surveys/s4/publish")

    assert created.status_code == 201 and created.json()["trials"] == 0 and created.json()["build"] == "building"
    assert too_early.status_code == 409 and "still being built by a worker" in too_early.json()["message"]
    assert response.json()["status"] == "LIVE"
    assert researcher_client.get("/s/s4/").status_code == 200


LABELS = {"chelsea the cat": "still life", "coffee": "still life", "rocket": "vehicle", "motorcycle": "vehicle"}


def test_photos_take_a_class_label_and_the_same_class_foil_uses_it(researcher_client):
    for name, data in bundled_photos().items():
        upload = SimpleUploadedFile(f"{name}.png", data, content_type="image/png")
        response = researcher_client.post("/api/iri/photos", {"file": upload, "name": name, "label": LABELS[name]})
        assert response.status_code == 201 and response.json()["label"] == LABELS[name]
    iri_set = finished_iri_set(list(TargetPhoto.objects.all()))

    shown = survey_posted(researcher_client, {"slug": "sc", "title": "t", "iri_jobs": [iri_set.pk],
                                              "foil_rule": "same_class"})

    assert shown["trials"] == 4
    label_of_target_image = {i.target_image_id: i.target.label for i in iri_set.images.select_related("target")}
    for trial in Survey.objects.get(slug="sc").trials.select_related("iri__target"):
        target, foil = [trial.option_0_id, trial.option_1_id][:: 1 if trial.target_option == 0 else -1]
        assert target == trial.iri.target_image_id and foil != target
        assert label_of_target_image[foil] == trial.iri.target.label
        assert trial.foil_kind == "same_class"


def test_the_same_class_foil_needs_labels_on_every_target(researcher_client, iri_set):
    response = researcher_client.post(
        "/api/surveys/", {"slug": "sc", "title": "t", "iri_jobs": [iri_set.pk], "foil_rule": "same_class"}, format="json"
    )

    assert response.status_code == 400
    message = response.json()["message"]
    assert "needs a class label" in message and "chelsea the cat" in message
    assert not Survey.objects.exists()


def test_the_same_class_foil_needs_two_targets_in_each_class(researcher_client, iri_set, photos):
    for photo, label in zip(photos, ["Cat ", "thing", "cat"]):  # labels compare trimmed, case-insensitively
        photo.label = label
        photo.save()

    response = researcher_client.post(
        "/api/surveys/", {"slug": "sc", "title": "t", "iri_jobs": [iri_set.pk], "foil_rule": "same_class"}, format="json"
    )

    assert response.status_code == 400
    assert "these classes have one: 'thing'" in response.json()["message"]


def test_the_builder_leaves_out_iris_that_fail_their_validity_record_and_says_why(researcher_client, iri_set):
    records = [{"percentile": 0.0, "label_match": True}, {"percentile": 40.0, "label_match": True}, {"percentile": 0.0, "label_match": False}]
    for iri, record in zip(iri_set.images.order_by("id"), records):
        iri.validity = {**iri.validity, **record}
        iri.save(update_fields=["validity"])
    body = {"title": "t", "iri_jobs": [iri_set.pk]}

    shown = survey_posted(researcher_client, {**body, "slug": "valid", "iri_max_percentile": 5,
                                              "iri_require_label_match": True})

    survey = Survey.objects.get(slug="valid")
    kept = iri_set.images.order_by("id").first()
    assert list(survey.trials.filter(kind="main").values_list("iri_id", flat=True)) == [kept.pk]
    assert survey.build_report["left_out"] == {"percentile_above_threshold": 1, "label_mismatch": 1, "no_validity_record": 0}
    assert shown["build_report"]["validity_filter"] == {"max_percentile": 5.0, "require_label_match": True}


@pytest.mark.parametrize("field,value", [("iri_max_percentile", 101), ("iri_max_percentile", -1), ("one_side_max_fraction", 0.4)])
def test_a_threshold_out_of_range_is_refused_naming_the_field(researcher_client, iri_set, field, value):
    response = researcher_client.post("/api/surveys/", {"slug": "bad", "title": "t", "iri_jobs": [iri_set.pk], field: value}, format="json")

    assert response.status_code == 400 and field in response.json()["message"]
    assert not Survey.objects.exists()


def test_a_filter_that_leaves_no_iri_is_refused_with_the_reasons(researcher_client, iri_set):
    iri_set.images.update(validity={"percentile": 90.0})

    response = researcher_client.post(
        "/api/surveys/", {"slug": "none", "title": "t", "iri_jobs": [iri_set.pk], "iri_max_percentile": 1}, format="json")

    assert response.status_code == 400 and "3 percentile above threshold" in response.json()["message"]
    assert not Survey.objects.exists()


def test_a_survey_built_through_the_api_keeps_its_retention_period(researcher_client, iri_set):
    response = researcher_client.post(
        "/api/surveys/", {"slug": "kept-30", "title": "t", "iri_jobs": [iri_set.pk], "retention_days": 30}, format="json"
    )
    refused = researcher_client.post(
        "/api/surveys/", {"slug": "kept-minus", "title": "t", "iri_jobs": [iri_set.pk], "retention_days": -1}, format="json"
    )

    assert response.status_code == 201 and response.json()["retention_days"] == 30
    assert Survey.objects.get(slug="kept-30").retention_days == 30
    assert refused.status_code == 400 and "retention_days" in refused.json()["message"]
