"""A team member issues, rotates and revokes their own API token; scripts then call the API with it."""
import pytest
from django.test import Client
from rest_framework.test import APIClient

from surveys.models import Participant
from teams.models import AuditEntry, Role
from teams.services import membership_set, team_create

pytestmark = pytest.mark.django_db

LAYERS = "/api/iri/backbones/tiny_cnn/layers"  # any research endpoint a viewer may read


@pytest.fixture
def member(django_user_model, team):
    user = django_user_model.objects.create_user(username="bob", password="pw-bob-123")
    membership_set(team=team, user=user, role=Role.VIEWER)
    return user


@pytest.fixture
def member_session(member):
    client = Client(enforce_csrf_checks=True)
    client.login(username="bob", password="pw-bob-123")
    client.get("/admin/login/")  # hands out the CSRF cookie a browser page would have
    return client


def with_token(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def csrf(session: Client) -> dict:
    return {"HTTP_X_CSRFTOKEN": session.cookies["csrftoken"].value}


def issue(session: Client) -> str:
    response = session.post("/api/tokens", **csrf(session))
    assert response.status_code == 201, response.content
    return response.json()["token"]


def test_a_member_logged_in_gets_a_token_that_opens_the_api(member_session):
    key = issue(member_session)

    assert with_token(key).get(LAYERS).status_code == 200


def test_issuing_again_rotates_the_token_and_the_old_one_gets_401(member_session):
    old = issue(member_session)
    new = with_token(old).post("/api/tokens").json()["token"]

    assert new != old
    assert with_token(old).get(LAYERS).status_code == 401
    assert with_token(new).get(LAYERS).status_code == 200


def test_a_revoked_token_gets_401(member_session):
    key = issue(member_session)

    assert with_token(key).delete("/api/tokens").status_code == 204
    assert with_token(key).get(LAYERS).status_code == 401
    assert member_session.delete("/api/tokens", **csrf(member_session)).status_code == 204


def test_the_audit_log_records_issue_and_revoke_but_never_the_token(member, member_session):
    key = issue(member_session)
    with_token(key).delete("/api/tokens")

    entries = list(AuditEntry.objects.filter(user=member).order_by("id"))
    assert [e.action for e in entries] == ["token.issue", "token.revoke"]
    assert all(key not in str(vars(e)) for e in entries)


def test_token_events_are_in_the_audit_log_of_every_team_of_the_user_and_only_there(
        django_user_model, team, member, member_session):
    lab_b, lab_c = team_create(name="Lab B"), team_create(name="Lab C")
    membership_set(team=lab_b, user=member, role=Role.RESEARCHER)
    owners = {}
    for lab in (team, lab_b, lab_c):
        owners[lab.name] = django_user_model.objects.create_user(username=f"owner of {lab.name}", is_staff=True)
        membership_set(team=lab, user=owners[lab.name], role=Role.OWNER)

    key = issue(member_session)
    with_token(key).delete("/api/tokens")

    both = {"token.issue", "token.revoke"}
    for lab, seen in [("Lab A", both), ("Lab B", both), ("Lab C", set())]:
        owner = Client()
        owner.force_login(owners[lab])
        log = owner.get("/admin/teams/auditentry/").context["cl"].result_list
        assert {e.action for e in log if e.details.get("user") == "bob"} == seen, lab
    assert not AuditEntry.objects.filter(action__startswith="token.", team=None).exists()


def test_a_session_needs_its_csrf_token_to_issue_one(member_session):
    assert member_session.post("/api/tokens").status_code == 403


def test_nobody_and_a_user_in_no_team_get_no_token(django_user_model):
    django_user_model.objects.create_user(username="loner", password="pw-loner-123")
    loner = Client()
    loner.login(username="loner", password="pw-loner-123")

    assert Client().post("/api/tokens").status_code == 401
    assert loner.post("/api/tokens").status_code == 403
    assert not AuditEntry.objects.exists()


def test_a_participant_session_token_is_not_an_api_token(live_survey):
    enrolled = Client().post(f"/api/p/surveys/{live_survey.slug}/enroll", {"prolific_pid": "P-1"}, content_type="application/json")
    participant = Participant.objects.get(token=enrolled.json()["token"])

    assert with_token(participant.token).get(LAYERS).status_code == 401
    assert with_token(participant.token).post("/api/tokens").status_code == 401
