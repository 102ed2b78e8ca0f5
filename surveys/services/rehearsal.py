"""Rehearsals: `run_bots --as-people` walks a live survey with bots that the estimates count like people, so a
researcher sees adaptive collection at work end to end (sets gaining answers, re-estimates, the stop) before the
real study; then one action erases the rehearsal and collection starts clean.

A rehearsal's sessions are marked Participant.is_rehearsal (the enroll API learns it from a signed credential,
surveys.bots), never is_bot: the estimates, the monitor and the report treat them as live data on purpose."""
from django.db import transaction
from django.db.models import F

from backend.exceptions import ApplicationError
from teams.actors import Actor
from teams.services import audit_record

from ..counted_answers import Purpose, sessions_counted
from ..models import Participant, Response, Survey
from .adaptive import adaptive_state_initial, survey_adaptive_refresh
from .data_rights import sessions_delete, sessions_slots_lock

REHEARSAL_NOT_LIVE = "Survey '{slug}' is not live; a rehearsal fills its live places, so publish it first (before its link goes out)."
REHEARSAL_HAS_PEOPLE = (
    "Survey '{slug}' already has {n} real participant(s); a rehearsal's bots would be counted with their answers, "
    "so rehearse on another survey built the same way."
)


def survey_rehearsal_real_count(*, survey: Survey) -> int:
    """Live sessions of people: not pilots, bots or a rehearsal's bots (Purpose.PEOPLE)."""
    return sessions_counted(survey=survey, purpose=Purpose.PEOPLE).count()


def survey_rehearsal_check(*, survey: Survey) -> None:
    """A rehearsal runs only on a live survey that no real participant has entered yet (an earlier rehearsal's
    sessions are fine): a sentence otherwise."""
    if survey.status != Survey.Status.LIVE:
        raise ApplicationError(REHEARSAL_NOT_LIVE.format(slug=survey.slug))
    real = survey_rehearsal_real_count(survey=survey)
    if real:
        raise ApplicationError(REHEARSAL_HAS_PEOPLE.format(slug=survey.slug, n=real))


def survey_rehearsal_start(*, survey: Survey, params: dict, actor: Actor | None = None) -> None:
    """Check once more, just before the bots go, and record the rehearsal in the survey team's audit log."""
    survey_rehearsal_check(survey=survey)
    audit_record(actor=actor, action="survey.rehearsal", obj=survey, details=params)


def survey_rehearsal_erase(*, survey: Survey, actor: Actor | None = None) -> dict:
    """Erase a survey's rehearsal: its sessions with their answers, events and assignments, their places free
    again (as participant_erase does), and adaptive collection back to its first state, so the rehearsal's
    estimates and stop are gone. One audit entry. Returns what was erased; nothing to erase changes nothing."""
    with transaction.atomic():
        ids = list(Participant.objects.filter(survey=survey, is_rehearsal=True).values_list("pk", flat=True))
        if not ids:
            return {"sessions": 0, "responses": 0, "slots_freed": 0}
        holders = sessions_slots_lock(ids=ids)
        erased = {
            "sessions": len(ids),
            "responses": Response.objects.filter(participant__in=ids).count(),
            "slots_freed": len(holders),
        }
        sessions_delete(ids=ids)
        fields = {"data_version": F("data_version") + 1}
        if survey.precision_goal is not None:
            fields["adaptive_state"] = adaptive_state_initial(survey=survey).to_dict()
            if sessions_counted(survey=survey, purpose=Purpose.PEOPLE).exists():
                # people came during the rehearsal: the fresh state counts them
                transaction.on_commit(lambda: survey_adaptive_refresh(survey_id=survey.pk, force=True))
        Survey.objects.filter(pk=survey.pk).update(**fields)
        audit_record(actor=actor, action="survey.rehearsal_erase", obj=survey, details=erased)
    return erased
