"""Prolific from the admin: a survey's draft study, its places (set by hand or from the forecast), its pause when
collection has stopped, and the review of its submissions by completion code. Every write is audit-logged.

Prolific holds the truth about a study (the researcher publishes it, and may change it, on Prolific's site), so
each service reads the study there before changing it and stores what it saw in the survey's ProlificStudy row.
A refusal or an outage on Prolific's side is an ApplicationError with Prolific's own words (status 502), also
kept in `last_error`; nothing is half-done here.
"""
from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from rest_framework import status

from backend.exceptions import ApplicationError
from teams.services import audit_record

from ..models import Participant, ProlificStudy, Slot, Survey
from ..prolific import NOT_CONFIGURED, ProlificClient, ProlificError, prolific_enabled

URL_PARAMETERS = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
DEVICES = ["desktop"]  # two images side by side at their pixel size: phones are too small
UNPUBLISHED = "UNPUBLISHED"
PAUSABLE = ("ACTIVE", "PUBLISHING", "SCHEDULED")
STOPPED = ("PAUSED", "AWAITING REVIEW", "COMPLETED")
AWAITING_REVIEW = "AWAITING REVIEW"
RETURN_REASONS = {  # the wording of Prolific's own request-return options
    Participant.Status.TIMED_OUT: ["Didn't finish the study"],
    Participant.Status.RETURNED: ["Didn't finish the study"],
}
# Sessions that used up a place for good: returned and timed-out submissions free theirs on Prolific.
FINISHED_STATUSES = (Participant.Status.COMPLETED, Participant.Status.FAILED_ATTENTION)

ALREADY_CREATED = "{slug} already has a Prolific study ({study_id})."
NO_STUDY = "{slug} has no Prolific study yet: create the draft first."
SURVEY_CLOSED = "{slug} is closed: a new Prolific study would send people to a survey that takes nobody."
CODES_NOT_DISTINCT = "The completion codes must differ from each other for Prolific: {fields} share one."
POSITIVE = "{field}: must be a whole number of at least 1 (got {value})."
PLACES_DECREASE = (
    "Prolific only lets places grow once a study is published: {study_id} is {status} with {current} places, "
    "so {places} would be a decrease."
)
NOTHING_TO_PAUSE = "The Prolific study {study_id} is still a draft (UNPUBLISHED): there is nothing to pause."


def _client() -> ProlificClient:
    if not prolific_enabled():
        raise ApplicationError(NOT_CONFIGURED, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    return ProlificClient()


def _study_of(survey: Survey) -> ProlificStudy:
    study = ProlificStudy.objects.filter(survey=survey).first()
    if study is None:
        raise ApplicationError(NO_STUDY.format(slug=survey.slug), status_code=status.HTTP_404_NOT_FOUND)
    return study


def _positive(field: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ApplicationError(POSITIVE.format(field=field, value=value), extra={"field": field})
    return value


def _call(study: ProlificStudy | None, request_fn):
    """Run one call to Prolific; its refusal becomes an ApplicationError in Prolific's words, kept on the row."""
    try:
        result = request_fn()
    except ProlificError as exc:
        if study is not None and study.pk:
            ProlificStudy.objects.filter(pk=study.pk).update(last_error=exc.message)
        raise ApplicationError(exc.message, extra={"prolific_status": exc.status_code},
                               status_code=status.HTTP_502_BAD_GATEWAY) from exc
    return result


def _audit(action: str, study: ProlificStudy, *, user=None, request=None, details: dict | None = None) -> None:
    audit_record(action=f"prolific_study.{action}", user=user, request=request, obj=study, team=study.survey.team,
                 details=details)


def _seen(study: ProlificStudy, remote: dict, **changes) -> None:
    """Store what Prolific said about the study."""
    study.status = remote.get("status", study.status)
    study.places = remote.get("total_available_places", study.places)
    for name, value in changes.items():
        setattr(study, name, value)
    study.last_error = ""
    study.save(update_fields=["status", "places", "last_error", "updated_at", *changes])


def prolific_study_link(*, survey: Survey) -> str:
    """The survey's participant link with Prolific's three URL parameters (README "Prolific")."""
    path = reverse("survey-page", kwargs={"slug": survey.slug})
    return f"{settings.SITE_URL.rstrip('/')}{path}?{URL_PARAMETERS}"


def prolific_completion_codes(*, survey: Survey) -> list[dict]:
    """One code per outcome, as the participant page hands them out (surveys.selectors.OUTCOME_CODE_FIELD).
    Every code is reviewed here (prolific_submissions_review), none approved blindly by Prolific."""
    review = [{"action": "MANUALLY_REVIEW"}]
    codes = [
        ("completion_code", "COMPLETED"),
        ("code_failed_attention", "FAILED_ATTENTION_CHECK"),
        ("code_timed_out", "OTHER"),
        ("code_technical", "OTHER"),
    ]
    by_code: dict[str, list[str]] = {}
    for field, _ in codes:
        by_code.setdefault(getattr(survey, field), []).append(field)
    shared = [fields for fields in by_code.values() if len(fields) > 1]
    if shared:
        raise ApplicationError(CODES_NOT_DISTINCT.format(fields=" and ".join(shared[0])), extra={"field": shared[0][0]})
    return [{"code": getattr(survey, field), "code_type": code_type, "actions": review} for field, code_type in codes]


def prolific_study_create(*, survey: Survey, reward_pence: int, minutes: int, places: int, user=None,
                          request=None) -> ProlificStudy:
    """A draft (UNPUBLISHED) study on Prolific with the survey's link and completion codes; the researcher
    reviews and publishes it on Prolific. The row is claimed first, so two clicks make one study."""
    client = _client()
    _positive("reward_pence", reward_pence)
    _positive("minutes", minutes)
    _positive("places", places)
    if survey.status == Survey.Status.CLOSED:
        raise ApplicationError(SURVEY_CLOSED.format(slug=survey.slug))
    body = {
        "name": survey.title,
        "internal_name": survey.slug,
        "description": f"{survey.title}: look at images and choose, for each, which of two images is closer to a "
                       f"third. About {minutes} minutes.",
        "external_study_url": prolific_study_link(survey=survey),
        "prolific_id_option": "url_parameters",
        "completion_codes": prolific_completion_codes(survey=survey),
        "total_available_places": places,
        "estimated_completion_time": minutes,
        "maximum_allowed_time": max(survey.time_limit_minutes, minutes),
        "reward": reward_pence,
        "device_compatibility": DEVICES,
    }
    try:
        with transaction.atomic():
            study = ProlificStudy.objects.create(
                survey=survey, study_id=f"creating-{survey.pk}", status="CREATING", places=places, reward=reward_pence)
    except IntegrityError:
        existing = ProlificStudy.objects.get(survey=survey)
        raise ApplicationError(ALREADY_CREATED.format(slug=survey.slug, study_id=existing.study_id)) from None
    try:
        remote = _call(None, lambda: client.study_create(**body))
    except ApplicationError:
        study.delete()
        raise
    _seen(study, remote, study_id=remote["id"], reward=remote.get("reward", reward_pence))
    _audit("create", study, user=user, request=request,
           details={"study_id": study.study_id, "places": study.places, "reward": study.reward, "minutes": minutes})
    return study


def prolific_places_set(*, survey: Survey, places: int, user=None, request=None) -> ProlificStudy:
    """Set the study's total places. A draft takes any number; a published study only more (Prolific's rule),
    so a decrease is refused here with the current figures before Prolific is asked."""
    client = _client()
    _positive("places", places)
    study = _study_of(survey)
    remote = _call(study, lambda: client.study_get(study.study_id))
    current = remote.get("total_available_places", study.places)
    if remote.get("status") != UNPUBLISHED and places < current:
        _seen(study, remote)
        raise ApplicationError(
            PLACES_DECREASE.format(study_id=study.study_id, status=remote.get("status"), current=current, places=places),
            extra={"field": "places", "current": current},
        )
    if places != current:
        remote = _call(study, lambda: client.study_update(study.study_id, total_available_places=places))
    _seen(study, remote)
    _audit("places", study, user=user, request=request, details={"from": current, "to": study.places})
    return study


def prolific_places_target(*, survey: Survey, forecast: dict | None = None) -> int:
    """The places the study needs. With a precision goal: the live sessions finished so far (completed or failed
    the attention check: on Prolific, returned and timed-out submissions free their place) plus the forecast's
    participants still needed (results.planning.survey_forecast; sessions in progress are among those). Without
    one: the live quota (the cap, or trial lists x N). Never above the cap, never below 1."""
    if forecast is None and survey.precision_goal is not None:
        from results.planning import survey_forecast

        forecast = survey_forecast(survey=survey)
    if forecast is not None:
        finished = Participant.objects.filter(
            survey=survey, is_pilot=False, is_bot=False, status__in=FINISHED_STATUSES).count()
        target = finished + int(forecast["participants_still_needed"])
    else:
        target = Slot.objects.filter(survey=survey, is_pilot=False).count()
    if survey.max_participants:
        target = min(target, survey.max_participants)
    return max(target, 1)


def prolific_places_from_forecast(*, survey: Survey, user=None, request=None, forecast: dict | None = None) -> dict:
    """Set the places to prolific_places_target. A published study that already has at least that many keeps
    them (Prolific's places only grow); a draft takes the number."""
    client = _client()
    study = _study_of(survey)
    target = prolific_places_target(survey=survey, forecast=forecast)
    remote = _call(study, lambda: client.study_get(study.study_id))
    current = remote.get("total_available_places", study.places)
    if remote.get("status") != UNPUBLISHED and target <= current:
        _seen(study, remote)
        return {"places": current, "target": target, "changed": False}
    prolific_places_set(survey=survey, places=target, user=user, request=request)
    return {"places": target, "target": target, "changed": target != current}


def prolific_study_pause(*, survey: Survey, user=None, request=None) -> dict:
    """Pause a published study (new participants no longer see it; those inside finish). A study already
    paused, awaiting review or completed is left as it is; a draft has nothing to pause."""
    client = _client()
    study = _study_of(survey)
    remote = _call(study, lambda: client.study_get(study.study_id))
    if remote.get("status") == UNPUBLISHED:
        _seen(study, remote)
        raise ApplicationError(NOTHING_TO_PAUSE.format(study_id=study.study_id))
    if remote.get("status") not in PAUSABLE:
        _seen(study, remote)
        return {"paused": False, "status": study.status}
    before = remote.get("status")
    remote = _call(study, lambda: client.study_transition(study.study_id, "PAUSE"))
    _seen(study, remote)
    _audit("pause", study, user=user, request=request, details={"from": before, "to": study.status})
    return {"paused": True, "status": study.status}


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
    return "left"  # a technical exit (the researcher decides on pay), a session still active, no or unknown code


def prolific_submissions_review(*, survey: Survey, user=None, request=None) -> dict:
    """Every submission AWAITING REVIEW: approved when the session completed here (or, with no session here, the
    completion code was entered), a return requested for timed-out and returned sessions; failed attention checks
    and everything else are left to the researcher and counted. Returns the counts."""
    client = _client()
    study = _study_of(survey)
    submissions = [s for s in _call(study, lambda: client.submission_list(study.study_id)) if s.get("status") == AWAITING_REVIEW]
    sessions = {
        p.prolific_pid: p
        for p in Participant.objects.filter(
            survey=survey, is_pilot=False, prolific_pid__in=[s.get("participant_id") for s in submissions])
    }
    counts = {"approved": 0, "return_requested": 0, "failed_attention": 0, "left": 0, "errors": 0}
    last_error = ""
    for submission in submissions:
        participant = sessions.get(submission.get("participant_id"))
        decision = _review_decision(submission, participant, survey)
        try:
            if decision == "approve":
                client.submission_approve(submission["id"])
                counts["approved"] += 1
            elif decision == "return":
                reasons = RETURN_REASONS[participant.status if participant else Participant.Status.TIMED_OUT]
                client.submission_request_return(submission["id"], reasons)
                counts["return_requested"] += 1
            else:
                counts[decision] += 1
        except ProlificError as exc:  # one refusal does not stop the others; approving again is harmless
            counts["errors"] += 1
            last_error = exc.message
    study.last_error = last_error
    study.save(update_fields=["last_error", "updated_at"])
    _audit("review", study, user=user, request=request, details=counts)  # counts only: no participant IDs
    return counts
