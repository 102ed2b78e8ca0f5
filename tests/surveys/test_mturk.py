"""MTurk: the survey page may be framed by MTurk's worker sites and nothing else, research pages refuse every
frame, and the admin gives the ExternalQuestion XML to paste into a HIT. The HIT itself, in a real browser
inside a frame on MTurk's origin, is in test_browser_mturk.py."""
import xml.etree.ElementTree as ET

import pytest

from surveys.models import Survey
from surveys.selectors import MTURK_EXTERNAL_QUESTION_NAMESPACE, survey_mturk_external_question

MTURK_ONLY = "frame-ancestors https://worker.mturk.com https://www.mturk.com https://workersandbox.mturk.com"


def test_the_external_question_points_mturk_at_the_survey_page_and_lets_it_size_the_frame(settings):
    settings.SITE_URL = "https://iri.example.org/"

    xml = survey_mturk_external_question(survey=Survey(slug="textures"))

    root = ET.fromstring(xml.encode())
    ns = {"q": MTURK_EXTERNAL_QUESTION_NAMESPACE}
    assert root.tag == f"{{{MTURK_EXTERNAL_QUESTION_NAMESPACE}}}ExternalQuestion"
    assert MTURK_EXTERNAL_QUESTION_NAMESPACE.endswith("/2006-07-14/ExternalQuestion.xsd")
    assert root.find("q:ExternalURL", ns).text == "https://iri.example.org/s/textures/"
    assert root.find("q:FrameHeight", ns).text == "0"
    assert [child.tag.split("}")[1] for child in root] == ["ExternalURL", "FrameHeight"]


@pytest.mark.django_db
def test_the_survey_admin_shows_the_external_question_to_paste_into_a_hit(client, researcher, live_survey, settings):
    settings.SITE_URL = "https://iri.example.org"
    client.force_login(researcher)

    page = client.get(f"/admin/surveys/survey/{live_survey.pk}/change/").content.decode()

    assert '<textarea readonly rows="6" cols="110" id="mturk-external-question">&lt;?xml' in page
    assert "&lt;ExternalURL&gt;https://iri.example.org/s/pilot/&lt;/ExternalURL&gt;" in page
    assert "&lt;FrameHeight&gt;0&lt;/FrameHeight&gt;" in page
    assert "MTurk needs an https:// address" not in page


@pytest.mark.django_db
def test_the_admin_warns_when_the_site_url_is_not_https_as_mturk_would_refuse_it(client, researcher, live_survey, settings):
    settings.SITE_URL = "http://127.0.0.1:8000"
    client.force_login(researcher)

    page = client.get(f"/admin/surveys/survey/{live_survey.pk}/change/").content.decode()

    assert "SITE_URL is http://127.0.0.1:8000: MTurk needs an https:// address." in page


@pytest.mark.django_db
def test_a_survey_page_may_be_framed_by_mturks_worker_sites_and_nothing_else(client, live_survey):
    hit = client.get(f"/s/{live_survey.slug}/?assignmentId=A1&hitId=H1&workerId=W1"
                     "&turkSubmitTo=https%3A%2F%2Fwww.mturk.com")
    closed = client.get("/s/no-such-survey/")  # a HIT left up after its survey closed says so inside the frame

    for page in (hit, closed):
        assert page["Content-Security-Policy"] == MTURK_ONLY
        assert "X-Frame-Options" not in page
    assert hit.status_code == 200 and closed.status_code == 404


@pytest.mark.django_db
def test_research_pages_still_refuse_every_frame(client, researcher, researcher_client, live_survey):
    client.force_login(researcher)
    pages = [
        client.get("/admin/"),
        client.get(f"/admin/surveys/survey/{live_survey.pk}/change/"),
        client.get(f"/admin/surveys/survey/{live_survey.pk}/monitor/"),
        researcher_client.get(f"/api/surveys/{live_survey.slug}/monitor"),
        client.get("/healthz"),
    ]

    for page in pages:
        assert page.status_code == 200, page.wsgi_request.path
        assert page["X-Frame-Options"] == "DENY", page.wsgi_request.path
        assert "Content-Security-Policy" not in page, page.wsgi_request.path
