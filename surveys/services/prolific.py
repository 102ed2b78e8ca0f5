"""Prolific from the admin: a survey's draft study, its places (set by hand or from the forecast) and its pause when
collection has stopped (the review of its submissions, a worker's operation run, is in prolific_review). Every
write is audit-logged; docs/prolific.md tells the story from the researcher's side.

Prolific holds the truth about a study (the researcher publishes it, and may change it, on Prolific's site), so
each service reads the study there before changing it and stores what it saw in the survey's ProlificStudy row.
A refusal or an outage on Prolific's side is an ApplicationError with Prolific's own words (status 502) and the
field it named, also kept in `last_error`; nothing is left half-done: a draft whose answer was lost is found again
by its internal name and reused, never made twice.
"""
from __future__ import annotations

import math
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework import status

from backend.exceptions import ApplicationError
from teams.actors import Actor
from teams.services import audit_record

from ..models import Participant, ProlificStudy, Slot, Survey
from ..prolific import NOT_CONFIGURED, ProlificClient, ProlificError, prolific_enabled
from ..task_types import task_types

URL_PARAMETERS = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
DEVICES = ["desktop"]  # every task shows its images at their pixel size: phones are too small
CREATING = "CREATING"  # the row is claimed and Prolific asked; its answer is not recorded yet
UNPUBLISHED = "UNPUBLISHED"
AWAITING_REVIEW = "AWAITING REVIEW"
RETURN_REASONS = {  # the wording of Prolific's own request-return options
    Participant.Status.TIMED_OUT: ["Didn't finish the study"],
    Participant.Status.RETURNED: ["Didn't finish the study"],
}
# Sessions that used up a place for good: returned and timed-out submissions free theirs on Prolific.
FINISHED_STATUSES = (Participant.Status.COMPLETED, Participant.Status.FAILED_ATTENTION)

# What each code the participant page can hand out (surveys.selectors.OUTCOME_CODE_FIELD) is declared as on
# Prolific: code types from the OpenAPI document (CreateStudyCompletionCodesItemsCodeType). Every code waits for
# review here (prolific_submissions_review), none is approved blindly by Prolific.
CODE_TYPES = {
    "completion_code": "COMPLETED",
    "code_failed_attention": "FAILED_ATTENTION_CHECK",
    "code_screened_out": "SCREENED_OUT",  # failed screening trials, or a phone on a desktop-only survey
    "code_timed_out": "OTHER",
    "code_technical": "OTHER",
}
# What participants read on Prolific before they start, by built-in task type (TaskType.description).
DESCRIPTIONS = {task.name: task.description for task in task_types()}
TIMED = " Each image is shown only for a moment, then covered by a pattern of noise."

ALREADY_CREATED = "{slug} already has a Prolific study ({study_id})."
BEING_CREATED = (
    "{slug}: the Prolific draft is being made by another request, or its answer could not be recorded here; "
    "try again in a minute (a draft made meanwhile is found and reused, not made twice)."
)
UNCERTAIN = " Prolific may have made the draft all the same: try again, and it is found and reused, not made twice."
NO_STUDY = "{slug} has no Prolific study yet: create the draft first."
SURVEY_CLOSED = "{slug} is closed: a new Prolific study would send people to a survey that takes nobody."
CODES_NOT_DISTINCT = "The completion codes must differ from each other for Prolific: {fields} share one."
POSITIVE = "{field}: must be a whole number of at least 1 (got {value})."
PLACES_DECREASE = (
    "Prolific only lets places grow once a study is published: {study_id} is {status} with {current} places, "
    "so {places} would be a decrease."
)
NOTHING_TO_PAUSE = "The Prolific study {study_id} is still a draft (UNPUBLISHED): there is nothing to pause."
STILL_PUBLISHING = "The Prolific study {study_id} is still being published; try the pause again in a minute."
NOT_RECORDED = (
    "{slug}: its Prolific draft was asked for but not recorded here; create the draft again (it is found and "
    "reused, not made twice)."
)
BACKGROUND_FAILED = "{what} failed in the background after {tries} tries: {message}"


def _client() -> ProlificClient:
    if not prolific_enabled():
        raise ApplicationError(NOT_CONFIGURED, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    return ProlificClient()


def _study_of(survey: Survey) -> ProlificStudy:
    study = ProlificStudy.objects.filter(survey=survey).first()
    if study is None:
        raise ApplicationError(NO_STUDY.format(slug=survey.slug), status_code=status.HTTP_404_NOT_FOUND)
    if study.status == CREATING:
        raise ApplicationError(NOT_RECORDED.format(slug=survey.slug), status_code=status.HTTP_409_CONFLICT)
    return study


def _positive(field: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ApplicationError(POSITIVE.format(field=field, value=value), extra={"field": field})
    return value


def _call(study: ProlificStudy | None, request_fn):
    """Run one call to Prolific; its refusal becomes an ApplicationError in Prolific's words, naming the field it
    named, kept on the row. `extra` says whether trying later may help (transient) and whether Prolific may have
    acted all the same (uncertain)."""
    try:
        result = request_fn()
    except ProlificError as exc:
        if study is not None and study.pk:
            ProlificStudy.objects.filter(pk=study.pk).update(last_error=exc.message, updated_at=timezone.now())
        extra = {"prolific_status": exc.status_code, "transient": exc.transient, "uncertain": exc.uncertain}
        if exc.fields:
            extra["field"] = exc.fields[0]
        raise ApplicationError(exc.message, extra=extra, status_code=status.HTTP_502_BAD_GATEWAY) from exc
    return result


def _audit(action: str, study: ProlificStudy, *, actor: Actor | None, details: dict | None = None) -> None:
    audit_record(actor=actor, action=f"prolific_study.{action}", obj=study, team=study.survey.team,
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


def prolific_code_fields(*, survey: Survey) -> list[str]:
    """The survey's code fields the participant page can hand out: completed, timed out or returned, technical
    exit always; failed attention check where catch or practice trials can fail someone; screened out where
    screening trials or the desktop-only rule can."""
    fields = ["completion_code"]
    if survey.catch_trials or survey.practice_trials:
        fields.append("code_failed_attention")
    if survey.screening_trials or survey.desktop_only:
        fields.append("code_screened_out")
    return fields + ["code_timed_out", "code_technical"]


def prolific_completion_codes(*, survey: Survey) -> list[dict]:
    """One declared code per code the survey can hand out, with its code type; all reviewed by hand."""
    fields = prolific_code_fields(survey=survey)
    by_code: dict[str, list[str]] = {}
    for field in fields:
        by_code.setdefault(getattr(survey, field), []).append(field)
    shared = [same for same in by_code.values() if len(same) > 1]
    if shared:
        raise ApplicationError(CODES_NOT_DISTINCT.format(fields=" and ".join(shared[0])), extra={"field": shared[0][0]})
    return [{"code": getattr(survey, field), "code_type": CODE_TYPES[field], "actions": [{"action": "MANUALLY_REVIEW"}]}
            for field in fields]


def prolific_minimum_allowed_minutes(*, estimated_minutes: int) -> int:
    """Prolific's shortest maximum_allowed_time: 2 + 2e + 2√e minutes for an estimate of e (the OpenAPI
    document, CreateStudy.maximum_allowed_time), rounded up."""
    return math.ceil(2 + 2 * estimated_minutes + 2 * math.sqrt(estimated_minutes))


def prolific_draft_defaults(*, survey: Survey, minutes: int | None = None) -> dict:
    """What a draft asks for when the researcher leaves it open: the estimated minutes (unless given) from the time
    participants took (live sessions, else the pilot, else the planner's defaults; rounded up) and the reward
    Prolific recommends for them in the workspace's currency, rounded up to the penny or cent."""
    from ..planning import prolific_pay_rates, survey_seconds_per_participant  # the planner's own figures

    source = "entered"
    if minutes is None:
        seconds, source = survey_seconds_per_participant(survey=survey)
        minutes = max(1, math.ceil(seconds / 60))
    rates = prolific_pay_rates()
    return {"minutes": minutes, "minutes_source": source, "currency": rates["currency"],
            "reward": math.ceil(round(rates["recommended"] * minutes / 60 * 100, 9))}


def prolific_internal_name(*, survey: Survey) -> str:
    """The draft's internal name (researchers see it, participants do not): the survey and this site, so a draft
    whose answer was lost can be found again, also where several sites share one Prolific workspace."""
    return f"{survey.slug} @ {urlsplit(settings.SITE_URL).netloc}"


def _draft_find(client: ProlificClient, survey: Survey) -> dict | None:
    name = prolific_internal_name(survey=survey)
    return next((s for s in _call(None, client.study_list) if s.get("internal_name") == name), None)


def _claim(*, survey: Survey, places: int, reward: int) -> tuple[ProlificStudy, bool]:
    """The survey's row, claimed before Prolific is asked, so two clicks make one study: (row, resumed), resumed
    when an earlier try left it CREATING (its draft may exist on Prolific)."""
    try:
        with transaction.atomic():
            row = ProlificStudy.objects.create(survey=survey, study_id=f"creating-{survey.pk}", status=CREATING,
                                               places=places, reward=reward)
            return row, False
    except IntegrityError:
        existing = ProlificStudy.objects.get(survey=survey)
    if existing.status != CREATING:
        raise ApplicationError(ALREADY_CREATED.format(slug=survey.slug, study_id=existing.study_id))
    return existing, True


def prolific_description(*, survey: Survey, minutes: int) -> str:
    """What participants read on Prolific: the survey's own task (a timed classification says the image is brief)."""
    task = survey.task
    timed = task.timed and survey.image_ms is not None
    return f"{task.description}{TIMED if timed else ''} About {minutes} minutes."


def prolific_study_create(*, survey: Survey, reward_pence: int, minutes: int, places: int,
                          actor: Actor | None = None) -> ProlificStudy:
    """A draft (UNPUBLISHED) study on Prolific with the survey's link, every code it can hand out, a description
    for its task type and Prolific's shortest allowed maximum time at least; the researcher reviews and publishes
    it on Prolific. The reward is in the Prolific workspace's currency (PROLIFIC_CURRENCY), in pence or cents.

    Never two drafts: the row is claimed first (a second click is told so); when Prolific's answer is lost (a 5xx,
    no answer, or the row could not be saved) the row stays CREATING and the next try finds the draft by its
    internal name and records it instead of making another."""
    client = _client()
    _positive("reward_pence", reward_pence)
    _positive("minutes", minutes)
    _positive("places", places)
    if survey.status == Survey.Status.CLOSED:
        raise ApplicationError(SURVEY_CLOSED.format(slug=survey.slug))
    body = {
        "name": survey.title,
        "internal_name": prolific_internal_name(survey=survey),
        "description": prolific_description(survey=survey, minutes=minutes),
        "external_study_url": prolific_study_link(survey=survey),
        "prolific_id_option": "url_parameters",
        "completion_codes": prolific_completion_codes(survey=survey),
        "total_available_places": places,
        "estimated_completion_time": minutes,
        "maximum_allowed_time": max(survey.time_limit_minutes, prolific_minimum_allowed_minutes(estimated_minutes=minutes)),
        "reward": reward_pence,
        "device_compatibility": DEVICES,
    }
    if settings.PROLIFIC_PROJECT_ID:
        body["project"] = settings.PROLIFIC_PROJECT_ID
    study, resumed = _claim(survey=survey, places=places, reward=reward_pence)
    try:
        with transaction.atomic():
            ProlificStudy.objects.select_for_update(nowait=True).get(pk=study.pk)
            remote = _draft_find(client, survey) if resumed else None
            if remote is None:
                remote = _call(None, lambda: client.study_create(**body))
            _seen(study, remote, study_id=remote["id"], reward=remote.get("reward", reward_pence))
    except DatabaseError:  # locked by another click, or the answer could not be saved: the next try finds it
        raise ApplicationError(BEING_CREATED.format(slug=survey.slug), status_code=status.HTTP_409_CONFLICT) from None
    except ApplicationError as exc:
        if exc.extra.get("uncertain"):
            ProlificStudy.objects.filter(pk=study.pk).update(last_error=exc.message, updated_at=timezone.now())
            raise ApplicationError(exc.message + UNCERTAIN, extra=exc.extra, status_code=exc.status_code) from exc
        study.delete()  # Prolific refused: nothing was made there
        raise
    _audit("create", study, actor=actor,
           details={"study_id": study.study_id, "places": study.places, "reward": study.reward,
                    "currency": settings.PROLIFIC_CURRENCY, "minutes": minutes, "found_again": resumed})
    return study


def prolific_places_set(*, survey: Survey, places: int, actor: Actor | None = None) -> ProlificStudy:
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
    _audit("places", study, actor=actor, details={"from": current, "to": study.places})
    return study


def prolific_places_target(*, survey: Survey, forecast: dict | None = None) -> int:
    """The places the study needs. With a precision goal: the live sessions finished so far (completed or failed
    the attention check: on Prolific, returned and timed-out submissions free their place) plus the forecast's
    participants still needed (surveys.planning.survey_forecast; sessions in progress are among those). Without
    one: the live quota (the cap, or trial lists x N). Never above the cap, never below 1."""
    if forecast is None and survey.precision_goal is not None:
        from ..planning import survey_forecast

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


def prolific_places_from_forecast(*, survey: Survey, actor: Actor | None = None, forecast: dict | None = None) -> dict:
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
    prolific_places_set(survey=survey, places=target, actor=actor)
    return {"places": target, "target": target, "changed": target != current}


def prolific_study_pause(*, survey: Survey, actor: Actor | None = None) -> dict:
    """Stop recruiting (those inside finish): PAUSE an active study, cancel a scheduled publication (the study goes
    back to draft). A study already paused, awaiting review or completed is left as it is; a draft has nothing to
    pause; one still publishing is a transient refusal, to try again."""
    client = _client()
    study = _study_of(survey)
    remote = _call(study, lambda: client.study_get(study.study_id))
    before = remote.get("status")
    _seen(study, remote)
    if before == UNPUBLISHED:
        raise ApplicationError(NOTHING_TO_PAUSE.format(study_id=study.study_id))
    if before == "PUBLISHING":
        raise ApplicationError(STILL_PUBLISHING.format(study_id=study.study_id), extra={"transient": True})
    if before not in ("ACTIVE", "SCHEDULED"):
        return {"paused": False, "status": before}
    # Not repeated by the client after a 5xx (pausing a paused study is refused): the next try reads the status.
    action = "PAUSE" if before == "ACTIVE" else "CANCEL_PUBLISH"
    remote = _call(study, lambda: client.study_transition(study.study_id, action))
    _seen(study, remote)
    _audit("pause", study, actor=actor, details={"from": before, "to": study.status})
    return {"paused": True, "status": study.status}


def prolific_background_failed(*, survey_id: int, what: str, message: str, tries: int,
                               actor: Actor | None = None) -> None:
    """A background call to Prolific (the pause when the goal is met, a places update) failed for good: kept as the
    study's last error, which the survey's admin page shows, and in the audit log; not only in a log file."""
    study = ProlificStudy.objects.select_related("survey__team").filter(survey_id=survey_id).first()
    if study is None:
        return
    text = BACKGROUND_FAILED.format(what=what, tries=tries, message=message)
    ProlificStudy.objects.filter(pk=study.pk).update(last_error=text, updated_at=timezone.now())
    _audit(f"{what}_failed", study, actor=actor, details={"error": message, "tries": tries})
