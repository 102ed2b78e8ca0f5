"""Researchers build 2AFC surveys from finished IRI sets."""
import pytest

from iri_worker.models import IriJob
from surveys.models import Survey

pytestmark = pytest.mark.django_db


def test_a_survey_has_one_trial_per_iri_with_its_target_and_seed_as_options(researcher_client, iri_set):
    response = researcher_client.post("/api/surveys/", {"slug": "s1", "title": "t", "iri_jobs": [iri_set.pk]}, format="json")

    assert response.status_code == 201, response.json()
    survey = Survey.objects.get(slug="s1")
    assert survey.status == Survey.Status.DRAFT and response.json()["url"] == "/s/s1/"
    for trial in survey.trials.select_related("iri"):
        options = [trial.option_0_id, trial.option_1_id]
        assert trial.query_id == trial.iri.image_id
        assert options[trial.target_option] == trial.iri.target_image_id
        assert options[1 - trial.target_option] == trial.iri.seed_id


def test_the_foil_can_be_another_target(researcher_client, iri_set):
    researcher_client.post(
        "/api/surveys/", {"slug": "s2", "title": "t", "iri_jobs": [iri_set.pk], "foil_rule": "other_target"}, format="json"
    )

    for trial in Survey.objects.get(slug="s2").trials.select_related("iri"):
        foil = [trial.option_0_id, trial.option_1_id][1 - trial.target_option]
        other_targets = {i.target_image_id for i in iri_set.images.exclude(pk=trial.iri_id)}
        assert foil in other_targets


def test_a_survey_without_a_finished_iri_set_is_refused(researcher_client, photos):
    queued = IriJob.objects.create(spec={"backbone": "tiny_cnn"})

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


def test_publishing_makes_the_survey_live(researcher_client, iri_set):
    researcher_client.post("/api/surveys/", {"slug": "s4", "title": "t", "iri_jobs": [iri_set.pk]}, format="json")

    response = researcher_client.post("/api/surveys/s4/publish")

    assert response.json()["status"] == "LIVE"
    assert researcher_client.get("/s/s4/").status_code == 200
