"""Exports name participants by a per-survey pseudonym of their Prolific PID or MTurk worker ID; a researcher may ask
for the raw IDs (recorded in the audit log), a viewer may not."""
import csv
import hashlib
import hmac
import io
import json

import pytest
from rest_framework.test import APIClient

from surveys.models import Participant
from teams.models import AuditEntry, Role
from teams.services import membership_set
from tests.results.helpers import session_answer, survey_make, target

pytestmark = pytest.mark.django_db


def by_hand(salt: str, external_id: str) -> str:
    return hmac.new(salt.encode(), external_id.encode(), hashlib.sha256).hexdigest()[:16]


def export(client, survey, name: str, **params):
    return client.get(f"/api/results/surveys/{survey.slug}/export/{name}", params)


def body(response) -> str:
    return b"".join(response.streaming_content).decode()


def external_ids(response, name: str) -> set[str]:
    text = body(response)
    rows = json.loads(text) if name.endswith(".json") else list(csv.DictReader(io.StringIO(text)))
    return {row["external_id"] for row in rows}


@pytest.fixture
def viewer_client(team, django_user_model):
    carol = django_user_model.objects.create_user(username="carol", password="pw-carol-123")
    membership_set(team=team, user=carol, role=Role.VIEWER)
    client = APIClient()
    client.force_authenticate(carol)
    return client


@pytest.mark.parametrize("name", ["answers.csv", "answers.json", "participants.csv"])
def test_exports_show_the_surveys_pseudonym_of_each_id_and_never_the_id(live_survey, researcher_client, name):
    session_answer(live_survey, pid="PID-ALICE", choose=target)
    Participant.objects.create(survey=live_survey, worker_id="W-BOB")  # an MTurk worker, in participants.csv only

    response = export(researcher_client, live_survey, name)

    people = ["PID-ALICE", "W-BOB"] if name == "participants.csv" else ["PID-ALICE"]
    assert response.status_code == 200
    assert external_ids(response, name) == {by_hand(live_survey.pseudonym_salt, external_id) for external_id in people}
    assert AuditEntry.objects.get(action="survey.export").details == {"export": name}


def test_model_vs_human_and_the_answer_pages_carry_no_raw_id_either(live_survey, researcher_client):
    session_answer(live_survey, pid="PID-ALICE", choose=target)

    mvh = body(export(researcher_client, live_survey, "model-vs-human.csv"))
    page = researcher_client.get(f"/api/results/surveys/{live_survey.slug}/answers").json()

    assert "PID-ALICE" not in mvh
    assert {row["external_id"] for row in page["results"]} == {by_hand(live_survey.pseudonym_salt, "PID-ALICE")}


def test_the_same_person_has_unlinkable_pseudonyms_in_two_surveys(live_survey, iri_set, researcher_client):
    other = survey_make(slug="second-study", iri_jobs=[iri_set])
    for survey in (live_survey, other):
        session_answer(survey, pid="PID-ALICE", choose=target)

    first, second = (external_ids(export(researcher_client, s, "participants.csv"), "participants.csv") for s in (live_survey, other))

    assert live_survey.pseudonym_salt != other.pseudonym_salt and first.isdisjoint(second)


@pytest.mark.parametrize("name", ["answers.csv", "participants.csv"])
def test_a_researcher_gets_raw_ids_on_request_and_the_audit_log_says_so(live_survey, researcher_client, name):
    session_answer(live_survey, pid="PID-ALICE", choose=target)

    response = export(researcher_client, live_survey, name, raw_ids=1)

    assert external_ids(response, name) == {"PID-ALICE"}
    assert AuditEntry.objects.get(action="survey.export").details == {"export": name, "raw_ids": True}


def test_raw_ids_on_the_answer_pages_are_audited_and_the_next_page_keeps_asking(live_survey, researcher_client):
    session_answer(live_survey, pid="PID-ALICE", choose=target)

    page = researcher_client.get(f"/api/results/surveys/{live_survey.slug}/answers", {"raw_ids": 1, "limit": 1}).json()

    assert page["results"][0]["external_id"] == "PID-ALICE" and "raw_ids=1" in page["next"]
    assert AuditEntry.objects.get(action="survey.export").details == {"export": "answers", "raw_ids": True}


def test_a_viewer_exports_pseudonyms_but_is_refused_raw_ids(live_survey, viewer_client):
    session_answer(live_survey, pid="PID-ALICE", choose=target)

    plain = export(viewer_client, live_survey, "answers.csv")
    raw = export(viewer_client, live_survey, "answers.csv", raw_ids=1)
    raw_page = viewer_client.get(f"/api/results/surveys/{live_survey.slug}/answers", {"raw_ids": 1})

    assert plain.status_code == 200 and "PID-ALICE" not in body(plain)
    for refused in (raw, raw_page):
        assert refused.status_code == 403 and "viewer" in refused.json()["message"]
    assert not AuditEntry.objects.filter(details__raw_ids=True).exists()


def test_the_admin_report_offers_a_raw_id_export_that_is_audited(live_survey, researcher, client):
    session_answer(live_survey, pid="PID-ALICE", choose=target)
    client.force_login(researcher)
    base = f"/admin/results/surveyreport/{live_survey.pk}/report/export/answers.csv"

    page = client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/")
    plain = client.get(base)
    raw = client.get(base, {"raw_ids": 1})

    assert f'{base}?raw_ids=1"' in page.content.decode()
    assert "PID-ALICE" not in body(plain) and "PID-ALICE" in body(raw)
    assert AuditEntry.objects.get(action="survey.export", details__raw_ids=True).details == {"export": "answers.csv", "raw_ids": True}
