"""Researchers upload photos and create IRI jobs through the API; bad input gets a clear 4xx."""
import importlib
import io

import pytest
from django.test import Client
from PIL import Image

from iri_worker.models import IriJob, TargetPhoto

pytestmark = pytest.mark.django_db


def png_upload(name="cat.png"):
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(out, format="PNG")
    out.name = name
    out.seek(0)
    return out


def test_researcher_endpoints_need_a_login():
    client = Client()
    assert client.post("/api/iri/jobs", {}, content_type="application/json").status_code in (401, 403)
    assert client.get("/api/results/surveys/x/alignment").status_code in (401, 403)
    assert client.post("/api/surveys/", {}, content_type="application/json").status_code in (401, 403)


def test_an_uploaded_photo_is_re_encoded_as_png_under_its_hash(researcher_client):
    response = researcher_client.post("/api/iri/photos", {"file": png_upload(), "name": "red"}, format="multipart")

    assert response.status_code == 201
    photo = TargetPhoto.objects.get()
    assert photo.name == "red"
    assert photo.image.file.name == f"img/{photo.image.sha256[:2]}/{photo.image.sha256}.png"


def test_a_file_that_is_not_an_image_is_refused(researcher_client):
    fake = io.BytesIO(b"#!/bin/sh\necho not a photo\n")
    fake.name = "photo.png"
    response = researcher_client.post("/api/iri/photos", {"file": fake}, format="multipart")

    assert response.status_code == 400
    assert "not an image" in response.json()["message"]
    assert TargetPhoto.objects.count() == 0


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"backbone": "resnet1800"}, "resnet18"),  # the hint names the close match
        ({"backbone": "tiny_cnn", "layer": "no.such.layer"}, "layer"),
        ({"backbone": "tiny_cnn", "steps": 0}, "steps"),
        ({"backbone": "tiny_cnn", "seed_kind": "purple"}, "seed"),
        ({"backbone": "tiny_cnn", "recipe": "magic"}, "recipe"),
    ],
)
def test_a_bad_spec_is_refused_and_nothing_is_created(researcher_client, photos, spec, words):
    response = researcher_client.post("/api/iri/jobs", {"targets": [photos[0].pk], "spec": spec}, format="json")

    assert response.status_code == 400
    assert words in response.json()["message"]
    assert IriJob.objects.count() == 0


def test_forcing_a_layout_the_backbone_cannot_run_is_a_400_naming_the_field(researcher_client, photos):
    spec = {"backbone": "vit_b_16", "channels_last": True}
    response = researcher_client.post("/api/iri/jobs", {"targets": [photos[0].pk], "spec": spec}, format="json")

    assert response.status_code == 400
    message = response.json()["message"]
    assert "channels_last" in message and "runs only the NCHW layout" in message and "false or null" in message
    assert IriJob.objects.count() == 0


@pytest.mark.parametrize("precision", ["fp16", "BF16", 1])
def test_a_precision_that_is_not_one_is_a_400_naming_the_field_and_the_choices(researcher_client, photos, precision):
    spec = {"backbone": "tiny_cnn", "precision": precision}
    response = researcher_client.post("/api/iri/jobs", {"targets": [photos[0].pk], "spec": spec}, format="json")

    assert response.status_code == 400
    message = response.json()["message"]
    assert f"Unknown precision {precision!r}" in message and "Available: fp32, bf16, auto." in message
    assert IriJob.objects.count() == 0


def test_bf16_on_a_host_that_cannot_run_it_is_a_400_with_what_the_host_supports(researcher_client, photos,
                                                                                monkeypatch):
    monkeypatch.setattr(importlib.import_module("iri_worker.engine.precision"), "bf16_supported", lambda _: False)
    for spec in ({"backbone": "tiny_cnn", "precision": "bf16"}, {"backbone": "tiny_cnn", "amp": True}):
        response = researcher_client.post("/api/iri/jobs", {"targets": [photos[0].pk], "spec": spec}, format="json")

        assert response.status_code == 400
        message = response.json()["message"]
        assert "precision: this host cannot run 'bf16' on cpu" in message and "it supports fp32, auto." in message
    assert IriJob.objects.count() == 0


def test_the_api_description_lists_the_precisions_a_spec_may_name(researcher_client):
    from iri_worker.engine import PRECISIONS

    schema = researcher_client.get("/api/schema/?format=json").json()
    spec_descriptions = [field.get("description", "") for component in schema["components"]["schemas"].values()
                         for name, field in component.get("properties", {}).items() if name == "spec"]
    assert any("precision" in text and all(f'"{p}"' in text for p in PRECISIONS) for text in spec_descriptions)


def test_a_job_needs_known_targets(researcher_client):
    response = researcher_client.post("/api/iri/jobs", {"targets": [999], "spec": {}}, format="json")

    assert response.status_code == 400
    assert "999" in response.json()["message"]


def test_a_valid_job_is_queued_with_its_full_spec(researcher_client, photos, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = researcher_client.post(
            "/api/iri/jobs", {"targets": [p.pk for p in photos], "spec": {"backbone": "tiny_cnn", "steps": 3}}, format="json"
        )

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "QUEUED"
    assert body["spec"]["layer"] and body["spec"]["image_size"] == 32  # defaults resolved and recorded
    assert len(callbacks) == 1  # enqueued only after the commit
    assert researcher_client.get(f"/api/iri/jobs/{body['id']}").json()["id"] == body["id"]
