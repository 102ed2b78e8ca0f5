"""The web process checks a job spec by looking the backbone up in the engine's registry (its layer names, sizes and
stages are static data): the admin's job form, the job and sweep endpoints and the layers endpoint never build a
model, also when they refuse a spec."""
import pytest
from django.test import Client

from iri_worker.engine import backbones as registry
from iri_worker.models import IriJob
from tests.conftest import TINY_SPEC

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_model_is_built(monkeypatch):
    """Any model built (or taken from the per-process cache) fails the test."""
    built = []

    def build(*args, **kwargs):
        built.append(args)
        raise AssertionError("a backbone was built in the web process")

    monkeypatch.setattr(registry, "_load_cached", build)
    for name in registry.list_backbones():
        monkeypatch.setitem(registry._BUILDERS, name, build)
    yield
    assert not built


@pytest.fixture
def admin_client(researcher):
    client = Client()
    client.force_login(researcher)
    return client


def test_the_admin_job_form_lists_layers_and_checks_a_job_without_building_a_model(
    admin_client, photos, no_model_is_built, django_capture_on_commit_callbacks
):
    page = admin_client.get("/admin/iri_worker/irijob/add/").content.decode()
    assert '<datalist id="iri-layer-names">' in page and "_blocks.15._project_conv" in page

    form = {"name": "job", "target_photos": [p.pk for p in photos], "backbone": "tiny_cnn", "recipe": "reg_free",
            "seed_kind": "super-noise", "steps": 5, "step_size": 0.5, "rng_seed": 0}
    refused = admin_client.post("/admin/iri_worker/irijob/add/", {**form, "layer": "relu3"})
    assert refused.status_code == 200 and "Unknown layer &#x27;relu3&#x27;" in refused.content.decode()
    resnet = admin_client.post("/admin/iri_worker/irijob/add/", {**form, "backbone": "resnet50", "layer": "layer5"})
    assert resnet.status_code == 200 and '<option value="layer4.2.final_relu">' in resnet.content.decode()

    with django_capture_on_commit_callbacks(execute=False):
        created = admin_client.post("/admin/iri_worker/irijob/add/", {**form, "layer": "relu2"})
    assert created.status_code == 302
    assert IriJob.objects.get().spec["layer"] == "relu2"


def test_the_api_checks_jobs_and_sweeps_and_lists_layers_without_building_a_model(
    researcher_client, photos, no_model_is_built, django_capture_on_commit_callbacks
):
    targets = [p.pk for p in photos]
    layers = researcher_client.get("/api/iri/backbones/vit_b_16/layers").json()
    assert layers["default_layer"] == "representation" and "encoder.layers.encoder_layer_11" in layers["stages"]

    refused = researcher_client.post("/api/iri/jobs", {"targets": targets, "spec": {"backbone": "vit_b_16",
                                                                                     "image_size": 64}}, format="json")
    assert refused.status_code == 400 and "accepts only 224x224" in str(refused.json())
    bad_sweep = researcher_client.post("/api/iri/jobs", {"targets": targets, "spec": dict(TINY_SPEC),
                                                         "layers": ["relu1", "conv9"]}, format="json")
    assert bad_sweep.status_code == 400 and bad_sweep.json()["extra"]["invalid"] == ["conv9"]

    with django_capture_on_commit_callbacks(execute=False):
        job = researcher_client.post("/api/iri/jobs", {"targets": targets, "spec": {"backbone": "resnet18", "steps": 2}},
                                     format="json")
        sweep = researcher_client.post("/api/iri/jobs", {"targets": targets, "spec": dict(TINY_SPEC),
                                                         "layers": ["relu1", "pool"]}, format="json")
    assert job.status_code == 201 and job.json()["spec"]["layer"] == "avgpool" and job.json()["spec"]["image_size"] == 224
    assert sweep.status_code == 201 and sweep.json()["layers"] == ["relu1", "pool"]
