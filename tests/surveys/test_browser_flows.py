"""Crowdworkers take both task types in a real browser (headless Chromium) against a live server: practice with
feedback, a reload mid-survey and a network cut, with nothing lost and the server's code shown at the end."""
import json

import pytest

from surveys.models import Assignment, Participant, Response, Trial
from surveys.services import survey_create, survey_publish
from tests.conftest import finished_iri_set
from tests.surveys.test_browser import CHROMIUM, CHROMIUM_ARGS, page  # noqa: F401  (the page fixture)

API = "**/api/p/**"


class Worker:
    """Drives the page like an attentive participant: reads which trial each image belongs to from the trials
    JSON the page fetched, and answers with the trial's target (looked up in the database, never in the page)."""

    def __init__(self, page):
        self.page = page
        self.trial_of_url: dict[str, str] = {}
        page.on("response", self._on_response)

    def _on_response(self, response):
        if response.url.endswith("/trials") and response.ok:
            self.token = response.url.rsplit("/", 2)[1]
            for entries in json.loads(response.text()).values():  # practice, screening, main
                trials = [e for e in entries if isinstance(e, dict) and "id" in e] if isinstance(entries, list) else []
                self.trial_of_url.update({e["query"]: e["id"] for e in trials})

    def target_of(self, img_selector: str) -> int:
        """The screen position of the target in this session's layout."""
        src = self.page.get_attribute(img_selector, "src")
        a = Assignment.objects.select_related("trial").get(participant__token=self.token, trial__public_id=self.trial_of_url[src])
        return a.option_order.index(str(a.trial.target_option))

    def start(self):
        self.page.click("button#instructions-start")

    def answer_2afc(self, *, key: bool = False) -> str:
        self.page.wait_for_selector('button[data-choice="0"]:not([disabled])')
        progress = self.page.inner_text("#afc-progress-text")
        choice = self.target_of("#afc-query-img")
        if key:
            self.page.keyboard.press("fj"[choice])
        else:
            self.page.click(f'button[data-choice="{choice}"]')
        self.page.wait_for_function(
            "p => !document.querySelector('#afc-progress-text') || document.querySelector('#afc-progress-text').innerText !== p",
            arg=progress,
        )
        return progress

    def answer_cluster(self, *, keyboard_rows: int = 1) -> int:
        self.page.wait_for_selector('input[data-row="0"][data-choice="0"]:not([disabled])')
        progress = self.page.inner_text("#cluster-progress-text")
        rows = self.page.locator("fieldset.cluster-row").count()
        for r in range(rows):
            choice = self.target_of(f'fieldset[data-row="{r}"] .cluster-item img')
            if r < keyboard_rows:
                # Keyboard: focus the row's first radio, Space selects it, arrow keys move the choice.
                self.page.focus(f'input[data-row="{r}"][data-choice="0"]')
                self.page.keyboard.press("Space")
                for _ in range(choice):
                    self.page.keyboard.press("ArrowRight")
            else:
                self.page.click(f'fieldset[data-row="{r}"] label:nth-of-type({choice + 1})')
            assert self.page.is_checked(f'input[data-row="{r}"][data-choice="{choice}"]')
        self.page.click("#cluster-submit:not([disabled])")
        self.page.wait_for_function(
            "p => !document.querySelector('#cluster-progress-text') || document.querySelector('#cluster-progress-text').innerText !== p",
            arg=progress,
        )
        return rows

    def practice_feedback(self, expected: str):
        title = self.page.wait_for_selector("#feedback-title")
        assert title.inner_text() == expected
        self.page.click("#practice-continue")

    def cut_network(self):
        self.page.route(API, lambda route: route.abort())

    def restore_network(self):
        self.page.unroute(API)


def assert_nothing_lost(participant: Participant):
    assigned = sorted(Assignment.objects.filter(participant=participant).values_list("trial__public_id", flat=True))
    answered = sorted(Response.objects.filter(participant=participant).values_list("trial__public_id", flat=True))
    assert answered == assigned  # exactly one response per assigned trial (practice, main and catch)


@pytest.fixture
def afc_survey(iri_set):
    survey = survey_create(slug="afc-e2e", title="Which is closer?", iri_jobs=[iri_set], catch_trials=1,
                           practice_trials=2, rt_floor_ms=0, rng_seed=3)
    return survey_publish(survey=survey)


@pytest.fixture
def cluster_survey(photos):
    sets = [finished_iri_set(photos, rng_seed=seed) for seed in range(4)]  # 4 IRIs per target: two screens
    survey = survey_create(slug="cluster-e2e", title="Which photo?", iri_jobs=sets, task_type="cluster",
                           catch_trials=1, practice_trials=3, rt_floor_ms=0, rng_seed=5)
    return survey_publish(survey=survey)


def test_a_2afc_participant_practises_reloads_and_loses_the_network_and_every_answer_arrives(live_server, afc_survey, page):
    worker = Worker(page)
    page.goto(f"{live_server.url}/s/{afc_survey.slug}/?PROLIFIC_PID=pw2&STUDY_ID=st&SESSION_ID=se")
    page.click("button#consent-agree")
    worker.start()

    assert worker.answer_2afc() == "Practice 1 of 2"
    worker.practice_feedback("Correct!")
    assert worker.answer_2afc(key=True) == "Practice 2 of 2"
    worker.practice_feedback("Correct!")
    page.click("#practice-done-start")

    assert worker.answer_2afc() == "Image 1 of 4"
    page.reload()  # the answer may still be in the outbox: it is sent after the reload, never asked again
    worker.start()

    worker.cut_network()
    assert worker.answer_2afc(key=True) == "Image 2 of 4"
    page.wait_for_selector("#connection-status .connection-banner")
    assert page.inner_text("#connection-status") == "Reconnecting…"
    assert worker.answer_2afc() == "Image 3 of 4"
    worker.restore_network()
    page.wait_for_selector("#connection-status .connection-banner", state="detached")
    assert worker.answer_2afc() == "Image 4 of 4"

    code = page.wait_for_selector("#completion-code").inner_text()
    participant = Participant.objects.get(prolific_pid="pw2")
    assert participant.status == Participant.Status.COMPLETED
    assert code == afc_survey.completion_code
    assert page.get_attribute("a#completion-redirect", "href").endswith(f"cc={code}")
    assert_nothing_lost(participant)
    assert participant.client_info.get("dpr")


def test_a_clustering_participant_on_a_phone_reloads_and_loses_the_network_and_every_answer_arrives(
    live_server, cluster_survey, page
):
    page.set_viewport_size({"width": 375, "height": 740})
    worker = Worker(page)
    page.goto(f"{live_server.url}/s/{cluster_survey.slug}/?PROLIFIC_PID=pc1&STUDY_ID=st&SESSION_ID=se")
    page.click("button#consent-agree")
    worker.start()

    assert worker.answer_cluster() == 3  # the practice screen
    worker.practice_feedback("All correct!")
    page.click("#practice-done-start")

    page.wait_for_selector('input[data-row="0"][data-choice="0"]:not([disabled])')
    assert page.inner_text("#cluster-progress-text") == "Set 1 of 3"  # two main screens and a catch screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # the grid fits a phone
    worker.answer_cluster(keyboard_rows=2)
    page.reload()
    worker.start()

    page.wait_for_selector('input[data-row="0"][data-choice="0"]:not([disabled])')
    assert page.inner_text("#cluster-progress-text") == "Set 2 of 3"
    worker.cut_network()
    worker.answer_cluster()
    page.wait_for_selector("#connection-status .connection-banner")
    worker.restore_network()
    page.wait_for_selector("#connection-status .connection-banner", state="detached")
    assert page.inner_text("#cluster-progress-text") == "Set 3 of 3"
    worker.answer_cluster()

    code = page.wait_for_selector("#completion-code").inner_text()
    participant = Participant.objects.get(prolific_pid="pc1")
    assert participant.status == Participant.Status.COMPLETED
    assert code == cluster_survey.completion_code
    assert_nothing_lost(participant)
    assert Response.objects.filter(participant=participant).count() == 3 + 12 + 1  # practice, 2 screens × 6, catch


def test_an_mturk_preview_shows_the_task_only_and_stores_nothing(live_server, live_survey, page):
    page.goto(f"{live_server.url}/s/{live_survey.slug}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H1"
              f"&turkSubmitTo=https%3A%2F%2Fworkersandbox.mturk.com")
    assert "Accept the HIT" in page.wait_for_selector("#mturk-preview .preview-note").inner_text()
    assert page.query_selector("button#consent-agree") is None
    assert Participant.objects.count() == 0
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('iri-survey:')).length") == 0


def test_an_mturk_worker_finishes_and_the_hit_is_submitted_to_turk_submit_to(live_server, live_survey, page):
    submitted = []

    def external_submit(route):
        submitted.append(route.request.post_data)
        route.fulfill(status=200, content_type="text/html", body="<p id='mturk-thanks'>HIT submitted</p>")

    page.route("https://workersandbox.mturk.com/**", external_submit)
    worker = Worker(page)
    page.goto(f"{live_server.url}/s/{live_survey.slug}/?assignmentId=A7&hitId=H1&workerId=W7"
              f"&turkSubmitTo=https%3A%2F%2Fworkersandbox.mturk.com")
    page.click("button#consent-agree")
    worker.start()
    for _ in range(live_survey.trials.count()):
        worker.answer_2afc()
    code = page.wait_for_selector("#completion-code").inner_text()
    page.click("#mturk-submit")
    page.wait_for_selector("#mturk-thanks")

    participant = Participant.objects.get(worker_id="W7")
    assert participant.assignment_id == "A7" and participant.status == Participant.Status.COMPLETED
    assert code == live_survey.completion_code
    assert page.url == "https://workersandbox.mturk.com/mturk/externalSubmit"
    assert "assignmentId=A7" in submitted[0]
    assert_nothing_lost(participant)


def test_a_timed_classification_participant_practises_passes_screening_and_every_answer_carries_its_timing(
    live_server, team, page
):
    from tests.surveys.test_classification import classification, labelled_photos

    iri_set, _ = labelled_photos(team)
    survey = classification(iri_set, practice_trials=2, screening_trials=3, catch_trials=1, fixation_ms=300,
                            image_ms=200, mask_ms=300, rt_floor_ms=0)
    trial_of_url: dict[str, str] = {}
    page.on("response", lambda r: r.url.endswith("/trials") and r.ok and trial_of_url.update(
        {e["query"]: e["id"] for key in ("practice", "screening", "trials") for e in json.loads(r.text())[key]}))
    page.goto(f"{live_server.url}/s/{survey.slug}/?PROLIFIC_PID=pcls&STUDY_ID=st&SESSION_ID=se")
    page.click("button#consent-agree")
    page.click("button#instructions-start")

    def answer(*, keyboard: bool) -> None:
        """Wait for the buttons (after fixation, image and mask), then choose the shown image's category."""
        page.wait_for_selector("button.classify-choice:not([disabled])")
        src = page.get_attribute("#classify-image", "src")
        right = Trial.objects.get(public_id=trial_of_url[src]).target_option
        if keyboard:
            page.focus("#classify-choices")
            for _ in range(right + 1):
                page.keyboard.press("ArrowRight")
            page.keyboard.press("Enter")
        else:
            page.click(f'button.classify-choice[data-choice="{right}"]')
        page.wait_for_function("s => !document.querySelector('#classify-image') || "
                               "document.querySelector('#classify-image').getAttribute('src') !== s", arg=src)

    for k in range(2):
        answer(keyboard=k == 0)
        page.wait_for_selector("#feedback-title")
        page.click("#practice-continue")
    page.click("#practice-done-start")
    for k in range(3):
        answer(keyboard=False)
    page.click("#screening-done-start")
    for k in range(7):  # six IRIs and a catch photo
        answer(keyboard=k % 2 == 0)

    code = page.wait_for_selector("#completion-code").inner_text()
    participant = Participant.objects.get(prolific_pid="pcls")
    assert participant.status == Participant.Status.COMPLETED and code == survey.completion_code
    assert_nothing_lost(participant)
    answers = list(Response.objects.filter(participant=participant).select_related("trial"))
    assert all(a.choice == a.trial.target_option for a in answers)
    for a in answers:  # what the browser measured: whole frames at its refresh rate, never shorter than asked
        frame_ms = 1000 / a.timing["refresh_hz"]
        assert a.timing["frames"] >= 1 and a.timing["shown_ms"] >= 200 - frame_ms
        assert abs(a.timing["shown_ms"] - a.timing["frames"] * frame_ms) <= frame_ms
    assert participant.client_info.get("refresh_hz")
