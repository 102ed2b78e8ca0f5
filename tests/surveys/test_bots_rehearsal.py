"""Rehearsals: `run_bots --as-people` walks a live adaptive survey with bots that the estimates count like people,
is refused once real participants have come, goes to the audit log, and one action erases it all."""
import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.messages.storage.fallback import FallbackStorage
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from surveys.bots import bot_credential
from surveys.models import Participant, Response, Slot, Survey
from surveys.services import adaptive_state_initial, participant_enroll
from teams.models import AuditEntry
from tests.conftest import database_url
from tests.surveys.test_adaptive_collection import adaptive, four_sets  # noqa: F401 (a fixture)
from tests.surveys.test_assignment import answer_all


def run_bots(*args) -> dict:
    out = StringIO()
    call_command("run_bots", *args, stdout=out)
    return json.loads(out.getvalue())


def counted(survey) -> int:
    """Answers adaptive collection's latest estimate counts, over every IRI set."""
    survey.refresh_from_db()
    return sum(survey.adaptive_state["n_answers"])


def test_a_rehearsal_moves_the_estimates_like_people_and_one_action_puts_the_survey_back_to_zero(server, four_sets):
    # Four IRI sets, 8 lists of two sets each, N = 20; a goal of 0.1 that 30 people answering at random cannot meet.
    survey = adaptive(four_sets, slug="rehearsed", ratings_per_list=20, precision_goal=0.1)

    summary = run_bots("rehearsed", "--as-people", "--participants", "30", "--concurrency", "6", "--policy", "random",
                       "--attentive-only", "--seed", "7", "--base-url", server)

    assert (summary["completed"], summary["errors"], summary["lost"], summary["mode"]) == (30, 0, 0, "rehearsal"), summary
    # The estimates saw every bot, as they will see people: 30 sessions of 6 main answers, spread over the sets.
    state = Survey.objects.get(pk=survey.pk).adaptive_state
    assert state["completed"] == 30 and sum(state["n_answers"]) == 30 * 6
    assert all(n > 0 for n in state["n_answers"]) and not state["stop"]
    rehearsal = Participant.objects.filter(survey=survey)
    assert set(rehearsal.values_list("is_rehearsal", "is_bot", "is_pilot")) == {(True, False, False)}
    # The run is in the survey team's audit log.
    entry = AuditEntry.objects.get(action="survey.rehearsal")
    assert entry.team == survey.team and entry.object_id == str(survey.pk)
    assert entry.details["participants"] == 30 and entry.details["policy"] == "random"

    # The researcher has seen enough: one command erases the rehearsal.
    erased = run_bots("rehearsed", "--erase-rehearsal")

    assert erased == {"sessions": 30, "responses": 30 * 6, "slots_freed": 30}
    assert not Participant.objects.filter(survey=survey).exists() and not Response.objects.exists()
    assert not Slot.objects.filter(survey=survey).exclude(participant=None).exists()
    assert not Slot.objects.filter(survey=survey, filled_at__isnull=False).exists()
    survey.refresh_from_db()
    assert survey.adaptive == adaptive_state_initial(survey=survey)
    assert AuditEntry.objects.get(action="survey.rehearsal_erase").details == erased
    # The real study starts clean: the first person is counted from zero.
    person, _ = participant_enroll(survey=survey, prolific_pid="PERSON-1")
    answer_all(person, choose=lambda t: t.target_option)
    assert counted(survey) == 6


def test_a_rehearsal_is_refused_with_a_sentence_once_a_real_participant_has_come(transactional_db, four_sets):
    survey = adaptive(four_sets, slug="started")
    participant_enroll(survey=survey, prolific_pid="PERSON-1")
    # Pilots and plain bots are not real participants; the one person is.
    participant_enroll(survey=survey, prolific_pid="PILOT-1", pilot=True)
    participant_enroll(survey=survey, prolific_pid="BOT-1", is_bot=True)

    # No server is needed to be refused (nothing listens on port 9).
    with pytest.raises(CommandError, match="already has 1 real participant"):
        call_command("run_bots", "started", "--as-people", "--base-url", "http://127.0.0.1:9")
    done = subprocess.run(
        [sys.executable, "manage.py", "run_bots", "started", "--as-people", "--base-url", "http://127.0.0.1:9"],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DATABASE_URL": database_url()},
    )

    assert done.returncode != 0
    assert "Survey 'started' already has 1 real participant(s); a rehearsal's bots would be counted" in done.stderr
    assert not AuditEntry.objects.filter(action="survey.rehearsal").exists()
    assert Participant.objects.filter(survey=survey).count() == 3


def test_a_rehearsal_needs_a_live_survey(four_sets):
    survey = adaptive(four_sets, slug="closed")
    Survey.objects.filter(pk=survey.pk).update(status=Survey.Status.DRAFT)

    with pytest.raises(CommandError, match="is not live; a rehearsal fills its live places"):
        call_command("run_bots", "closed", "--as-people", "--base-url", "http://127.0.0.1:9")


def test_the_enroll_api_marks_a_rehearsal_credential_and_treats_a_forged_one_as_a_person(client, four_sets):
    survey = adaptive(four_sets, slug="marks")
    url = f"/api/p/surveys/{survey.slug}/enroll"
    credentials = {
        "R-1": bot_credential(slug="marks", rehearsal=True) + ".run1",
        "B-1": bot_credential(slug="marks") + ".run2",
        "X-1": bot_credential(slug="another-survey", rehearsal=True) + ".run3",
        "X-2": "forged.run4",
    }

    for pid, credential in credentials.items():
        assert client.post(url, {"prolific_pid": pid, "bot": credential}, content_type="application/json").status_code == 201

    flags = {p.prolific_pid: (p.is_rehearsal, p.is_bot) for p in Participant.objects.filter(survey=survey)}
    assert flags == {"R-1": (True, False), "B-1": (False, True), "X-1": (False, False), "X-2": (False, False)}


def test_the_survey_admin_erases_a_rehearsal_and_leaves_people_and_pilots_alone(
    researcher, four_sets, django_capture_on_commit_callbacks
):
    survey = adaptive(four_sets, slug="mixed")
    for k in range(3):
        bot, _ = participant_enroll(survey=survey, prolific_pid=f"R-{k}", is_rehearsal=True)
        answer_all(bot, choose=lambda t: t.target_option)
    person, _ = participant_enroll(survey=survey, prolific_pid="PERSON-1")  # came while the rehearsal ran
    answer_all(person, choose=lambda t: t.target_option)
    pilot, _ = participant_enroll(survey=survey, prolific_pid="PILOT-1", pilot=True)
    assert counted(survey) == 4 * 6

    request = RequestFactory().post("/admin/surveys/survey/")
    request.user, request.session = researcher, {}
    request._messages = FallbackStorage(request)
    with django_capture_on_commit_callbacks(execute=True):
        admin.site._registry[Survey].rehearsal_erase(request, Survey.objects.filter(pk=survey.pk))

    assert [str(m) for m in request._messages] == ["mixed: 3 rehearsal session(s) with 18 answers erased; 3 place(s) free again."]
    assert set(Participant.objects.values_list("prolific_pid", flat=True)) == {"PERSON-1", "PILOT-1"}
    # Collection starts again from the person alone.
    assert counted(survey) == 6
    entry = AuditEntry.objects.get(action="survey.rehearsal_erase")
    assert (entry.team, entry.user, entry.details["sessions"]) == (survey.team, researcher, 3)
    # A second click finds nothing to erase, and changes nothing.
    admin.site._registry[Survey].rehearsal_erase(request, Survey.objects.filter(pk=survey.pk))
    assert AuditEntry.objects.filter(action="survey.rehearsal_erase").count() == 1 and counted(survey) == 6
