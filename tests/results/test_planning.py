"""The budget planner and the live forecast: a pilot with known durations gives the figures a hand computation
gives; bad input is refused naming the field (service, command, admin, API); the monitor shows how far an
adaptive survey is from its goal, and says so when the goal cannot be met."""
import json
import uuid
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from scipy import stats

from backend.exceptions import ApplicationError
from iri_worker.models import IriJob
from stats.adaptive.interval import condition_answers_needed
from stats.adaptive.stopping import MIN_ANSWERS
from stats.alignment import Z95
from surveys.planning import survey_forecast, survey_pilot_figures, survey_plan
from surveys.models import Participant, Response, Survey, Trial
from surveys.services import survey_create, survey_publish
from teams.models import Role
from teams.services import membership_set, team_create
from tests.conftest import finished_iri_set

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) - timedelta(days=1)


@pytest.fixture
def two_sets(photos):
    """Two finished IRI sets of three IRIs each, named so the tables can be read."""
    sets = [finished_iri_set(photos), finished_iri_set(photos)]
    for job, name in zip(sets, ["robust", "standard"]):
        IriJob.objects.filter(pk=job.pk).update(name=name)
        job.name = name
    return sets


@pytest.fixture
def survey(two_sets):
    """A fixed-N survey: one trial list of six main trials (three per set)."""
    return survey_publish(survey=survey_create(slug="plan", title="t", iri_jobs=two_sets, rng_seed=1))


def session(survey, *, minutes: float, spacing_s: float, chose_target: dict[str, list[bool]], pilot=True,
            completed=True, bot=False) -> Participant:
    """A session that arrived at T0, answered its trials from T0 + 60 s every spacing_s seconds (response times
    of 1.5 s) and completed `minutes` after arriving. chose_target: per set name, one answer per main trial."""
    status = Participant.Status.COMPLETED if completed else Participant.Status.ACTIVE
    participant = Participant.objects.create(survey=survey, is_pilot=pilot, is_bot=bot, status=status)
    Participant.objects.filter(pk=participant.pk).update(
        created_at=T0, completed_at=T0 + timedelta(minutes=minutes) if completed else None)
    at = T0 + timedelta(seconds=60)
    for name, answers in chose_target.items():
        trials = Trial.objects.filter(survey=survey, kind=Trial.Kind.MAIN, iri__job__name=name).order_by("pk")
        for trial, right in zip(trials, answers):
            choice = trial.target_option if right else 1 - trial.target_option
            response = Response.objects.create(participant=participant, trial=trial, choice=choice, rt_ms=1500,
                                               idempotency_key=uuid.uuid4())
            Response.objects.filter(pk=response.pk).update(created_at=at)
            at += timedelta(seconds=spacing_s)
    return participant


@pytest.fixture
def pilot(survey):
    """Three completed pilot sessions of 2.5, 5 and 10 minutes whose six answers come every 4, 5 and 9 s, one
    unfinished pilot session, and a bot whose times must not count."""
    session(survey, minutes=2.5, spacing_s=4, chose_target={"robust": [True, True, False], "standard": [True] * 3})
    session(survey, minutes=5, spacing_s=5, chose_target={"robust": [True, False, True], "standard": [True] * 3})
    session(survey, minutes=10, spacing_s=9, chose_target={"robust": [True, True, True], "standard": [True] * 3})
    session(survey, minutes=0, spacing_s=1, chose_target={"standard": [False]}, completed=False)
    session(survey, minutes=90, spacing_s=0.1, chose_target={"robust": [False] * 3}, bot=True)
    return survey


def other_lab_user(django_user_model):
    lab_b = team_create(name="Lab B")
    user = django_user_model.objects.create_user(username="bob", password="pw-bob-123", is_staff=True)
    membership_set(team=lab_b, user=user, role=Role.RESEARCHER)
    return user


# ------------------------------------------------------------------------------------------ the pilot's figures


def test_the_pilot_gives_seconds_per_trial_the_fixed_part_and_each_sets_share(pilot):
    figures = survey_pilot_figures(survey=pilot)

    # Spacings 4, 5 and 9 s: the median session spaces its answers 5 s apart.
    assert figures["seconds_per_trial"] == 5
    assert figures["seconds_per_trial_method"] == "spacing of trial answers"
    # Sessions of 150, 300 and 600 s less six trials of 5 s: 120, 270, 570 s; the median is 270 s.
    assert figures["sessions"] == 3 and figures["session_seconds"] == 300
    assert figures["seconds_per_participant"] == 270
    # robust: 7 of 9 answers chose the target; standard: 9 of 10 (the unfinished session's one answer counts).
    robust, standard = figures["conditions"]
    assert (robust["name"], robust["answers"], robust["alignment"]) == ("robust", 9, pytest.approx(7 / 9))
    assert (standard["name"], standard["answers"], standard["alignment"]) == ("standard", 10, pytest.approx(0.9))
    # No set has MIN_ANSWERS pilot answers: the design effect is assumed to be 1.
    assert figures["design_effect"] == 1.0 and figures["design_effect_sets"] == 0


def test_the_plan_from_a_pilot_says_what_each_participant_costs_and_how_many_are_needed(pilot):
    plan = survey_plan(survey=pilot, half_width=0.1, rate_per_hour=9, fee=0.33)

    a = plan["assumptions"]
    assert (a["seconds_per_trial"], a["seconds_per_participant"]) == ({"value": 5.0, "source": "pilot"},
                                                                      {"value": 270.0, "source": "pilot"})
    assert a["design_effect"]["source"] == "default" and a["trials_per_participant"]["value"] == 6
    # 6 trials x 5 s + 270 s = 300 s, the pilot's median session; £9/h for 5 minutes is £0.75, £0.9975 with 33 %.
    assert plan["seconds_per_participant"] == 300
    assert plan["pay_per_participant"] == 0.75 and plan["cost_per_participant"] == 0.9975
    # Three IRIs a set leave the interval df = min(participants, items) - 1 = 2 degrees of freedom: it needs
    # (t_2 / z)² ≈ 4.8 times the answers of many clusters (65 and 37), which the plan now counts; adaptive collection
    # gathers just that: a set the sessions under way will bring to the goal gets no more blocks.
    few_clusters = (stats.t.ppf(0.975, 2) / Z95) ** 2
    need = [max(MIN_ANSWERS, condition_answers_needed(p=p, half_width=0.1, design_effect=few_clusters))
            for p in (7 / 9, 0.9)]
    assert [c["answers_needed"] for c in plan["conditions"]] == [310, 177]
    assert [310, 177] == need
    assert [c["p_source"] for c in plan["conditions"]] == ["pilot", "pilot"]
    # Fixed N: every IRI rated 122 times (every set meets the goal in half the studies), 732 answers over 6 trials:
    # 122 participants on the one list, each £0.9975: £121.695, £121.70. Adaptive: 487 answers, 105 participants.
    assert plan["fixed"] == {"answers": 732, "participants": 122, "ratings_per_list": 122, "cost": 121.7,
                             "reachable": True}
    assert plan["adaptive"]["answers"] == 487 and plan["adaptive"]["participants"] == 105
    assert plan["adaptive"]["cost"] == round(105 * 0.75 * 1.33, 2)
    assert any(w.startswith("p: the pilot's share for robust, standard rests on fewer than") for w in plan["warnings"])


def test_entered_figures_win_over_the_pilot_and_the_plan_says_so(pilot):
    plan = survey_plan(survey=pilot, half_width=0.1, seconds_per_trial=10, seconds_per_participant=60, p=[0.5, 0.02])

    assert plan["assumptions"]["seconds_per_trial"] == {"value": 10.0, "source": "entered"}
    assert plan["seconds_per_participant"] == 6 * 10 + 60
    assert [(c["p"], c["p_source"]) for c in plan["conditions"]] == [(0.5, "entered"), (0.02, "entered")]


def test_without_a_pilot_the_plan_assumes_defaults_and_the_worst_case_and_says_so(survey):
    plan = survey_plan(survey=survey, half_width=0.05)

    assert plan["pilot"]["sessions"] == 0
    assert {plan["assumptions"][k]["source"] for k in ("seconds_per_trial", "seconds_per_participant")} == {"default"}
    assert [c["p"] for c in plan["conditions"]] == [0.5, 0.5]
    assert any("No completed pilot session" in w for w in plan["warnings"])
    assert any(w.startswith("p: no pilot answers for robust, standard") for w in plan["warnings"])


def test_a_rate_below_six_pounds_an_hour_is_planned_with_a_warning(survey):
    plan = survey_plan(survey=survey, half_width=0.1, rate_per_hour=5)

    assert any(w.startswith("rate_per_hour: £5.00/h is below") for w in plan["warnings"])


@pytest.mark.parametrize("kwargs, field", [
    ({"half_width": 0}, "half_width"),
    ({"half_width": 0.5}, "half_width"),
    ({"half_width": 0.1, "rate_per_hour": 0}, "rate_per_hour"),
    ({"half_width": 0.1, "fee": 1.5}, "fee"),
    ({"half_width": 0.1, "seconds_per_trial": -1}, "seconds_per_trial"),
    ({"half_width": 0.1, "cap_participants": 0}, "cap_participants"),
    ({"half_width": 0.01, "cap_participants": 5}, "half_width"),  # the goal needs more than the cap allows
    ({"half_width": 0.1, "p": [0.5, 0.5, 0.5]}, "p"),
    ({"half_width": 0.1, "p": [1.5]}, "p"),
])
def test_bad_input_is_a_400_naming_the_field(survey, kwargs, field):
    with pytest.raises(ApplicationError) as refused:
        survey_plan(survey=survey, **kwargs)

    assert refused.value.status_code == 400
    assert refused.value.extra["field"] == field and refused.value.message.startswith(f"{field}:")


def test_a_goal_the_cap_cannot_reach_says_how_many_participants_it_needs(survey):
    with pytest.raises(ApplicationError) as refused:
        survey_plan(survey=survey, half_width=0.05, cap_participants=10)

    # p = 0.5 on three IRIs a set (df = 2): about 1,850 answers a set, over a participant's two blocks (a set's
    # three IRIs make blocks of 2 and 1)
    assert "needs 734 participants even with adaptive allocation, above cap_participants 10" in refused.value.message


# ------------------------------------------------------------------------------------------ the command


def test_the_command_prints_the_plan_as_json(pilot, capsys):
    call_command("survey_plan", "plan", "--half-width", "0.1", "--rate", "9", "--fee", "0.33", "--format", "json")

    plan = json.loads(capsys.readouterr().out)
    assert plan["adaptive"]["participants"] == 105 and plan["fixed"]["cost"] == 121.7


def test_the_command_prints_a_table_with_sources_and_both_designs(pilot, capsys):
    call_command("survey_plan", "plan", "--half-width", "0.1", "--fee", "0.33", "--seconds-per-trial", "6")

    table = capsys.readouterr().out
    assert "seconds per trial                6  entered" in table
    assert "seconds per participant        270  pilot" in table
    assert "participants             122         105" in table
    assert "robust" in table and "fee 33%" in table


@pytest.mark.parametrize("args, sentence", [
    (["--half-width", "0.7"], "half_width: must lie in (0, 0.5)"),
    (["--half-width", "0.1", "--rate", "0"], "rate_per_hour: must be above 0"),
    (["--half-width", "0.1", "--cap", "0"], "cap_participants: 0 is below one trial list"),
    (["--half-width", "0.1", "--p", "half"], "p: give shares between 0 and 1"),
    (["--half-width", "0.1", "--team", "Nowhere"], "No team 'Nowhere'"),
])
def test_the_command_exits_with_a_sentence_naming_the_field(survey, args, sentence):
    with pytest.raises(CommandError, match=sentence.replace("(", r"\(").replace(")", r"\)")):
        call_command("survey_plan", "plan", *args)


def test_the_command_finds_no_survey_in_another_team(survey):
    team_create(name="Lab B")

    with pytest.raises(CommandError, match="no survey with the slug 'plan' in that team"):
        call_command("survey_plan", "plan", "--half-width", "0.1", "--team", "Lab B")


# ------------------------------------------------------------------------------------------ the admin and the API


def test_the_admin_planner_shows_the_plan_to_a_member_and_nothing_to_another_lab(pilot, researcher, django_user_model):
    member, stranger = Client(), Client()
    member.force_login(researcher)
    stranger.force_login(other_lab_user(django_user_model))
    url = f"/admin/surveys/survey/{pilot.pk}/plan/"

    page = member.get(url, {"half_width": 0.1, "rate_per_hour": 9, "fee": 0.33})
    change = member.get(f"/admin/surveys/survey/{pilot.pk}/change/")

    assert page.status_code == 200
    assert page.context["plan"]["adaptive"]["participants"] == 105
    assert b'id="plan-totals"' in page.content and b"pilot" in page.content
    assert url.encode() in change.content, "the survey's page links to its planner"
    assert stranger.get(url).status_code == 404


def test_the_admin_planner_refuses_bad_input_with_a_400_naming_the_field(survey, researcher):
    client = Client()
    client.force_login(researcher)

    page = client.get(f"/admin/surveys/survey/{survey.pk}/plan/", {"half_width": 0.6, "rate_per_hour": 9, "fee": 0})

    assert page.status_code == 400
    assert page.context["form"].errors["half_width"][0].startswith("half_width: must lie in (0, 0.5)")


def test_the_api_plans_for_a_member_and_names_the_parameter_it_refuses(pilot, researcher_client, django_user_model):
    stranger = APIClient()
    stranger.force_authenticate(other_lab_user(django_user_model))

    plan = researcher_client.get("/api/surveys/plan/plan", {"half_width": 0.1, "rate": 9, "fee": 0.33})
    bad_rate = researcher_client.get("/api/surveys/plan/plan", {"half_width": 0.1, "rate": -2})
    bad_goal = researcher_client.get("/api/surveys/plan/plan", {"half_width": 0})

    assert plan.status_code == 200 and plan.json()["adaptive"]["participants"] == 105
    assert bad_rate.status_code == 400 and bad_rate.json()["extra"]["field"] == "rate"
    assert bad_rate.json()["message"].startswith("rate: must be above 0")
    assert bad_goal.status_code == 400 and bad_goal.json()["extra"]["field"] == "half_width"
    assert stranger.get("/api/surveys/plan/plan").status_code == 404


# ------------------------------------------------------------------------------------------ the live forecast


def adaptive_survey(two_sets, *, goal: float, slug: str = "adaptive") -> Survey:
    """Two sets of three IRIs, lists of three trials from both sets, N = 10 (30 places per set), a cap of 20. A goal
    of 0.1 needs 93 answers a set at p = 0.5: built with its risk accepted, as the forecast's tests want."""
    survey = survey_create(slug=slug, title="t", iri_jobs=two_sets, trials_per_participant=3, ratings_per_list=10,
                           precision_goal=goal, max_participants=20, rng_seed=1, accept_goal_risk=True)
    return survey_publish(survey=survey)


def test_the_forecast_counts_what_each_set_still_needs_and_what_it_costs(two_sets):
    survey = adaptive_survey(two_sets, goal=0.2)
    state = survey.adaptive_state
    state.update(alignment=[0.0, 0.5], n_answers=[20, 8], half_width=[0.09, 0.3], design_effect=[1.0, 1.5],
                 done=[True, False], completed=4)
    Survey.objects.filter(pk=survey.pk).update(adaptive_state=state)
    survey.refresh_from_db()

    forecast = survey_forecast(survey=survey, rate_per_hour=9, fee=0.33)

    done, open_ = forecast["conditions"]
    assert (done["name"], done["answers_still_needed"]) == ("robust", 0)
    needed = condition_answers_needed(p=0.5, half_width=0.2, design_effect=1.5)
    assert (open_["name"], open_["answers_needed"], open_["answers_still_needed"]) == ("standard", needed, needed - 8)
    # No completed sessions yet. Each set's three IRIs make blocks of 2 and 1 and a participant gets two blocks,
    # the survey's 3 trials: 3 x 5 s + 120 s = 135 s, £0.3375 -> £0.34 at £9/h, £0.4522 with 33 %.
    assert forecast["seconds_source"].startswith("default") and forecast["cost_per_participant"] == 0.4522
    participants = forecast["participants_still_needed"]
    assert participants >= -(-(needed - 8) // 3)
    assert forecast["cost_still_needed"] == round(participants * 0.4522, 2)
    assert forecast["reachable"] and not forecast["met"]
    assert forecast["note"].startswith(f"About {participants} more participants")


def test_the_forecast_says_when_the_goal_cannot_be_met(two_sets):
    survey = adaptive_survey(two_sets, goal=0.1)

    forecast = survey_forecast(survey=survey)

    # Without answers each set is planned at p = 0.5: about 93 answers, but three trials x N = 10 give 30 places.
    assert not forecast["reachable"]
    assert forecast["note"].startswith("The goal cannot be met:")
    assert "robust needs 93 more answers and its trial lists' free places hold 30" in forecast["note"]
    assert "the cap of 20 participants leaves room for 20 more" in forecast["note"]


def test_the_forecast_of_a_survey_at_its_goal_needs_nothing_more(two_sets):
    survey = adaptive_survey(two_sets, goal=0.2)
    Survey.objects.filter(pk=survey.pk).update(adaptive_state={
        **survey.adaptive_state, "done": [True, True], "stop": True, "reason": "goal", "n_answers": [25, 25]})
    survey.refresh_from_db()

    forecast = survey_forecast(survey=survey)

    assert forecast["met"] and forecast["reachable"]
    assert forecast["participants_still_needed"] == 0 and forecast["cost_still_needed"] == 0
    assert forecast["note"] == "Every IRI set has reached the goal."


def test_a_fixed_n_survey_has_no_forecast(survey):
    assert survey_forecast(survey=survey) is None


def test_the_monitor_shows_the_forecast_to_a_member_and_nothing_to_another_lab(two_sets, researcher, django_user_model):
    survey = adaptive_survey(two_sets, goal=0.1)
    member, stranger = Client(), Client()
    member.force_login(researcher)
    stranger.force_login(other_lab_user(django_user_model))
    url = f"/admin/surveys/survey/{survey.pk}/monitor/"

    page = member.get(url)

    assert page.status_code == 200
    assert b'id="monitor-forecast"' in page.content
    assert b"the goal cannot be met" in page.content and b"robust" in page.content
    assert page.context["forecast"]["participants_still_needed"] > 0
    assert stranger.get(url).status_code == 404
