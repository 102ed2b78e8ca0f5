"""Prolific from the admin, end to end against a local fake of Prolific's API (tests/surveys/fake_prolific.py;
never the network) that validates every request against Prolific's published OpenAPI document and its rules, pages
its lists and answers 429 and 5xx when told: a draft study with the survey's link, every code it can hand out, a
description and time for its task, places that only grow once published and follow the forecast, a pause when
collection stops (retried until Prolific answers), and submissions approved in bulk or asked to return by outcome."""
import math

import pytest
from django.db import DatabaseError
from django.test import Client

from backend.exceptions import ApplicationError
from operations import services as operation_services
from operations.models import OperationRun
from operations.tasks import operation_run_execute
from surveys.planning import survey_forecast, survey_plan
from surveys import prolific as prolific_client
from surveys.models import Participant, ProlificStudy
from surveys.prolific import NOT_CONFIGURED, ProlificClient, ProlificError, prolific_enabled
from surveys.selectors import OUTCOME_CODE_FIELD, participant_completion
from surveys.services import survey_create, survey_publish
from surveys.services.enrollment import participant_enroll
from surveys.services.prolific import (
    CODE_TYPES,
    DESCRIPTIONS,
    URL_PARAMETERS,
    prolific_internal_name,
    prolific_places_from_forecast,
    prolific_places_set,
    prolific_study_create,
)
from surveys.tasks import prolific_places_from_forecast_task, prolific_study_pause_when_done
from teams.actors import Actor
from teams.models import AuditEntry, Role
from teams.services import membership_set, team_create
from tests.conftest import free_port
from tests.surveys.fake_prolific import OPENAPI, FakeProlific

pytestmark = pytest.mark.django_db

TOKEN = "test-token-123"
CHANGELIST = "/admin/surveys/survey/"
REVIEW_QUEUED = ("the review of its Prolific submissions is queued; the survey's page shows its progress and each "
                 "submission's outcome.")


@pytest.fixture
def fake(settings):
    with FakeProlific(token=TOKEN) as server:
        settings.PROLIFIC_API_TOKEN = TOKEN
        settings.PROLIFIC_API_URL = server.url
        settings.PROLIFIC_CURRENCY = "GBP"
        settings.PROLIFIC_PROJECT_ID = ""
        # Retries as in production, but waits of milliseconds (a Retry-After is cut to the longest wait).
        settings.PROLIFIC_RETRY_TOTAL = 4
        settings.PROLIFIC_RETRY_BACKOFF_S = 0.001
        settings.PROLIFIC_RETRY_WAIT_MAX_S = 0.01
        settings.PROLIFIC_TASK_RETRIES = 3
        settings.PROLIFIC_TASK_BACKOFF_S = 0
        yield server


@pytest.fixture
def admin_client(researcher):
    client = Client()
    client.force_login(researcher)
    return client


def act(client, action: str, survey, **fields) -> list[str]:
    """Run an admin action on one survey; the messages it left."""
    response = client.post(CHANGELIST, {"action": action, "_selected_action": [survey.pk], **fields}, follow=True)
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def draft(client, survey, places=20, **fields) -> ProlificStudy:
    fields = {"reward_pence": 150, "minutes": 10, **fields}
    messages = act(client, "prolific_create", survey, apply="1", places=places, **fields)
    assert any("draft study" in m for m in messages), messages
    return ProlificStudy.objects.get(survey=survey)


def reviewed(client, survey, capture) -> OperationRun:
    """The admin's review: queued by the request (which sends nothing to Prolific), then run as a worker runs it."""
    with capture(execute=False) as queued:
        messages = act(client, "prolific_review", survey)
    assert messages == [f"{survey.slug}: {REVIEW_QUEUED}"] and len(queued) == 1
    run = OperationRun.objects.filter(kind="prolific_review", subject_id=survey.pk).order_by("-id").first()
    assert run.status == OperationRun.Status.QUEUED
    operation_run_execute(run.pk)
    run.refresh_from_db()
    return run


def session(survey, pid: str, status: str, session_id: str = "") -> Participant:
    return Participant.objects.create(survey=survey, prolific_pid=pid, status=status, session_id=session_id)


def test_the_story_from_a_draft_to_approvals_through_busy_and_failing_moments(
        fake, admin_client, live_survey, researcher, settings, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(prolific_client, "PAGE_SIZE", 2)  # several pages of submissions
    form = admin_client.post(CHANGELIST, {"action": "prolific_create", "_selected_action": [live_survey.pk]})
    assert form.status_code == 200 and b"reward" in form.content and not fake.requests

    fake.fail(429, method="POST", path="studies/", times=2)  # busy: Prolific did nothing, so the client sends again
    study = draft(admin_client, live_survey, places=20)

    (body,) = [c["body"] for c in fake.calls("POST", "studies/") if c["status"] == 201]
    assert body["external_study_url"] == f"{settings.SITE_URL}/s/{live_survey.slug}/?{URL_PARAMETERS}"
    assert body["prolific_id_option"] == "url_parameters"
    assert (body["total_available_places"], body["reward"], body["estimated_completion_time"]) == (20, 150, 10)
    assert body["internal_name"] == prolific_internal_name(survey=live_survey) and "project" not in body
    assert (study.status, study.places, study.reward) == ("UNPUBLISHED", 20, 150)

    fake.publish(study.study_id)  # the researcher publishes it on Prolific's site
    fake.fail(503, method="PATCH", after=True)  # Prolific set the places, its answer was lost: setting again is safe
    prolific_places_set(survey=live_survey, places=30, actor=Actor.of_user(researcher))
    with pytest.raises(ApplicationError, match="only lets places grow once a study is published") as refused:
        prolific_places_set(survey=live_survey, places=25, actor=Actor.of_user(researcher))

    assert fake.studies[study.study_id]["total_available_places"] == 30
    assert "30 places, so 25 would be a decrease" in refused.value.message
    assert [c["status"] for c in fake.calls("PATCH", r"studies/\w+/")] == [503, 200]

    fake.fail(429, path=r"studies/\w+/transition/")
    assert act(admin_client, "prolific_pause", live_survey) == [f"{live_survey.slug}: the Prolific study is paused."]
    assert act(admin_client, "prolific_pause", live_survey) == [f"{live_survey.slug}: the Prolific study is already PAUSED."]
    assert fake.studies[study.study_id]["status"] == "PAUSED"

    s = live_survey
    seeded = {  # name: (session here, code entered on Prolific)
        "done": (session(s, "P-done", "completed", session_id="S-done"), s.completion_code),
        "no-session": (None, s.completion_code),
        "timed-out": (session(s, "P-late", "timed_out", session_id="S-late"), s.code_timed_out),
        "attention": (session(s, "P-attn", "failed_attention", session_id="S-attn"), s.code_failed_attention),
        "code-but-failed": (session(s, "P-sly", "failed_attention", session_id="S-sly"), s.completion_code),
        "technical": (session(s, "P-tech", "technical", session_id="S-tech"), s.code_technical),
        "old-link": (session(s, "P-old-link", "completed"), s.completion_code),  # no SESSION_ID: joined by PID
    }
    ids = {name: fake.seed_submission(study.study_id, participant_id=p.prolific_pid if p else f"P-{name}",
                                      study_code=code, submission_id=p.session_id if p and p.session_id else None)
           for name, (p, code) in seeded.items()}
    reviewed_before = fake.seed_submission(study.study_id, participant_id="P-old", study_code=s.completion_code,
                                           status="APPROVED")
    fake.fail(500, path="submissions/bulk-approve/", after=True)  # approved, answer lost: approving again is ignored
    fake.fail(429, path="submissions/")

    first = reviewed(admin_client, live_survey, django_capture_on_commit_callbacks)
    again = reviewed(admin_client, live_survey, django_capture_on_commit_callbacks)

    assert first.status == again.status == OperationRun.Status.DONE
    assert first.progress_message == ("3 approved, 1 asked to return, 2 failed the attention check and 1 other(s) left "
                                      "for you to review on Prolific.")
    assert again.progress_message == ("0 approved, 1 asked to return, 2 failed the attention check and 1 other(s) left "
                                      "for you to review on Prolific.")
    outcomes = {o["id"]: o["outcome"] for o in first.result["submissions"]}
    assert outcomes == {ids["done"]: "approved", ids["no-session"]: "approved", ids["old-link"]: "approved",
                        ids["timed-out"]: "return_requested", ids["attention"]: "failed_attention",
                        ids["code-but-failed"]: "failed_attention", ids["technical"]: "left"}
    assert {o["id"]: o["outcome"] for o in again.result["submissions"]}[ids["timed-out"]] == "return_requested_before"
    status = {name: fake.submissions[i]["status"] for name, i in ids.items()}
    assert status == {"done": "APPROVED", "no-session": "APPROVED", "timed-out": "AWAITING REVIEW",
                      "attention": "AWAITING REVIEW", "code-but-failed": "AWAITING REVIEW", "technical": "AWAITING REVIEW",
                      "old-link": "APPROVED"}
    assert sorted(fake.approvals) == sorted([ids["done"], ids["no-session"], ids["old-link"]]), "each approved once"
    assert fake.returns == [ids["timed-out"]], "asked to return once, not again by the second review"
    assert fake.submissions[ids["timed-out"]]["return_reasons"] == ["Didn't finish the study"]
    listed = fake.calls("GET", "submissions/")
    assert {c["query"].get("status") for c in listed} == {"AWAITING_REVIEW"} and len(listed) > 3, "filtered and paged"
    assert not fake.calls("POST", r"submissions/\w+/transition/"), "approvals go through bulk-approve"
    assert reviewed_before not in fake.approvals

    entries = AuditEntry.objects.filter(team=s.team, action__startswith="prolific_study.")
    assert list(entries.order_by("id").values_list("action", flat=True)) == [
        "prolific_study.create", "prolific_study.places", "prolific_study.pause", "prolific_study.review",
        "prolific_study.review"]
    review = entries.filter(action="prolific_study.review").order_by("id").first()
    assert review.details["approved"] == 3 and "P-done" not in str(review.details), "counts only, no participant IDs"
    page = admin_client.get(f"{CHANGELIST}{s.pk}/change/").content.decode()
    assert study.study_id in page and "PAUSED" in page
    assert "Prolific review Done (100%) 0 approved, 1 asked to return" in page, "the latest review, as the run ended"


def test_a_refused_request_is_recorded_for_its_submission_and_the_others_go_on(
        fake, admin_client, live_survey, django_capture_on_commit_callbacks):
    study = draft(admin_client, live_survey)
    fake.publish(study.study_id)
    s = live_survey
    late = [fake.seed_submission(study.study_id, participant_id=f"P-late-{i}", study_code=s.code_timed_out)
            for i in range(2)]
    done = [fake.seed_submission(study.study_id, participant_id=f"P-done-{i}", study_code=s.completion_code)
            for i in range(2)]
    fake.fail(502, path=r"submissions/\w+/request-return/")  # the first return request is lost: not sent again

    run = reviewed(admin_client, live_survey, django_capture_on_commit_callbacks)

    outcomes = {o["id"]: o for o in run.result["submissions"]}
    assert outcomes[late[0]]["outcome"] == "error" and "Prolific answered 502" in outcomes[late[0]]["error"]
    assert [outcomes[i]["outcome"] for i in (late[1], *done)] == ["return_requested", "approved", "approved"]
    assert run.status == OperationRun.Status.DONE and run.result["counts"]["errors"] == 1
    assert run.progress_message.endswith("1 refused by Prolific: see each submission's outcome.")
    assert sorted(fake.approvals) == sorted(done) and fake.returns == [late[1]]
    study.refresh_from_db()
    assert study.last_error == outcomes[late[0]]["error"]
    page = admin_client.get(f"{CHANGELIST}{s.pk}/change/").content.decode()
    assert f"submission {late[0]}: Prolific answered 502" in page


def test_approvals_go_in_requests_of_at_most_prolifics_documented_thousand_with_progress(
        fake, admin_client, live_survey, django_capture_on_commit_callbacks, monkeypatch):
    study = draft(admin_client, live_survey)
    fake.publish(study.study_id)
    for i in range(1001):
        fake.seed_submission(study.study_id, participant_id=f"P-{i}", study_code=live_survey.completion_code)
    seen = []
    monkeypatch.setattr(operation_services, "operation_run_progress",
                        lambda run_id, progress, message="": seen.append((round(progress, 2), message)))

    run = reviewed(admin_client, live_survey, django_capture_on_commit_callbacks)

    sizes = [len(c["body"]["submission_ids"]) for c in fake.calls("POST", "submissions/bulk-approve/")]
    assert sizes == [1000, 1] and len(fake.approvals) == 1001
    assert run.result["counts"]["approved"] == 1001
    assert seen[1:3] == [(0.5, "1 of 2 request(s) to Prolific sent"), (1.0, "2 of 2 request(s) to Prolific sent")]


def survey_with_every_ending(iri_set):
    """Catch and practice trials (failing them is a failed attention check) and desktop only (a phone is
    screened out): every code a participant can be shown is in use."""
    survey = survey_create(slug="endings", title="Which is closer?", iri_jobs=[iri_set], rng_seed=1, catch_trials=1,
                           practice_trials=1, desktop_only=True)
    return survey_publish(survey=survey)


def test_every_code_a_participant_can_be_shown_is_declared_on_the_study(fake, admin_client, iri_set):
    survey = survey_with_every_ending(iri_set)
    draft(admin_client, survey)
    (body,) = fake.bodies("POST", "studies/")
    declared = {c["code"]: c["code_type"] for c in body["completion_codes"]}

    shown = {}
    for ending in Participant.Status:
        if ending != Participant.Status.ACTIVE:
            person = session(survey, f"P-{ending}", ending)
            shown[ending] = participant_completion(participant=person)["completion_code"]
    with pytest.raises(ApplicationError) as phone:
        participant_enroll(survey=survey, prolific_pid="P-phone", session_id="S-phone", client={"touch": True})
    shown["phone refused"] = phone.value.extra["completion_code"]

    assert all(code in declared for code in shown.values()), {e: c for e, c in shown.items() if c not in declared}
    assert declared[survey.code_screened_out] == "SCREENED_OUT" == declared[shown["phone refused"]]
    assert declared[survey.completion_code] == "COMPLETED"
    assert declared[survey.code_failed_attention] == "FAILED_ATTENTION_CHECK"
    assert all(c["actions"] == [{"action": "MANUALLY_REVIEW"}] for c in body["completion_codes"])
    assert set(OUTCOME_CODE_FIELD.values()) <= set(CODE_TYPES), "a new ending needs its code type"


def test_a_survey_declares_only_the_codes_it_can_hand_out(fake, admin_client, live_survey):
    draft(admin_client, live_survey)  # no catch, practice or screening trials; phones welcome

    (body,) = fake.bodies("POST", "studies/")
    s = live_survey
    assert [(c["code"], c["code_type"]) for c in body["completion_codes"]] == [
        (s.completion_code, "COMPLETED"), (s.code_timed_out, "OTHER"), (s.code_technical, "OTHER")]


def test_the_draft_takes_its_time_from_the_pilot_and_its_words_from_the_task(fake, admin_client, live_survey):
    study = draft(admin_client, live_survey, reward_pence="", minutes="", places=5)  # all left to the survey
    long_one = ProlificStudy.objects.get(pk=study.pk)
    long_one.delete()
    fake.studies.clear()
    draft(admin_client, live_survey, reward_pence=450, minutes=30, places=5)

    first, second = fake.bodies("POST", "studies/")
    trials = round(live_survey.trials.filter(kind="main").count() / live_survey.trial_lists.count())
    minutes = math.ceil((trials * 5 + 120) / 60)  # no session yet: the planner's defaults, 5 s a trial + 120 s
    assert first["estimated_completion_time"] == minutes
    assert first["reward"] == math.ceil(9 * minutes / 60 * 100), "£9/h, Prolific's recommended pay"
    assert first["description"].startswith(DESCRIPTIONS[live_survey.task_type])
    assert second["maximum_allowed_time"] == 73 > live_survey.time_limit_minutes, "2 + 2·30 + 2·√30 = 72.95 minutes"
    assert set(DESCRIPTIONS) == set(live_survey.TaskType), "every task type says what participants do"


def test_the_reward_follows_the_workspace_currency(fake, admin_client, live_survey, settings):
    settings.PROLIFIC_CURRENCY = fake.currency = "USD"
    form = admin_client.post(CHANGELIST, {"action": "prolific_create", "_selected_action": [live_survey.pk]})
    plan = survey_plan(survey=live_survey, half_width=0.1, rate_per_hour=7)

    refused = act(admin_client, "prolific_create", live_survey, apply="1", reward_pence=100, minutes=10, places=5)
    study = draft(admin_client, live_survey, reward_pence="", minutes=10, places=5)

    assert "$8.00/h" in form.content.decode() and "$12.00/h" in form.content.decode()
    assert plan["currency"] == "USD" and plan["rate_per_hour"] == 7
    assert any(w.startswith("rate_per_hour: $7.00/h is below Prolific's minimum of $8/h") for w in plan["warnings"])
    assert survey_plan(survey=live_survey, half_width=0.1)["rate_per_hour"] == 12, "the recommended $12/h"
    assert refused == [f"{live_survey.slug}: Prolific answered 400: Invalid request reward: The reward per hour "
                       "($6.00) is below the minimum of $8.00 per hour."], "Prolific's words, naming the field"
    assert study.reward == 200, "$12/h for 10 minutes"


def test_the_project_is_sent_when_set(fake, admin_client, live_survey, settings):
    settings.PROLIFIC_PROJECT_ID = "project-42"

    draft(admin_client, live_survey)

    assert fake.bodies("POST", "studies/")[0]["project"] == "project-42"


def test_a_draft_whose_answer_was_lost_is_found_and_reused_not_made_twice(fake, admin_client, live_survey,
                                                                          monkeypatch):
    fake.fail(502, method="POST", path="studies/", after=True)  # made on Prolific; the answer never came
    lost = act(admin_client, "prolific_create", live_survey, apply="1", reward_pence=150, minutes=10, places=5)
    waiting = act(admin_client, "prolific_pause", live_survey)
    found = draft(admin_client, live_survey, places=5)

    assert "Prolific answered 502" in lost[0] and "found and reused, not made twice" in lost[0]
    assert "not recorded here" in waiting[0]
    assert len(fake.studies) == 1 and found.study_id in fake.studies
    assert len(fake.calls("POST", "studies/")) == 1, "no second draft was asked for"

    # The same when the draft is made but its local record cannot be saved.
    found.delete()
    fake.studies.clear()
    real_save = ProlificStudy.save

    def save_fails_once(self, *args, **kwargs):
        if self.status != "CREATING":
            monkeypatch.setattr(ProlificStudy, "save", real_save)
            raise DatabaseError("the database went away")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(ProlificStudy, "save", save_fails_once)
    unsaved = act(admin_client, "prolific_create", live_survey, apply="1", reward_pence=150, minutes=10, places=5)
    recorded = draft(admin_client, live_survey, places=5)

    assert "try again in a minute" in unsaved[0]
    assert len(fake.studies) == 1 and recorded.study_id in fake.studies and recorded.status == "UNPUBLISHED"


def test_prolific_refuses_what_the_old_client_sent_and_the_fake_knows_it(fake, live_survey):
    """Each rule of the fake, seen rejecting what the client used to send (tests that can fail)."""
    client = ProlificClient()
    old_body = {  # max(time limit, estimate) as maximum time, and a code type Prolific does not know
        "name": "t", "description": "d", "external_study_url": "https://x/s/", "prolific_id_option": "url_parameters",
        "completion_codes": [{"code": "A", "code_type": "DONE", "actions": [{"action": "MANUALLY_REVIEW"}]}],
        "total_available_places": 5, "estimated_completion_time": 25, "maximum_allowed_time": 60, "reward": 375,
    }
    refusals = {}
    for name, change in {
        "code_type": {},
        "maximum_allowed_time": {"completion_codes": [{"code": "A", "code_type": "COMPLETED", "actions": []}]},
        "reward": {"completion_codes": [], "maximum_allowed_time": 80, "reward": 200},
    }.items():
        with pytest.raises(ProlificError) as refused:
            client.study_create(**{**old_body, **change})
        refusals[name] = refused.value
    study = client.study_create(**{**old_body, "completion_codes": [], "maximum_allowed_time": 80})
    fake.publish(study["id"])
    client.study_transition(study["id"], "PAUSE")
    with pytest.raises(ProlificError, match="Cannot PAUSE a study that is PAUSED"):
        client.study_transition(study["id"], "PAUSE")
    stopped = client.study_transition(study["id"], "STOP")
    with pytest.raises(ProlificError, match="not an operation of Prolific's API"):
        client._request("GET", f"studies/{study['id']}/submissions/", repeatable=True)  # the old listing

    assert refusals["code_type"].fields == ("completion_codes.0.code_type",)
    assert refusals["maximum_allowed_time"].fields == ("maximum_allowed_time",), "60 < 2 + 50 + 10 minutes"
    assert refusals["reward"].fields == ("reward",) and "£4.80" in refusals["reward"].message
    assert stopped["status"] == "COMPLETED"
    assert "SCREENED_OUT" in OPENAPI["components"]["schemas"]["CreateStudyCompletionCodesItemsCodeType"]["enum"]


def test_submissions_are_followed_over_pages_on_prolifics_host_only(fake, live_survey, monkeypatch):
    monkeypatch.setattr(prolific_client, "PAGE_SIZE", 2)
    client = ProlificClient()
    study = client.study_create(name="t", description="d", external_study_url="https://x/s/",
                                prolific_id_option="url_parameters", total_available_places=9,
                                estimated_completion_time=10, maximum_allowed_time=60, reward=150, completion_codes=[])
    seeded = [fake.seed_submission(study["id"], participant_id=f"P{i}", study_code="C") for i in range(5)]
    fake.seed_submission(study["id"], participant_id="P-paid", study_code="C", status="APPROVED")

    seen = {}
    for style in ("relative", "absolute", None):
        fake.next_links = style
        seen[style] = [s["id"] for s in client.submission_list(study["id"], status="AWAITING_REVIEW")]
    fake.next_links = "absolute"
    monkeypatch.setattr(fake, "url", "http://elsewhere.example/api/v1/")
    with pytest.raises(ProlificError, match="points away from its API"):
        client.submission_list(study["id"])

    assert seen == {"relative": seeded, "absolute": seeded, None: seeded}
    assert all(c["query"]["page_size"] == "2" for c in fake.calls("GET", "submissions/") if "page_size" in c["query"])


def test_the_pause_task_retries_until_prolific_answers(fake, admin_client, live_survey):
    study = draft(admin_client, live_survey)
    fake.publish(study.study_id)
    fake.fail(429, path=r"studies/\w+/", times=7)  # the client's 5 tries fail, the task's second run gets through

    result = prolific_study_pause_when_done.apply(args=[live_survey.pk]).get()
    again = prolific_study_pause_when_done.apply(args=[live_survey.pk]).get()

    assert result == {"paused": True, "status": "PAUSED"} and again == {"paused": False, "status": "PAUSED"}
    assert fake.studies[study.study_id]["status"] == "PAUSED"
    entry = AuditEntry.objects.get(action="prolific_study.pause")
    assert entry.user is None and entry.team == live_survey.team
    assert prolific_study_pause_when_done.apply(args=[live_survey.pk + 1000]).get() is None, "no study: nothing to do"


def test_a_pause_that_never_gets_through_is_shown_on_the_survey_page_and_in_the_audit_log(
        fake, admin_client, live_survey):
    study = draft(admin_client, live_survey)
    fake.publish(study.study_id)
    fake.fail(503, path=r"studies/\w+/", times=1000)

    result = prolific_study_pause_when_done.apply(args=[live_survey.pk]).get()

    study.refresh_from_db()
    assert result["tries"] == 4 and fake.studies[study.study_id]["status"] == "ACTIVE"
    assert study.last_error == ("pause failed in the background after 4 tries: Prolific answered 503: Service "
                                "Unavailable Please try again later.")
    assert len(fake.calls("GET", r"studies/\w+/")) == 4 * 5, "4 runs of the task, 5 tries of the client each"
    entry = AuditEntry.objects.get(action="prolific_study.pause_failed")
    assert entry.team == live_survey.team and entry.details["tries"] == 4
    page = admin_client.get(f"{CHANGELIST}{live_survey.pk}/change/").content.decode()
    assert "pause failed in the background after 4 tries" in page


def test_places_follow_the_forecast_and_only_grow_once_published(fake, admin_client, live_survey, researcher):
    study = draft(admin_client, live_survey, places=50)
    session(live_survey, "P-1", "completed")
    session(live_survey, "P-2", "failed_attention")
    session(live_survey, "P-3", "timed_out")  # its place is free again on Prolific

    on_draft = prolific_places_from_forecast(survey=live_survey, actor=Actor.of_user(researcher), forecast={"participants_still_needed": 7})
    fake.publish(study.study_id)
    grown = prolific_places_from_forecast(survey=live_survey, actor=Actor.of_user(researcher), forecast={"participants_still_needed": 40})
    kept = prolific_places_from_forecast(survey=live_survey, actor=Actor.of_user(researcher), forecast={"participants_still_needed": 3})

    assert on_draft == {"places": 9, "target": 9, "changed": True}, "a draft may shrink: 2 finished + 7 needed"
    assert grown == {"places": 42, "target": 42, "changed": True}
    assert kept == {"places": 42, "target": 5, "changed": False}
    assert fake.studies[study.study_id]["total_available_places"] == 42


def test_without_a_goal_the_places_are_the_live_quota(fake, admin_client, live_survey):
    study = draft(admin_client, live_survey, places=3)
    slots = live_survey.slots.filter(is_pilot=False).count()  # trial lists x N

    all_lists = act(admin_client, "prolific_places", live_survey)
    live_survey.max_participants = slots - 2
    live_survey.save()
    fake.publish(study.study_id)
    capped = act(admin_client, "prolific_places", live_survey)

    assert all_lists == [f"{live_survey.slug}: the Prolific study now has {slots} places."]
    assert capped == [f"{live_survey.slug}: the Prolific study keeps its {slots} places (the forecast needs {slots - 2})."]
    assert fake.studies[study.study_id]["total_available_places"] == slots


def test_without_a_token_prolific_is_off_and_every_action_says_so(fake, admin_client, live_survey, settings):
    settings.PROLIFIC_API_TOKEN = ""
    ProlificStudy.objects.create(survey=live_survey, study_id="abc123", status="ACTIVE", places=5, reward=100)

    assert not prolific_enabled()
    for action in ("prolific_places", "prolific_pause", "prolific_review"):
        assert act(admin_client, action, live_survey) == [f"{live_survey.slug}: {NOT_CONFIGURED}"]
    created = act(admin_client, "prolific_create", live_survey, apply="1", reward_pence=150, minutes=10, places=5)
    assert created == [f"{live_survey.slug}: Prolific is not configured: set PROLIFIC_API_TOKEN."]
    assert prolific_study_pause_when_done.apply(args=[live_survey.pk]).get() is None
    assert not fake.requests


def test_prolific_refusals_and_outages_are_messages_not_500s(fake, admin_client, live_survey, settings,
                                                            django_capture_on_commit_callbacks):
    study = draft(admin_client, live_survey)

    paused_draft = act(admin_client, "prolific_pause", live_survey)
    fake.fail(500, times=5)  # every try of the listing
    failed = reviewed(admin_client, live_survey, django_capture_on_commit_callbacks)
    study.refresh_from_db()
    last_error = study.last_error
    fake.fail(429, times=5, retry_after=3600)  # a long Retry-After is cut to the longest wait, then given up
    throttled = act(admin_client, "prolific_places", live_survey)
    settings.PROLIFIC_API_TOKEN = "a-revoked-token"
    unauthorised = act(admin_client, "prolific_places", live_survey)
    settings.PROLIFIC_API_URL = f"http://127.0.0.1:{free_port()}/api/v1/"
    unreachable = act(admin_client, "prolific_pause", live_survey)

    slug = live_survey.slug
    assert paused_draft == [f"{slug}: The Prolific study {study.study_id} is still a draft (UNPUBLISHED): there is nothing to pause."]
    assert failed.status == OperationRun.Status.FAILED
    assert failed.error == "Prolific answered 500: Internal Server Error Please try again later."
    assert last_error == "Prolific answered 500: Internal Server Error Please try again later."
    assert throttled == [f"{slug}: Prolific answered 429: Too Many Requests Request was throttled. Expected available "
                         "in a moment."]
    assert unauthorised == [f"{slug}: Prolific answered 401: Unauthorized Authentication credentials were not provided."]
    assert unreachable == [f"{slug}: Prolific did not answer (ConnectionError); nothing was changed here, try again."]


def test_a_study_is_created_once_and_with_distinct_codes(fake, admin_client, live_survey, researcher):
    study_id = draft(admin_client, live_survey).study_id

    again = act(admin_client, "prolific_create", live_survey, apply="1", reward_pence=150, minutes=10, places=5)
    live_survey.prolific_study.delete()
    live_survey.code_technical = live_survey.code_timed_out
    live_survey.save()
    with pytest.raises(ApplicationError, match="code_timed_out and code_technical share one"):
        prolific_study_create(survey=live_survey, reward_pence=150, minutes=10, places=5, actor=Actor.of_user(researcher))

    assert again == [f"{live_survey.slug}: {live_survey.slug} already has a Prolific study ({study_id})."]
    assert len(fake.studies) == 1 and not ProlificStudy.objects.exists()


def test_another_team_cannot_act_on_the_study(fake, admin_client, live_survey, django_user_model):
    study = draft(admin_client, live_survey)
    fake.publish(study.study_id)
    lab_b = team_create(name="Lab B")
    outsider = django_user_model.objects.create_user(username="bob", password="pw-bob-123", is_staff=True)
    membership_set(team=lab_b, user=outsider, role=Role.RESEARCHER)
    client = Client()
    client.force_login(outsider)
    seen = len(fake.requests)

    for action in ("prolific_create", "prolific_places", "prolific_pause", "prolific_review"):
        response = client.post(CHANGELIST, {"action": action, "_selected_action": [live_survey.pk], "apply": "1",
                                            "reward_pence": 1, "minutes": 1, "places": 1})
        assert response.status_code in (200, 302)
    page = client.get(f"{CHANGELIST}{live_survey.pk}/change/")

    assert page.status_code in (302, 404)
    assert len(fake.requests) == seen, "nothing reached Prolific"
    assert fake.studies[study.study_id]["status"] == "ACTIVE"
    assert not AuditEntry.objects.filter(user=outsider).exists()


def test_with_a_goal_the_places_come_from_the_planners_forecast(fake, admin_client, iri_set):
    survey = survey_publish(survey=survey_create(slug="adaptive", title="t", iri_jobs=[iri_set], precision_goal=0.25))
    study = draft(admin_client, survey, places=1)
    session(survey, "P-1", "completed")
    needed = survey_forecast(survey=survey)["participants_still_needed"]

    messages = act(admin_client, "prolific_places", survey)

    assert needed >= 1 and messages == [f"adaptive: the Prolific study now has {1 + needed} places."]
    assert fake.studies[study.study_id]["total_available_places"] == 1 + needed


def test_the_places_task_gives_an_active_study_the_places_the_forecast_asks_for(fake, admin_client, iri_set):
    survey = survey_publish(survey=survey_create(slug="adaptive", title="t", iri_jobs=[iri_set], precision_goal=0.25))
    study = draft(admin_client, survey, places=1)
    fake.publish(study.study_id)
    needed = survey_forecast(survey=survey)["participants_still_needed"]
    fake.fail(502, method="PATCH", times=5)  # the first run's every try: the task runs again

    result = prolific_places_from_forecast_task.apply(args=[survey.pk]).get()

    assert result == {"places": needed, "target": needed, "changed": True}
    assert fake.studies[study.study_id]["total_available_places"] == needed
    assert [c["status"] for c in fake.calls("PATCH", r"studies/\w+/")] == [502] * 5 + [200]
