"""From answers in the database to the report: API, admin report page, exports and the management command."""
import csv
import io
import json

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from iri_worker.models import IriImage
from stats.exclusions import ExclusionRules
from operations.models import OperationRun
from operations.tasks import operation_run_execute
from results.models import TrialProxyChoice
from results.proxy_choices import trial_proxy_choices_compute
from results.services import ALL_EXCLUDED, ONE_PARTICIPANT, alignment_report
from surveys.models import Trial
from tests.results.helpers import not_target, session_answer, survey_make, target

pytestmark = pytest.mark.django_db


def answer_all(survey, *, pick_target: bool, pid: str, **kwargs):
    return session_answer(survey, pid=pid, choose=target if pick_target else not_target, **kwargs)


def test_the_report_gives_alignment_with_n_and_ci_per_condition(live_survey, researcher_client):
    answer_all(live_survey, pick_target=True, pid="A")
    answer_all(live_survey, pick_target=False, pid="B")

    report = researcher_client.get(f"/api/results/surveys/{live_survey.slug}/alignment").json()

    (condition,) = report["conditions"]
    assert condition["alignment"] == pytest.approx(0.5)
    assert (condition["n_answers"], condition["n_participants"], condition["n_items"]) == (6, 2, 3)
    assert 0 <= condition["ci_low"] < 0.5 < condition["ci_high"] <= 1 and condition["ci_high"] - condition["ci_low"] > 0.6
    assert condition["wilson_low"] < 0.5 < condition["wilson_high"]
    assert condition["backbone"] == "tiny_cnn" and condition["recipe"] == "reg_free"
    assert report["chance"] == 0.5 and report["task_type"] == "2afc"
    # Two raters who disagree on every item (one always right, one always wrong): Fleiss' kappa over
    # chose-target / chose-foil is -1; the split-half r is undefined (no variance).
    kappa = report["agreement"]["fleiss_kappa"]
    assert kappa["value"] == pytest.approx(-1.0) and kappa["categories"] == ["chose_target", "chose_foil"]
    assert kappa["items"] == 3 and kappa["raters_per_item"] == {"min": 2, "median": 2.0, "max": 2}
    assert condition["fleiss_kappa"]["value"] == pytest.approx(-1.0)
    assert {c["rule"] for c in report["exclusions"]["counts"]} >= {"pilot", "bot", "incomplete", "catch_accuracy", "rt_floor"}


def test_raters_who_both_always_choose_the_target_agree_trivially_so_kappa_is_undefined_not_one(live_survey, capsys):
    # Over option indices these two would agree on every item (kappa 1 wherever the target's option varies); over
    # chose-target / chose-foil every rating is in one category and kappa is undefined, which the report says.
    answer_all(live_survey, pick_target=True, pid="A")
    answer_all(live_survey, pick_target=True, pid="B")

    report = alignment_report(survey=live_survey)

    kappa = report["agreement"]["fleiss_kappa"]
    assert kappa["value"] is None and "chose_target" in kappa["note"] and kappa["items"] == 3
    call_command("alignment_report", live_survey.slug)
    assert "Fleiss' kappa (chose_target vs chose_foil) — over 3 items, 2 raters per item" in capsys.readouterr().out
    call_command("alignment_report", live_survey.slug, "--format", "csv")
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert row["fleiss_kappa"] == "" and row["fleiss_kappa_categories"] == "chose_target|chose_foil" and row["fleiss_kappa_items"] == "3"


def test_a_survey_without_answers_says_so(live_survey, capsys):
    call_command("alignment_report", live_survey.slug, "--format", "json")

    report = json.loads(capsys.readouterr().out)
    assert report["n_answers"] == 0
    assert report["conditions"][0]["alignment"] is None
    assert report["conditions"][0]["note"] == "No answers yet."
    assert report["notes"] == ["No answers yet."]
    assert report["agreement"]["fleiss_kappa"]["value"] is None and report["agreement"]["ceiling"]["ceiling"] is None
    assert report["agreement"]["fleiss_kappa"]["note"].startswith("Not enough data")
    assert report["conditions"][0]["ceiling"]["note"].startswith("Not enough data")
    call_command("alignment_report", live_survey.slug)
    table = capsys.readouterr().out
    assert "No answers yet." in table and "nan" not in table.lower()


def test_a_condition_with_one_participant_says_the_interval_is_items_only(live_survey, capsys):
    answer_all(live_survey, pick_target=True, pid="A")

    report = alignment_report(survey=live_survey)

    (condition,) = report["conditions"]

    assert condition["alignment"] == 1.0 and condition["n_participants"] == 1
    assert condition["note"] == ONE_PARTICIPANT
    assert condition["ci_low"] == condition["ci_high"] == 1.0  # one person who is always right: every resample says 1
    assert condition["ceiling"]["ceiling"] is None and "1 participant and 3 items" in condition["ceiling"]["note"]
    json.dumps(report, allow_nan=False)
    call_command("alignment_report", live_survey.slug)
    table = capsys.readouterr().out
    assert ONE_PARTICIPANT in table and "Not enough data" in table and "nan" not in table.lower()


def test_when_every_answer_is_excluded_the_report_says_so_and_prints_no_nan(live_survey, capsys):
    answer_all(live_survey, pick_target=True, pid="A", complete=False)  # never completed: excluded
    answer_all(live_survey, pick_target=True, pid="B", rt_ms=50.0)  # every answer under the RT floor

    report = alignment_report(survey=live_survey)

    (condition,) = report["conditions"]
    assert condition["alignment"] is None and condition["ci_low"] is None
    assert condition["note"] == ALL_EXCLUDED.format(n=6)
    assert "were excluded" in report["notes"][0]
    counts = {c["rule"]: c for c in report["exclusions"]["counts"]}
    assert counts["incomplete"]["participants"] == 1 and counts["rt_floor"]["answers"] == 3
    json.dumps(report, allow_nan=False)  # JSON null, never NaN
    call_command("alignment_report", live_survey.slug)
    out = capsys.readouterr().out
    assert "nan" not in out.lower() and "excluded" in out


def test_bots_that_choose_the_target_with_probability_p_land_within_the_interval(photos, iri_set):
    from tests.conftest import finished_iri_set

    other = finished_iri_set(photos, seed_kind="light-noise")  # another condition on the same photos
    survey = survey_make(slug="bots", iri_jobs=[iri_set, other], ratings_per_list=80)
    rng = np.random.default_rng(7)
    p = 0.7

    def policy(trial):
        return trial.target_option if rng.random() < p else not_target(trial)

    for n in range(40):
        session_answer(survey, pid=f"bot-{n}", choose=policy, is_bot=True)

    report = alignment_report(survey=survey, rules=ExclusionRules(exclude_bots=False))
    everything = report["n_included"]
    assert everything == 40 * 6
    for condition in report["conditions"]:
        assert condition["ci_low"] <= p <= condition["ci_high"]
        assert condition["ci_low"] <= condition["alignment"] <= condition["ci_high"]
    assert len(report["comparisons"]) == 1 and report["comparisons"][0]["paired"]
    d = report["comparisons"][0]
    assert d["ci_low"] <= 0 <= d["ci_high"]  # both conditions are answered by the same policy

    # By default bot sessions are not data: all of them are excluded, and the report says by which rule.
    default = alignment_report(survey=survey)
    bot_rule = next(c for c in default["exclusions"]["counts"] if c["rule"] == "bot")
    if bot_rule.get("applies", True):
        assert bot_rule["participants"] == 40 and default["n_included"] == 0


def test_the_proxy_stands_beside_the_humans_with_error_consistency(live_survey):
    answer_all(live_survey, pick_target=True, pid="A")
    answer_all(live_survey, pick_target=True, pid="B")
    verdicts = [iri.proxy.get("ssim", {}).get("aligned") for iri in IriImage.objects.filter(job__in=live_survey.iri_jobs.all())]
    if None in verdicts:
        pytest.skip("the IRI set has no stored proxy verdicts (issue 3's proxy not here yet)")

    report = alignment_report(survey=live_survey)

    proxy = report["conditions"][0]["proxy"]["ssim"]
    assert proxy["alignment"] == pytest.approx(np.mean(verdicts)) and proxy["n_items"] == 3
    ec = proxy["error_consistency"]
    assert ec["n_trials"] == 3 and ec["p_2"] == 1.0  # the humans chose the target on every item
    assert ec["c_obs"] == pytest.approx(np.mean(verdicts))


def test_the_proxy_choice_of_each_trial_is_computed_and_cached(photos, iri_set):
    survey = survey_make(slug="others", iri_jobs=[iri_set], foil_rule="other_target")

    n = trial_proxy_choices_compute(survey=survey, metric="ssim")

    main = Trial.objects.filter(survey=survey)
    if hasattr(Trial, "kind"):
        main = main.filter(kind="main")
    assert n == main.count() and trial_proxy_choices_compute(survey=survey, metric="ssim") == 0  # cached
    for choice in TrialProxyChoice.objects.filter(trial__survey=survey).select_related("trial"):
        d = choice.distances
        assert len(d) == 2 and choice.choice == (choice.trial.target_option if d[choice.trial.target_option] <= min(d) else int(np.argmin(d)))
    session_answer(survey, pid="A", choose=target)
    report = alignment_report(survey=survey)
    assert "ssim" in report["proxy"]["metrics"] and report["conditions"][0]["proxy"]["ssim"]["n_items"] == n


def test_the_proxy_on_stored_pngs_agrees_with_the_stored_seed_verdicts(live_survey):
    trial_proxy_choices_compute(survey=live_survey, metric="ssim")
    for choice in TrialProxyChoice.objects.filter(trial__survey=live_survey).select_related("trial__iri"):
        stored = choice.trial.iri.proxy.get("ssim")
        if not stored:
            pytest.skip("no stored proxy verdicts")
        to_target = choice.distances[choice.trial.target_option]
        to_seed = choice.distances[1 - choice.trial.target_option]
        assert to_target == pytest.approx(stored["to_target"], abs=0.02) and to_seed == pytest.approx(stored["to_seed"], abs=0.02)


def test_an_unknown_proxy_metric_is_refused_in_words(live_survey):
    with pytest.raises(CommandError, match="Unknown proxy metric|invalid choice"):
        call_command("alignment_report", live_survey.slug, "--compute-proxy", "psnr")


def test_the_answers_come_as_long_format_rows_page_by_page(live_survey, researcher_client):
    answer_all(live_survey, pick_target=True, pid="A")
    answer_all(live_survey, pick_target=False, pid="B")

    page = researcher_client.get(f"/api/results/surveys/{live_survey.slug}/answers?limit=4").json()
    rest = researcher_client.get(page["next"]).json()

    assert page["count"] == 6 and len(page["results"]) == 4 and len(rest["results"]) == 2 and rest["next"] is None
    row = page["results"][0]
    assert {"participant", "condition", "trial", "option_0", "option_1", "choice", "correct", "rt_ms", "included", "exclusion_rules"} <= set(row)
    assert sorted([row["option_0_role"], row["option_1_role"]]) == ["seed", "target"]
    assert row["chosen_image"] == row[f"option_{row['choice']}"] and row["correct"] == (row["choice"] == row["target_option"])
    assert sum(r["correct"] for r in page["results"] + rest["results"]) == 3


def test_the_results_api_needs_a_login_and_is_in_the_schema(live_survey, researcher_client):
    assert Client().get(f"/api/results/surveys/{live_survey.slug}/alignment").status_code in (401, 403)
    schema = researcher_client.get("/api/schema/", {"format": "json"})
    text = schema.content.decode()
    assert "/api/results/surveys/{slug}/answers" in text and "/api/results/surveys/{slug}/alignment" in text


def test_exports_as_csv_json_and_model_vs_human(live_survey, researcher_client, tmp_path, capsys):
    answer_all(live_survey, pick_target=True, pid="A")

    response = researcher_client.get(f"/api/results/surveys/{live_survey.slug}/export/answers.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 3 and rows[0]["correct"] == "True" and rows[0]["kind"] == "main"

    call_command("alignment_report", live_survey.slug, "--answers", "mvh", "-o", str(tmp_path / "mvh.csv"))
    mvh = list(csv.DictReader(open(tmp_path / "mvh.csv")))
    assert list(mvh[0]) == ["subj", "Session", "trial", "rt", "object_response", "category", "condition", "imagename"]
    assert all(r["object_response"] == r["category"] for r in mvh) and [r["trial"] for r in mvh] == ["1", "2", "3"]
    assert float(mvh[0]["rt"]) == pytest.approx(0.7)

    call_command("alignment_report", live_survey.slug, "--answers", "json")
    assert len(json.loads(capsys.readouterr().out)) == 3
    call_command("alignment_report", live_survey.slug, "--format", "csv")
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert table[0]["alignment"] == "1.0" and table[0]["backbone"] == "tiny_cnn"


def test_the_command_prints_a_table_and_refuses_an_unknown_slug(live_survey, capsys):
    answer_all(live_survey, pick_target=True, pid="A")
    call_command("alignment_report", live_survey.slug)
    out = capsys.readouterr().out
    assert "1.000" in out and "exclusions" in out

    with pytest.raises(CommandError, match="no survey with the slug 'nope'"):
        call_command("alignment_report", "nope")


def test_the_admin_survey_page_shows_the_alignment_table(live_survey, researcher):
    answer_all(live_survey, pick_target=True, pid="A")
    client = Client()
    client.force_login(researcher)

    page = client.get(f"/admin/surveys/survey/{live_survey.pk}/change/")

    assert page.status_code == 200
    assert "<td>1.000</td>" in page.content.decode()


def test_the_admin_report_page_has_tables_plots_and_downloads(live_survey, researcher, django_capture_on_commit_callbacks):
    answer_all(live_survey, pick_target=True, pid="A")
    answer_all(live_survey, pick_target=False, pid="B")
    client = Client()
    client.force_login(researcher)

    listing = client.get("/admin/results/surveyreport/")
    page = client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/")

    assert listing.status_code == 200 and f"/admin/results/surveyreport/{live_survey.pk}/report/" in listing.content.decode()
    html = page.content.decode()
    assert page.status_code == 200 and "Alignment per condition" in html and "Exclusions" in html and "Fleiss" in html
    assert "split-half ceiling" in html and "not enough data" in html  # per condition; two raters who always disagree
    magic = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}
    for name in ("alignment", "proxy", "fill"):
        for fmt, start in magic.items():
            figure = client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/plot/{name}.{fmt}?download=1")
            assert figure.status_code == 200 and figure.content.startswith(start), (name, fmt)
            assert "attachment" in figure["Content-Disposition"]
    export = client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/export/answers.csv")
    assert export.status_code == 200 and b"".join(export.streaming_content).count(b"\n") == 7
    assert client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/plot/nope.gif").status_code == 404
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        proxy = client.post(f"/admin/results/surveyreport/{live_survey.pk}/report/proxy", {"metric": "ssim"})
    assert proxy.status_code == 302 and len(enqueued) == 1 and not TrialProxyChoice.objects.exists()
    run = OperationRun.objects.get(subject_id=live_survey.pk, kind="proxy")
    operation_run_execute(run.pk)  # what the worker does (tests/teams/test_admin.py uses a real one)
    assert TrialProxyChoice.objects.filter(trial__survey=live_survey).count() == 3
    assert "3 trials computed" in client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/").content.decode()


def test_a_participant_who_fails_the_catch_trials_is_excluded_and_counted(iri_set):
    survey = survey_make(slug="catchy", iri_jobs=[iri_set], catch_trials=2)
    if not Trial.objects.filter(survey=survey, kind="catch").exists():
        pytest.skip("this survey service builds no catch trials")
    answer_all(survey, pick_target=True, pid="careful")
    session_answer(survey, pid="careless", choose=lambda t: not_target(t) if t.kind == "catch" else t.target_option)

    report = alignment_report(survey=survey)

    counts = {c["rule"]: c for c in report["exclusions"]["counts"]}
    assert counts["catch_accuracy"]["participants"] == 1 and counts["catch_accuracy"]["answers"] == 3
    assert report["exclusions"]["participants_excluded"] == 1
    (condition,) = report["conditions"]
    assert condition["n_participants"] == 1 and condition["n_answers"] == 3 and condition["n_answers_before_exclusion"] == 6


def test_a_clustering_survey_counts_the_right_reference_with_chance_one_third(photos, iri_set):
    from tests.conftest import finished_iri_set

    second = finished_iri_set(photos, rng_seed=3)  # two IRIs per target: one screen of 3 references x 6 IRIs
    survey = survey_make(slug="clusters", iri_jobs=[iri_set, second], task_type="cluster")
    answer_all(survey, pick_target=True, pid="A")
    session_answer(survey, pid="B", choose=lambda t: (t.target_option + 1) % t.n_options)

    report = alignment_report(survey=survey)

    assert report["task_type"] == "cluster" and report["chance"] == pytest.approx(1 / 3)
    assert report["agreement"]["fleiss_kappa"]["categories"] == ["chose_right_reference", "chose_other_reference"]
    assert report["sides"]["positions"] == 3 and report["sides"]["left_share"] is None
    assert sum(report["sides"]["shares"]) == pytest.approx(1.0)
    (condition,) = report["conditions"]
    assert condition["alignment"] == pytest.approx(0.5) and condition["chance"] == pytest.approx(1 / 3)
    trial_proxy_choices_compute(survey=survey, metric="ssim")
    assert all(len(c.distances) == 3 for c in TrialProxyChoice.objects.filter(trial__survey=survey))
