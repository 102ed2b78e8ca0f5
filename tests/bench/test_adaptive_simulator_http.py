"""bench/adaptive.py simulates what ships (issue 20, part A): on a seeded small adaptive survey, people who enroll,
answer and complete over HTTP (a real gunicorn) in a scripted order get the same blocks as in the simulator, the
estimates move the same way after every step, and collection stops at the same point for the same reason."""
import hashlib
import random
import uuid
from collections import Counter

import numpy as np
import pytest
import requests

from bench.adaptive_collection import collection_simulate, layout_build
from iri_worker.models import IriImage, IriJob
from iri_worker.services import target_photo_create
from surveys.models import Assignment, Participant, Slot, Survey, Trial
from surveys.services import survey_create, survey_publish
from tests.conftest import finished_iri_set
from tests.surveys.conftest import server  # noqa: F401 (a fixture: a real gunicorn)
from tests.surveys.test_adaptive_collection import png

# Three IRI sets of 6 IRIs, blocks of 2 trials (9 blocks), N = 6 places a block (36 answers a set at most),
# 4 trials (2 blocks) a participant, a goal wide enough to stop in about 20 participants.
PLACES, TRIALS, GOAL = 6, 4, 0.28
# How often each set's IRIs get the target chosen (a deterministic coin: see correct()): an easy set, a coin toss
# and one in between, so the sets reach the goal at different times and the choice has something to decide.
TARGET_RATE = (95, 50, 80)
IN_FLIGHT = 3


@pytest.fixture
def three_sets(team):
    """Three finished IRI sets of 6 targets each: one made by the engine, two copies of it under other names."""
    photos = [target_photo_create(team=team, name=f"photo {k}", data=png((30 * k, 120, 255 - 30 * k), k))
              for k in range(6)]
    made = finished_iri_set(photos)
    sets = [made]
    for name in ("set b", "set c"):
        job = IriJob.objects.create(team=team, name=name, spec=made.spec, status=IriJob.Status.DONE)
        job.targets.set(photos)
        IriImage.objects.bulk_create(
            IriImage(**{f.attname: getattr(i, f.attname) for f in IriImage._meta.concrete_fields
                        if f.name not in ("id", "job")}, job=job)
            for i in made.images.all()
        )
        sets.append(job)
    return sets


def correct(ordinal: int, iri: int, set_index: int) -> bool:
    """Whether participant number ``ordinal`` chooses the target on this IRI: a hash both sides compute."""
    digest = hashlib.sha256(f"{ordinal}:{iri}".encode()).digest()
    return digest[0] * 100 // 256 < TARGET_RATE[set_index]


class Http:
    """People over HTTP, as a browser would: enroll, consent, answer every trial, complete; or return."""

    def __init__(self, base_url: str, slug: str):
        self.base_url, self.slug = base_url, slug
        self.http = requests.Session()

    def post(self, path: str, body: dict) -> requests.Response:
        return self.http.post(self.base_url + path, json=body, timeout=30)

    def enroll(self, name: str) -> str | None:
        r = self.post(f"/api/p/surveys/{self.slug}/enroll", {"prolific_pid": f"PERSON-{name}"})
        if r.status_code == 409:
            assert r.json()["extra"]["reason"] == "full", r.text
            return None
        assert r.status_code in (200, 201), r.text
        return r.json()["token"]

    def complete(self, token: str, choose) -> None:
        """Answer every trial: ``choose(trial)`` names the option (the target or another); posted at the screen
        position this session shows it."""
        assert self.post(f"/api/p/sessions/{token}/consent", {}).status_code == 200
        session = self.http.get(f"{self.base_url}/api/p/sessions/{token}/trials", timeout=30).json()
        layout = {t: (order, trial) for t, order, trial in Assignment.objects.filter(participant__token=token)
                  .values_list("trial__public_id", "option_order", "trial_id")}
        trials = Trial.objects.in_bulk([trial for _, trial in layout.values()])
        for block in ("practice", "screening", "trials"):
            for shown in session.get(block, []):
                order, trial = layout[shown["id"]]
                choice = choose(trials[trial])
                r = self.post(f"/api/p/sessions/{token}/responses", {
                    "trial": shown["id"], "choice": order.index(str(choice)) if order else choice, "rt_ms": 700,
                    "idempotency_key": str(uuid.uuid4())})
                assert r.status_code in (200, 201), r.text
        r = self.post(f"/api/p/sessions/{token}/complete", {})
        assert r.status_code == 200 and r.json()["outcome"] == "completed", r.text

    def leave(self, token: str) -> None:
        assert self.post(f"/api/p/sessions/{token}/return", {}).status_code == 200


def state_of(survey: Survey) -> dict:
    state = Survey.objects.get(pk=survey.pk).adaptive_state
    return {"stop": state["stop"], "reason": state["reason"], "completed_at_estimate": state["completed"],
            "half_width": state["half_width"], "n_answers": state["n_answers"], "done": state["done"]}


def test_the_simulator_and_the_http_path_give_the_same_blocks_and_stop_at_the_same_point(server, three_sets):
    survey = survey_publish(survey=survey_create(
        slug="simulated", title="t", iri_jobs=three_sets, trials_per_participant=TRIALS, ratings_per_list=PLACES,
        precision_goal=GOAL, rng_seed=20))
    conditions = survey.adaptive_state["conditions"]
    set_of_iri = dict(IriImage.objects.filter(job__in=three_sets).values_list("pk", "job_id"))
    set_index = {job: c for c, job in enumerate(conditions)}
    # The built blocks, each named by its IRIs; the simulator builds its own from the same trials (in the order the
    # builder stored them) and must find the same ones.
    db_blocks = {tl: frozenset(Trial.objects.filter(trial_list_id=tl, kind="main").values_list("iri_id", flat=True))
                 for tl in survey.trial_lists.order_by("index").values_list("pk", flat=True)}
    units = list(Trial.objects.filter(survey=survey, kind="main").order_by("trial_list__index", "pk")
                 .values_list("iri_id", flat=True))
    layout = layout_build(units=units, condition_of=lambda iri: set_index[set_of_iri[iri]], n_conditions=3,
                          trials_per_participant=TRIALS, places=PLACES)
    assert [frozenset(b.tolist()) for b in layout.block_items] == list(db_blocks.values())
    assert layout.blocks_per_participant == survey.adaptive_state["blocks_per_participant"] == 2

    def choose(ordinal: int):
        def pick(trial: Trial) -> int:
            if trial.kind != Trial.Kind.MAIN or correct(ordinal, trial.iri_id, set_index[set_of_iri[trial.iri_id]]):
                return trial.target_option
            return 1 - trial.target_option
        return pick

    # Over HTTP: up to IN_FLIGHT people under way; the next to end is drawn by a seeded coin; the fifth to end
    # returns the study instead of completing it (its places are free again). Two more try to enroll after the stop.
    http, coin = Http(server, survey.slug), random.Random(3)
    schedule, tokens, got, after, in_flight = [], {}, {}, [], []
    refused_after_stop, ended, k, full_for_now = 0, 0, 0, False
    while refused_after_stop < 2:
        stopped = state_of(survey)["stop"]
        if len(in_flight) < IN_FLIGHT and not full_for_now and (not stopped or not in_flight):
            name = f"p{k}"
            k += 1
            schedule.append(("enroll", name))
            tokens[name] = token = http.enroll(name)
            if token is None:
                got[name] = None
                refused_after_stop += stopped
                full_for_now = not stopped  # every useful place is held: wait for someone to end
                if full_for_now and not in_flight:
                    pytest.fail(f"nobody under way and enrollment refused before any stop: {state_of(survey)}")
            else:
                participant = Participant.objects.get(token=token)
                ordinal = Participant.objects.filter(survey=survey, is_pilot=False, pk__lt=participant.pk).count()
                got[name] = {"ordinal": ordinal, "blocks": {db_blocks[s] for s in Slot.objects.filter(
                    participant=participant).values_list("trial_list_id", flat=True)}}
                in_flight.append(name)
        else:
            name = in_flight.pop(coin.randrange(len(in_flight)))
            ended, full_for_now = ended + 1, False
            if ended == 5:
                schedule.append(("abandon", name))
                http.leave(tokens[name])
            else:
                schedule.append(("complete", name))
                http.complete(tokens[name], choose(got[name]["ordinal"]))
        after.append(state_of(survey))
        assert len(schedule) < 200, "collection did not stop"

    # The simulator, on the same schedule and answers.
    def answer(ordinal: int, items: np.ndarray) -> np.ndarray:
        return np.array([correct(ordinal, int(i), set_index[set_of_iri[int(i)]]) for i in items])

    simulated = collection_simulate(layout=layout, goal=GOAL, rng_seed=survey.rng_seed, schedule=schedule,
                                    answer=answer, cap_participants=survey.max_participants,
                                    every=survey.precision_every)

    for name, person in simulated["people"].items():
        http_person = got[name]
        if person is None or http_person is None:
            assert person is http_person is None, f"{name}: simulated {person}, over HTTP {http_person}"
            continue
        blocks = {frozenset(layout.block_items[b].tolist()) for b in person["blocks"]}
        assert (person["ordinal"], blocks) == (http_person["ordinal"], http_person["blocks"]), name
    for step, (event, sim, real) in enumerate(zip(schedule, simulated["after"], after)):
        assert (sim["stop"], sim["reason"], sim["completed_at_estimate"]) == (
            real["stop"], real["reason"], real["completed_at_estimate"]), f"step {step}: {event}"
    collection = simulated["collection"]
    final = collection.estimate
    assert final.half_width.tolist() == pytest.approx(after[-1]["half_width"], abs=1e-6)
    assert final.n_answers.tolist() == after[-1]["n_answers"] and final.done.tolist() == after[-1]["done"]
    # The scenario exercised what it is meant to: people in flight, a returned session, someone turned away for now
    # while every open set waited on the sessions under way, the stop at the goal in about 20 participants with no
    # session under way, and people turned away after it.
    stop_step = next(i for i, s in enumerate(after) if s["stop"])
    assert after[stop_step]["reason"] == "goal"
    assert 10 <= sum(1 for e, _ in schedule[:stop_step] if e == "complete") <= 30
    assert Counter(e for e, _ in schedule)["abandon"] == 1 and collection.under_way == set()
    turned_away = [i for i, (e, name) in enumerate(schedule) if e == "enroll" and got[name] is None]
    assert turned_away[0] < stop_step and len(turned_away) >= 3, (turned_away, stop_step)
    enrolled = {name for e, name in schedule[:stop_step] if e == "enroll" and got[name] is not None}
    ended = {name for e, name in schedule[:stop_step + 1] if e in ("complete", "abandon")}
    assert enrolled <= ended, "a session was under way at the goal stop"
