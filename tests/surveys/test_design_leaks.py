"""A participant who tries to score without looking at the query learns nothing from the design.

For every task type and foil rule, with practice and catch trials and (2AFC) IRI sets of two image sizes, a
participant goes through the real HTTP API: reads the trial JSON, downloads every image, and checks what a
cheater would check. A second story simulates many participants and scores the cheats that need no query."""
import hashlib
import io
import math
import struct

import pytest
from PIL import Image
from rest_framework.test import APIClient

from surveys.models import Assignment, Participant, Survey, Trial
from surveys.services import participant_enroll, survey_create, survey_publish
from tests.conftest import finished_iri_set, new_key

pytestmark = pytest.mark.django_db

CONFIGS = [("2afc", "seed"), ("2afc", "other_target"), ("2afc", "same_set"), ("2afc", "same_class"), ("cluster", "seed")]


def build(photos, *, task_type, foil_rule, ratings=4, **fields):
    for photo in photos:  # one class for all: the same_class rule has two targets per class
        photo.label = "thing"
        photo.save()
    if task_type == "cluster":  # six IRIs on one screen: one size
        sets = [finished_iri_set(photos, rng_seed=1), finished_iri_set(photos, rng_seed=2)]
    else:  # two sizes: a 48 px query must never meet a 32 px option
        sets = [finished_iri_set(photos, image_size=32), finished_iri_set(photos, image_size=48, rng_seed=3)]
    survey = survey_create(slug="leak", title="t", iri_jobs=sets, task_type=task_type, foil_rule=foil_rule,
                           catch_trials=2, practice_trials=2, ratings_per_list=ratings, **fields)
    return survey_publish(survey=survey)


class Participant_:
    """What one participant's browser holds: the trial JSON and the images behind its URLs."""

    def __init__(self, client: APIClient, slug: str):
        self.client = client
        self.token = client.post(f"/api/p/surveys/{slug}/enroll", {}, format="json").json()["token"]
        self.session = client.get(f"/api/p/sessions/{self.token}/trials").json()
        self.files: dict[str, bytes] = {}

    def file(self, url: str) -> bytes:
        if url not in self.files:
            response = self.client.get(url)
            assert response.status_code == 200, url
            self.files[url] = response.content
        return self.files[url]

    def picture(self, url: str) -> tuple[tuple[int, int], str]:
        with Image.open(io.BytesIO(self.file(url))) as image:
            return image.size, hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()

    def screens(self, kind: str) -> list[list[str]]:
        """Every screen as the URLs on it: 2AFC a query and its options; clustering the references and rows."""
        trials = self.session["practice" if kind == "practice" else "trials"]
        if self.session["task_type"] == "cluster":
            rows = {t["id"]: t for t in trials}
            screens = self.session["practice_screens" if kind == "practice" else "screens"]
            return [s["references"] + [rows[i]["query"] for i in s["items"]] for s in screens]
        return [[t["query"], *t["options"]] for t in trials]


def pixels_of(stored) -> str:
    with stored.file.open("rb") as fh, Image.open(io.BytesIO(fh.read())) as image:
        return hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()


def main_pairs(survey) -> set[tuple[str, str]]:
    """Every pair of pictures that some main trial of the survey shows together (query-option, option-option)."""
    pairs = set()
    for t in survey.trials.filter(kind="main").select_related("query", "option_0", "option_1", "option_2"):
        shown = [pixels_of(i) for i in [t.query, *t.options]]
        pairs |= {(a, b) for a in shown for b in shown if a != b}
    return pairs


@pytest.mark.parametrize("task_type,foil_rule", CONFIGS)
def test_a_participant_scanning_everything_over_http_finds_no_answer(photos, task_type, foil_rule):
    survey = build(photos, task_type=task_type, foil_rule=foil_rule)
    me = Participant_(APIClient(), survey.slug)
    stored = survey.trials.select_related("query", "option_0", "option_1", "option_2")
    hashes = {img.sha256 for t in stored for img in [t.query, *t.options]}

    # The JSON names trials and URLs, nothing else.
    for entry in me.session["practice"] + me.session["trials"]:
        assert set(entry) == ({"id", "query", "options", "screen"} if task_type == "cluster" else {"id", "query", "options"})

    # Every screen: one pixel size and one file length for all its images.
    for kind in ("practice", "main"):
        for screen in me.screens(kind):
            assert len({me.picture(u)[0] for u in screen}) == 1, f"{kind} screen mixes sizes"
            assert len({len(me.file(u)) for u in screen}) == 1, f"{kind} screen's files differ in length"

    # URLs: one fixed length, unrelated to the image (the same picture at two places has two URLs), and
    # nothing in them decodes to a hash, an id or a count.
    urls = [u for screen in me.screens("practice") + me.screens("main") for u in screen]
    tokens = {u.rsplit("/", 1)[1] for u in urls}
    assert len({len(t) for t in tokens}) == 1
    by_picture: dict[str, set[str]] = {}
    for u in urls:
        by_picture.setdefault(me.picture(u)[1], set()).add(u)
    if task_type == "2afc":  # each catch/practice query repeats its option's picture at another URL
        assert any(len(us) > 1 for us in by_picture.values())
    participant = Participant.objects.get(token=me.token)
    for token in tokens:
        raw = bytes.fromhex(token)
        text = raw.hex() + token
        assert not any(h in text or bytes.fromhex(h) in raw for h in hashes)
        for number in {participant.pk, *(i for t in stored for i in [t.query_id, *t.option_ids])}:
            assert struct.pack(">Q", number) not in raw and struct.pack(">I", number) not in raw

    # Catch and practice trials show no pair that a main trial shows, and catch pictures are outside the
    # participant's own main trials; each is obvious: its query is one of its options.
    forbidden = main_pairs(survey)
    catch_ids = set(Trial.objects.filter(survey=survey, kind="catch").values_list("public_id", flat=True))
    own_main = {me.picture(u)[1] for t in me.session["trials"] if t["id"] not in catch_ids for u in [t["query"], *t["options"]]}
    checked = {"catch": 0, "practice": 0}
    for kind, trials in (("catch", [t for t in me.session["trials"] if t["id"] in catch_ids]), ("practice", me.session["practice"])):
        for t in trials:
            pictures = [me.picture(u)[1] for u in [t["query"], *t["options"]]]
            assert not {(a, b) for a in pictures for b in pictures if a != b} & forbidden, kind
            assert pictures[0] in pictures[1:], kind
            if kind == "catch":
                assert not set(pictures) & own_main
            checked[kind] += 1
    assert checked == {"catch": 2, "practice": 2}

    # Once the session has ended, its URLs stop working.
    me.client.post(f"/api/p/sessions/{me.token}/return")
    assert me.client.get(urls[0]).status_code == 404


def test_mixed_sizes_are_resized_and_recorded_or_refused(researcher_client, photos):
    # Different targets in each set: a foil from the other set exists only at the other size.
    small, large = finished_iri_set(photos[:2], image_size=32), finished_iri_set(photos[2:], image_size=48, rng_seed=3)
    body = {"title": "t", "iri_jobs": [small.pk, large.pk], "foil_rule": "other_target"}

    refused = researcher_client.post("/api/surveys/", {**body, "slug": "r", "size_policy": "refuse"}, format="json")
    resized = researcher_client.post("/api/surveys/", {**body, "slug": "ok"}, format="json")

    assert refused.status_code == 400 and "32×32 px" in refused.json()["message"] and "48×48 px" in refused.json()["message"]
    assert f"set {small.pk}" in refused.json()["message"] and not Survey.objects.filter(slug="r").exists()
    assert resized.status_code == 201
    report = resized.json()["build_report"]
    assert report["size_policy"] == "resize" and report["resized"]
    assert {tuple(r["to"]) for r in report["resized"]} <= {(32, 32), (48, 48)}
    for t in Survey.objects.get(slug="ok").trials.select_related("query", "option_0", "option_1"):
        assert {(i.width, i.height) for i in [t.query, *t.options]} == {(t.query.width, t.query.height)}


def test_clustering_refuses_sets_of_different_sizes(researcher_client, photos):
    small, large = finished_iri_set(photos, image_size=32), finished_iri_set(photos, image_size=48, rng_seed=3)

    response = researcher_client.post(
        "/api/surveys/", {"slug": "c", "title": "t", "iri_jobs": [small.pk, large.pk], "task_type": "cluster"}, format="json")

    assert response.status_code == 400 and "share one image size" in response.json()["message"]
    assert response.json()["extra"] == {"field": "iri_jobs"} and not Survey.objects.exists()


@pytest.mark.parametrize("task_type", ["2afc", "cluster"])
def test_the_target_side_is_balanced_per_participant_and_per_item(photos, task_type):
    raters = 7
    survey = build(photos, task_type=task_type, foil_rule="seed", ratings=raters)
    people = [participant_enroll(survey=survey, prolific_pid=f"p{k}")[0] for k in range(raters)]
    per_item: dict[int, list[int]] = {}
    for person in people:
        sides = []
        for a in Assignment.objects.filter(participant=person).select_related("trial").exclude(trial__kind="practice"):
            side = a.option_order.index(str(a.trial.target_option))
            sides.append(side)
            per_item.setdefault(a.trial_id, []).append(side)
        counts = [sides.count(p) for p in range(3 if task_type == "cluster" else 2)]
        assert max(counts) - min(counts) <= 1, counts
    for item, sides in per_item.items():
        counts = [sides.count(p) for p in range(3 if task_type == "cluster" else 2)]
        assert len(sides) == raters and max(counts) - min(counts) <= 1, counts


@pytest.mark.parametrize("task_type", ["2afc", "cluster"])
def test_nothing_a_participant_sees_predicts_the_target(photos, task_type):
    """Forty participants; each cheat below scores every main trial without looking at the query. The target
    position is counterbalanced exactly, so the side-based cheats score chance exactly; the others are
    random-looking (URLs are ciphertexts, files one length) and must stay within 4.5 standard errors of chance:
    a false alarm has probability below 1e-5 per cheat."""
    n_people = 40
    survey = build(photos, task_type=task_type, foil_rule="seed" if task_type == "cluster" else "other_target", ratings=n_people)
    n_options = 3 if task_type == "cluster" else 2
    chance = 1 / n_options
    cheats = {
        "always the first position": lambda me, t, i: 0,
        "always the last position": lambda me, t, i: n_options - 1,
        "the longest file (ties: first)": lambda me, t, i: max(range(n_options), key=lambda k: (len(me.file(t["options"][k])), -k)),
        "the option of the query's pixel size": lambda me, t, i: next(
            (k for k in range(n_options) if me.picture(t["options"][k])[0] == me.picture(t["query"])[0]), 0),
        "the URL that sorts first": lambda me, t, i: min(range(n_options), key=lambda k: t["options"][k]),
        "position in the list": lambda me, t, i: i % n_options,
    }
    scores = {name: [] for name in cheats}
    for _ in range(n_people):
        me = Participant_(APIClient(), survey.slug)
        person = Participant.objects.get(token=me.token)
        truth = {a.trial.public_id: (a.trial.kind, a.option_order.index(str(a.trial.target_option)))
                 for a in person.assignments.select_related("trial")}
        for i, t in enumerate(me.session["trials"]):
            kind, target_position = truth[t["id"]]
            if kind != "main":
                continue
            for name, cheat in cheats.items():
                scores[name].append(cheat(me, t, i) == target_position)
    for name, hits in scores.items():
        n = len(hits)
        accuracy = sum(hits) / n
        assert abs(accuracy - chance) <= 4.5 * math.sqrt(chance * (1 - chance) / n), f"{name}: {accuracy:.3f} over {n}"


def test_one_sided_responders_are_excluded_by_the_survey_rule(photos):
    survey = build(photos, task_type="2afc", foil_rule="seed", one_side_max_fraction=0.9, one_side_min_trials=4)
    lefty, _ = participant_enroll(survey=survey, prolific_pid="lefty")
    from surveys.services import participant_complete, participant_consent, response_record

    participant_consent(participant=lefty)
    for a in lefty.assignments.all():
        response_record(token=lefty.token, trial_public_id=a.trial.public_id, choice=0, rt_ms=700, idempotency_key=new_key())
    done = participant_complete(participant=lefty)

    assert done.excluded and "one_sided" in done.exclusion_reasons


def test_the_api_schema_is_for_logged_in_researchers_only(researcher_client):
    anonymous = APIClient().get("/api/schema/", {"format": "json"})

    assert anonymous.status_code in (401, 403) and b"target_option" not in anonymous.content
    assert researcher_client.get("/api/schema/", {"format": "json"}).status_code == 200
