"""Every IRI the worker makes carries its proof: a null percentile, a label check and its loss curve."""
import pytest
from django.test import Client

from backend.exceptions import ApplicationError
from iri_worker import engine
from iri_worker.models import IriImage, NullDistribution
from iri_worker.selectors import (
    VALIDITY_REASONS,
    iri_job_validity_summary,
    iri_validity_failure,
    validity_threshold_check,
)
from iri_worker.services import target_photo_create
from tests.conftest import finished_iri_set

pytestmark = pytest.mark.django_db


def test_a_finished_jobs_images_carry_their_validity_record(photos):
    job = finished_iri_set(photos, steps=50)

    for iri in job.images.all():
        record = iri.validity
        assert 0 <= record["percentile"] <= 100 and record["distance"] >= 0
        # the null: ordered pairs of the three photos (all there are), at the job's layer
        assert record["null"]["pairs"] == 6 and record["null"]["photos"] == 3 and record["null"]["layer"] == "pool"
        # the tiny test model has a classifier head: both labels and whether they agree
        assert isinstance(record["iri_label"], int) and isinstance(record["target_label"], int)
        assert record["label_match"] == (record["iri_label"] == record["target_label"])
        # a few dozen (step, loss) points from the first step to the last, falling
        curve = record["loss_curve"]
        assert len(curve) == engine.validity.LOSS_CURVE_POINTS and curve[0][0] == 0 and curve[-1][0] == 49
        assert curve[-1][1] < curve[0][1]
        assert curve[0][1] == pytest.approx(iri.initial_loss, rel=1e-4)
    details = job.chunks.get().details
    assert details["validity_seconds"] >= 0 and details["null_cached"] is False


def test_the_iris_distance_is_judged_against_every_unrelated_pair_of_photos(photos):
    job = finished_iri_set(photos, steps=50)
    null = NullDistribution.objects.get()

    assert sorted(null.pool) == sorted(p.image.sha256 for p in photos)
    assert null.distances == sorted(null.distances) and len(null.distances) == 6
    for iri in job.images.all():
        expected = 100 * sum(d <= iri.validity["distance"] for d in null.distances) / 6
        assert iri.validity["percentile"] == pytest.approx(expected)


def test_a_second_job_with_the_same_model_and_photos_reuses_the_null_distribution(photos, monkeypatch):
    first = finished_iri_set(photos, steps=5)
    computed = []
    real = engine.validity.null_distances
    monkeypatch.setattr(engine.validity, "null_distances", lambda *a, **k: computed.append(1) or real(*a, **k))

    second = finished_iri_set(photos, steps=5, rng_seed=3)

    assert computed == [] and NullDistribution.objects.count() == 1
    assert second.chunks.get().details["null_cached"] is True
    keys = {iri.validity["null"]["key"] for iri in IriImage.objects.filter(job__in=[first, second])}
    assert keys == {NullDistribution.objects.get().key}


def test_another_layer_or_a_new_photo_makes_another_null_distribution(photos):
    finished_iri_set(photos, steps=5)
    finished_iri_set(photos, steps=5, layer="conv2")
    photos.append(target_photo_create(team=photos[0].team, name="grey", data=_png((90, 90, 90))))
    job = finished_iri_set(photos, steps=5)

    assert NullDistribution.objects.count() == 3
    assert job.images.first().validity["null"]["pairs"] == 12  # 4 photos, every ordered pair


def test_a_photo_whose_file_is_gone_leaves_the_pool_instead_of_failing_the_job(photos):
    from django.core.files.storage import default_storage

    lost = target_photo_create(team=photos[0].team, name="lost", data=_png((200, 20, 20)))
    default_storage.delete(lost.image.file.name)

    job = finished_iri_set(photos, steps=5)

    assert job.images.first().validity["null"]["photos"] == 3
    assert not NullDistribution.objects.exists()  # not the pool its key names: nothing cached


def test_the_validity_filter_says_why_an_iri_is_left_out():
    iri = IriImage(validity={"percentile": 12.5, "label_match": False})

    assert iri_validity_failure(iri=iri, max_percentile=None, require_label_match=False) is None
    assert iri_validity_failure(iri=iri, max_percentile=12.5, require_label_match=False) is None
    assert iri_validity_failure(iri=iri, max_percentile=5, require_label_match=False) == "percentile_above_threshold"
    assert iri_validity_failure(iri=iri, max_percentile=50, require_label_match=True) == "label_mismatch"
    assert iri_validity_failure(iri=IriImage(validity={}), max_percentile=5, require_label_match=False) == "no_validity_record"
    no_classifier = IriImage(validity={"percentile": 0.0, "label_match": None})
    assert iri_validity_failure(iri=no_classifier, max_percentile=5, require_label_match=True) == "no_validity_record"
    assert set(VALIDITY_REASONS) == {"percentile_above_threshold", "label_mismatch", "no_validity_record"}


@pytest.mark.parametrize("value", [-1, 100.5, float("nan"), "50", True])
def test_a_percentile_threshold_outside_0_to_100_is_refused_naming_the_field(value):
    with pytest.raises(ApplicationError, match="max_percentile") as refused:
        validity_threshold_check(value)
    assert refused.value.extra == {"field": "max_percentile"}


def test_a_threshold_in_range_is_accepted():
    assert validity_threshold_check(None) is None
    assert validity_threshold_check(0) == 0.0 and validity_threshold_check(100) == 100.0


def test_the_api_shows_each_images_record_and_the_sets_summary(researcher_client, photos):
    job = finished_iri_set(photos, steps=20)

    body = researcher_client.get(f"/api/iri/jobs/{job.pk}").json()

    for image in body["images"]:
        assert 0 <= image["validity"]["percentile"] <= 100 and len(image["validity"]["loss_curve"]) == 20
        assert "label_match" in image["validity"]
    assert body["validity"] == iri_job_validity_summary(job=job)
    assert body["validity"]["with_record"] == 3 and body["validity"]["label_checked"] == 3


def test_the_admin_job_page_shows_percentile_label_and_loss_curve_per_image(researcher, photos):
    job = finished_iri_set(photos, steps=20)
    client = Client()
    client.force_login(researcher)

    page = client.get(f"/admin/iri_worker/irijob/{job.pk}/change/").content.decode()

    assert page.count("of 6 null pairs") == 3 and page.count('aria-label="loss curve"') == 3
    assert "label match" in page or "label MISMATCH" in page
    assert "3/3 IRIs with a record" in page


def _png(rgb) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (48, 40), rgb).save(out, format="PNG")
    return out.getvalue()
