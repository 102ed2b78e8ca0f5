"""A crowdworker completes a survey in a real browser (headless Debian Chromium) against a live server."""
import os
from pathlib import Path

import pytest
from django.conf import settings

from surveys.models import Participant, Response

# Playwright's sync API runs an event loop in this thread; the ORM calls below are still plain sync code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run `make test` (scripts/services.sh installs it)"
    assert (Path(settings.BASE_DIR) / "frontend" / "dist" / "participant.js").exists(), "build the front end: make frontend"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def test_a_prolific_participant_completes_the_survey_and_every_answer_is_stored(live_server, live_survey, page):
    page.goto(f"{live_server.url}/s/{live_survey.slug}/?PROLIFIC_PID=pw1&STUDY_ID=st&SESSION_ID=se")

    page.click("button#consent-agree")
    page.click("button#instructions-start")
    for k in range(live_survey.trials.count()):
        page.wait_for_selector('button[data-choice="0"]:not([disabled])')
        assert page.inner_text("#afc-progress-text") == f"Image {k + 1} of 3"
        if k % 2:
            page.keyboard.press("j")
        else:
            page.click('button[data-choice="0"]')
        page.wait_for_function(f"!document.querySelector('#afc-progress-text') || "
                               f"document.querySelector('#afc-progress-text').innerText !== 'Image {k + 1} of 3'")

    code = page.wait_for_selector("#completion-code").inner_text()

    assert code == live_survey.completion_code
    participant = Participant.objects.get(prolific_pid="pw1")
    assert participant.completed_at is not None and participant.study_id == "st"
    answers = list(Response.objects.filter(participant=participant).order_by("id"))
    assert [a.shown_position for a in answers] == [0, 1, 0]  # left, J (right), left
    assert all(a.rt_ms > 0 for a in answers)
