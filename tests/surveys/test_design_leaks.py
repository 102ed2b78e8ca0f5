"""A participant who tries to score without looking at the query learns nothing from the design.

For every task type and foil rule, with practice and catch trials and (2AFC) IRI sets of two image sizes, a
participant goes through the real HTTP API: reads the trial JSON, downloads every image, and checks what a
cheater would check. A second story simulates many participants and scores the cheats that need no query."""
import functools
import hashlib
import io
import itertools
import math
import struct
import uuid

import numpy as np
import pytest
from PIL import Image
from rest_framework.test import APIClient

from iri_worker.models import IriImage, IriJob
from iri_worker.services import stored_image_save, target_photo_create
from surveys.models import Assignment, Participant, Survey, Trial
from surveys.services import participant_enroll, survey_create, survey_publish
from tests.conftest import finished_iri_set, new_key, survey_posted
from tests.surveys.test_classification import CLASSES, png

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
    if task_type == "2afc":  # the foil rule is a 2AFC option (another task type's design refuses it)
        fields["foil_rule"] = foil_rule
    survey = survey_create(slug="leak", title="t", iri_jobs=sets, task_type=task_type,
                           catch_trials=2, practice_trials=2, ratings_per_list=ratings, **fields)
    return survey_publish(survey=survey)


class Participant_:
    """What one participant's browser holds: the trial JSON and the images behind its URLs."""

    def __init__(self, client: APIClient, slug: str):
        self.client = client
        self.enrolled = client.post(f"/api/p/surveys/{slug}/enroll", {}, format="json").json()
        self.token = self.enrolled["token"]
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
    resized = survey_posted(researcher_client, {**body, "slug": "ok"})

    assert refused.status_code == 400 and "32×32 px" in refused.json()["message"] and "48×48 px" in refused.json()["message"]
    assert f"set {small.pk}" in refused.json()["message"] and not Survey.objects.filter(slug="r").exists()
    assert resized["trials"] == 3 and resized["build"] == "built"
    report = resized["build_report"]
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


# ---------------------------------------------------------------------------------------------------------------
# Timed classification with a layer sweep (issue 21, A): the same photo's IRIs at three layers are three trials of
# one category. Nothing a participant can see besides the query (its mask, the mask's or query's bytes, length and
# size, the URLs, the buttons' order, the position in the list, the feedback of practice) names a trial's category
# or links two trials of one category.

LAYERS = ("relu1", "relu2", "pool")


@pytest.fixture
def sweep(team):
    """A three-layer sweep of four target photos per class (36 IRIs, 12 a category), and two natural photos per
    class for practice, screening and catch trials. The engine makes the first layer's set; the others (to keep
    the test fast) are its copies as the engine would store them at another layer: the same targets and seed,
    each IRI its own picture."""
    photos = {
        kind: [target_photo_create(team=team, name=f"{kind} {label} {k}", label=label,
                                   data=png((60 * c, 90, 200 - 60 * c), 100 * c + k + 50 * (kind == "natural")))
               for c, label in enumerate(CLASSES) for k in range(4 if kind == "target" else 2)]
        for kind in ("target", "natural")
    }
    made = finished_iri_set(photos["target"], layer=LAYERS[0], steps=1)
    sweep_id = uuid.uuid4()
    IriJob.objects.filter(pk=made.pk).update(sweep=sweep_id)
    sets = [made]
    for n, layer in enumerate(LAYERS[1:], start=1):
        job = IriJob.objects.create(team=team, name=f"sweep · {layer}", spec={**made.spec, "layer": layer},
                                    status=IriJob.Status.DONE, sweep=sweep_id)
        job.targets.set(photos["target"])
        for iri in made.images.all():
            with iri.image.file.open("rb") as fh, Image.open(fh) as opened:
                pixels = np.asarray(opened.convert("RGB")).astype(int)
            changed = pixels + np.random.default_rng([n, iri.pk]).integers(-40, 41, pixels.shape)
            out = io.BytesIO()
            Image.fromarray(np.clip(changed, 0, 255).astype(np.uint8)).save(out, format="PNG")
            image = stored_image_save(png_bytes=out.getvalue(), width=pixels.shape[1], height=pixels.shape[0])
            kept = {f.attname: getattr(iri, f.attname) for f in IriImage._meta.concrete_fields
                    if f.name not in ("id", "job")}
            IriImage.objects.create(**{**kept, "image_id": image.pk}, job=job)
        sets.append(job)
    return sets


def classify_build(sets, *, slug="leak", **fields) -> Survey:
    fields = {"practice_trials": 2, "screening_trials": 3, "catch_trials": 2, "ratings_per_list": 4, **fields}
    return survey_publish(survey=survey_create(slug=slug, title="t", iri_jobs=sets, task_type=Survey.TaskType.CLASSIFY,
                                               **fields))


class Classifier(Participant_):
    """One classification session as its browser holds it: the categories, the trial JSON, the images, and the
    feedback of practice (the right category of each practice trial, learnt by answering it)."""

    def __init__(self, client: APIClient, slug: str):
        super().__init__(client, slug)
        self.categories = self.enrolled["classification"]["categories"]

    @functools.cache
    def pixels(self, url: str) -> np.ndarray:
        with Image.open(io.BytesIO(self.file(url))) as image:
            return np.asarray(image.convert("RGB"))

    @functools.cache
    def picture(self, url: str) -> str:
        return hashlib.sha256(self.pixels(url).tobytes()).hexdigest()

    def entries(self) -> list[dict]:
        return self.session["practice"] + self.session["screening"] + self.session["trials"]

    def practice_feedback(self) -> list[tuple[dict, int]]:
        """Each practice trial with the category its feedback named (the participant answered the first button).
        Every image is fetched first, as the page does: a failed practice may end the session."""
        for entry in self.entries():
            self.file(entry["query"]), self.file(entry["mask"])
        self.client.post(f"/api/p/sessions/{self.token}/consent")
        learnt = []
        for entry in self.session["practice"]:
            answer = {"trial": entry["id"], "choice": 0, "rt_ms": 500, "idempotency_key": new_key()}
            body = self.client.post(f"/api/p/sessions/{self.token}/responses", answer, format="json").json()
            learnt.append((entry, body["feedback"]["correct_choice"]))
        return learnt


@pytest.mark.parametrize("layout", ["one list", "three lists", "adaptive"])
def test_a_classification_participant_never_sees_a_mask_twice(sweep, layout):
    fields = {"one list": {}, "three lists": {"trials_per_participant": 12},
              "adaptive": {"trials_per_participant": 12, "precision_goal": 0.3, "accept_goal_risk": True}}[layout]
    survey = classify_build(sweep, **fields)
    me = Classifier(APIClient(), survey.slug)
    entries = me.entries()
    assert len(me.session["trials"]) == (36 if layout == "one list" else 12) + 2  # main and catch

    # The JSON names the trial, its query and its mask; the buttons are the survey's categories in one fixed order.
    assert me.categories == ["car", "cat", "dog"]
    assert all(set(e) == {"id", "query", "mask"} for e in entries)

    # Every trial of the session (practice, screening, main, catch) has a mask of its own: no two share its
    # pixels or its URL, and no mask is a query.
    masks = [me.picture(e["mask"]) for e in entries]
    assert len(set(masks)) == len(entries)
    assert len({e["mask"] for e in entries}) == len(entries)
    assert not set(masks) & {me.picture(e["query"]) for e in entries}

    # Every image of the session: one pixel size and one file length, masks and queries alike.
    urls = [u for e in entries for u in (e["query"], e["mask"])]
    assert len({me.pixels(u).shape for u in urls}) == 1 and len({len(me.file(u)) for u in urls}) == 1

    # URLs: one fixed length; nothing in them decodes to a hash or an id.
    tokens = {u.rsplit("/", 1)[1] for u in urls}
    assert len({len(t) for t in tokens}) == 1
    stored = list(survey.trials.select_related("query", "mask"))
    hashes = {img.sha256 for t in stored for img in (t.query, t.mask)}
    participant = Participant.objects.get(token=me.token)
    numbers = {participant.pk, *(i for t in stored for i in (t.query_id, t.mask_id))}
    for token in tokens:
        raw = bytes.fromhex(token)
        assert not any(h in token or bytes.fromhex(h) in raw for h in hashes)
        assert not any(struct.pack(">Q", n) in raw or struct.pack(">I", n) in raw for n in numbers)

    # In the survey as built, whatever list or block a participant gets: one mask per trial, of its query's size.
    assert len({t.mask_id for t in stored}) == len(stored)
    assert all((t.mask.width, t.mask.height) == (t.query.width, t.query.height) for t in stored)
    assert survey.build_report["masks"] == {"noise": "uniform RGB", "per": "trial", "count": len(stored),
                                            "seed": survey.build_report["masks"]["seed"]}


def test_masks_are_seeded_so_a_rebuild_makes_the_same_and_another_survey_none_of_them(sweep):
    def masks_by_trial(survey):
        return {(t.kind, t.iri_id, t.query_id): t.mask_id for t in survey.trials.filter(kind="main")}

    first = masks_by_trial(classify_build(sweep, catch_trials=0, practice_trials=0, screening_trials=0, rng_seed=5))
    Survey.objects.filter(slug="leak").delete()
    again = masks_by_trial(classify_build(sweep, catch_trials=0, practice_trials=0, screening_trials=0, rng_seed=5))
    other = masks_by_trial(classify_build(sweep, slug="other", catch_trials=0, practice_trials=0, screening_trials=0,
                                          rng_seed=5))

    assert again == first
    assert not set(other.values()) & set(first.values())


@pytest.mark.slow
def test_nothing_a_classification_participant_sees_names_or_links_a_category(sweep):
    """Participants of a three-layer sweep (36 main trials, 12 a category, and 2 catch trials) try to score every
    main trial without looking at its query, and to find pairs of main trials of one category.

    A cheat that reads what every participant sees alike for a trial (its mask's pixels or length, its query's
    length, practice feedback on masks) answers each trial once whatever the participant, so it is scored over
    trials: those of six builds of the sweep (seeds 0-5, 216 trials). One that reads what differs between
    participants (a URL, the position in the list) is scored over the answers of forty participants of the first.
    Each must stay within 4.5 standard errors of chance (a false alarm below 1e-5 per cheat); pairs are scored
    against the share of pairs of one category (0.314), and no two trials share a mask at all."""
    n_people, n_builds = 40, 6
    surveys = [classify_build(sweep, slug=f"leak-{seed}", rng_seed=seed, ratings_per_list=n_people)
               for seed in range(n_builds)]
    truth = {t.public_id: (t.kind, t.target_option) for t in Trial.objects.filter(survey__in=surveys)}
    n = len(surveys[0].categories)

    def shape(me, url):
        return me.pixels(url).shape, len(me.file(url))

    def brightness(me, e, *_):  # the tertile of the mask's mean among the session's masks
        means = sorted(me.pixels(m["mask"]).mean() for m in me.session["trials"])
        return min(n - 1, means.index(me.pixels(e["mask"]).mean()) * n // len(means))

    def nearest_practice(me, e, learnt):  # the category of the practice trial whose mask looks most alike
        mask = me.pixels(e["mask"]).astype(float).ravel()
        return min(learnt, key=lambda p: np.abs(me.pixels(p[0]["mask"]).astype(float).ravel() - mask).sum())[1]

    per_trial = {  # a trial's answer from what is the same for every participant
        "the mask's brightness": brightness,
        "the mask's first byte": lambda me, e, learnt: int(me.pixels(e["mask"])[0, 0, 0]) % n,
        "the mask's file length": lambda me, e, learnt: len(me.file(e["mask"])) % n,
        "the query's file length": lambda me, e, learnt: len(me.file(e["query"])) % n,
        "a practice trial with this mask": lambda me, e, learnt: next(
            (c for p, c in learnt if me.picture(p["mask"]) == me.picture(e["mask"])), 0),
        "the practice trial of the nearest mask": nearest_practice,
    }
    per_answer = {  # an answer from what differs between participants
        "always the first button": lambda me, e: 0,
        "always the last button": lambda me, e: n - 1,
        "position in the list": lambda me, e: e["i"] % n,
        "the query URL's value": lambda me, e: int(e["query"].rsplit("/", 1)[1], 16) % n,
        "the mask URL's value": lambda me, e: int(e["mask"].rsplit("/", 1)[1], 16) % n,
    }
    pair_finders = {  # name: (does it differ between participants?, does this pair look linked?)
        "one mask": (False, lambda me, a, b: me.picture(a["mask"]) == me.picture(b["mask"])),
        "masks of one file length": (False, lambda me, a, b: len(me.file(a["mask"])) == len(me.file(b["mask"]))),
        "queries of one size and length": (False, lambda me, a, b: shape(me, a["query"]) == shape(me, b["query"])),
        "masks of one brightness": (False, lambda me, a, b: brightness(me, a) == brightness(me, b)),
        "neighbours in the list": (True, lambda me, a, b: abs(a["i"] - b["i"]) == 1),
        "query URLs of one first digit": (True, lambda me, a, b: a["query"].rsplit("/", 1)[1][:1]
                                          == b["query"].rsplit("/", 1)[1][:1]),
    }
    trial_hits = {name: {} for name in per_trial}
    answer_hits = {name: [] for name in per_answer}
    pairs = {name: {} for name in pair_finders}  # (two trial ids, the participant or None): one category?
    people = [(surveys[0], k) for k in range(n_people)]
    people += [(survey, n_people + k) for k, survey in enumerate(surveys[1:])]
    for survey, person in people:
        me = Classifier(APIClient(), survey.slug)
        learnt = me.practice_feedback()
        main = [{**e, "i": i} for i, e in enumerate(me.session["trials"]) if truth[e["id"]][0] == "main"]
        for e in main:
            right = truth[e["id"]][1]
            for name, cheat in per_trial.items():
                trial_hits[name][e["id"]] = cheat(me, e, learnt) == right
            if survey == surveys[0]:
                for name, cheat in per_answer.items():
                    answer_hits[name].append(cheat(me, e) == right)
        for a, b in itertools.combinations(main, 2):
            for name, (per_person, linked) in pair_finders.items():
                if linked(me, a, b):
                    key = (*sorted((a["id"], b["id"])), person if per_person else None)
                    pairs[name][key] = truth[a["id"]][1] == truth[b["id"]][1]

    chance = 1 / n
    targets = surveys[0].trials.filter(kind="main").values_list("target_option", flat=True)
    one_category = np.mean([a == b for a, b in itertools.combinations(targets, 2)])
    figures = [(name, list(hits.values()), chance) for name, hits in trial_hits.items()]
    figures += [(name, hits, chance) for name, hits in answer_hits.items()]
    figures += [(f"pairs: {name}", list(found.values()), one_category) for name, found in pairs.items()]
    print("\n".join(f"{name}: {np.mean(hits) if hits else '-'} (chance {expected:.3f}, n {len(hits)})"
                    for name, hits, expected in figures))

    assert not pairs["one mask"], "two main trials share a mask"
    assert len(trial_hits["the mask's brightness"]) == 36 * n_builds
    for name, hits, expected in figures:
        if hits:
            score = np.mean(hits)
            assert abs(score - expected) <= 4.5 * math.sqrt(expected * (1 - expected) / len(hits)), f"{name}: {score}"
