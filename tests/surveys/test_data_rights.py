"""Participants' data rights: a person who asks is erased everywhere (by Prolific PID or MTurk worker ID), and a
survey's retention period drops the external IDs of sessions that ended long enough ago."""
import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.messages.storage.fallback import FallbackStorage
from django.core.management import CommandError, call_command
from django.test import RequestFactory
from django.utils import timezone

from backend.exceptions import ApplicationError
from results.admin import report_cached
from results.services import alignment_report
from surveys.models import Assignment, Participant, ParticipantEvent, Response, Slot, Survey
from surveys.services import external_id_hash, participant_enroll, participant_events_record, participant_ids_expire
from surveys.tasks import participant_ids_expire_task
from teams.actors import Actor
from teams.models import AuditEntry, Role
from teams.services import membership_set, team_create
from tests.results.helpers import session_answer, survey_make, target

pytestmark = pytest.mark.django_db


def erase(*args) -> dict:
    out = StringIO()
    call_command("participant_erase", *args, stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def lab_b_survey(iri_set):
    """A live survey of another lab. (Its IRI sets stay Lab A's: only the survey's team matters here.)"""
    survey = survey_make(slug="lab-b-study", iri_jobs=[iri_set])
    Survey.objects.filter(pk=survey.pk).update(team=team_create(name="Lab B"))
    survey.refresh_from_db()
    return survey


# --------------------------------------------------------------------------------------------- erasure


def test_a_participant_erased_by_pid_loses_answers_events_and_assignments_and_the_report_follows(live_survey):
    leaving = session_answer(live_survey, pid="P-LEAVES", choose=target)
    staying = session_answer(live_survey, pid="P-STAYS", choose=target)
    participant_events_record(participant=leaving, events=[{"id": uuid.uuid4(), "type": "blur"}])
    before = alignment_report(survey=live_survey)

    result = erase("--prolific-pid", "P-LEAVES")

    assert not Participant.objects.filter(pk=leaving.pk).exists()
    assert not Response.objects.filter(participant_id=leaving.pk).exists()
    assert not ParticipantEvent.objects.filter(participant_id=leaving.pk).exists()
    assert not Assignment.objects.filter(participant_id=leaving.pk).exists()
    assert staying.responses.count() == 3
    after = alignment_report(survey=live_survey)
    assert (after["n_answers"], after["n_participants"]) == (before["n_answers"] - 3, before["n_participants"] - 1)
    assert result["teams"] == {
        "Lab A": {"surveys": ["pilot"], "sessions": 1, "responses": 3, "events": 1, "assignments": 3, "slots_freed": 1}
    }
    assert result["id_hash"] == external_id_hash(value="P-LEAVES")


def test_the_audit_log_names_a_hash_of_the_erased_id_never_the_id(live_survey, team):
    session_answer(live_survey, pid="P-SECRET", choose=target)

    erase("--prolific-pid", "P-SECRET")

    entry = AuditEntry.objects.get(action="participant.erase")
    assert entry.team == team
    assert entry.details["id_hash"] == external_id_hash(value="P-SECRET") and entry.details["responses"] == 3
    assert "P-SECRET" not in json.dumps(entry.details) + entry.object_repr + entry.object_id


def test_an_erased_completed_participants_slot_is_free_again_and_the_list_refills_to_n(iri_set):
    survey = survey_make(slug="one-rating", iri_jobs=[iri_set], ratings_per_list=1)
    first = session_answer(survey, pid="P-FIRST", choose=target)
    slot = Slot.objects.get(survey=survey, is_pilot=False, participant=first)
    with pytest.raises(ApplicationError):  # the one live slot is filled: the study is full
        participant_enroll(survey=survey, prolific_pid="P-LATE")

    erase("--prolific-pid", "P-FIRST")

    slot.refresh_from_db()
    assert (slot.participant, slot.reserved_until, slot.filled_at) == (None, None, None)
    late = session_answer(survey, pid="P-LATE", choose=target)
    assert Slot.objects.filter(survey=survey, is_pilot=False, filled_at__isnull=False).get().participant == late


def test_the_cached_report_is_not_reused_after_an_erasure_that_removed_no_answer(live_survey):
    session_answer(live_survey, pid="P-ANSWERS", choose=target)
    participant_enroll(survey=live_survey, prolific_pid="P-ONLY-ENROLLED")
    cached = report_cached(survey=live_survey)

    erase("--prolific-pid", "P-ONLY-ENROLLED")
    live_survey.refresh_from_db()

    assert report_cached(survey=live_survey)["n_participants"] == cached["n_participants"] - 1


def test_with_team_the_command_leaves_another_labs_participant_with_the_same_pid_alone(live_survey, lab_b_survey):
    ours = session_answer(live_survey, pid="P-BOTH", choose=target)
    theirs = session_answer(lab_b_survey, pid="P-BOTH", choose=target)

    result = erase("--prolific-pid", "P-BOTH", "--team", "Lab A")

    assert not Participant.objects.filter(pk=ours.pk).exists()
    assert Participant.objects.get(pk=theirs.pk).responses.count() == 3
    assert list(result["teams"]) == ["Lab A"]


def test_without_team_the_command_erases_the_person_in_every_lab_with_an_audit_entry_each(live_survey, lab_b_survey):
    session_answer(live_survey, pid="P-BOTH", choose=target)
    session_answer(lab_b_survey, pid="P-BOTH", choose=target)

    result = erase("--prolific-pid", "P-BOTH")

    assert not Participant.objects.filter(prolific_pid="P-BOTH").exists()
    assert sorted(result["teams"]) == ["Lab A", "Lab B"]
    assert sorted(e.team.name for e in AuditEntry.objects.filter(action="participant.erase")) == ["Lab A", "Lab B"]


def test_a_worker_is_erased_by_mturk_worker_id_in_one_survey_only_with_survey(live_survey, iri_set):
    other = survey_make(slug="second-study", iri_jobs=[iri_set])
    here, _ = participant_enroll(survey=live_survey, worker_id="W-1", assignment_id="A-1")
    there, _ = participant_enroll(survey=other, worker_id="W-1", assignment_id="A-2")

    erase("--worker-id", "W-1", "--survey", "pilot")

    assert not Participant.objects.filter(pk=here.pk).exists() and Participant.objects.filter(pk=there.pk).exists()


def test_a_dry_run_says_what_it_would_erase_and_erases_nothing(live_survey):
    person = session_answer(live_survey, pid="P-MAYBE", choose=target)

    result = erase("--prolific-pid", "P-MAYBE", "--dry-run")

    assert result["dry_run"] and result["teams"]["Lab A"]["responses"] == 3
    assert person.responses.count() == 3 and Slot.objects.filter(participant=person, filled_at__isnull=False).exists()
    assert not AuditEntry.objects.filter(action="participant.erase").exists()


@pytest.mark.parametrize(
    "args, sentence",
    [
        ([], "Give exactly one of a Prolific PID or an MTurk worker ID."),
        (["--prolific-pid", "P", "--worker-id", "W"], "Give exactly one of a Prolific PID or an MTurk worker ID."),
        (["--prolific-pid", "P", "--team", "No such lab"], "No team 'No such lab'"),
        (["--prolific-pid", "P", "--survey", "no-such-survey"], "No survey 'no-such-survey'."),
    ],
)
def test_the_command_refuses_bad_input_with_a_sentence(team, args, sentence):
    with pytest.raises(CommandError, match=sentence):
        call_command("participant_erase", *args)


def test_the_command_exits_non_zero_without_an_id():
    done = subprocess.run(
        [sys.executable, "manage.py", "participant_erase"], cwd=settings.BASE_DIR, capture_output=True, text=True,
        env=os.environ, timeout=120,
    )
    assert done.returncode != 0
    assert "Give exactly one of a Prolific PID or an MTurk worker ID." in done.stderr


def admin_erase(user, participants):
    """The participant admin's erase action, as `user` would run it from the change list."""
    request = RequestFactory().post("/admin/surveys/participant/")
    request.user, request.session = user, {}
    request._messages = FallbackStorage(request)
    admin.site._registry[Participant].erase(request, Participant.objects.filter(pk__in=[p.pk for p in participants]))
    return [str(m) for m in request._messages]


def test_the_admin_action_erases_the_person_in_the_users_teams_only(live_survey, lab_b_survey, team, django_user_model):
    bob = django_user_model.objects.create_user(username="bob", password="pw-bob-123", is_staff=True)
    membership_set(team=team, user=bob, role=Role.RESEARCHER)
    ours = session_answer(live_survey, pid="P-BOTH", choose=target)
    theirs = session_answer(lab_b_survey, pid="P-BOTH", choose=target)

    messages = admin_erase(bob, [ours])

    assert not Participant.objects.filter(pk=ours.pk).exists() and Participant.objects.filter(pk=theirs.pk).exists()
    assert messages == [f"Participant {external_id_hash(value='P-BOTH')}: 1 session(s) with 3 answers erased."]
    entry = AuditEntry.objects.get(action="participant.erase")
    assert (entry.user, entry.team, entry.details["surveys"]) == (bob, team, ["pilot"])


def test_a_viewer_erases_nothing_from_the_admin(live_survey, team, django_user_model):
    carol = django_user_model.objects.create_user(username="carol", password="pw-carol-123", is_staff=True)
    membership_set(team=team, user=carol, role=Role.VIEWER)
    person = session_answer(live_survey, pid="P-KEPT", choose=target)

    admin_erase(carol, [person])

    assert Participant.objects.filter(pk=person.pk).exists()
    assert not AuditEntry.objects.filter(action="participant.erase").exists()


# --------------------------------------------------------------------------------------------- retention


def ended(participant, *, days_ago: float):
    Participant.objects.filter(pk=participant.pk).update(ended_at=timezone.now() - timedelta(days=days_ago))


def test_retention_drops_external_ids_only_of_sessions_that_ended_longer_ago_than_the_period(live_survey, iri_set):
    Survey.objects.filter(pk=live_survey.pk).update(retention_days=30)
    old, _ = participant_enroll(survey=live_survey, prolific_pid="P-OLD", study_id="STUDY", session_id="S-OLD")
    recent, _ = participant_enroll(survey=live_survey, prolific_pid="P-RECENT", session_id="S-RECENT")
    still_active, _ = participant_enroll(survey=live_survey, worker_id="W-ACTIVE", assignment_id="A-ACTIVE")
    ended(old, days_ago=31)
    ended(recent, days_ago=29)
    Participant.objects.filter(pk=still_active.pk).update(created_at=timezone.now() - timedelta(days=90))
    kept_forever = survey_make(slug="no-retention", iri_jobs=[iri_set])
    unlimited, _ = participant_enroll(survey=kept_forever, prolific_pid="P-OLD")
    ended(unlimited, days_ago=400)

    assert participant_ids_expire(actor=Actor.command("participant_ids_expire")) == {"pilot": 1}

    old.refresh_from_db()
    assert (old.prolific_pid, old.session_id, old.worker_id, old.assignment_id, old.study_id) == ("", "", "", "", "STUDY")
    assert old.assignments.exists()  # the session and what it did stay, under its row id
    for kept, pid in ((recent, "P-RECENT"), (unlimited, "P-OLD")):
        kept.refresh_from_db()
        assert kept.prolific_pid == pid
    still_active.refresh_from_db()
    assert still_active.worker_id == "W-ACTIVE"
    entry = AuditEntry.objects.get(action="survey.retention")
    assert (entry.object_repr, entry.details) == ("pilot", {"sessions": 1, "retention_days": 30})
    assert (entry.username, entry.user) == ("command:participant_ids_expire", None)


def test_the_beat_task_expires_ids_and_a_second_run_finds_nothing_to_do(live_survey):
    Survey.objects.filter(pk=live_survey.pk).update(retention_days=0)
    person, _ = participant_enroll(survey=live_survey, prolific_pid="P-GONE")
    ended(person, days_ago=0.01)

    assert participant_ids_expire_task() == {"pilot": 1}
    assert participant_ids_expire_task() == {}
    [entry] = AuditEntry.objects.filter(action="survey.retention")
    assert entry.username == "task:participant_ids_expire"
    assert any(e["task"] == "surveys.tasks.participant_ids_expire_task" for e in settings.CELERY_BEAT_SCHEDULE.values())
