"""IriImage.validity through its contract (iri_worker.validity_record.ValidityRecord): the records stored before it
load, the latest round-trips, and anything else is refused by name."""
import pytest

from iri_worker.validity_record import NullSummary, ValidityRecord

NULL = {"key": "ab" * 32, "layer": "pool", "pairs": 6, "photos": 3, "median": 1.12, "min": 0.87}
# As the worker wrote them from the first record (2026-11-29) until this contract: no version key.
STORED_BEFORE = {
    "distance": 0.0412, "percentile": 0.0, "null": NULL,
    "label_match": False, "iri_label": 3, "target_label": 7, "iri_label_name": "cat", "target_label_name": "car",
    "loss_curve": [[0, 1.53], [49, 0.0412]],
}
# A backbone without a classifier (no labels) and one without class names (labels by index).
NO_CLASSIFIER = {**STORED_BEFORE, "label_match": None, "iri_label": None, "target_label": None,
                 "iri_label_name": None, "target_label_name": None}
NO_NAMES = {**STORED_BEFORE, "iri_label_name": None, "target_label_name": None}
FAILED = {"error": "RuntimeError: CUDA out of memory"}


def test_a_record_stored_before_the_contract_loads_with_its_null_and_labels():
    record = ValidityRecord.from_dict(STORED_BEFORE)

    assert record.made and record.null == NullSummary(**NULL) and record.error is None
    assert (record.distance, record.percentile, record.label_match) == (0.0412, 0.0, False)
    assert (record.iri_label_shown, record.target_label_shown) == ("cat", "car")
    assert record.loss_curve == [[0, 1.53], [49, 0.0412]]


def test_labels_are_shown_by_index_without_class_names_and_not_at_all_without_a_classifier():
    by_index = ValidityRecord.from_dict(NO_NAMES)
    assert (by_index.iri_label_shown, by_index.target_label_shown) == (3, 7)
    bare = ValidityRecord.from_dict(NO_CLASSIFIER)
    assert bare.label_match is None and bare.iri_label_shown is None and bare.made


def test_an_image_made_before_records_and_a_failed_record_load_as_no_measurement():
    none, failed = ValidityRecord.from_dict({}), ValidityRecord.from_dict(FAILED)

    assert none == ValidityRecord() and not none.made and none.percentile is None and none.label_match is None
    assert failed.error == "RuntimeError: CUDA out of memory" and not failed.made and failed.percentile is None


def test_a_partial_record_reads_what_it_has():
    record = ValidityRecord.from_dict({"percentile": 40.0, "label_match": True})

    assert record.percentile == 40.0 and record.label_match is True and not record.made


@pytest.mark.parametrize("stored", [STORED_BEFORE, NO_CLASSIFIER, NO_NAMES, FAILED, {}])
def test_every_record_round_trips_through_the_latest_version(stored):
    record = ValidityRecord.from_dict(stored)

    data = record.to_dict()

    assert data["version"] == ValidityRecord.VERSION == 1
    assert ValidityRecord.from_dict(data) == record
    assert {key: data[key] for key in stored} == stored  # nothing it had is changed


def test_a_failed_record_keeps_only_its_error():
    assert ValidityRecord(error="ValueError: no photos").to_dict() == {"version": 1, "error": "ValueError: no photos"}


def test_an_unknown_version_is_refused_with_the_versions_this_code_reads():
    with pytest.raises(ValueError, match=r"The validity record: version 2 is unknown; this code reads versions 0 .* to 1"):
        ValidityRecord.from_dict({**STORED_BEFORE, "version": 2})


def test_an_unknown_key_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown keys label; allowed keys are distance, percentile"):
        ValidityRecord.from_dict({**STORED_BEFORE, "label": "cat"})


def test_a_null_summary_with_other_keys_is_refused():
    with pytest.raises(ValueError, match="null summary has unknown keys seed; allowed keys are key, layer, pairs"):
        ValidityRecord.from_dict({**STORED_BEFORE, "null": {**NULL, "seed": 0}})
    without_min = {key: value for key, value in NULL.items() if key != "min"}
    with pytest.raises(ValueError, match="null summary lacks keys min"):
        ValidityRecord.from_dict({**STORED_BEFORE, "null": without_min})


@pytest.mark.django_db
def test_the_worker_stores_the_latest_version_and_a_failed_check_as_its_error(photos, monkeypatch):
    from iri_worker.services import chunks
    from tests.conftest import finished_iri_set

    measured = finished_iri_set(photos, steps=5)
    assert {iri.validity["version"] for iri in measured.images.all()} == {ValidityRecord.VERSION}
    assert all(ValidityRecord.from_dict(iri.validity).made for iri in measured.images.all())

    def fails(**kwargs):
        raise RuntimeError("no null today")

    monkeypatch.setattr(chunks, "iri_validity_compute", fails)
    unmeasured = finished_iri_set(photos, steps=5, rng_seed=1)
    assert [iri.validity for iri in unmeasured.images.all()] == [{"version": 1, "error": "RuntimeError: no null today"}] * 3
