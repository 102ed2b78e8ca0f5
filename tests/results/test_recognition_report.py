"""The alignment report of a timed classification survey carries the recognition analysis: people's accuracy per
condition next to the network's on the very stimuli they saw, and the model-vs-human trio."""
import pytest

from iri_worker.models import IriImage
from results.services import alignment_report
from surveys.models import Response, Trial
from surveys.services import participant_enroll
from tests.surveys.test_assignment import answer_all
from tests.surveys.test_classification import classification, labelled_photos

pytestmark = pytest.mark.django_db


def recognised_by_two_people(team):
    """A classification survey whose network recognises the dogs and cats it made metamers of, not the cars, and
    two people: one always right, one right only on cars. Returns the survey and the index of "Car"."""
    iri_set, _ = labelled_photos(team)
    survey = classification(iri_set, practice_trials=0, screening_trials=0, catch_trials=0, rt_floor_ms=0)
    for iri in IriImage.objects.filter(job=iri_set).select_related("target"):
        iri.validity = {**iri.validity, "label_match": iri.target.label.lower() != "car"}
        iri.save(update_fields=["validity"])
    car = survey.categories.index("Car")
    answer_all(participant_enroll(survey=survey, prolific_pid="always")[0], choose=lambda t: t.target_option)
    answer_all(participant_enroll(survey=survey, prolific_pid="cars")[0], choose=lambda t: car)
    return survey, car


def test_people_and_the_network_are_compared_on_the_stimuli_each_person_saw(team):
    survey, car = recognised_by_two_people(team)

    report = alignment_report(survey=survey, n_boot=200)

    recognition = report["recognition"]
    row = recognition["conditions"][0]
    # 12 answers: 6 + 2 right; the network is right on the 4 dog and cat IRIs of each person: 8 of 12.
    assert row["accuracy"] == pytest.approx(8 / 12) and row["network_accuracy"] == pytest.approx(8 / 12)
    assert row["chance"] == pytest.approx(1 / 3)
    # Both right: dogs and cats of "always" (4); both wrong: none; so c_obs = 4/12 (+ the cars "cars" got right
    # where the network was wrong do not agree), c_exp = (8/12)² + (4/12)².
    assert row["observed_consistency"] == pytest.approx(4 / 12)
    c_exp = (8 / 12) ** 2 + (4 / 12) ** 2
    assert row["error_consistency"] == pytest.approx((4 / 12 - c_exp) / (1 - c_exp))
    assert row["accuracy_difference"] == pytest.approx(0)
    assert recognition["answers_without_network_verdict"] == 0 and recognition["mistimed_answers"] == 0
    assert "top-1 label" in recognition["network_verdict"]
    # Answers are stored as categories; the report's alignment column is the same share.
    assert report["conditions"][0]["alignment"] == pytest.approx(8 / 12)
    assert Response.objects.filter(trial__kind=Trial.Kind.MAIN).count() == 12


def test_agreement_is_fleiss_kappa_over_naming_the_category_or_another_one(team):
    survey, _ = recognised_by_two_people(team)

    kappa = alignment_report(survey=survey, n_boot=200)["agreement"]["fleiss_kappa"]

    assert kappa["categories"] == ["named_the_category", "named_another_category"]
    # Both saw the same six stimuli: the two cars both named right (P_i = 1), the four dogs and cats right by one and
    # wrong by the other (P_i = 0). P̄ = 2/6; right 8 of 12, wrong 4 of 12: P_e = (8/12)² + (4/12)² = 5/9.
    assert kappa["items"] == 6
    assert kappa["value"] == pytest.approx((2 / 6 - 5 / 9) / (1 - 5 / 9))


def test_the_admin_page_the_table_and_the_plot_show_the_recognition_analysis(team, researcher, client, capsys):
    from django.core.management import call_command

    iri_set, _ = labelled_photos(team)
    survey = classification(iri_set, practice_trials=0, screening_trials=0, catch_trials=0, rt_floor_ms=0)
    answer_all(participant_enroll(survey=survey, prolific_pid="p1")[0])
    client.force_login(researcher)

    page = client.get(f"/admin/results/surveyreport/{survey.pk}/report/")
    plot = client.get(f"/admin/results/surveyreport/{survey.pk}/report/plot/recognition.png")
    call_command("alignment_report", survey.slug, "--n-boot", "50")

    assert page.status_code == 200 and "Recognition: people vs the network" in page.content.decode()
    assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")
    assert "recognition (people vs the network" in capsys.readouterr().out


def test_mistimed_answers_are_counted_and_left_out_only_when_the_survey_says_so(team):
    iri_set, _ = labelled_photos(team)
    survey = classification(iri_set, practice_trials=0, screening_trials=0, catch_trials=0, rt_floor_ms=0)
    answer_all(participant_enroll(survey=survey, prolific_pid="p1")[0])
    wrong_once = Response.objects.filter(trial__kind=Trial.Kind.MAIN).first()
    Response.objects.filter(pk=wrong_once.pk).update(mistimed=True, choice=(wrong_once.choice + 1) % 3)

    counted = alignment_report(survey=survey, n_boot=50)
    survey.exclude_mistimed = True
    survey.save(update_fields=["exclude_mistimed"])
    excluded = alignment_report(survey=survey, n_boot=50)

    row = lambda report: next(r for r in report["exclusions"]["counts"] if r["rule"] == "mistimed")  # noqa: E731
    assert row(counted) == {**row(excluded), "applies": False} and row(excluded)["answers"] == 1
    assert counted["recognition"]["mistimed_answers"] == 1
    assert counted["conditions"][0]["alignment"] == pytest.approx(5 / 6)
    assert excluded["conditions"][0]["alignment"] == pytest.approx(1.0) and excluded["n_included"] == 5


def test_conditions_csv_carries_the_recognition_columns(team):
    import csv
    import io

    from results.export_conditions import conditions_csv

    iri_set, _ = labelled_photos(team)
    survey = classification(iri_set, practice_trials=0, screening_trials=0, catch_trials=0, rt_floor_ms=0)
    answer_all(participant_enroll(survey=survey, prolific_pid="p1")[0])

    rows = list(csv.DictReader(io.StringIO(conditions_csv(report=alignment_report(survey=survey, n_boot=50)))))

    assert float(rows[0]["recognition_accuracy"]) == 1.0 and float(rows[0]["recognition_chance"]) == pytest.approx(1 / 3)
    assert rows[0]["recognition_n_answers"] == "6"
