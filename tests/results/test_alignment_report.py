"""From answers in the database to the report: API, admin page and management command."""
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from surveys.models import Participant, Response
from surveys.services import participant_consent, participant_enroll, response_record
from tests.conftest import new_key

pytestmark = pytest.mark.django_db


def answer_all(survey, *, pick_target: bool, pid: str):
    participant, _ = participant_enroll(survey=survey, prolific_pid=pid)
    participant_consent(participant=participant)
    for a in participant.assignments.select_related("trial"):
        choice = a.trial.target_option if pick_target else 1 - a.trial.target_option
        response_record(participant=participant, trial_public_id=a.trial.public_id, choice=choice, rt_ms=700, idempotency_key=new_key())


def test_the_report_gives_alignment_with_n_and_ci_per_iri_set(live_survey, researcher_client):
    answer_all(live_survey, pick_target=True, pid="A")
    answer_all(live_survey, pick_target=False, pid="B")

    report = researcher_client.get(f"/api/results/surveys/{live_survey.slug}/alignment").json()

    (condition,) = report["conditions"]
    assert condition["alignment"] == pytest.approx(0.5)
    assert condition["n_answers"] == 6 and condition["n_participants"] == 2
    assert condition["ci_low"] == pytest.approx(0.0) and condition["ci_high"] == pytest.approx(1.0)
    assert condition["backbone"] == "tiny_cnn" and condition["recipe"] == "reg_free"


def test_a_survey_without_answers_says_so(live_survey, capsys):
    call_command("alignment_report", live_survey.slug, "--format", "json")

    report = json.loads(capsys.readouterr().out)
    assert report["n_answers"] == 0
    assert report["conditions"][0]["alignment"] is None
    assert report["conditions"][0]["note"] == "No answers yet."


def test_the_command_prints_a_table_and_refuses_an_unknown_slug(live_survey, capsys):
    answer_all(live_survey, pick_target=True, pid="A")
    call_command("alignment_report", live_survey.slug)
    assert "1.000" in capsys.readouterr().out

    with pytest.raises(CommandError, match="no survey with the slug 'nope'"):
        call_command("alignment_report", "nope")


def test_the_admin_survey_page_shows_the_alignment_table(live_survey, researcher):
    answer_all(live_survey, pick_target=True, pid="A")
    client = Client()
    client.force_login(researcher)

    page = client.get(f"/admin/surveys/survey/{live_survey.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "alignment per iri set" in html.lower()
    assert "<td>1.000</td>" in html
