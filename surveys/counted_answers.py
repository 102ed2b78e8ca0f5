"""The one door out of the database for answers (Response rows), and the one rule for which answers count.

Every read of a survey's answers goes through here: the report and its exports (``survey_answer_arrays`` and the timing
reads), adaptive collection's estimates, the budget planner and the forecast, the live monitor, the analysis plan's
lock and the rehearsal's guard. What each of them counts is written once, in ``ANSWER_SCOPES``: one ``AnswerScope``
per ``Purpose``, saying which sessions count (pilot or live; bots; a rehearsal's bots; sessions excluded at completion;
sessions that did not complete) and which trial kinds, with the reason where purposes differ.
tests/surveys/test_counted_answers.py checks the rule on a survey with one session of each kind, and that no module
outside this one queries answers by those flags (a new door would be a new rule nobody wrote down).

Reads of one session's own answers while it runs (the answer endpoint, practice feedback, completion, erasure)
are not counting and stay with the services that write them.
"""
from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from django.db import connection
from django.db.models import Count, FloatField, Max, Q, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from .models import Participant, Response, Survey, Trial

ALL_KINDS = tuple(Trial.Kind.values)
MAIN = (Trial.Kind.MAIN,)
# Trials a session answers before its main trials; progress and the monitor count them apart.
BEFORE_MAIN_KINDS = (Trial.Kind.PRACTICE, Trial.Kind.SCREENING)
TRIAL_KINDS = (Trial.Kind.MAIN, Trial.Kind.CATCH)  # the trials proper, after practice and screening


class Purpose(enum.StrEnum):
    ALL = "all"  # every answer of the survey: what the report reads before applying REPORT itself
    REPORT = "report"  # the alignment report and its exports
    ESTIMATE = "estimate"  # adaptive collection's estimates; the planner's and the forecast's live figures
    PILOT = "pilot"  # the planner's pilot figures (p, design effects)
    PILOT_TIME = "pilot_time"  # the pilot's session time and seconds per trial
    LIVE_TIME = "live_time"  # the live sessions' time (the forecast, a Prolific draft's estimated time)
    MONITOR_LIVE = "monitor_live"  # the live monitor: everyone, with their state
    MONITOR_PILOT = "monitor_pilot"
    PEOPLE = "people"  # answers of real people: the analysis plan's lock, the rehearsal's guard


@dataclass(frozen=True)
class AnswerScope:
    """Which sessions' answers count: ``pilot`` True = pilot sessions, False = live ones, None = both; the others
    say whether bot sessions, a rehearsal's sessions, sessions excluded at completion (Participant.excluded) and
    sessions that did not complete (status other than completed) are in; ``kinds``: the trial kinds counted."""

    pilot: bool | None
    bots: bool
    rehearsal: bool
    excluded: bool
    unfinished: bool
    kinds: tuple[str, ...]
    why: str = ""

    def exclusion_switches(self) -> dict[str, bool]:
        """The scope as stats.exclusions.ExclusionRules' session switches (the report applies it in numpy; its
        ``flagged`` rule, always on, is ``excluded`` False, and a rehearsal's sessions are no rule's)."""
        return {"exclude_pilot": self.pilot is False, "exclude_bots": not self.bots, "require_complete": not self.unfinished}


EVERYONE = {"bots": True, "rehearsal": True, "excluded": True, "unfinished": True, "kinds": ALL_KINDS}
# Counted like people (rehearsal True) everywhere but PEOPLE: a rehearsal rehearses the real study's estimates, stop
# and report, and is erased in one action before the study (surveys.services.rehearsal).
DATA = {"pilot": False, "bots": False, "rehearsal": True, "excluded": False, "unfinished": False, "kinds": MAIN}

ANSWER_SCOPES: dict[Purpose, AnswerScope] = {
    Purpose.ALL: AnswerScope(pilot=None, **EVERYONE, why="the report reads all and counts what each rule removes"),
    # The report applies it in numpy as its pilot, bot, flagged and incomplete rules (stats.exclusions). Its
    # "incomplete" reads completed_at, which a session that failed its catch trials also has; such a session is
    # always excluded, so the two select the same sessions (tests/surveys/test_counted_answers.py).
    Purpose.REPORT: AnswerScope(**DATA, why="data: live completed sessions of people, not excluded; main trials"),
    Purpose.ESTIMATE: AnswerScope(**DATA, why="the estimates count what the report will count"),
    Purpose.PILOT: AnswerScope(pilot=True, bots=False, rehearsal=True, excluded=True, unfinished=True, kinds=MAIN,
                               why="a pilot is a handful of sessions: every answer of it says something about p"),
    Purpose.PILOT_TIME: AnswerScope(pilot=True, bots=False, rehearsal=True, excluded=True, unfinished=False,
                                    kinds=TRIAL_KINDS, why="every completed session took its time and is paid, "
                                    "excluded or not; bots answer at machine speed"),
    Purpose.LIVE_TIME: AnswerScope(pilot=False, bots=False, rehearsal=True, excluded=True, unfinished=False,
                                   kinds=TRIAL_KINDS, why="as PILOT_TIME, on the live sessions"),
    Purpose.MONITOR_LIVE: AnswerScope(pilot=False, **EVERYONE, why="the monitor shows everyone with their state"),
    Purpose.MONITOR_PILOT: AnswerScope(pilot=True, **EVERYONE, why="the monitor shows everyone with their state"),
    Purpose.PEOPLE: AnswerScope(pilot=False, bots=False, rehearsal=False, excluded=True, unfinished=True,
                                kinds=ALL_KINDS, why="the first answer of a real person freezes the analysis plan "
                                "and forbids a rehearsal; a rehearsal's bots are erased before the study"),
}


def sessions_counted(*, survey: Survey, purpose: Purpose) -> QuerySet[Participant]:
    """The survey's sessions whose answers count for ``purpose`` (ANSWER_SCOPES)."""
    scope = ANSWER_SCOPES[purpose]
    sessions = Participant.objects.filter(survey=survey)
    if scope.pilot is not None:
        sessions = sessions.filter(is_pilot=scope.pilot)
    if not scope.bots:
        sessions = sessions.filter(is_bot=False)
    if not scope.rehearsal:
        sessions = sessions.filter(is_rehearsal=False)
    if not scope.excluded:
        sessions = sessions.filter(excluded=False)
    if not scope.unfinished:
        sessions = sessions.filter(status=Participant.Status.COMPLETED)
    return sessions


def _kinds(answers: QuerySet, kinds: tuple[str, ...]) -> QuerySet:
    if set(kinds) == set(ALL_KINDS):
        return answers
    return answers.filter(trial__kind=kinds[0]) if len(kinds) == 1 else answers.filter(trial__kind__in=kinds)


def answers_counted(*, survey: Survey, purpose: Purpose, session_ids: list[int] | None = None) -> QuerySet[Response]:
    """The answers that count for ``purpose``. ``session_ids``: the sessions_counted of the same purpose, read once
    by the caller (adaptive collection counts the sessions and reads their answers from one read, so a session that
    completes in between is not counted without its answers)."""
    scope = ANSWER_SCOPES[purpose]
    if session_ids is not None:
        answers = Response.objects.filter(participant__in=session_ids)
    elif purpose == Purpose.ALL:
        answers = Response.objects.filter(trial__survey=survey)
    else:
        answers = Response.objects.filter(participant__in=sessions_counted(survey=survey, purpose=purpose))
    return _kinds(answers, scope.kinds)


def sessions_with_answer_counts(*, survey: Survey, purpose: Purpose) -> QuerySet[Participant]:
    """sessions_counted with ``main_done`` (main and catch answers) and ``practice_done`` per session (the monitor)."""
    return sessions_counted(survey=survey, purpose=purpose).annotate(
        main_done=Count("responses", filter=~Q(responses__trial__kind__in=BEFORE_MAIN_KINDS)),
        practice_done=Count("responses", filter=Q(responses__trial__kind=Trial.Kind.PRACTICE)),
    )


def answers_version(*, survey: Survey) -> tuple[int, int | None]:
    """(how many answers, the newest one's id): changes whenever an answer is added or erased (the report's cache)."""
    version = answers_counted(survey=survey, purpose=Purpose.ALL).aggregate(n=Count("id"), last=Max("id"))
    return version["n"], version["last"]


def survey_mistimed_pairs(*, survey: Survey) -> list[tuple[int, int]]:
    """(participant id, trial id) of every answer flagged as mistimed."""
    answers = answers_counted(survey=survey, purpose=Purpose.ALL).filter(mistimed=True)
    return list(answers.values_list("participant_id", "trial_id"))


# The browser's timing of a classification answer (Response.timing, as surveys.apis stores it), in export order.
ANSWER_TIMING_FIELDS = ("image_onset_ms", "image_offset_ms", "shown_ms", "frames", "refresh_hz")


def survey_answer_timing_rows(*, survey: Survey) -> Iterator[tuple]:
    """(participant id, trial id, *ANSWER_TIMING_FIELDS, mistimed) of every answer the browser timed or that was
    flagged as mistimed, ordered by participant then trial and streamed: the exports join it to the answer arrays
    in that order. Each timing field comes out of the database as a float (None where absent), so no row's JSON is
    decoded in Python. Read only on the export path, so the report's answer query (bench/analysis.py) stays as it is.
    """
    fields = {f"t_{name}": Cast(KT(f"timing__{name}"), FloatField()) for name in ANSWER_TIMING_FIELDS}
    answers = answers_counted(survey=survey, purpose=Purpose.ALL).filter(Q(timing__isnull=False) | Q(mistimed=True))
    rows = answers.annotate(**fields).order_by("participant_id", "trial_id")
    return rows.values_list("participant_id", "trial_id", *fields, "mistimed").iterator(chunk_size=5000)


# ---------------------------------------------------------------------------------------------
# The report's read: every answer as columns (Purpose.ALL; the report applies Purpose.REPORT in numpy)


def _column(model, name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


def _answers_from(survey_id: int) -> str:
    r, t = connection.ops.quote_name(Response._meta.db_table), connection.ops.quote_name(Trial._meta.db_table)
    return (
        f"FROM {r} r JOIN {t} t ON t.{_column(Trial, 'id')} = r.{_column(Response, 'trial')} "
        f"WHERE t.{_column(Trial, 'survey')} = {int(survey_id)}"
    )


# The answer columns, each as one bytea of the values' binary send form (parsed with np.frombuffer).
# shown_position: the screen position of the chosen option (0 = left); -1 where it was not recorded.
_ANSWER_COLUMNS = (
    ("participant", "int8send(r.{participant}::int8)", ">i8"),
    ("trial", "int8send(r.{trial}::int8)", ">i8"),
    ("choice", "int2send(COALESCE(r.{choice}, -1)::int2)", ">i2"),
    ("shown_position", "int2send(COALESCE({shown_position}, -1)::int2)", ">i2"),
    ("rt_ms", "float8send(COALESCE(r.{rt_ms}, 'NaN')::float8)", ">f8"),
)
_MAX_BRANCHES = 8


def _answer_branches(cursor, table: str) -> list[str]:
    """TID-range conditions that split the answers table into as many block ranges as PostgreSQL may run at once.

    string_agg has no parallel (partial) form before PostgreSQL 16, so one aggregate runs in one process while
    a GROUP BY over the same rows runs in the leader and its workers. One aggregate per block range, joined
    with UNION ALL, lets the planner run them side by side (Parallel Append over TID Range Scans): the same
    rows, each block read once. The last range is open, so rows added meanwhile are not lost. A table smaller
    than PostgreSQL's own threshold for a parallel scan (min_parallel_table_scan_size) per range stays whole.
    """
    cursor.execute(
        "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int8, "
        "current_setting('max_parallel_workers_per_gather')::int, "
        "(SELECT setting::int8 FROM pg_settings WHERE name = 'min_parallel_table_scan_size')",  # in blocks
        [connection.ops.quote_name(table)],
    )
    blocks, workers, min_blocks = cursor.fetchone()
    n = max(1, min(_MAX_BRANCHES, int(workers) + 1, int(blocks) // max(1, int(min_blocks))))  # the workers and the leader
    if n == 1:
        return ["TRUE"]
    bounds = [int(blocks) * i // n for i in range(1, n)]
    ranges = zip([None, *bounds], [*bounds, None])
    return [
        " AND ".join([f"r.ctid >= '({low},0)'::tid"] * (low is not None) + [f"r.ctid < '({high},0)'::tid"] * (high is not None))
        for low, high in ranges
    ]


def survey_answer_arrays(*, survey: Survey) -> dict[str, np.ndarray]:
    """Every answer of the survey (Purpose.ALL) as columns: participant id, trial id, choice (-1 = none),
    shown_position (the chosen option's screen position, 0 = left; -1 = not recorded), rt_ms (NaN = none).

    On PostgreSQL each column comes back as binary strings (string_agg of the values' binary send form, one per
    block range, see _answer_branches) parsed with np.frombuffer: the rows never become Python objects, and the
    query costs about what a GROUP BY over the same rows costs (see bench/analysis.py). The aggregates of one
    branch see its rows in the same order, so the columns stay aligned. Answers come in no particular order.
    """
    names = {name: _column(Response, name) for name in ("participant", "trial", "choice", "rt_ms")}
    names["shown_position"] = f"r.{_column(Response, 'shown_position')}"
    if connection.vendor == "postgresql":
        aggregates = ", ".join(f"string_agg({expr.format(**names)}, ''::bytea)" for _, expr, _ in _ANSWER_COLUMNS)
        connection.ensure_connection()
        import psycopg

        with psycopg.Cursor(connection.connection) as cursor:  # Django's own cursors are client-side (text only)
            branches = _answer_branches(cursor, Response._meta.db_table)
            sql = " UNION ALL ".join(f"SELECT {aggregates} {_answers_from(survey.pk)} AND {where}" for where in branches)
            cursor.execute(sql, binary=True)
            rows = cursor.fetchall()
        out = {}
        for j, (key, _, dtype) in enumerate(_ANSWER_COLUMNS):
            parts = [np.frombuffer(row[j], dtype=dtype) for row in rows if row[j] is not None]
            column = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
            out[key] = column.astype(np.float64 if key == "rt_ms" else np.int64)
        return out
    sql = (
        f"SELECT r.{names['participant']}, r.{names['trial']}, r.{names['choice']}, r.{names['rt_ms']}, {names['shown_position']} "
        f"{_answers_from(survey.pk)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        data = np.array(cursor.fetchall(), dtype=np.float64).reshape(-1, 5)  # NULL -> NaN
    return {
        "participant": data[:, 0].astype(np.int64),
        "trial": data[:, 1].astype(np.int64),
        "choice": np.nan_to_num(data[:, 2], nan=-1).astype(np.int64),
        "shown_position": np.nan_to_num(data[:, 4], nan=-1).astype(np.int64),
        "rt_ms": data[:, 3],
    }
