"""The alignment report through its contract (results.report.AlignmentReport): the JSON the API serves and archives
store is its to_dict, reports stored before the contract load, and anything else is refused by name."""
import copy

import pytest

from results.report import AlignmentReport, Comparison, ConditionRow
from results.services import alignment_report, alignment_report_compute
from tests.results.helpers import not_target, session_answer, target

ROW = {
    "condition": "tiny_cnn · reg_free · super-noise · pool", "iri_set": 4, "iri_sets": [4], "name": "tiny set",
    "backbone": "tiny_cnn", "checkpoint": "", "training": "", "recipe": "reg_free", "seed_kind": "super-noise",
    "layer": "pool", "chance": 0.5, "alignment": 0.5, "ci_low": 0.1667, "ci_high": 0.8333, "n_answers": 6,
    "n_participants": 2, "n_items": 3, "n_correct": 3, "wilson_low": 0.1876, "wilson_high": 0.8124,
    "n_answers_before_exclusion": 6,
    "fleiss_kappa": {"value": -1.0, "categories": ["chose_target", "chose_foil"], "items": 3,
                     "raters_per_item": {"min": 2, "median": 2.0, "max": 2}, "note": ""},
    "ceiling": {"ceiling": None, "split_half_r": None, "n_items": 3, "n_splits": 50, "note": "Not enough data"},
    "proxy": {"ssim": {"alignment": 1.0, "n_items": 3, "error_consistency": {"kappa": None, "c_obs": 0.5}}},
    "note": "",
}
# As a study archive stored report/report.json before the contract (2026-12-06 on): no version key; sections that
# are JSON objects are cut short here, since the contract keeps them as they are.
STORED_BEFORE = {
    "survey": "pilot", "title": "Which is closer?", "admin_url": "/admin/results/surveyreport/1/report/",
    "task_type": "2afc", "foil_rule": "other_target", "chance": 0.5,
    "ci": "95 % percentile bootstrap, participants and target photos each drawn with replacement (two-way), 1000 "
          "resamples, seed 0; Wilson interval beside it",
    "level": 0.95, "n_boot": 1000, "seed": 0, "n_answers": 6, "n_main_answers": 6, "n_included": 6,
    "n_participants": 2, "n_items": 3,
    "exclusions": {"rules": {"catch_min_accuracy": 0.75}, "counts": [], "answers_excluded": 0,
                   "participants_excluded": 0, "survey_exclusion_reasons": {}, "note": "Each rule ..."},
    "agreement": {"fleiss_kappa": ROW["fleiss_kappa"], "items_rated_twice": 3, "ceiling": ROW["ceiling"]},
    "sides": {"main": {"shares": [0.5, 0.5]}}, "collection": {"design": "fixed", "stopping_rule": "Fixed design"},
    "design": {"left_out": {"total": 0, "reasons": []}}, "plan": {"sha256": "ab" * 32, "deviations": []},
    "ratings_per_item": [{"ratings": 2, "items": 3}], "ratings_target": 2,
    "proxy": {"metrics": ["ssim"], "overall": ROW["proxy"]},
    "conditions": [ROW, {**ROW, "condition": "", "name": "other set", "iri_set": 5, "iri_sets": [5, 6]}],
    "comparisons": [{"a": ROW["condition"], "b": "other set", "a_iri_sets": [4], "b_iri_sets": [5, 6],
                     "difference": 0.0, "ci_low": -0.5, "ci_high": 0.5, "excludes_zero": False,
                     "shared_target_photos": 3, "shared_participants": 2, "paired": True}],
    "notes": [],
}


def test_a_report_stored_before_the_contract_loads_with_its_rows_and_comparisons():
    report = AlignmentReport.from_dict(STORED_BEFORE)

    assert report.survey == "pilot" and report.n_boot == 1000 and report.recognition is None
    assert report.conditions[0] == ConditionRow(**ROW) and report.conditions[1].label == "other set"
    assert report.conditions[0].label == "tiny_cnn · reg_free · super-noise · pool"
    assert report.comparisons[0].paired and isinstance(report.comparisons[0], Comparison)
    # to_dict is that JSON again, key for key and in order, with the version in front
    assert report.to_dict() == {"version": 1, **STORED_BEFORE}
    assert list(report.to_dict()) == ["version", *STORED_BEFORE]


def test_a_classification_report_keeps_its_recognition_section_where_it_was():
    stored = {}
    for key, value in STORED_BEFORE.items():
        stored[key] = value
        if key == "collection":
            stored["recognition"] = {"overall": {"accuracy": 0.75}, "conditions": []}

    report = AlignmentReport.from_dict(stored)

    assert report.recognition == {"overall": {"accuracy": 0.75}, "conditions": []}
    assert list(report.to_dict()) == ["version", *stored]


def test_an_unknown_version_is_refused_with_the_versions_this_code_reads():
    with pytest.raises(ValueError, match=r"The report: version 2 is unknown; this code reads versions 0 .* to 1"):
        AlignmentReport.from_dict({**STORED_BEFORE, "version": 2})


def test_unknown_and_missing_keys_are_refused_naming_where():
    with pytest.raises(ValueError, match="The report has unknown keys verdict; allowed keys are survey, title"):
        AlignmentReport.from_dict({**STORED_BEFORE, "verdict": "aligned"})
    row = {**ROW, "median": 0.5}
    with pytest.raises(ValueError, match="A report's condition has unknown keys median"):
        AlignmentReport.from_dict({**STORED_BEFORE, "conditions": [row]})
    stored = copy.deepcopy(STORED_BEFORE)
    del stored["comparisons"][0]["paired"], stored["notes"]
    with pytest.raises(ValueError, match="The report lacks keys notes"):
        AlignmentReport.from_dict(stored)
    with pytest.raises(ValueError, match="A report's comparison lacks keys paired"):
        AlignmentReport.from_dict({**stored, "notes": []})


@pytest.mark.django_db
def test_a_computed_report_round_trips_and_is_what_the_api_serves(live_survey, researcher_client):
    session_answer(live_survey, pid="A", choose=target)
    session_answer(live_survey, pid="B", choose=not_target)

    report = alignment_report_compute(survey=live_survey, n_boot=50)

    assert AlignmentReport.from_dict(report.to_dict()) == report
    assert alignment_report(survey=live_survey, n_boot=50) == report.to_dict()
    served = researcher_client.get(f"/api/results/surveys/{live_survey.slug}/alignment", {"n_boot": 50}).json()
    assert served == report.to_dict() and served["version"] == AlignmentReport.VERSION
