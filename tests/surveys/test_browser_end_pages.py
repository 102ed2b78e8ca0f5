"""Every end page and the classification screen as participants get them, on a desktop (1280×800) and a phone
(390×844, touch), in headless Chromium (issue 21, part C). Each page is saved as a screenshot under the test's tmp
folder, and what the eye would check is measured in the page: the app's stylesheet is applied (a computed style only
participant.css sets), nothing is wider than the screen, the text is centred, the category buttons sit centred under
the image and no category breaks inside a word; the end screen's words are those of the task done."""

import pytest

from iri_worker.services import target_photo_create
from surveys.models import Survey, Trial
from surveys.services import participant_enroll, survey_create, survey_publish
from tests.conftest import finished_iri_set
from tests.surveys.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.surveys.test_browser_flows import Worker
from tests.surveys.test_classification import png

# Long words and a two-word category: a button must wrap between words and never inside one.
CATEGORIES = ("astronomy", "hummingbird", "electric guitar", "refrigerator", "cat")
VIEWPORTS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True,
              "has_touch": True},
}
# participant.css gives the body this background and font (Chromium's own: transparent, Times): the app's styles.
APP_BACKGROUND = "rgb(250, 250, 250)"
TOLERANCE_PX = 3

PAGE_FACTS = """() => {
  const body = getComputedStyle(document.body);
  const box = document.querySelector('.completion, .message-screen').getBoundingClientRect();
  return {
    background: body.backgroundColor, font: body.fontFamily, margin: body.margin,
    scrollWidth: document.documentElement.scrollWidth, width: innerWidth,
    boxCentre: box.left + box.width / 2, text: document.body.innerText,
  };
}"""

# For each category button: its computed wrapping rules, whether its text overflows it, and whether any of its
# words is laid out on more than one line (a word broken inside has two client rects).
GRID_FACTS = """() => {
  const rect = (el) => el.getBoundingClientRect();
  const buttons = [...document.querySelectorAll('button.classify-choice')];
  const rects = buttons.map(rect);
  const stage = rect(document.querySelector('#classify-stage'));
  const brokenWords = [];
  for (const b of buttons) {
    const node = b.firstChild;
    const re = /\\S+/g;
    let m;
    while ((m = re.exec(node.textContent))) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
      if (lines.size !== 1) brokenWords.push(m[0]);
    }
  }
  return {
    stageCentre: stage.left + stage.width / 2,
    gridCentre: (Math.min(...rects.map((r) => r.left)) + Math.max(...rects.map((r) => r.right))) / 2,
    rows: new Set(rects.map((r) => Math.round(r.top))).size,
    right: Math.max(...rects.map((r) => r.right)), width: innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    styles: [...new Set(buttons.map((b) => { const s = getComputedStyle(b);
      return `${s.overflowWrap} ${s.wordBreak} ${s.hyphens}`; }))],
    overflowing: buttons.filter((b) => b.scrollWidth > b.clientWidth).map((b) => b.textContent),
    brokenWords,
    labels: buttons.map((b) => b.textContent),
  };
}"""


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_page(browser, viewport: str):
    page = browser.new_context(**VIEWPORTS[viewport]).new_page()
    page.set_default_timeout(20_000)
    return page


@pytest.fixture
def labelled_set(team):
    """Two target photos per category made into an IRI set, and two more per category that are not targets
    (the screening trials' natural photos)."""
    photos = {kind: [target_photo_create(team=team, name=f"{kind} {label} {k}", label=label,
                                         data=png((50 * c, 90, 220 - 50 * c), 10 * c + k + 5 * (kind == "natural")))
                     for c, label in enumerate(CATEGORIES) for k in range(2)]
              for kind in ("target", "natural")}
    return finished_iri_set(photos["target"])


def classification(iri_set, slug: str, **fields) -> Survey:
    fields = {"trials_per_participant": 2, "rt_floor_ms": 0, "rng_seed": 2, **fields}
    survey = survey_create(slug=slug, title="What did you see?", iri_jobs=[iri_set], task_type="classification",
                           **fields)
    return survey_publish(survey=survey)


def check_end_page(page, path, *, says: str, shown: str = "#completion-title", never: tuple[str, ...] = ()) -> dict:
    """The end page as shown (once `shown` is there): the app's styles, nothing wider than the screen, the text
    centred; a screenshot."""
    page.wait_for_selector(shown)
    page.screenshot(path=path, full_page=True)
    facts = page.evaluate(PAGE_FACTS)
    assert facts["background"] == APP_BACKGROUND and facts["font"].startswith("system-ui"), facts
    assert facts["margin"] == "0px", facts
    assert facts["scrollWidth"] <= facts["width"], facts
    assert abs(facts["boxCentre"] - facts["width"] / 2) <= TOLERANCE_PX, facts
    assert says in facts["text"], facts["text"]
    for words in never:
        assert words not in facts["text"], (words, facts["text"])
    assert path.stat().st_size > 1000
    return facts


class Answers(Worker):
    """Reads each image's trial from the trials JSON the page fetched (as Worker does); the right category comes
    from the database (never from the page), so the test can answer right or wrong on purpose."""

    def answer(self, *, right: bool, screenshot=None) -> dict:
        page = self.page
        page.wait_for_selector("button.classify-choice:not([disabled])")
        facts = page.evaluate(GRID_FACTS)
        if screenshot:
            page.screenshot(path=screenshot, full_page=True)
        trial = Trial.objects.get(public_id=self.trial_of_url[page.get_attribute("#classify-image", "src")])
        choice = trial.target_option if right else (trial.target_option + 1) % trial.n_options
        progress = page.inner_text("#classify-progress-text")
        page.click(f'button.classify-choice[data-choice="{choice}"]')
        page.wait_for_function("p => { const e = document.querySelector('#classify-progress-text');"
                               " return !e || e.innerText !== p; }", arg=progress)
        return facts


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_category_grid_is_centred_under_the_image_and_the_completed_page_speaks_of_categories(
    live_server, labelled_set, tmp_path, browser, viewport
):
    survey = classification(labelled_set, slug=f"grid-{viewport}")
    page = open_page(browser, viewport)
    answers = Answers(page)
    page.goto(f"{live_server.url}/s/{survey.slug}/?PROLIFIC_PID=p-{viewport}&STUDY_ID=st&SESSION_ID=se")
    page.click("button#consent-agree")
    page.click("button#instructions-start")

    grid = answers.answer(right=True, screenshot=tmp_path / f"classification-{viewport}.png")
    answers.answer(right=True)

    assert grid["labels"] == sorted(CATEGORIES)
    assert abs(grid["gridCentre"] - grid["stageCentre"]) <= TOLERANCE_PX, grid  # centred under the image
    assert grid["styles"] == ["normal normal manual"], grid  # no rule lets a word break
    assert grid["overflowing"] == [] and grid["brokenWords"] == [], grid
    assert grid["right"] <= grid["width"] and grid["scrollWidth"] <= grid["width"], grid
    assert grid["rows"] == (2 if viewport == "phone" else 1), grid  # 5 buttons: one row on a desktop, 4 + 1 on a phone
    assert (tmp_path / f"classification-{viewport}.png").stat().st_size > 1000

    check_end_page(page, tmp_path / f"completed-{viewport}.png", says="category",
                   never=("alike", "closer", "reference"))
    assert page.inner_text("#completion-code") == survey.completion_code


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_screened_out_page_uses_the_apps_styles(live_server, labelled_set, tmp_path, browser, viewport):
    survey = classification(labelled_set, slug=f"screen-{viewport}", screening_trials=2, screening_pass_fraction=1.0)
    page = open_page(browser, viewport)
    answers = Answers(page)
    page.goto(f"{live_server.url}/s/{survey.slug}/?PROLIFIC_PID=s-{viewport}&STUDY_ID=st&SESSION_ID=se")
    page.click("button#consent-agree")
    page.click("button#instructions-start")
    answers.answer(right=False)
    answers.answer(right=False)

    check_end_page(page, tmp_path / f"screened-out-{viewport}.png", says="did not reach the level")
    assert page.inner_text("#completion-code") == survey.code_screened_out


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_device_refused_page_uses_the_apps_styles(live_server, labelled_set, tmp_path, browser, viewport):
    survey = classification(labelled_set, slug=f"desk-{viewport}", desktop_only=True)
    # A touch screen: a phone, and a tablet or touch laptop at desktop size.
    page = open_page(browser, viewport) if viewport == "phone" else browser.new_context(
        **VIEWPORTS[viewport], has_touch=True).new_page()
    page.goto(f"{live_server.url}/s/{survey.slug}/?PROLIFIC_PID=d-{viewport}&STUDY_ID=st&SESSION_ID=se")

    check_end_page(page, tmp_path / f"device-refused-{viewport}.png", says="cannot be taken on a phone")
    assert page.inner_text("#completion-code") == survey.code_screened_out


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_full_and_closed_pages_use_the_apps_styles(live_server, labelled_set, tmp_path, browser, viewport):
    survey = classification(labelled_set, slug=f"full-{viewport}", trials_per_participant=None, ratings_per_list=1)
    participant_enroll(survey=survey, prolific_pid="first")  # takes the only place
    page = open_page(browser, viewport)

    page.goto(f"{live_server.url}/s/{survey.slug}/?PROLIFIC_PID=f-{viewport}&STUDY_ID=st&SESSION_ID=se")
    check_end_page(page, tmp_path / f"full-{viewport}.png", says="This study is full", shown="#notice-message")
    assert "Return" in page.inner_text("#notice-message")  # Prolific's advice: return the study

    page.goto(f"{live_server.url}/s/no-such-study/")
    check_end_page(page, tmp_path / f"closed-{viewport}.png", says="This study is not open", shown="#study-closed")
