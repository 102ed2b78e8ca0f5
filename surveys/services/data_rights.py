"""Participants' data rights: erase one person's sessions on request, and drop external IDs after a
survey's retention period."""
from datetime import timedelta

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.crypto import salted_hmac

from backend.exceptions import ApplicationError
from teams.actors import Actor
from teams.services import audit_record

from ..models import Participant, Slot, Survey
from .adaptive import survey_adaptive_refresh

ERASE_NEEDS_ONE_ID = "Give exactly one of a Prolific PID or an MTurk worker ID."


def external_id_hash(*, value: str) -> str:
    """What the audit log keeps instead of a Prolific PID or worker ID: a hash keyed with the site's secret, so
    the log alone cannot be matched against a list of IDs, while one ID that someone asks about can be checked."""
    return salted_hmac("participant.erase", value, algorithm="sha256").hexdigest()[:16]


def participant_erase(
    *, surveys: QuerySet[Survey], prolific_pid: str = "", worker_id: str = "", dry_run: bool = False,
    actor: Actor | None = None,
) -> dict:
    """Delete every session of one person (by Prolific PID or MTurk worker ID) in these surveys, with their
    answers, events and assignments. A slot the person held or filled is free again, so its list can be refilled
    to exactly N. One transaction; one audit entry per team, naming a hash of the ID, never the ID.
    Returns what was (dry run: would be) erased, per team."""
    if bool(prolific_pid) == bool(worker_id):
        raise ApplicationError(ERASE_NEEDS_ONE_ID)
    kind, value = ("prolific_pid", prolific_pid) if prolific_pid else ("worker_id", worker_id)
    id_hash = external_id_hash(value=value)
    with transaction.atomic():
        ids = list(Participant.objects.filter(survey__in=surveys, **{kind: value}).values_list("pk", flat=True))
        holders = sessions_slots_lock(ids=ids)
        sessions = list(Participant.objects.filter(pk__in=ids).select_related("survey__team").order_by("pk"))
        erased: dict[str, dict] = {}  # team name -> what was erased there
        for session in sessions:
            counts = erased.setdefault(
                session.survey.team.name,
                {"surveys": [], "sessions": 0, "responses": 0, "events": 0, "assignments": 0, "slots_freed": 0},
            )
            counts["surveys"].append(session.survey.slug)
            counts["sessions"] += 1
            counts["responses"] += session.responses.count()
            counts["events"] += session.events.count()
            counts["assignments"] += session.assignments.count()
            counts["slots_freed"] += session.pk in holders
        if not dry_run and sessions:
            sessions_delete(ids=ids)
            Survey.objects.filter(pk__in={s.survey_id for s in sessions}).update(data_version=F("data_version") + 1)
            for survey_id in {s.survey_id for s in sessions if s.survey.precision_goal is not None}:
                # adaptive collection's estimate must not count erased answers either
                transaction.on_commit(lambda survey_id=survey_id: survey_adaptive_refresh(survey_id=survey_id, force=True))
            for team in {s.survey.team for s in sessions}:
                details = {"id_hash": id_hash, "id_kind": kind, **erased[team.name]}
                audit_record(actor=actor, action="participant.erase", team=team, details=details)
    return {"id_hash": id_hash, "id_kind": kind, "dry_run": dry_run, "teams": erased}


def sessions_slots_lock(*, ids: list[int]) -> set[int]:
    """Lock the slots these sessions hold or filled, before erasing them (in a transaction). Slots first, in the
    order _session_end and slot_claim lock them: no deadlock with a session ending now. Returns the sessions
    that hold a slot."""
    slots = Slot.objects.select_for_update().filter(participant__in=ids).order_by("pk")
    return set(slots.values_list("participant_id", flat=True))


def sessions_delete(*, ids: list[int]) -> None:
    """Free the sessions' slots, so their lists can be refilled to exactly N, and delete the sessions; their answers,
    events and assignments go with them."""
    Slot.objects.filter(participant__in=ids).update(participant=None, reserved_until=None, filled_at=None)
    Participant.objects.filter(pk__in=ids).delete()


def participant_ids_expire(*, actor: Actor | None = None, now=None) -> dict[str, int]:
    """Blank the personal IDs (Participant.PERSONAL_ID_FIELDS) of sessions that ended more than their survey's
    retention_days ago; answers stay, under the session's row id. One audit entry per survey that had any.
    Returns how many sessions lost their IDs, per survey slug."""
    now = now or timezone.now()
    blank = {field: "" for field in Participant.PERSONAL_ID_FIELDS}
    expired = {}
    for survey in Survey.objects.filter(retention_days__isnull=False).select_related("team"):
        cutoff = now - timedelta(days=survey.retention_days)
        with transaction.atomic():
            n = Participant.objects.filter(survey=survey, ended_at__lt=cutoff).exclude(**blank).update(**blank)
            if n:
                audit_record(actor=actor, action="survey.retention", obj=survey,
                             details={"sessions": n, "retention_days": survey.retention_days})
                expired[survey.slug] = n
    return expired
