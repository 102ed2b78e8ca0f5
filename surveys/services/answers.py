"""The answer hot path: store one answer exactly once in one SQL statement, and say why when it stores
nothing; practice answers get feedback and a pass decision."""
import json
import uuid

import psycopg
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone
from rest_framework import status

from backend.exceptions import ApplicationError

from ..models import Assignment, Participant, Response, Slot, Trial
from ..task_types import task_type_get
from .session import _session_end

TRIAL_NOT_ASSIGNED = "This trial is not one of yours."
ALREADY_ANSWERED = "This trial has been answered already."
KEY_REUSED = "This idempotency key was used for another answer."
NOT_CONSENTED = "Give consent before answering."
SESSION_ENDED = "This session has ended ({status}); no more answers are taken."
UNKNOWN_SESSION = "Unknown session."
BAD_CHOICE = "choice: this trial has {n} options."

# The answer hot path: one statement checks the session (token, active, consented), that it still holds its
# reservation (an unfilled slot), that the trial is assigned to it and that the choice is in range, and inserts;
# a replay or a second answer inserts nothing (unique idempotency key, unique (participant, trial)).
# The browser sends the screen position it chose; the stored choice is the option shown there.
_ANSWER_SQL = """
INSERT INTO surveys_response (participant_id, trial_id, choice, shown_position, rt_ms, idempotency_key, timing, mistimed, created_at)
SELECT p.id, t.id, CASE WHEN a.option_order = '' THEN %s ELSE CAST(substr(a.option_order, %s + 1, 1) AS INTEGER) END,
       %s, %s, %s, CAST(%s AS jsonb), false, %s
FROM surveys_participant p
JOIN surveys_slot s ON s.participant_id = p.id AND s.filled_at IS NULL
JOIN surveys_trial t ON t.public_id = %s
JOIN surveys_assignment a ON a.participant_id = p.id AND a.trial_id = t.id
WHERE p.token = %s AND p.status = 'active' AND p.consented_at IS NOT NULL AND t.n_options > %s
ON CONFLICT DO NOTHING
RETURNING id, (SELECT kind FROM surveys_trial WHERE surveys_trial.id = surveys_response.trial_id), choice
"""


def response_record(
    *, token: str, trial_public_id: str, choice: int, rt_ms: float, idempotency_key: uuid.UUID, timing: dict | None = None
) -> tuple[bool, dict]:
    """Store one answer exactly once. `choice` is the screen position (0 = left). Returns (created, extra)
    where extra holds practice feedback.

    The common case is one SQL statement (prepared on PostgreSQL). When it inserts nothing, the slow path
    says why: a replayed key (not created, no error), or 404 / 409 with a reason.
    """
    now = timezone.now()
    timing_json = json.dumps(timing) if timing is not None else None
    params = [choice, choice, choice, rt_ms, idempotency_key, timing_json, now, trial_public_id, token, choice]
    if connection.vendor == "postgresql":
        row = _answer_insert_postgres(params)
    else:
        params[4] = idempotency_key.hex
        params[6] = connection.ops.adapt_datetimefield_value(now)
        with connection.cursor() as cur:
            cur.execute(_ANSWER_SQL.replace("ON CONFLICT", "AND 1 ON CONFLICT").replace("CAST(%s AS jsonb)", "%s"), params)
            row = cur.fetchone()
    if row is not None:
        if row[1] == Trial.Kind.PRACTICE:
            return True, _practice_feedback(token=token, trial_public_id=trial_public_id, choice=row[2])
        if row[1] == Trial.Kind.SCREENING:
            return True, _screening_result(token=token)
        return True, {}
    return False, _response_refused(
        token=token, trial_public_id=trial_public_id, choice=choice, idempotency_key=idempotency_key
    )


def _answer_insert_postgres(params: list):
    """Run the answer statement on a plain psycopg cursor: server-side binding, prepared once per connection,
    none of Django's per-query wrapping and no per-request health check (`SELECT 1`). Instead, a kept
    connection that turns out dead (PostgreSQL restarted) is replaced and the statement sent once more, which
    is safe because it is idempotent. Errors still go through Django's wrapper, as Django's own exceptions."""
    for attempt in (1, 2):
        reused = connection.connection is not None
        try:
            with connection.wrap_database_errors:
                connection.ensure_connection()
                with psycopg.Cursor(connection.connection) as cur:
                    cur.execute(_ANSWER_SQL, params, prepare=True)
                    return cur.fetchone()
        except (OperationalError, InterfaceError):
            if not reused or attempt == 2 or connection.in_atomic_block:
                raise
            connection.close()


def _response_refused(*, token: str, trial_public_id: str, choice: int, idempotency_key: uuid.UUID) -> dict:
    participant = Participant.objects.filter(token=token).first()
    if participant is None:
        raise ApplicationError(UNKNOWN_SESSION, status_code=status.HTTP_404_NOT_FOUND)
    same_key = Response.objects.filter(idempotency_key=idempotency_key).select_related("trial").first()
    if same_key is not None:
        if same_key.participant_id != participant.pk or same_key.trial.public_id != trial_public_id:
            raise ApplicationError(KEY_REUSED, status_code=status.HTTP_409_CONFLICT)
        if same_key.trial.kind == Trial.Kind.PRACTICE:
            return _practice_feedback(token=token, trial_public_id=trial_public_id, choice=same_key.choice)
        if same_key.trial.kind == Trial.Kind.SCREENING:
            return _screening_result(token=token)
        return {}
    assignment = (
        Assignment.objects.filter(participant=participant, trial__public_id=trial_public_id).select_related("trial").first()
    )
    if assignment is None:
        raise ApplicationError(TRIAL_NOT_ASSIGNED, status_code=status.HTTP_404_NOT_FOUND)
    if choice >= assignment.trial.n_options:
        message = BAD_CHOICE.format(n=assignment.trial.n_options)
        raise ApplicationError(message, extra={"fields": {"choice": [message.split(": ", 1)[1]]}})
    if participant.status != Participant.Status.ACTIVE:
        raise ApplicationError(
            SESSION_ENDED.format(status=participant.get_status_display().lower()),
            extra={"reason": "ended", "outcome": participant.status},
            status_code=status.HTTP_409_CONFLICT,
        )
    if participant.consented_at is None:
        raise ApplicationError(NOT_CONSENTED, status_code=status.HTTP_409_CONFLICT)
    if not Slot.objects.filter(participant=participant, filled_at__isnull=True).exists():
        raise ApplicationError(
            SESSION_ENDED.format(status="no reservation"), extra={"reason": "ended", "outcome": participant.status},
            status_code=status.HTTP_409_CONFLICT,
        )
    raise ApplicationError(ALREADY_ANSWERED, status_code=status.HTTP_409_CONFLICT)


def _practice_feedback(*, token: str, trial_public_id: str, choice: int) -> dict:
    """Feedback for a practice answer, and the pass decision once every practice trial is answered. A failed
    practice ends the session (failed attention) and frees its slot."""
    participant = Participant.objects.select_related("survey").get(token=token)
    trial = Trial.objects.get(public_id=trial_public_id)
    answers = list(
        Response.objects.filter(participant=participant, trial__kind=Trial.Kind.PRACTICE).values_list("choice", "trial__target_option")
    )
    total = participant.assignments.filter(trial__kind=Trial.Kind.PRACTICE).count()
    passed = None
    if len(answers) >= total:
        accuracy = sum(c == t for c, t in answers) / max(1, total)
        passed = accuracy >= participant.survey.practice_pass_fraction
        Participant.objects.filter(pk=participant.pk).update(practice_accuracy=accuracy)
        if not passed:
            _session_end(participant=participant, status_to=Participant.Status.FAILED_ATTENTION, reasons=["practice_failed"], fill=False)
    feedback = task_type_get(trial.task_type).feedback(trial=trial, choice=choice)
    return {"feedback": feedback, "practice": {"done": len(answers), "total": total, "passed": passed}}


def _screening_result(*, token: str) -> dict:
    """Classification's screening block (natural photos after practice, no feedback): once every screening trial
    is answered, a share right below the survey's pass mark ends the session as screened out (its own code)."""
    participant = Participant.objects.select_related("survey").get(token=token)
    answers = list(
        Response.objects.filter(participant=participant, trial__kind=Trial.Kind.SCREENING).values_list("choice", "trial__target_option")
    )
    total = participant.assignments.filter(trial__kind=Trial.Kind.SCREENING).count()
    passed = None
    if len(answers) >= total:
        accuracy = sum(c == t for c, t in answers) / max(1, total)
        passed = accuracy >= participant.survey.screening_pass_fraction
        if not passed and participant.status == Participant.Status.ACTIVE:
            _session_end(participant=participant, status_to=Participant.Status.SCREENED_OUT, reasons=["screening_failed"], fill=False)
    return {"screening": {"done": len(answers), "total": total, "passed": passed}}
