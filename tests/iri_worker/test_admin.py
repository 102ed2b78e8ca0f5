"""A researcher works in the Django admin: uploads photos, creates an IRI job, builds and publishes a survey."""
import io

import pytest
from django.test import Client
from PIL import Image

from iri_worker.models import IriJob, TargetPhoto
from operations.models import OperationRun
from operations.tasks import operation_run_execute
from surveys.models import Survey

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(researcher):
    client = Client()
    client.force_login(researcher)
    return client


def jpeg(name="dog.jpg"):
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 30)).save(out, format="JPEG")
    out.seek(0)
    out.name = name
    return out


def test_a_photo_uploaded_in_the_admin_is_stored_as_a_target(admin_client):
    response = admin_client.post("/admin/iri_worker/targetphoto/add/", {"name": "dog", "photo": jpeg()})

    assert response.status_code == 302
    assert TargetPhoto.objects.get().name == "dog"


def test_the_admin_refuses_a_file_that_is_not_an_image(admin_client):
    fake = io.BytesIO(b"GIF89a but not really")
    fake.name = "x.gif"
    response = admin_client.post("/admin/iri_worker/targetphoto/add/", {"name": "x", "photo": fake})

    assert response.status_code == 200
    assert "not an image" in response.content.decode()
    assert not TargetPhoto.objects.exists()


def job_form(photos, **overrides):
    form = {"name": "job", "target_photos": [p.pk for p in photos], "backbone": "tiny_cnn", "layer": "",
            "recipe": "reg_free", "seed_kind": "super-noise", "steps": 5, "step_size": 0.5, "image_size": "", "rng_seed": 0}
    return {**form, **overrides}


def test_an_iri_job_created_in_the_admin_is_queued_and_shows_its_progress(admin_client, photos, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        response = admin_client.post("/admin/iri_worker/irijob/add/", job_form(photos))

    assert response.status_code == 302
    job = IriJob.objects.get()
    assert job.status == IriJob.Status.QUEUED and job.targets.count() == 3
    assert job.spec["image_size"] == 32 and len(enqueued) == 1
    page = admin_client.get(f"/admin/iri_worker/irijob/{job.pk}/change/").content.decode()
    assert "QUEUED" in page or "Queued" in page
    assert "0%" in page


@pytest.mark.parametrize("overrides, message", [({"layer": "nope"}, "layer"), ({"steps": 0}, "steps")])
def test_the_admin_job_form_explains_a_bad_spec(admin_client, photos, overrides, message):
    response = admin_client.post("/admin/iri_worker/irijob/add/", job_form(photos, **overrides))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not IriJob.objects.exists()


def test_a_finished_job_page_shows_target_seed_and_iri(admin_client, iri_set):
    page = admin_client.get(f"/admin/iri_worker/irijob/{iri_set.pk}/change/").content.decode()

    iri = iri_set.images.first()
    for stored in (iri.target_image, iri.seed, iri.image):
        assert stored.file.url in page
    assert admin_client.get(iri.image.file.url).status_code == 200


def test_a_survey_built_by_a_worker_and_published_in_the_admin_goes_live(
        admin_client, iri_set, django_capture_on_commit_callbacks):
    # What the researcher sees pre-filled on the add form, plus their own choices.
    page = admin_client.get("/admin/surveys/survey/add/")
    form = {name: field.initial() if callable(field.initial) else field.initial
            for name, field in page.context["adminform"].form.fields.items() if field.initial is not None}
    form.update({"slug": "adm", "title": "t", "iri_jobs": [iri_set.pk], "foil_rule": "seed", "trials_per_participant": "",
                 "consent_md": "ok", "instructions_md": "go"})
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = admin_client.post("/admin/surveys/survey/add/", form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    survey = Survey.objects.get(slug="adm")
    assert survey.trials.count() == 0 and len(queued) == 1, "the request stored the survey; a worker builds it"
    page = admin_client.get(f"/admin/surveys/survey/{survey.pk}/change/").content.decode()
    assert "building" in page and "survey build Queued (0%)" in page

    def publish() -> list[str]:
        published = admin_client.post("/admin/surveys/survey/", {"action": "publish", "_selected_action": [survey.pk]},
                                      follow=True)
        return [str(m) for m in published.context["messages"]]

    assert publish() == ["adm: The survey is still being built by a worker (0% done); publish it once its build is "
                         "done (the survey's page shows how far it got)."]
    run = OperationRun.objects.get(kind="survey_build", subject_id=survey.pk)
    operation_run_execute(run.pk)  # what the worker does

    run.refresh_from_db()
    assert run.status == OperationRun.Status.DONE and run.result["trials"] == 3 and survey.trials.count() == 3
    assert "no IRI left out" in admin_client.get(f"/admin/surveys/survey/{survey.pk}/change/").content.decode()
    assert publish() == ["adm is live."]
    survey.refresh_from_db()
    assert survey.status == Survey.Status.LIVE


def test_the_admin_survey_form_refuses_an_unfinished_set(admin_client, photos):
    running = IriJob.objects.create(team=photos[0].team, spec={"backbone": "tiny_cnn"}, status=IriJob.Status.RUNNING)
    form = {"slug": "adm2", "title": "t", "iri_jobs": [running.pk], "foil_rule": "seed", "consent_md": "ok", "instructions_md": "go"}

    response = admin_client.post("/admin/surveys/survey/add/", form)

    assert response.status_code == 200  # the form again, with the reason
    assert not Survey.objects.filter(slug="adm2").exists()


def test_the_job_page_shows_chunks_proxy_and_the_record_and_the_cancel_action_works(admin_client, iri_set, photos):
    page = admin_client.get(f"/admin/iri_worker/irijob/{iri_set.pk}/change/").content.decode()
    assert "reproducibility record" in page.lower() and "checkpoint_sha256" in page
    assert "ssim:" in page and "d(target)" in page  # per set and per image
    assert "Done" in page and "chunk" in page.lower()

    queued = IriJob.objects.create(team=iri_set.team, spec=iri_set.spec, status=IriJob.Status.QUEUED)
    admin_client.post("/admin/iri_worker/irijob/", {"action": "cancel_jobs", "_selected_action": [queued.pk]})
    queued.refresh_from_db()
    assert queued.status == IriJob.Status.CANCELLED


def test_the_job_form_offers_layer_names_and_a_photo_seed(admin_client, photos, django_capture_on_commit_callbacks):
    form_page = admin_client.get("/admin/iri_worker/irijob/add/").content.decode()
    assert '<datalist id="iri-layer-names">' in form_page and "_avg_pooling" in form_page

    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post("/admin/iri_worker/irijob/add/", job_form(
            photos[:2], seed_kind="photo", seed_photo=photos[2].pk, chunk_size=1,
            recipe_json='[{"term": "representation_distance", "weight": 2.0}]'))

    assert response.status_code == 302, response.content.decode()[-2000:]
    job = IriJob.objects.get()
    assert job.seed_photo == photos[2] and job.spec["seed_kind"] == "photo" and job.chunks.count() == 2
    assert job.spec["recipe_terms"][0]["weight"] == 2.0


def test_a_refused_job_leaves_no_uploaded_seed_photo_behind(admin_client, photos, monkeypatch):
    refused = admin_client.post("/admin/iri_worker/irijob/add/", job_form(photos, seed_kind="photo", layer="nope",
                                                                          seed_upload=jpeg("seed.jpg")))
    assert refused.status_code == 200 and "layer" in refused.content.decode()
    assert TargetPhoto.objects.count() == 3

    def storage_fails(**kwargs):  # something goes wrong after the seed photo was made, inside the job's transaction
        raise RuntimeError("disk full")

    monkeypatch.setattr("iri_worker.services.jobs.iri_job_chunks_create", storage_fails)
    with pytest.raises(RuntimeError):
        admin_client.post("/admin/iri_worker/irijob/add/", job_form(photos, seed_kind="photo", seed_upload=jpeg("seed.jpg")))

    assert TargetPhoto.objects.count() == 3 and not IriJob.objects.exists()


def test_an_uploaded_seed_photo_belongs_to_the_jobs_team(admin_client, photos, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post("/admin/iri_worker/irijob/add/", job_form(photos[:1], seed_kind="photo",
                                                                               seed_upload=jpeg("seed.jpg")))

    assert response.status_code == 302
    job = IriJob.objects.get()
    assert job.seed_photo.name == "seed: seed.jpg" and job.seed_photo.team == photos[0].team
    assert job.spec["seed_kind"] == "photo"
