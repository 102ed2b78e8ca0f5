"""The review of a survey's Prolific submissions, as an operation run: the admin starts it (one run per review; a
second while one runs is refused), a worker sends Prolific's requests with progress, and the run keeps each
submission's outcome; one refused request is recorded and the others go on.

Every submission AWAITING REVIEW (Prolific's status filter, every page) is approved when the session completed here
(or, with no session here, the completion code was entered), in bulk-approve requests of at most BULK_APPROVE_MAX
(Prolific's documented limit); a return is requested for timed-out and returned sessions (once: a submission
already asked is skipped); failed attention checks and everything else are left to the researcher and counted.
"""
from __future__ import annotations

from backend.exceptions import ApplicationError
from operations.models import OperationRun
from operations.registry import Progress
from operations.selectors import operation_run_list_of_subject
from operations.services import operation_run_create
from teams.actors import Actor

from ..models import Participant, Survey
from ..prolific import BULK_APPROVE_MAX, ProlificClient, ProlificError
from .prolific import AWAITING_REVIEW, RETURN_REASONS, _audit, _call, _client, _study_of

PROLIFIC_REVIEW_KIND = "prolific_review"
REVIEW_RUNNING = "a review of its Prolific submissions is already running (run {run}); the survey's page shows how far."
SUMMARY = ("{approved} approved, {return_requested} asked to return, {failed_attention} failed the attention check and "
           "{left} other(s) left for you to review on Prolific.")
ERRORS = " {errors} refused by Prolific: see each submission's outcome."


def prolific_review_start(*, survey: Survey, actor: Actor | None = None) -> OperationRun:
    """Queue the review of the survey's submissions for a worker (audited as survey.prolific_review). Refused at once
    (with the reason) when Prolific is not configured, the survey has no study, or a review of it is queued or
    running."""
    _client()
    study = _study_of(survey)
    running = prolific_review_runs(survey=survey).filter(
        status__in=(OperationRun.Status.QUEUED, OperationRun.Status.RUNNING)).first()
    if running is not None:
        raise ApplicationError(REVIEW_RUNNING.format(run=running.pk))
    return operation_run_create(kind=PROLIFIC_REVIEW_KIND, subject=survey, params={"study_id": study.study_id},
                                actor=actor)


def prolific_review_runs(*, survey: Survey):
    """The survey's reviews, newest first (for a caller that loaded the survey through the scoped selectors)."""
    return operation_run_list_of_subject(subject=survey, kind=PROLIFIC_REVIEW_KIND)


def prolific_review_summary(counts: dict) -> str:
    return SUMMARY.format(**counts) + (ERRORS.format(**counts) if counts["errors"] else "")


def prolific_review_run(run: OperationRun, progress: Progress) -> dict:
    """A worker's review (the operation kind): prolific_submissions_review with the run's progress, audited as done
    by the run's author."""
    survey = Survey.objects.select_related("team").get(pk=run.subject_id)
    actor = Actor.of_user(run.created_by) if run.created_by else Actor.task(PROLIFIC_REVIEW_KIND)
    return prolific_submissions_review(survey=survey, actor=actor, progress=progress)


def prolific_submissions_review(*, survey: Survey, actor: Actor | None = None, progress: Progress | None = None) -> dict:
    """Review every submission awaiting it (see the module): {"counts": ..., "submissions": [one outcome each: id,
    decision, outcome (approved, return_requested, return_requested_before, failed_attention, left or error) and
    the error's words]}. Progress goes by requests sent; the last refusal is also the study's last error."""
    progress = progress or (lambda fraction, message="": None)
    client = _client()
    study = _study_of(survey)
    progress(0.0, "listing the submissions awaiting review")
    submissions = _call(study, lambda: client.submission_list(study.study_id, status="AWAITING_REVIEW"))
    submissions = [s for s in submissions if s.get("status") == AWAITING_REVIEW]
    sessions = _sessions_of(survey, submissions)
    outcomes = {s["id"]: {"id": s["id"], "decision": _review_decision(s, sessions[s["id"]], survey)} for s in submissions}
    returns = [s for s in submissions if outcomes[s["id"]]["decision"] == "return"]
    approvals = [s["id"] for s in submissions if outcomes[s["id"]]["decision"] == "approve"]
    batches = [approvals[i:i + BULK_APPROVE_MAX] for i in range(0, len(approvals), BULK_APPROVE_MAX)]
    requests = max(1, len(returns) + len(batches))

    def sent(done: int) -> None:
        progress(done / requests, f"{done} of {requests} request(s) to Prolific sent")

    for done, submission in enumerate(returns, start=1):
        _return_request(client, submission, sessions[submission["id"]], outcomes[submission["id"]])
        sent(done)
    for done, batch in enumerate(batches, start=len(returns) + 1):
        _approve(client, batch, outcomes)
        sent(done)
    for outcome in outcomes.values():
        outcome.setdefault("outcome", outcome["decision"])  # left to the researcher: failed_attention, left
    counts = _counts(outcomes.values())
    study.last_error = next((o["error"] for o in reversed(outcomes.values()) if o.get("error")), "")
    study.save(update_fields=["last_error", "updated_at"])
    _audit("review", study, actor=actor, details=counts)  # counts only: no participant IDs
    progress(1.0, prolific_review_summary(counts))
    return {"counts": counts, "submissions": list(outcomes.values())}


def _return_request(client: ProlificClient, submission: dict, participant: Participant | None, outcome: dict) -> None:
    if submission.get("return_requested"):  # asked by an earlier review: a second message would only nag
        outcome["outcome"] = "return_requested_before"
        return
    reasons = RETURN_REASONS[participant.status if participant else Participant.Status.TIMED_OUT]
    try:
        client.submission_request_return(submission["id"], reasons)
        outcome["outcome"] = "return_requested"
    except ProlificError as exc:  # one refusal does not stop the others
        outcome.update(outcome="error", error=exc.message)


def _approve(client: ProlificClient, batch: list[str], outcomes: dict) -> None:
    try:
        client.submission_bulk_approve(batch)
        for submission_id in batch:
            outcomes[submission_id]["outcome"] = "approved"
    except ProlificError as exc:  # still awaiting review: the next review approves them
        for submission_id in batch:
            outcomes[submission_id].update(outcome="error", error=exc.message)


def _counts(outcomes) -> dict:
    counts = {"approved": 0, "return_requested": 0, "failed_attention": 0, "left": 0, "errors": 0}
    for outcome in outcomes:
        name = {"error": "errors", "return_requested_before": "return_requested"}.get(outcome["outcome"],
                                                                                    outcome["outcome"])
        counts[name] += 1
    return counts


def _review_decision(submission: dict, participant: Participant | None, survey: Survey) -> str:
    """approve / return / failed_attention / left. The local session's outcome decides where there is one (the
    completion code is the same for everyone, so a code alone proves less); otherwise the code does."""
    if participant is not None:
        outcome = participant.status
    else:
        outcome = {
            survey.completion_code: Participant.Status.COMPLETED,
            survey.code_failed_attention: Participant.Status.FAILED_ATTENTION,
            survey.code_timed_out: Participant.Status.TIMED_OUT,
        }.get(submission.get("study_code") or "")
    if outcome == Participant.Status.COMPLETED:
        return "approve"
    if outcome in RETURN_REASONS:
        return "return"
    if outcome == Participant.Status.FAILED_ATTENTION:
        return "failed_attention"
    return "left"  # a technical exit or screening (the researcher decides on pay), still active, no or unknown code


def _sessions_of(survey: Survey, submissions: list[dict]) -> dict[str, Participant]:
    """The local session of each submission, by its id: Prolific's submission id is the SESSION_ID the participant
    arrived with. A session stored without one (an old link) is found by the Prolific ID instead."""
    live = Participant.objects.filter(survey=survey, is_pilot=False)
    by_session = {p.session_id: p for p in live.filter(session_id__in=[s["id"] for s in submissions])}
    by_pid = {p.prolific_pid: p for p in live.filter(session_id="", prolific_pid__in=[s.get("participant_id") for s in submissions])}
    return {s["id"]: by_session.get(s["id"]) or by_pid.get(s.get("participant_id")) for s in submissions}
