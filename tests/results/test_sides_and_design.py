"""Where participants clicked (screen positions), the one-sided rule, and what the survey builder left out."""
import csv
import io
import json
from itertools import cycle

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from results.report_sections import NO_BUILD_REPORT
from results.services import alignment_report
from results.survey_data import exclusion_rules_for
from surveys.models import Assignment, Response, Survey
from tests.results.helpers import session_answer, target

pytestmark = pytest.mark.django_db


def always_left(trial):
    return 0


def alternating():
    positions = cycle([0, 1])
    return lambda trial: next(positions)


def share_right(participant, clicks) -> float:
    """The share of a participant's answers that chose the target, given the screen positions clicked in order:
    the option on the clicked side of that participant's layout (Assignment.option_order)."""
    rows = Assignment.objects.filter(participant=participant).order_by("position").values_list("option_order", "trial__target_option")
    hits = [order[click] == str(target_option) for (order, target_option), click in zip(rows, clicks)]
    return sum(hits) / len(hits)


def one_sided_rule(survey, *, fraction, min_trials):
    Survey.objects.filter(pk=survey.pk).update(one_side_max_fraction=fraction, one_side_min_trials=min_trials)
    survey.refresh_from_db()
    return survey


def test_the_report_gives_the_share_of_left_clicks_survey_wide_and_per_participant(live_survey):
    session_answer(live_survey, pid="lefty", choose=target, click=always_left)  # 3 of 3 on the left
    session_answer(live_survey, pid="even", choose=target, click=alternating())  # left, right, left

    sides = alignment_report(survey=live_survey)["sides"]

    assert sides["positions"] == 2 and sides["answers"] == 6 and sides["answers_unknown_position"] == 0
    assert sides["shares"] == pytest.approx([5 / 6, 1 / 6]) and sides["left_share"] == pytest.approx(5 / 6)
    assert sides["largest_share"] == pytest.approx(5 / 6) and sides["participants"] == 2
    assert sides["participant_position_0_share"] == pytest.approx({"min": 2 / 3, "median": 5 / 6, "max": 1.0})
    assert sides["participant_largest_share"] == pytest.approx({"min": 2 / 3, "median": 5 / 6, "max": 1.0})
    assert sides["one_sided"] is None and sides["rule"]["one_side_max_fraction"] is None  # the rule is off by default


def test_a_participant_who_always_clicks_left_is_excluded_when_the_survey_sets_the_rule(live_survey, researcher):
    survey = one_sided_rule(live_survey, fraction=0.9, min_trials=3)
    lefty = session_answer(survey, pid="lefty", choose=target, click=always_left)
    even = session_answer(survey, pid="even", choose=target, click=alternating())

    report = alignment_report(survey=survey)

    rule = next(c for c in report["exclusions"]["counts"] if c["rule"] == "one_sided")
    assert (rule["participants"], rule["answers"]) == (1, 3)
    assert report["exclusions"]["rules"]["one_side_max_fraction"] == 0.9 and report["exclusions"]["rules"]["one_side_min_trials"] == 3
    assert report["n_included"] == 3 and report["sides"]["one_sided"] == 1 and report["sides"]["participants_judged"] == 2
    # Alignment is about the option chosen, not the side: the option on the clicked side of that participant's layout.
    assert report["conditions"][0]["alignment"] == pytest.approx(share_right(even, cycle([0, 1])))

    client = Client()
    client.force_login(researcher)
    people = list(csv.DictReader(io.StringIO(b"".join(client.get(
        f"/admin/results/surveyreport/{survey.pk}/report/export/participants.csv").streaming_content).decode())))
    by_id = {int(row["participant"]): row for row in people}
    assert by_id[lefty.pk]["one_sided"] == "True" and "one_sided" in by_id[lefty.pk]["exclusion_rules"]
    assert by_id[lefty.pk]["position_0_share"] == "1.0" and by_id[lefty.pk]["position_2_share"] == ""
    assert float(by_id[lefty.pk]["correct_share"]) == pytest.approx(share_right(lefty, cycle([0])))
    assert by_id[lefty.pk]["included_answers"] == "0" and by_id[lefty.pk]["main_answers"] == "3"
    (other,) = [row for pk, row in by_id.items() if pk != lefty.pk]
    assert other["one_sided"] == "False" and float(other["largest_share"]) == pytest.approx(2 / 3)

    answers = list(csv.DictReader(io.StringIO(b"".join(client.get(
        f"/admin/results/surveyreport/{survey.pk}/report/export/answers.csv").streaming_content).decode())))
    layout = dict(Assignment.objects.filter(participant=lefty).values_list("trial__public_id", "option_order"))
    for row in (r for r in answers if int(r["participant"]) == lefty.pk):
        assert row["shown_position"] == "0" and row["choice"] == layout[row["trial"]][0]  # what was on the left
        assert "one_sided" in row["exclusion_rules"] and row["included"] == "False"

    page = client.get(f"/admin/results/surveyreport/{survey.pk}/report/").content.decode()
    assert "Where people clicked" in page and "One-sided under the rule" in page and "one-sided responders" in page


def test_the_one_sided_threshold_is_overridable_and_out_of_range_values_are_refused(live_survey, researcher_client, capsys):
    session_answer(live_survey, pid="lefty", choose=target, click=always_left)
    url = f"/api/results/surveys/{live_survey.slug}/alignment"

    on = researcher_client.get(url, {"one_side_max_fraction": "0.9", "one_side_min_trials": "3", "n_boot": 50}).json()
    rule = next(c for c in on["exclusions"]["counts"] if c["rule"] == "one_sided")
    assert rule["participants"] == 1 and on["n_included"] == 0

    one_sided_rule(live_survey, fraction=0.9, min_trials=3)
    off = researcher_client.get(url, {"one_side_max_fraction": "off", "n_boot": 50}).json()
    assert next(c for c in off["exclusions"]["counts"] if c["rule"] == "one_sided")["applies"] is False and off["n_included"] == 3
    more = researcher_client.get(url, {"one_side_min_trials": "4", "n_boot": 50}).json()  # 3 answers: not judged
    assert next(c for c in more["exclusions"]["counts"] if c["rule"] == "one_sided")["participants"] == 0

    for params, field in (({"one_side_max_fraction": "0.5"}, "one_side_max_fraction"), ({"one_side_max_fraction": "1.5"}, "one_side_max_fraction"),
                          ({"one_side_max_fraction": "most"}, "one_side_max_fraction"), ({"one_side_min_trials": "0"}, "one_side_min_trials"),
                          ({"catch_min_accuracy": "1.2"}, "catch_min_accuracy")):
        refused = researcher_client.get(url, params)
        assert refused.status_code == 400, params
        assert field in refused.json()["message"] and refused.json()["extra"]["field"] == field

    with pytest.raises(CommandError, match=r"one_side_max_fraction must be a share above 1/2 and at most 1"):
        call_command("alignment_report", live_survey.slug, "--one-side-max-fraction", "0.4")
    with pytest.raises(CommandError, match="one_side_min_trials must be a whole number of at least 1"):
        call_command("alignment_report", live_survey.slug, "--one-side-min-trials", "0")
    call_command("alignment_report", live_survey.slug, "--one-side-max-fraction", "1", "--n-boot", "20")
    out = capsys.readouterr().out
    assert "one_sided" in out and "one-sided (largest share >= 1 of at least 3 answers): 1 of 1 participants judged" in out


def test_on_a_clustering_survey_the_one_sided_share_must_beat_one_third():
    survey = Survey(slug="c", task_type=Survey.TaskType.CLUSTER, one_side_max_fraction=0.4)
    assert exclusion_rules_for(survey=survey).one_side_max_fraction == 0.4
    with pytest.raises(Exception, match="above 1/3"):
        exclusion_rules_for(survey=survey, one_side_max_fraction=0.3)


def test_answers_without_a_recorded_position_are_left_out_of_the_side_share_and_never_crash(live_survey, capsys):
    lefty = session_answer(live_survey, pid="lefty", choose=target, click=always_left)
    session_answer(live_survey, pid="even", choose=target, click=alternating())
    Response.objects.filter(participant=lefty).update(shown_position=None)  # rows from before positions were stored
    survey = one_sided_rule(live_survey, fraction=0.9, min_trials=3)  # set afterwards: the session was not flagged on completion

    report = alignment_report(survey=survey)

    sides = report["sides"]
    assert sides["answers"] == 3 and sides["answers_unknown_position"] == 3 and sides["participants"] == 1
    assert sides["shares"] == pytest.approx([2 / 3, 1 / 3]) and sides["participants_judged"] == 1 and sides["one_sided"] == 0
    assert next(c for c in report["exclusions"]["counts"] if c["rule"] == "one_sided")["participants"] == 0
    assert report["n_included"] == 6
    json.dumps(report, allow_nan=False)
    call_command("alignment_report", survey.slug, "--answers", "participants")
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    row = next(r for r in rows if int(r["participant"]) == lefty.pk)
    assert row["positioned_answers"] == "0" and row["largest_share"] == "" and row["one_sided"] == "False"


BUILD_REPORT = {
    "left_out": {"percentile_above_threshold": 3, "label_mismatch": 1, "no_validity_record": 0},
    "validity_filter": {"max_percentile": 5.0, "require_label_match": True},
    "resized": [{"set": 7, "name": "tiny set", "from": [64, 64], "to": [32, 32], "images": 6}],
    "size_policy": "resize",
}


def test_the_design_section_shows_what_the_builder_left_out_and_why(live_survey, researcher, capsys):
    Survey.objects.filter(pk=live_survey.pk).update(build_report=BUILD_REPORT)
    live_survey.refresh_from_db()

    design = alignment_report(survey=live_survey)["design"]

    assert design["recorded"] and design["note"] == ""
    assert design["left_out"]["total"] == 4
    reasons = {r["reason"]: r for r in design["left_out"]["reasons"]}
    assert reasons["percentile_above_threshold"]["count"] == 3 and "null distribution" in reasons["percentile_above_threshold"]["description"]
    assert reasons["label_mismatch"]["count"] == 1 and reasons["no_validity_record"]["count"] == 0
    assert design["validity_filter"] == {"max_percentile": 5.0, "require_label_match": True, "on": True}
    assert design["size_policy"] == "resize" and design["resized"] == BUILD_REPORT["resized"] and design["images_resized"] == 6

    call_command("alignment_report", live_survey.slug, "--n-boot", "20")
    out = capsys.readouterr().out
    assert "design: validity filter max percentile 5.0, label match required; 4 IRIs left out; size policy resize" in out
    assert "left out     3  percentile_above_threshold" in out and "resized set 7 tiny set: 6 images from 64×64 to 32×32" in out
    client = Client()
    client.force_login(researcher)
    page = client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/").content.decode()
    assert "what the survey builder left out" in page and "percentile_above_threshold" in page and "64×64" in page


def test_an_older_survey_without_a_build_report_says_so_and_odd_entries_are_skipped(live_survey):
    Survey.objects.filter(pk=live_survey.pk).update(build_report={})
    live_survey.refresh_from_db()
    design = alignment_report(survey=live_survey)["design"]
    assert not design["recorded"] and design["note"] == NO_BUILD_REPORT
    assert design["left_out"] == {"total": 0, "reasons": []} and design["resized"] == [] and design["validity_filter"]["on"] is False

    Survey.objects.filter(pk=live_survey.pk).update(build_report={"left_out": {"label_mismatch": "two", "new_reason": 2}, "resized": "none"})
    live_survey.refresh_from_db()
    design = alignment_report(survey=live_survey)["design"]
    assert design["left_out"] == {"total": 2, "reasons": [{"reason": "new_reason", "count": 2, "description": "new reason"}]}
    assert design["resized"] == [] and design["size_policy"] == ""


def test_a_stored_threshold_out_of_range_is_named_on_the_report_page_not_a_server_error(live_survey, researcher):
    Survey.objects.filter(pk=live_survey.pk).update(one_side_max_fraction=0.2)
    client = Client()
    client.force_login(researcher)

    page = client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/")

    assert page.status_code == 400 and "one_side_max_fraction must be a share above 1/2" in page.content.decode()
