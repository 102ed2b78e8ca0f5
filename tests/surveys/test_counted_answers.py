"""Which answers count, for whom: one survey with one session of each kind, and the exact sessions and answers the
report, the adaptive estimate, the planner, the monitor and the analysis plan's lock count (surveys.counted_answers,
the one door answers leave the database by). And no module outside the door queries answers by session flags."""
import ast
from datetime import timedelta
from pathlib import Path

import pytest

from results.plans import plan_locked
from results.survey_data import survey_data_load
from surveys.counted_answers import ANSWER_SCOPES, Purpose, answers_counted, sessions_counted
from surveys.models import Response, Trial
from surveys.planning import survey_answer_figures, survey_pilot_figures, survey_seconds_per_participant
from surveys.selectors import survey_monitor
from surveys.services import participant_complete, participant_consent, participant_enroll, response_record
from surveys.services.adaptive import adaptive_estimate, adaptive_state_initial
from surveys.services.rehearsal import survey_rehearsal_real_count
from tests.conftest import new_key
from tests.surveys.test_classification import classification, labelled_photos

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]

RIGHT, WRONG = (lambda t: t.target_option), (lambda t: (t.target_option + 1) % t.n_options)


def session(survey, label, *, choose=RIGHT, catch=RIGHT, screening=RIGHT, rt_ms=700.0, stop_after=None, **kind):
    """One session of a classification survey (practice, screening, main and catch trials): answers with ``choose``
    (``catch`` and ``screening`` for those trials), stops after ``stop_after`` answers, else completes."""
    person, _ = participant_enroll(survey=survey, prolific_pid=label, **kind)
    participant_consent(participant=person)
    pick = {Trial.Kind.CATCH: catch, Trial.Kind.SCREENING: screening}
    for a in list(person.assignments.select_related("trial").order_by("position"))[:stop_after]:
        person.refresh_from_db()
        if person.status != person.Status.ACTIVE:  # screened out: the session ended
            break
        response_record(token=person.token, trial_public_id=a.trial.public_id, rt_ms=rt_ms, idempotency_key=new_key(),
                        choice=pick.get(a.trial.kind, choose)(a.trial))
    person.refresh_from_db()
    if stop_after is None and person.status == person.Status.ACTIVE:
        person = participant_complete(participant=person)
    return person


@pytest.fixture
def everyone(team):
    """One session of each kind on one survey: label -> participant."""
    survey = classification(labelled_photos(team)[0], ratings_per_list=20)
    sessions = [
        session(survey, "real"),
        session(survey, "pilot", pilot=True),
        session(survey, "bot", is_bot=True),
        session(survey, "rehearsal", is_rehearsal=True),
        session(survey, "too fast", rt_ms=50.0),  # completes, excluded (rt_floor)
        session(survey, "inattentive", catch=WRONG),  # failed attention (catch accuracy), excluded
        session(survey, "screened out", screening=WRONG),  # ends after screening, excluded
        session(survey, "unfinished", stop_after=7),  # practice, screening and two trials, then gone
    ]
    return survey, {p.prolific_pid: p for p in sessions}


def labels(people, ids) -> set[str]:
    names = {p.pk: label for label, p in people.items()}
    return {names[int(pk)] for pk in ids}


DATA = {"real", "rehearsal"}
LIVE = {"real", "bot", "rehearsal", "too fast", "inattentive", "screened out", "unfinished"}


def test_the_sessions_each_purpose_counts_are_written_once(everyone):
    survey, people = everyone
    assert people["inattentive"].status == "failed_attention" and people["screened out"].status == "screened_out"
    assert people["too fast"].excluded and people["too fast"].status == "completed"

    counted = {purpose: labels(people, sessions_counted(survey=survey, purpose=purpose).values_list("pk", flat=True))
               for purpose in Purpose}

    assert counted == {
        Purpose.ALL: LIVE | {"pilot"},
        Purpose.REPORT: DATA,
        Purpose.ESTIMATE: DATA,
        Purpose.PILOT: {"pilot"},
        Purpose.PILOT_TIME: {"pilot"},
        Purpose.LIVE_TIME: DATA | {"too fast"},  # excluded or not, a completed session took its time
        Purpose.MONITOR_LIVE: LIVE,
        Purpose.MONITOR_PILOT: {"pilot"},
        Purpose.PEOPLE: {"real", "too fast", "inattentive", "screened out", "unfinished"},  # not the rehearsal's bots
    }


def test_each_purpose_counts_the_answers_of_its_sessions_on_the_trials_it_names(everyone):
    survey, people = everyone
    for purpose in Purpose:
        answers = answers_counted(survey=survey, purpose=purpose)
        kinds = set(answers.values_list("trial__kind", flat=True))
        who = labels(people, answers.values_list("participant_id", flat=True))
        assert kinds <= set(ANSWER_SCOPES[purpose].kinds), purpose
        # every session counted has answers counted, but the screened-out and unfinished ones, whose answers stop
        # before the main trials, where a purpose counts main trials only
        expected = labels(people, sessions_counted(survey=survey, purpose=purpose).values_list("pk", flat=True))
        if Trial.Kind.PRACTICE not in ANSWER_SCOPES[purpose].kinds:
            expected -= {"screened out"}
        assert who == expected, purpose
    assert set(answers_counted(survey=survey, purpose=Purpose.ESTIMATE).values_list("trial__kind", flat=True)) == {"main"}
    assert set(answers_counted(survey=survey, purpose=Purpose.LIVE_TIME).values_list("trial__kind", flat=True)) == {"main", "catch"}
    assert answers_counted(survey=survey, purpose=Purpose.ALL).count() == Response.objects.count()


def main_answers(person) -> int:
    return person.responses.filter(trial__kind=Trial.Kind.MAIN).count()


def test_the_report_the_estimate_the_planner_the_monitor_and_the_plan_lock_count_what_the_rule_says(everyone):
    survey, people = everyone
    per_session = main_answers(people["real"])

    # The report reads every answer and leaves out, by its own rules, all but the real person and the rehearsal.
    data = survey_data_load(survey=survey)
    assert labels(people, data.answers["participant"][data.included]) == DATA
    assert data.included.sum() == answers_counted(survey=survey, purpose=Purpose.REPORT).count() == 2 * per_session

    # The adaptive estimate counts the same sessions and answers.
    estimated = adaptive_estimate(survey=_with_goal(survey), state=adaptive_state_initial(survey=survey, blocks_per_participant=1))
    assert estimated.completed == 2 and sum(estimated.n_answers) == 2 * per_session

    # The planner: the live sessions' answers (the estimate's), the pilot's own, the completed live sessions' time.
    figures = survey_answer_figures(survey=survey)
    assert (figures["source"], figures["sessions"], sum(c["answers"] for c in figures["conditions"])) == ("live", 2, 2 * per_session)
    pilot = survey_pilot_figures(survey=survey)
    assert (pilot["sessions"], sum(c["answers"] for c in pilot["conditions"])) == (1, main_answers(people["pilot"]))
    assert survey_seconds_per_participant(survey=survey)[1] == "median of 3 completed live sessions"

    # The monitor shows everyone of its mode, bots and the rehearsal included.
    assert {p["label"] for p in survey_monitor(survey=survey)["participants"]} == LIVE
    assert {p["label"] for p in survey_monitor(survey=survey, pilot=True)["participants"]} == {"pilot"}

    # Real people froze the plan and forbid a rehearsal; the rehearsal's bots alone would not have.
    assert plan_locked(survey=survey) and survey_rehearsal_real_count(survey=survey) == 5


def _with_goal(survey):
    survey.precision_goal = 0.01  # in memory only: the estimate reads the goal; which answers it counts is the point
    return survey


def test_the_pilots_seconds_per_trial_is_the_spacing_of_its_trials_not_of_its_practice_or_screening(everyone):
    # The pilot practised and screened at leisure (10 s apart), then answered its trials 2 s apart. Before the rule
    # the screening answers counted as trials: the spacing took in the pause between screening and the trials.
    survey, people = everyone
    start = people["pilot"].created_at
    answers = Response.objects.filter(participant=people["pilot"]).order_by("trial__kind", "id").select_related("trial")
    before = [a for a in answers if a.trial.kind in (Trial.Kind.PRACTICE, Trial.Kind.SCREENING)]
    trials = [a for a in answers if a.trial.kind in (Trial.Kind.MAIN, Trial.Kind.CATCH)]
    for k, answer in enumerate(before):
        Response.objects.filter(pk=answer.pk).update(created_at=start + timedelta(seconds=10 * k))
    for k, answer in enumerate(trials):
        Response.objects.filter(pk=answer.pk).update(created_at=start + timedelta(seconds=100 + 2 * k))

    assert survey_pilot_figures(survey=survey)["seconds_per_trial"] == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------------
# No fifth door

DOOR = "surveys/counted_answers.py"
SESSION_FLAGS = ("is_pilot", "is_bot", "is_rehearsal", "excluded", "status", "completed_at")
# Modules that read the answers of sessions they name (one session while it runs, or sessions being erased or
# checked), never a survey's: the only ones outside the door that query answers at all.
NAMED_SESSIONS = {
    "surveys/services/answers.py": "the answer endpoint, practice feedback and screening",
    "surveys/services/session.py": "a session's completion and its mistimed flags",
    "surveys/services/enrollment.py": "a restart erases the session's answers",
    "surveys/services/data_rights.py": "an erasure counts what it erases",
    "surveys/services/rehearsal.py": "erasing a rehearsal counts what it erases",
    "surveys/selectors.py": "one session's progress and answered trials",
    "surveys/bots.py": "a bot run checks the answers of its own sessions were stored once",
}
# What may name a Response query's rows outside the door: particular sessions or answers, never a survey's.
BY_SESSION = {"participant", "participant_id", "participant__in", "participant_id__in", "participant__token__in",
              "pk", "pk__in", "idempotency_key", "timing", "mistimed"}


def _sources():
    # Hidden folders are not the project's code: .venv, and caches (pytest's holds a venv with numpy).
    tops = [top for top in ROOT.iterdir() if top.is_dir() and not top.name.startswith(".")
            and top.name not in ("tests", "bench", "frontend", "scripts", "var")]
    for path in sorted(path for top in tops for path in top.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if "/migrations/" in relative or any(part.startswith(".") for part in relative.split("/")):
            continue
        if relative != DOOR:
            yield relative, ast.parse(path.read_text())


def _answer_queries(tree):
    """Calls on Response.objects… or on a session's .responses…: (the call, its keyword names)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        root = node.func.value
        while isinstance(root, (ast.Call, ast.Attribute)):
            if isinstance(root, ast.Attribute) and (root.attr == "responses" or (
                    root.attr == "objects" and isinstance(root.value, ast.Name) and root.value.id == "Response")):
                yield node, [k.arg for k in node.keywords if k.arg]
                break
            root = root.func if isinstance(root, ast.Call) else root.value


def test_no_module_outside_the_door_reads_a_surveys_answers_or_filters_them_by_session_flags():
    found = []
    for path, tree in _sources():
        for call, names in _answer_queries(tree):
            if path not in NAMED_SESSIONS:
                found.append(f"{path}:{call.lineno} queries answers")
            if call.func.attr in ("filter", "exclude", "get") and not set(names) <= BY_SESSION | {
                    f"trial__kind{s}" for s in ("", "__in")}:
                found.append(f"{path}:{call.lineno} {call.func.attr}({', '.join(names)})")
            flags = [n.arg for n in ast.walk(call) if isinstance(n, ast.keyword) and n.arg
                     and any(flag in n.arg.split("__") for flag in SESSION_FLAGS)]
            if flags:
                found.append(f"{path}:{call.lineno} filters answers by {flags}")
        for node in ast.walk(tree):  # a sessions query that reaches their answers: Count("responses", …), responses__…
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and str(node.args[0].value).split("__")[0] == "responses":
                found.append(f"{path}:{node.lineno} ({node.args[0].value!r}, …)")
            if isinstance(node, ast.keyword) and node.arg and node.arg.startswith("responses__"):
                found.append(f"{path}:{node.lineno} {node.arg}=")
            if isinstance(node, ast.Attribute) and node.attr == "db_table" and isinstance(node.value, ast.Attribute) \
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "Response":
                found.append(f"{path}:{node.lineno} Response._meta.db_table (raw SQL over answers)")
    assert not found, f"answers read outside {DOOR}; add a Purpose there instead:\n" + "\n".join(sorted(set(found)))
