"""Nothing a participant receives tells which option is the target or what any image is."""
import json
import re
import struct

import pytest
from django.test import Client

from tests.conftest import new_key

pytestmark = pytest.mark.django_db

ROLE_WORDS = re.compile(r"target|seed|iri|catch|foil|correct|noise", re.IGNORECASE)


def png_chunk_types(data: bytes) -> list[str]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    types, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        types.append(kind.decode())
        pos += 12 + length
    return types


# Where the server hands out random values: ids, the session token, image URLs (whose last segment is a signed
# token). Random base64 spells a role word by chance (about 1 trial id in 1,000 contains "iri"), so those values are
# masked before the scan when they have a random token's shape (16 or more URL-safe characters; the shortest, a
# screen id, has 16); every key, every other value and every readable part of a URL is still scanned.
OPAQUE_KEYS = {"id", "token", "screen", "trial", "query", "options"}
RANDOM_SHAPE = re.compile(r"^[A-Za-z0-9_:.-]{16,}$")


def opaque_values(payload) -> set[str]:
    """The random values in a JSON payload the server sent: under OPAQUE_KEYS, of RANDOM_SHAPE (URLs: their last
    segment)."""
    if isinstance(payload, list):
        return set().union(set(), *(opaque_values(item) for item in payload))
    if not isinstance(payload, dict):
        return set()
    found = set()
    for key, value in payload.items():
        values = value if isinstance(value, list) else [value]
        if key in OPAQUE_KEYS:
            last_segments = (v.rstrip("/").rsplit("/", 1)[-1] for v in values if isinstance(v, str))
            found |= {segment for segment in last_segments if RANDOM_SHAPE.match(segment)}
        found |= opaque_values(values)
    return found


def opaque_values_of(received: list[tuple[str, str]]) -> set[str]:
    """The random values of every JSON text received."""
    payloads = [json.loads(text) for _, text in received if text.lstrip().startswith(("{", "["))]
    return set().union(set(), *(opaque_values(payload) for payload in payloads))


def role_words_in(text: str, opaque: set[str] = frozenset()) -> list[str]:
    for value in sorted(opaque, key=len, reverse=True):
        text = text.replace(value, "<opaque>")
    return ROLE_WORDS.findall(text)


def assert_no_role_words(text: str, where: str, opaque: set[str] = frozenset()):
    found = role_words_in(text, opaque)
    assert not found, f"{where} contains {found}"


def test_the_scan_masks_random_ids_but_not_what_a_key_a_word_or_a_path_says():
    payload = {"token": "aXiRi9aXiRi9aXiRi9", "trials": [
        {"id": "SEEDx1SEEDx1SEEDx1", "query": "/i/abcIRIdefghijklmnopqrstu", "options": ["/iri/target.png"],
         "screen": "noise", "kind": "target"}]}
    assert opaque_values(payload) == {"aXiRi9aXiRi9aXiRi9", "SEEDx1SEEDx1SEEDx1", "abcIRIdefghijklmnopqrstu"}
    # the readable path ("/iri/target.png"), the short value and the role value stay visible
    assert sorted(role_words_in(json.dumps(payload), opaque_values(payload))) == ["iri", "noise", "target", "target"]


def test_everything_the_participant_receives_is_silent_about_roles(live_survey):
    client = Client()
    received = []  # (where, text)

    page = client.get(f"/s/{live_survey.slug}/?PROLIFIC_PID=P1&STUDY_ID=S&SESSION_ID=X")
    received.append(("survey page", page.content.decode()))
    enrolled = client.post(f"/api/p/surveys/{live_survey.slug}/enroll", {"prolific_pid": "P1"}, content_type="application/json")
    body = enrolled.json()
    token = body["token"]
    # Only consent/instructions text is prose; the researcher wrote it, so scan the rest.
    received.append(("enroll JSON", json.dumps({k: v for k, v in body.items() if not k.endswith("_html")})))
    client.post(f"/api/p/sessions/{token}/consent")
    trials = client.get(f"/api/p/sessions/{token}/trials")
    received.append(("trials JSON", trials.content.decode()))
    received.append(("next JSON", client.get(f"/api/p/sessions/{token}/next").content.decode()))

    urls = []
    for trial in trials.json()["trials"]:
        assert set(trial) == {"id", "query", "options"}
        urls += [trial["query"], *trial["options"]]
        answer = {"trial": trial["id"], "choice": 0, "rt_ms": 600, "idempotency_key": new_key()}
        saved = client.post(f"/api/p/sessions/{token}/responses", answer, content_type="application/json")
        received.append(("answer JSON", saved.content.decode()))
        assert live_survey.completion_code not in saved.content.decode()

    for url in urls:
        image = client.get(url)
        assert image.status_code == 200 and image["Content-Type"] == "image/png"
        data = image.content
        assert set(png_chunk_types(data)) <= {"IHDR", "IDAT", "IEND"}, "no text or other metadata chunks"
        received.append((f"headers of {url}", json.dumps(dict(image.headers))))
        received.append(("image URL", url))

    opaque = opaque_values_of(received)
    for where, text in received:
        assert_no_role_words(text, where, opaque)
        assert live_survey.completion_code not in text, f"{where} reveals the completion code early"

    # An image URL names one trial's slot, so the same picture never carries the same URL twice.
    assert len(set(urls)) == len(urls)
    assert live_survey.completion_code in client.post(f"/api/p/sessions/{token}/complete").content.decode()


def test_a_forged_image_url_gets_404(live_survey):
    client = Client()
    assert client.get("/i/not-a-signed-token").status_code == 404
    image = live_survey.trials.first().query
    assert client.get(f"/media/{image.file.name}").status_code == 302  # researchers only: the admin login


def test_catch_practice_and_clustering_sessions_and_the_new_endpoints_are_silent_too(photos):
    from surveys.services import survey_create, survey_publish
    from tests.conftest import finished_iri_set

    jobs = [finished_iri_set(photos, rng_seed=1), finished_iri_set(photos, rng_seed=2)]
    for slug, task in (("afc", "2afc"), ("clu", "cluster")):
        survey = survey_publish(survey=survey_create(slug=slug, title="t", iri_jobs=jobs, task_type=task, catch_trials=2, practice_trials=2))
        client = Client()
        enrolled = client.post(f"/api/p/surveys/{slug}/enroll", {"prolific_pid": "P"}, content_type="application/json").json()
        token = enrolled["token"]
        received = [("enroll JSON", json.dumps({k: v for k, v in enrolled.items() if not k.endswith("_html")}))]
        received.append(("page config", client.get(f"/s/{slug}/").content.decode()))
        client.post(f"/api/p/sessions/{token}/consent")
        session = client.get(f"/api/p/sessions/{token}/trials")
        received.append(("trials JSON", session.content.decode()))
        keys = {"id", "query", "options"} | ({"screen"} if task == "cluster" else set())
        assert all(set(t) == keys for t in session.json()["trials"] + session.json()["practice"])
        event = {"events": [{"id": new_key(), "type": "blur"}]}
        received.append(("events JSON", client.post(f"/api/p/sessions/{token}/events", event, content_type="application/json").content.decode()))
        received.append(("heartbeat JSON", client.post(f"/api/p/sessions/{token}/heartbeat", {}, content_type="application/json").content.decode()))
        for trial in session.json()["trials"]:
            answer = {"trial": trial["id"], "choice": 0, "rt_ms": 600, "idempotency_key": new_key()}
            received.append(("answer JSON", client.post(f"/api/p/sessions/{token}/responses", answer, content_type="application/json").content.decode()))
        opaque = opaque_values_of(received)
        for where, text in received:
            assert_no_role_words(text, f"{slug} {where}", opaque)
            for code in (survey.completion_code, survey.code_failed_attention, survey.code_timed_out, survey.code_technical):
                assert code not in text, f"{slug} {where} reveals a code early"
