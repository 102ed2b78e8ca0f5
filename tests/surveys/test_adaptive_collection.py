"""Adaptive collection: a survey with a precision goal gives each new participant the trial list that most narrows
the widest interval still above the goal, and closes as soon as every IRI set meets it, the cap is reached or no
list that helps has a place; the report and the monitor say which of these ended it and which sets missed."""
import io
import json
import random
import threading
import time
from collections import Counter

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection
from hypothesis import given, settings, strategies as st
from PIL import Image

from backend.exceptions import ApplicationError
from iri_worker.models import IriImage, IriJob
from iri_worker.services import target_photo_create
from stats.adaptive.blocks import blocks_split
from stats.adaptive.stopping import MIN_ANSWERS
from results.services import alignment_report
from surveys.models import Participant, Slot, Survey, Trial
from surveys.services import participant_enroll, participant_erase, survey_adaptive_refresh, survey_create, survey_publish
from surveys.services import adaptive as adaptive_service
from surveys.services.adaptive import adaptive_outcome
from tests.conftest import finished_iri_set, survey_posted
from tests.surveys.test_assignment import answer_all

pytestmark = pytest.mark.django_db


def png(colour, seed) -> bytes:
    noise = np.random.default_rng(seed).integers(0, 40, (40, 40, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def four_sets(team):
    """Four finished IRI sets of 12 targets each: one made by the engine, three copies of it under other names
    (what matters here is which set a trial belongs to, not its pixels)."""
    photos = [target_photo_create(team=team, name=f"photo {k}", data=png((20 * k, 120, 255 - 20 * k), k)) for k in range(12)]
    made = finished_iri_set(photos)
    sets = [made]
    for name in ("set b", "set c", "set d"):
        job = IriJob.objects.create(team=team, name=name, spec=made.spec, status=IriJob.Status.DONE)
        job.targets.set(photos)
        IriImage.objects.bulk_create(
            IriImage(**{f.attname: getattr(i, f.attname) for f in IriImage._meta.concrete_fields if f.name not in ("id", "job")}, job=job)
            for i in made.images.all()
        )
        sets.append(job)
    return sets


def adaptive(sets, **fields):
    fields = {"trials_per_participant": 6, "ratings_per_list": 10, "precision_goal": 0.2, **fields}
    return survey_publish(survey=survey_create(slug=fields.pop("slug", "adaptive"), title="t", iri_jobs=sets, **fields))


def answer_until_turned_away(survey, *, prefix: str = "P", choose=lambda t: t.target_option, limit: int = 1000):
    """People enroll and answer every trial with ``choose`` until one is turned away: (how many completed, the
    refusal). Fails when ``limit`` people all got in."""
    for k in range(limit):
        try:
            participant = participant_enroll(survey=survey, prolific_pid=f"{prefix}{k}")[0]
        except ApplicationError as refusal:
            return k, refusal
        answer_all(participant, choose=choose)
    raise AssertionError(f"nobody was turned away in {limit} enrollments")


def sets_of(participant) -> Counter:
    """The IRI sets of a participant's main trials (all their blocks), with how many trials of each."""
    return Counter(Trial.objects.filter(trial_list__slots__participant=participant, kind="main")
                   .values_list("iri__job_id", flat=True))


def test_an_adaptive_survey_builds_blocks_of_two_trials_of_one_set_and_records_them(four_sets):
    survey = adaptive(four_sets)

    assert survey.trial_lists.count() == 24  # 48 trials, 2 a block
    for trial_list in survey.trial_lists.all():
        per_set = Counter(trial_list.trials.filter(kind="main").values_list("iri__job_id", flat=True))
        assert sum(per_set.values()) == 2 and len(per_set) == 1
    state = survey.adaptive_state
    assert state["conditions"] == sorted(j.pk for j in four_sets)
    assert state["blocks_per_participant"] == 3  # 6 trials a participant
    assert [sum(column) for column in zip(*state["lists"].values())] == [12, 12, 12, 12]
    assert not state["stop"] and state["half_width"] == [0.5] * 4


def test_each_new_participant_gets_blocks_of_the_sets_still_above_the_goal_only(four_sets):
    survey = adaptive(four_sets)
    b, c = four_sets[1].pk, four_sets[2].pk
    # Sets a and d have met the goal; b and c are still wide.
    state = survey.adaptive_state
    state.update(half_width=[0.05, 0.3, 0.25, 0.05], n_answers=[40, 30, 30, 40], done=[True, False, False, True])
    Survey.objects.filter(pk=survey.pk).update(adaptive_state=state)

    for k in range(6):
        participant = participant_enroll(survey=survey, prolific_pid=f"P{k}")[0]
        got = sets_of(participant)
        assert set(got) == {b, c}, f"participant {k} got {got}: a set that met the goal, or one still open left out"
        assert sum(got.values()) == 6 and participant.assignments.filter(trial__kind="main").count() == 6

    # A block is never over-filled: every claimed slot is its own, one in each of a participant's three blocks.
    held = Slot.objects.filter(survey=survey, is_pilot=False).exclude(participant=None)
    assert held.count() == 18 and held.values("participant", "trial_list").distinct().count() == 18


def test_collection_closes_with_the_full_page_once_every_set_meets_its_goal(four_sets):
    survey = adaptive(four_sets, ratings_per_list=20, precision_goal=0.12)
    rng = random.Random(0)
    easy = {four_sets[0].pk, four_sets[1].pk}  # people always see these IRIs' targets; the others are a coin toss

    def choose(trial):
        right = trial.iri.job_id in easy or rng.random() < 0.5
        return trial.target_option if right else 1 - trial.target_option

    completed, closed = answer_until_turned_away(survey, choose=choose)

    assert closed.status_code == 409 and closed.extra == {"reason": "full"}
    # The truth for the one turned away: no place; never a claim about the study's answers.
    assert closed.message.startswith("This study is full") and "answers" not in closed.message
    survey.refresh_from_db()
    state = survey.adaptive_state
    assert state["stop"] and state["reason"] == "goal" and all(state["done"])
    assert all(h <= 0.12 for h in state["half_width"]) and min(state["n_answers"]) >= MIN_ANSWERS
    # The easy sets needed fewer answers than the coin tosses (1.0 under fixed N), and collection stopped well
    # before every block was full.
    answers = dict(zip(state["conditions"], state["n_answers"]))
    assert sum(answers[j] for j in easy) < 0.5 * sum(n for j, n in answers.items() if j not in easy)
    assert completed * state["blocks_per_participant"] < survey.trial_lists.count() * survey.ratings_per_list
    # Re-estimating from scratch agrees with what enrollment used.
    assert survey_adaptive_refresh(survey_id=survey.pk, force=True).done == state["done"]


def test_the_cap_on_participants_closes_enrollment_even_when_goals_are_unmet(four_sets):
    # At the worst case (every set at 0.5) 14 people × 6 trials ÷ 4 sets = 21 answers a set cannot reach 0.15
    # (39 needed): the researcher accepts that risk.
    survey = adaptive(four_sets, max_participants=14, precision_goal=0.15, accept_goal_risk=True)
    for k in range(14):
        participant_enroll(survey=survey, prolific_pid=f"P{k}")

    with pytest.raises(ApplicationError) as closed:
        participant_enroll(survey=survey, prolific_pid="one too many")

    assert closed.value.extra == {"reason": "full"}
    assert Participant.objects.filter(survey=survey).count() == 14
    # Pilots are not live data and are not capped by the goal.
    assert participant_enroll(survey=survey, prolific_pid="pilot", pilot=True)[0].trial_list_id


def test_a_fixed_survey_is_untouched_by_adaptive_collection(four_sets):
    survey = survey_publish(survey=survey_create(slug="fixed", title="t", iri_jobs=four_sets, trials_per_participant=8))

    assert survey.adaptive_state == {}
    for trial_list in survey.trial_lists.all():  # round robin: every list mixes all four sets
        assert len(set(trial_list.trials.filter(kind="main").values_list("iri__job_id", flat=True))) == 4


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"precision_goal": 0}, "precision_goal"),
        ({"precision_goal": 0.5}, "precision_goal"),
        ({"precision_goal": -0.1}, "precision_goal"),
        ({"precision_goal": 0.1, "max_participants": 5}, "max_participants"),  # below one list's N = 10
        ({"precision_goal": 0.01}, "precision_goal"),  # needs ~9,600 answers a set; 12 IRIs × 10 ratings give 120
        ({"precision_goal": 0.1, "max_participants": 10}, "precision_goal"),  # 10 people × 6 trials ÷ 4 sets = 15
        # Reachable if every answer agreed (20 needed), not at the worst case, p = 0.5 (93 needed):
        ({"precision_goal": 0.1, "max_participants": 40}, "precision_goal"),  # 40 × 6 ÷ 4 = 60 answers a set
        ({"precision_goal": 0.08}, "precision_goal"),  # 147 needed; 12 IRIs × 10 ratings give 120
        ({"precision_goal": 0.1, "precision_every": 0}, "precision_every"),
    ],
)
def test_a_goal_that_cannot_be_met_is_refused_naming_the_field_and_nothing_is_created(researcher_client, four_sets, fields, field):
    body = {"slug": "bad", "title": "t", "iri_jobs": [j.pk for j in four_sets], "trials_per_participant": 6,
            "ratings_per_list": 10, **fields}

    response = researcher_client.post("/api/surveys/", body, format="json")

    assert response.status_code == 400, response.json()
    assert field in str(response.json())
    assert not Survey.objects.exists()


def test_the_report_states_the_stopping_rule_and_its_interval(four_sets, capsys):
    survey = adaptive(four_sets)
    for k in range(3):
        answer_all(participant_enroll(survey=survey, prolific_pid=f"P{k}")[0])

    call_command("alignment_report", survey.slug, "--format", "json", "--n-boot", "50")
    collection = json.loads(capsys.readouterr().out)["collection"]

    assert collection["design"] == "adaptive" and "half-width: 0.2" in collection["stopping_rule"].replace("Goal half-width", "half-width")
    assert "design-effect Wilson" in collection["interval"] and not collection["stopped"]
    assert sum(c["n_answers"] for c in collection["conditions"]) == 18
    assert all(c["goal"] == 0.2 and c["low"] <= c["high"] for c in collection["conditions"])


@given(st.lists(st.integers(1, 40), min_size=1, max_size=8), st.integers(1, 4))
@settings(max_examples=200, deadline=None)
def test_blocks_use_every_trial_once_each_of_one_set_and_of_even_size(set_sizes, per_block):
    units = [[(c, k)] for c, size in enumerate(set_sizes) for k in range(size)]

    blocks = blocks_split(units=units, condition_of=lambda u: u[0][0], units_per_block=per_block)

    assert sorted(u for block in blocks for u in block) == sorted(units)
    for c, size in enumerate(set_sizes):
        sizes = [len(block) for block in blocks if block[0][0][0] == c]
        assert all(u[0][0] == c for block in blocks if block[0][0][0] == c for u in block)  # one set a block
        assert max(sizes) - min(sizes) <= 1 and max(sizes) <= per_block and len(sizes) == -(-size // per_block)


def test_erasing_a_participant_takes_their_answers_out_of_the_estimate(four_sets, django_capture_on_commit_callbacks):
    survey = adaptive(four_sets)
    for k in range(3):
        answer_all(participant_enroll(survey=survey, prolific_pid=f"P{k}")[0])
    survey.refresh_from_db()
    assert sum(survey.adaptive_state["n_answers"]) == 18

    with django_capture_on_commit_callbacks(execute=True):
        participant_erase(surveys=Survey.objects.all(), prolific_pid="P1")

    survey.refresh_from_db()
    assert sum(survey.adaptive_state["n_answers"]) == 12 and survey.adaptive_state["completed"] == 2


# ------------------------------------------------------------------------------------------ never a silent shortfall


def test_a_goal_the_worst_case_cannot_reach_is_built_only_when_the_researcher_accepts_the_risk(
        researcher_client, client, researcher, four_sets):
    body = {"slug": "risky", "title": "t", "iri_jobs": [j.pk for j in four_sets], "trials_per_participant": 6,
            "ratings_per_list": 10, "precision_goal": 0.1, "max_participants": 40}

    refused = researcher_client.post("/api/surveys/", body, format="json")
    built = survey_posted(researcher_client, {**body, "accept_goal_risk": True})

    assert refused.status_code == 400 and refused.json()["extra"]["field"] == "precision_goal"
    assert "accept_goal_risk" in refused.json()["message"]
    assert built["build"] == "built" and built["trials"] > 0
    # Wilson at p = 0.5 reaches 0.1 at n = 93 (half-width 0.0996; 0.1001 at 92); the cap gives each of the four
    # sets at most 40 people × 6 trials ÷ 4 = 60 answers.
    risk = built["build_report"]["goal_risk"]
    assert (risk["accepted"], risk["needed"], risk["reachable"]) == (True, 93, 60)
    assert "needs 93 answers" in risk["warning"] and "at most 60" in risk["warning"]
    # The survey's page keeps the warning.
    client.force_login(researcher)
    page = client.get(f"/admin/surveys/survey/{Survey.objects.get(slug='risky').pk}/change/")
    assert b"Accepted at risk" in page.content and b"needs 93 answers" in page.content


def test_collection_that_runs_out_of_useful_places_says_so_and_names_each_set_that_missed(four_sets, researcher_client):
    # Two ratings per list: 24 answers a set, too few for 0.15 when people disagree (risk accepted).
    survey = adaptive(four_sets, ratings_per_list=2, precision_goal=0.15, accept_goal_risk=True)
    rng = random.Random(1)

    def coin(trial):  # a coin toss: every set stays near 0.5
        return trial.target_option if rng.random() < 0.5 else 1 - trial.target_option

    # 48 places in blocks of two trials; sessions hold at most 3 blocks (fewer, at most 2 of one set, near the end)
    k, refused = answer_until_turned_away(survey, choose=coin, limit=48)

    assert refused.message.startswith("This study is full") and k >= 16
    survey.refresh_from_db()
    state = survey.adaptive_state
    assert state["stop"] and state["reason"] == "no_place" and not any(state["done"])
    monitor = researcher_client.get(f"/api/surveys/{survey.slug}/monitor").json()["collection"]
    assert monitor["stop_reason"] == "no_place" and monitor["stopped"] and not monitor["met"]
    assert {m["iri_job"] for m in monitor["missed"]} == {j.pk for j in four_sets}
    for m, half_width in zip(monitor["missed"], state["half_width"]):
        assert m["missed_by"] == pytest.approx(half_width - 0.15, abs=1e-6) and m["missed_by"] > 0
    assert "no block of trials of an IRI set above the goal has a place left" in monitor["note"]
    report = alignment_report(survey=survey, n_boot=20)["collection"]
    assert report["stopped"] and report["stop_reason"] == report["reason"] == "no_place"
    assert {s["iri_job"] for s in report["missed"]} == {j.pk for j in four_sets}
    assert all(s["answers"] == 24 and not s["meets_goal"] for s in report["sets"])


def test_the_goal_stops_collection_only_once_the_sessions_under_way_have_ended_and_a_set_they_move_reopens(
        four_sets, researcher_client, client, researcher):
    survey = adaptive(four_sets, precision_goal=0.2, precision_every=2)
    # Two sessions under way while the others finish.
    late = [participant_enroll(survey=survey, prolific_pid=f"late {k}")[0] for k in range(2)]

    k, refusal = answer_until_turned_away(survey)  # always the target
    assert refusal.extra == {"reason": "full"}
    survey.refresh_from_db()
    state = survey.adaptive_state
    # Every set meets the goal, but two sessions are under way: the goal is pending, not a stop.
    assert all(state["done"]) and not state["stop"] and state["reason"] == "goal_pending"
    pending = alignment_report(survey=survey, n_boot=20)["collection"]
    assert pending["stop_reason"] == "goal_pending" and pending["sessions_under_way"] == 2 and not pending["missed"]
    client.force_login(researcher)
    page = client.get(f"/admin/surveys/survey/{survey.pk}/monitor/").content.decode()
    assert "2 sessions under way still add answers" in page

    # Wrong answers only: a set near 20 answers goes above 0.2 with two wrong ones.
    answer_all(late[0], choose=lambda t: 1 - t.target_option)
    # While the goal is pending every completion re-estimates (precision_every 2 would have waited for another).
    survey.refresh_from_db()
    assert survey.adaptive_state["completed"] == k + 1
    answer_all(late[1], choose=lambda t: 1 - t.target_option)

    survey.refresh_from_db()
    state = survey.adaptive_state
    late_sets = {job for participant in late for job in sets_of(participant)}
    reopened = {job for job, done in zip(state["conditions"], state["done"]) if not done}
    # The sets the late answers moved back above the goal are open again, and collection goes on.
    assert reopened and reopened <= late_sets
    assert not state["stop"] and state["reason"] == ""
    monitor = researcher_client.get(f"/api/surveys/{survey.slug}/monitor").json()["collection"]
    assert monitor["stop_reason"] == "" and not monitor["missed"]

    # The next people get blocks of the reopened sets only, until every set meets the goal with nobody under way.
    newcomer = participant_enroll(survey=survey, prolific_pid="newcomer")[0]
    assert set(sets_of(newcomer)) <= reopened
    answer_all(newcomer)
    assert answer_until_turned_away(survey, prefix="Q")[1].extra == {"reason": "full"}
    survey.refresh_from_db()
    state = survey.adaptive_state
    assert state["stop"] and state["reason"] == "goal" and all(state["done"])
    report = alignment_report(survey=survey, n_boot=20)["collection"]
    assert report["stop_reason"] == "goal" and report["sessions_under_way"] == 0 and not report["missed"]


def test_the_outcome_says_by_how_much_each_set_missed(four_sets):
    survey = adaptive(four_sets, precision_goal=0.2)
    state = survey.adaptive_state
    jobs = state["conditions"]
    state.update(stop=True, reason="cap_participants", half_width=[0.24, 0.18, 0.2, 0.19], n_answers=[30, 30, 30, 12],
                 done=[False, True, True, False])
    Survey.objects.filter(pk=survey.pk).update(adaptive_state=state, max_participants=12)
    survey.refresh_from_db()

    outcome = adaptive_outcome(survey=survey)

    assert outcome["stop_reason"] == "cap_participants" and outcome["stopped"] and not outcome["met"]
    # 0.24 - 0.2 = 0.04; the fourth set is within the goal but 8 answers short of the rule's 20.
    assert [(m["iri_job"], m["missed_by"], m["answers_short"]) for m in outcome["missed"]] == [
        (jobs[0], 0.04, 0), (jobs[3], 0.0, 8)]
    assert "cap of 12 participants" in outcome["note"] and "missed by 0.040" in outcome["note"]


def test_the_report_lists_each_iri_set_the_rule_stops_on_and_maps_it_to_its_condition(four_sets, capsys):
    survey = adaptive(four_sets)
    for k in range(3):
        answer_all(participant_enroll(survey=survey, prolific_pid=f"P{k}")[0])

    collection = alignment_report(survey=survey, n_boot=20)["collection"]

    # The four sets share one condition key, so the report pools them into one condition; the rule stops per set.
    assert len(collection["conditions"]) == 1 and len(collection["sets"]) == 4
    assert sorted(collection["conditions"][0]["iri_sets"]) == sorted(j.pk for j in four_sets)
    assert [s["iri_job"] for s in collection["sets"]] == sorted(j.pk for j in four_sets)
    assert all(s["condition_index"] == 0 and s["condition"] == collection["conditions"][0]["condition"]
               for s in collection["sets"])
    assert sum(s["answers"] for s in collection["sets"]) == 18 == collection["conditions"][0]["n_answers"]
    assert all(s["goal"] == 0.2 and s["low"] <= s["high"] for s in collection["sets"])
    assert collection["stop_reason"] == "" and not collection["stopped"] and not collection["missed"]
    # The table names every set too.
    call_command("alignment_report", survey.slug, "--format", "table", "--n-boot", "20")
    table = capsys.readouterr().out
    assert "collection still open: Collection goes on." in table
    assert all(job.name[:28] in table for job in four_sets)


@pytest.mark.django_db(transaction=True)
def test_a_session_that_completes_while_an_estimate_is_made_is_counted_by_the_next_one(four_sets, monkeypatch):
    # Two people finish at once. The first one's estimate has read who has completed when the second one's completion
    # commits; the second one's refresh then waits for the survey's lock. The estimate must not count the second
    # session without its answers, or the second refresh finds nothing new and its answers never reach the state.
    survey = adaptive(four_sets, precision_goal=0.1, precision_every=1)
    first, second = (participant_enroll(survey=survey, prolific_pid=pid)[0] for pid in ("P1", "P2"))
    estimate = adaptive_service.adaptive_estimate
    second_done = threading.Thread(target=lambda: (answer_all(second), connection.close()))

    fired = []

    def estimate_while_the_second_completes(*, survey, state):
        if fired:  # the second session's own estimate
            return estimate(survey=survey, state=state)

        def after_first_query(execute, sql, params, many, context):
            result = execute(sql, params, many, context)
            if not fired:
                fired.append(sql)
                second_done.start()
                while not Participant.objects.filter(pk=second.pk, status=Participant.Status.COMPLETED).exists():
                    time.sleep(0.01)
            return result

        with connection.execute_wrapper(after_first_query):
            return estimate(survey=survey, state=state)

    monkeypatch.setattr(adaptive_service, "adaptive_estimate", estimate_while_the_second_completes)
    answer_all(first)
    second_done.join(timeout=60)

    state = Survey.objects.get(pk=survey.pk).adaptive_state
    assert not second_done.is_alive()
    assert state["completed"] == 2 and sum(state["n_answers"]) == 2 * 6
