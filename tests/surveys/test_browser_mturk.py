"""An MTurk worker takes the survey where MTurk shows it: in a frame on MTurk's worker site (headless Chromium).

The worker site is served by Playwright at MTurk's real sandbox origin, shaped like an ExternalQuestion HIT (an
iframe of the survey URL with assignmentId, hitId, workerId and turkSubmitTo appended), so Chromium itself
enforces the survey page's frame-ancestors against that origin; the end form's POST to externalSubmit is caught
at the same origin."""
from urllib.parse import parse_qs, urlencode

import pytest

from surveys.models import Participant
from tests.surveys.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.surveys.test_browser_flows import Worker, assert_nothing_lost

SANDBOX = "https://workersandbox.mturk.com"
PREVIEW_ID = "ASSIGNMENT_ID_NOT_AVAILABLE"


@pytest.fixture
def page():
    """test_browser's Chromium, but letting a public origin frame localhost: in production the survey is on a
    public host, here on the live server's localhost, which Chromium's Local Network Access checks would keep out
    of MTurk's page. Frame rules (frame-ancestors, X-Frame-Options) are enforced as usual."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=[*CHROMIUM_ARGS, "--disable-features=LocalNetworkAccessChecks"])
        page = browser.new_page()
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def worker_site(page, *, origin: str, survey_url: str) -> list[dict]:
    """Serve `origin` as MTurk's worker site: every page is a HIT whose frame shows the survey with MTurk's
    parameters taken from the HIT page's own query. Returns the list the forms posted to /mturk/externalSubmit
    will be added to."""
    submitted = []

    def serve(route):
        request = route.request
        if request.method == "POST" and request.url == f"{origin}/mturk/externalSubmit":
            submitted.append(parse_qs(request.post_data))
            route.fulfill(status=200, content_type="text/html", body="<p id='mturk-thanks'>HIT submitted</p>")
            return
        mturk = parse_qs(request.url.partition("?")[2])
        params = urlencode({k: mturk[k][0] for k in ("assignmentId", "hitId", "workerId") if k in mturk}
                           | {"turkSubmitTo": SANDBOX})
        route.fulfill(status=200, content_type="text/html", body=f"""<!doctype html>
            <html><head><title>HIT</title></head><body>
            <h1>Which image is closer?</h1>
            <iframe id="hit" src="{survey_url}?{params}" style="width: 100%; height: 700px" frameborder="0"></iframe>
            </body></html>""")

    page.route(f"{origin}/**", serve)
    return submitted


def hit_frame(page):
    return page.wait_for_selector("iframe#hit").content_frame()


def test_an_mturk_worker_takes_the_survey_inside_the_hit_frame_and_the_hit_is_submitted(live_server, live_survey, page):
    submitted = worker_site(page, origin=SANDBOX, survey_url=f"{live_server.url}/s/{live_survey.slug}/")
    worker = Worker(page)  # hears the frame's responses through the page

    page.goto(f"{SANDBOX}/projects/3EXAMPLE/tasks/1?assignmentId=A7&hitId=H1&workerId=W7")
    frame = hit_frame(page)
    frame.click("button#consent-agree")
    worker.page = frame  # from here the worker answers inside the frame
    worker.start()
    assert worker.answer_2afc() == "Image 1 of 3"
    page.reload()  # the worker reloads MTurk's page: the frame's own (partitioned) storage still holds the session
    worker.page = frame = hit_frame(page)
    worker.start()
    for _ in range(live_survey.trials.count() - 1):
        worker.answer_2afc()
    code = frame.wait_for_selector("#completion-code").inner_text()
    frame.click("#mturk-submit")
    frame.wait_for_selector("#mturk-thanks")

    participant = Participant.objects.get(worker_id="W7")
    assert participant.assignment_id == "A7" and participant.hit_id == "H1"
    assert participant.turk_submit_to == SANDBOX and participant.status == Participant.Status.COMPLETED
    assert code == live_survey.completion_code
    assert frame.url == f"{SANDBOX}/mturk/externalSubmit" and page.url.startswith(f"{SANDBOX}/projects/")
    assert submitted == [{"assignmentId": ["A7"], "completion_code": [code]}]
    assert_nothing_lost(participant)


def test_an_mturk_preview_inside_the_hit_frame_shows_the_task_and_stores_nothing(live_server, live_survey, page):
    worker_site(page, origin=SANDBOX, survey_url=f"{live_server.url}/s/{live_survey.slug}/")

    page.goto(f"{SANDBOX}/projects/3EXAMPLE/tasks?assignmentId={PREVIEW_ID}&hitId=H1")
    frame = hit_frame(page)

    assert "Accept the HIT" in frame.wait_for_selector("#mturk-preview .preview-note").inner_text()
    assert frame.query_selector("button#consent-agree") is None
    assert Participant.objects.count() == 0


def test_a_site_that_is_not_mturk_cannot_frame_the_survey(live_server, live_survey, page):
    survey_url = f"{live_server.url}/s/{live_survey.slug}/"
    worker_site(page, origin="https://evil.example", survey_url=survey_url)
    refusals = []
    page.on("console", lambda message: refusals.append(message.text) if "frame-ancestors" in message.text else None)

    page.goto("https://evil.example/hit?assignmentId=A8&hitId=H1&workerId=W8")
    frame = hit_frame(page)
    page.wait_for_timeout(2000)  # time enough for a framed survey to enroll, had the browser let it load

    assert frame.query_selector("#survey-app") is None and not frame.url.startswith(survey_url)
    assert any(f"Framing '{live_server.url}/'" in text for text in refusals), refusals  # Chromium names the origin
    assert Participant.objects.count() == 0
