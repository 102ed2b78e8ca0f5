"""Layer sweeps: one request makes one IRI job per layer (the same targets, seed and spec but the layer), each job's
images record their layer, a survey treats each layer as a condition; a layer the backbone lacks refuses the whole
sweep, naming `layers`, before anything is stored."""
import pytest

from iri_worker.engine import stage_names
from iri_worker.models import IriChunk, IriImage, IriJob, TargetPhoto
from iri_worker.services import iri_job_run, iri_sweep_create
from surveys.models import Trial
from surveys.services import survey_create
from teams.models import AuditEntry
from tests.conftest import TINY_SPEC

pytestmark = pytest.mark.django_db

SWEEP_LAYERS = ["relu1", "pool"]


def post_sweep(client, photos, layers, **body):
    return client.post(
        "/api/iri/jobs",
        {"name": "sweep", "targets": [p.pk for p in photos], "spec": dict(TINY_SPEC), "layers": layers, **body},
        format="json",
    )


def test_a_sweep_over_two_tiny_layers_makes_two_jobs_that_run_to_done_each_at_its_layer(
    researcher_client, photos, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_sweep(researcher_client, photos, SWEEP_LAYERS)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["layers"] == SWEEP_LAYERS
    assert [job["layer"] for job in body["jobs"]] == SWEEP_LAYERS
    assert [job["name"] for job in body["jobs"]] == ["sweep · relu1", "sweep · pool"]
    assert {job["sweep"] for job in body["jobs"]} == {body["sweep"]}
    assert len(callbacks) == 2  # each job's chunks are queued once the one transaction commits
    jobs = list(IriJob.objects.filter(sweep=body["sweep"]).order_by("id"))
    assert [job.spec["layer"] for job in jobs] == SWEEP_LAYERS
    other = {k: v for k, v in jobs[0].spec.items() if k != "layer"}
    assert other == {k: v for k, v in jobs[1].spec.items() if k != "layer"}  # everything else is shared
    assert all(set(job.targets.all()) == set(photos) and job.team_id == photos[0].team_id for job in jobs)
    assert AuditEntry.objects.filter(action="iri_job.create").count() == 2

    for job in jobs:  # the real engine, in this process
        iri_job_run(job_id=job.pk)
        job.refresh_from_db()
        assert job.status == IriJob.Status.DONE, job.error

    for job, layer in zip(jobs, SWEEP_LAYERS):
        detail = researcher_client.get(f"/api/iri/jobs/{job.pk}").json()
        assert detail["layer"] == layer and detail["record"]["spec"]["layer"] == layer
        assert len(detail["images"]) == len(photos)
        assert {image["layer"] for image in detail["images"]} == {layer}
        # each image's validity record measured its distance at its own job's layer
        assert {image["validity"]["null"]["layer"] for image in detail["images"]} == {layer}
    # different layers, different IRIs from the same seed and targets
    first, second = (IriImage.objects.filter(job=job).order_by("target_id") for job in jobs)
    assert [i.image_id for i in first] != [i.image_id for i in second]

    survey = survey_create(slug="sweep", title="Which is closer?", iri_jobs=jobs, rng_seed=1)
    main = Trial.objects.filter(survey=survey, kind=Trial.Kind.MAIN)
    conditions = set(main.values_list("iri__job__spec__layer", flat=True))
    assert survey.iri_jobs.count() == 2 and conditions == set(SWEEP_LAYERS)
    assert main.filter(iri__job=jobs[0]).count() == main.filter(iri__job=jobs[1]).count() == len(photos)


def test_a_layer_the_backbone_lacks_refuses_the_sweep_naming_layers_and_nothing_is_created(researcher_client, photos):
    photos_before = TargetPhoto.objects.count()

    response = post_sweep(researcher_client, photos, ["relu1", "conv9", "pool", "fc7"])

    assert response.status_code == 400
    body = response.json()
    assert body["message"].startswith("layers: 'conv9', 'fc7' are not a layer of backbone 'tiny_cnn'")
    assert "relu1, relu2, pool" in body["message"]  # the stages, and the valid layers
    assert body["extra"]["field"] == "layers" and body["extra"]["invalid"] == ["conv9", "fc7"]
    assert "conv2" in body["extra"]["valid"]
    assert IriJob.objects.count() == IriChunk.objects.count() == 0
    assert TargetPhoto.objects.count() == photos_before


@pytest.mark.parametrize(
    "layers, field_words",
    [
        ([], "layers"),  # an empty list
        ([3], "layers"),  # not a layer name
        ("pool", "layers"),  # not a list
    ],
)
def test_a_malformed_layer_list_is_refused_naming_layers(researcher_client, photos, layers, field_words):
    response = post_sweep(researcher_client, photos, layers)

    assert response.status_code == 400
    assert response.json()["message"].startswith(field_words)
    assert IriJob.objects.count() == 0


def test_a_spec_layer_outside_the_sweep_is_refused(researcher_client, photos):
    response = researcher_client.post(
        "/api/iri/jobs",
        {"targets": [photos[0].pk], "spec": {**TINY_SPEC, "layer": "conv2"}, "layers": ["pool"]},
        format="json",
    )
    assert response.status_code == 400 and response.json()["message"].startswith("layers:")
    assert IriJob.objects.count() == 0


def test_a_bad_spec_in_a_sweep_is_refused_as_for_one_job(researcher_client, photos):
    response = researcher_client.post(
        "/api/iri/jobs", {"targets": [photos[0].pk], "spec": {**TINY_SPEC, "steps": 0}, "layers": ["pool"]}, format="json"
    )
    assert response.status_code == 400 and "steps" in response.json()["message"]
    assert IriJob.objects.count() == 0


def test_one_job_is_still_one_job(researcher_client, photos, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = researcher_client.post("/api/iri/jobs", {"targets": [photos[0].pk], "spec": TINY_SPEC}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["layer"] == "pool" and body["sweep"] is None


def test_a_sweep_with_an_uploaded_seed_stores_the_seed_once_and_every_layer_uses_it(
    photos, django_capture_on_commit_callbacks
):
    data = photos[2].image.file.open("rb").read()
    before = TargetPhoto.objects.count()
    with django_capture_on_commit_callbacks(execute=False):
        jobs = iri_sweep_create(targets=photos[:2], spec=dict(TINY_SPEC), layers=["relu1", "relu2", "relu1"],
                                seed_upload=data, seed_upload_name="grey.png")
    assert [job.layer for job in jobs] == ["relu1", "relu2"]  # a layer given twice is one job
    assert [job.name for job in jobs] == ["relu1", "relu2"]  # no name: the layer names the job
    assert TargetPhoto.objects.count() == before + 1
    assert jobs[0].seed_photo_id == jobs[1].seed_photo_id is not None
    assert all(job.spec["seed_kind"] == "photo" for job in jobs)


def test_the_feather_settings_reach_a_job(researcher_client, photos, django_capture_on_commit_callbacks):
    spec = {**TINY_SPEC, "steps": 8, "step_rounds": 4, "seed_kind": "feather-noise"}
    with django_capture_on_commit_callbacks(execute=False):
        response = post_sweep(researcher_client, photos[:1], stage_names("tiny_cnn"), spec=spec)
    assert response.status_code == 201, response.json()
    jobs = response.json()["jobs"]
    assert [job["layer"] for job in jobs] == ["relu1", "relu2", "pool"]
    assert all(job["spec"]["step_rounds"] == 4 and job["spec"]["seed_kind"] == "feather-noise" for job in jobs)


def test_the_layers_endpoint_offers_the_stages(researcher_client):
    body = researcher_client.get("/api/iri/backbones/tiny_cnn/layers").json()
    assert body["stages"] == ["relu1", "relu2", "pool"] and set(body["stages"]) <= set(body["layers"])


def test_the_admin_job_list_shows_layer_and_sweep(client, researcher, photos, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        jobs = iri_sweep_create(targets=photos[:1], spec=dict(TINY_SPEC), layers=SWEEP_LAYERS, name="lab sweep")
    client.force_login(researcher)
    page = client.get("/admin/iri_worker/irijob/").content.decode()
    assert "lab sweep · relu1" in page and "lab sweep · pool" in page
    assert page.count(str(jobs[0].sweep)[:8]) >= 2
    detail = client.get(f"/admin/iri_worker/irijob/{jobs[0].pk}/change/").content.decode()
    assert str(jobs[0].sweep) in detail
