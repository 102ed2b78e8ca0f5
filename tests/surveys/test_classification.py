"""Timed classification (metamer recognition, Feather et al. 2023): people name the category of a briefly shown
image. The survey is built from IRI sets whose target photos carry class labels; practice, screening and catch
trials show other labelled photos; the browser reports what it showed and the server flags what was off."""
import io

import numpy as np
import pytest
from PIL import Image
from rest_framework.test import APIClient

from backend.exceptions import ApplicationError
from iri_worker.services import target_photo_create
from surveys.models import Participant, Response, Survey, Trial
from surveys.selectors import survey_monitor
from surveys.services import survey_create, survey_publish
from tests.conftest import finished_iri_set, new_key, queued_runs_perform, survey_posted

pytestmark = pytest.mark.django_db

CLASSES = ("dog", "car", "cat")


def png(colour, seed) -> bytes:
    noise = np.random.default_rng(seed).integers(0, 60, (40, 40, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def labelled(team):
    return labelled_photos(team)


def labelled_photos(team):
    """Two target photos per class made into an IRI set, and two more photos per class that are not targets."""
    photos = {
        kind: [target_photo_create(team=team, name=f"{kind} {label} {k}", data=png((60 * c, 90, 200 - 60 * c), 10 * c + k + (kind == "natural") * 5),
                                   label=label.title() if k == 0 else label)
               for c, label in enumerate(CLASSES) for k in range(2)]
        for kind in ("target", "natural")
    }
    return finished_iri_set(photos["target"]), photos["natural"]


def classification(iri_set, **fields):
    fields = {"practice_trials": 2, "screening_trials": 3, "catch_trials": 1, **fields}
    return survey_publish(survey=survey_create(slug=fields.pop("slug", "recognise"), title="t", iri_jobs=[iri_set],
                                               task_type=Survey.TaskType.CLASSIFY, **fields))


def enroll(http, survey, **body):
    return http.post(f"/api/p/surveys/{survey.slug}/enroll", body, format="json")


def timing(shown_ms, hz=60.0):
    return {"image_onset_ms": 1000.0, "image_offset_ms": 1000.0 + shown_ms, "shown_ms": shown_ms, "refresh_hz": hz,
            "frames": round(shown_ms * hz / 1000)}


def test_the_categories_are_the_target_photos_labels_and_each_trial_knows_its_own(labelled):
    iri_set, natural = labelled
    survey = classification(iri_set)

    assert survey.categories == ["Car", "Cat", "Dog"]  # sorted, one spelling per class whatever the case
    main = Trial.objects.filter(survey=survey, kind="main").select_related("iri__target", "query", "mask")
    assert main.count() == 6
    for trial in main:
        assert trial.n_options == 3 and survey.categories[trial.target_option].lower() == trial.iri.target.label.lower()
        assert (trial.mask.width, trial.mask.height) == (trial.query.width, trial.query.height)
        assert trial.option_0_id is None and trial.mask_id != trial.query_id
    # Practice, screening and catch trials are natural photos of those classes, never a target; practice (which
    # gives feedback) and screening never share a photo.
    targets = set(iri_set.targets.values_list("image_id", flat=True))
    by_kind = {kind: set(Trial.objects.filter(survey=survey, kind=kind).values_list("query_id", flat=True))
               for kind in ("practice", "screening", "catch")}
    assert all(by_kind.values()) and not targets & set().union(*by_kind.values())
    assert not by_kind["practice"] & by_kind["screening"]


def test_an_unknown_task_type_is_refused_naming_the_field_instead_of_building_another_task(labelled):
    iri_set, _ = labelled

    with pytest.raises(ApplicationError) as refused:
        survey_create(slug="typo", title="t", iri_jobs=[iri_set], task_type="classify")

    assert refused.value.extra == {"field": "task_type"} and "'classify' is not a task type" in refused.value.message
    assert "classification" in refused.value.message and not Survey.objects.filter(slug="typo").exists()


def test_a_participant_sees_images_and_category_buttons_and_nothing_that_names_the_answer(labelled):
    survey = classification(labelled[0], fixation_ms=250, image_ms=200, mask_ms=300)
    client = APIClient()

    body = enroll(client, survey, prolific_pid="P1").json()
    trials = client.get(f"/api/p/sessions/{body['token']}/trials").json()

    assert body["classification"] == {"categories": ["Car", "Cat", "Dog"], "fixation_ms": 250, "image_ms": 200, "mask_ms": 300}
    assert (len(trials["practice"]), len(trials["screening"]), len(trials["trials"])) == (2, 3, 7)  # 6 main + 1 catch
    for entry in trials["practice"] + trials["screening"] + trials["trials"]:
        assert set(entry) == {"id", "query", "mask"}
        assert client.get(entry["mask"]).status_code == 200


def test_an_answer_stores_the_category_and_what_the_browser_measured(labelled):
    survey = classification(labelled[0], practice_trials=0, screening_trials=0, catch_trials=0)
    client = APIClient()
    token = enroll(client, survey).json()["token"]
    client.post(f"/api/p/sessions/{token}/consent")
    entries = client.get(f"/api/p/sessions/{token}/trials").json()["trials"]

    for k, entry in enumerate(entries):
        shown = 300.0 if k else 333.4  # the first was up two frames too long at 60 Hz (asked: 300 ms)
        answer = {"trial": entry["id"], "choice": 2, "rt_ms": 640, "idempotency_key": new_key(), "timing": timing(shown)}
        assert client.post(f"/api/p/sessions/{token}/responses", answer, format="json").status_code == 201
    out_of_range = {"trial": entries[0]["id"], "choice": 3, "rt_ms": 1, "idempotency_key": new_key()}
    refused = client.post(f"/api/p/sessions/{token}/responses", out_of_range, format="json")
    done = client.post(f"/api/p/sessions/{token}/complete")

    assert refused.status_code == 400 and refused.json()["message"] == "choice: this trial has 3 options."
    assert done.json()["completion_code"] == survey.completion_code
    stored = Response.objects.filter(participant__token=token).order_by("id")
    assert {r.choice for r in stored} == {2} and stored[0].timing["shown_ms"] == 333.4
    assert [r.mistimed for r in stored] == [True] + [False] * (len(entries) - 1)


def test_failing_the_screening_block_ends_the_session_with_the_screened_out_code(labelled):
    survey = classification(labelled[0], practice_trials=0, screening_pass_fraction=0.66)
    client = APIClient()
    token = enroll(client, survey, prolific_pid="P1").json()["token"]
    client.post(f"/api/p/sessions/{token}/consent")
    screening = client.get(f"/api/p/sessions/{token}/trials").json()["screening"]
    targets = dict(Trial.objects.filter(public_id__in=[e["id"] for e in screening]).values_list("public_id", "target_option"))

    results = []
    for k, entry in enumerate(screening):  # one right of three: below the pass mark of 0.66
        choice = targets[entry["id"]] if k == 0 else (targets[entry["id"]] + 1) % 3
        answer = {"trial": entry["id"], "choice": choice, "rt_ms": 500, "idempotency_key": new_key(), "timing": timing(300)}
        results.append(client.post(f"/api/p/sessions/{token}/responses", answer, format="json").json())
    after = client.post(f"/api/p/sessions/{token}/responses",
                        {"trial": client.get(f"/api/p/sessions/{token}/trials").json()["trials"][0]["id"], "choice": 0,
                         "rt_ms": 500, "idempotency_key": new_key()}, format="json")
    again = enroll(client, survey, prolific_pid="P1", token=token).json()

    assert [r["screening"]["passed"] for r in results] == [None, None, False]
    assert after.status_code == 409 and after.json()["extra"] == {"reason": "ended", "outcome": "screened_out"}
    assert again["outcome"] == "screened_out" and again["completion_code"] == survey.code_screened_out
    assert again["redirect_url"].endswith(f"cc={survey.code_screened_out}")
    participant = Participant.objects.get(token=token)
    assert participant.status == "screened_out" and participant.exclusion_reasons == ["screening_failed"]
    monitor = survey_monitor(survey=survey)
    assert monitor["states"] == {"screened_out": 1} and monitor["participants"][0]["done"] == 0


def test_a_desktop_only_survey_turns_a_touch_screen_away_with_the_screened_out_convention(labelled):
    survey = classification(labelled[0], desktop_only=True)

    refused = enroll(APIClient(), survey, prolific_pid="P1", client={"touch": True, "window_w": 390})
    welcomed = enroll(APIClient(), survey, prolific_pid="P2", client={"touch": False, "window_w": 1400})

    assert refused.status_code == 409 and "phone or tablet" in refused.json()["message"]
    assert refused.json()["extra"]["reason"] == "device"
    assert refused.json()["extra"]["redirect_url"].endswith(f"cc={survey.code_screened_out}")
    assert welcomed.status_code == 201
    assert list(Participant.objects.values_list("prolific_pid", flat=True)) == ["P2"]


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"fixation_ms": 0}, "fixation_ms"),
        ({"image_ms": 10_001}, "image_ms"),
        ({"mask_ms": -5}, "mask_ms"),
    ],
)
def test_bad_durations_are_refused_naming_the_field(researcher_client, labelled, fields, field):
    iri_set, _ = labelled
    body = {"slug": "bad", "title": "t", "iri_jobs": [iri_set.pk], "task_type": "classification", **fields}

    response = researcher_client.post("/api/surveys/", body, format="json")

    assert response.status_code == 400, response.json()
    assert field in str(response.json())
    assert not Survey.objects.exists() and not Trial.objects.exists()


def test_one_class_or_an_unlabelled_target_cannot_make_a_classification(researcher_client, team, labelled):
    one_class = finished_iri_set([target_photo_create(team=team, name=f"x{k}", data=png((9, 9, 9), 99 + k), label="cup")
                                  for k in range(2)])
    unlabelled = finished_iri_set([target_photo_create(team=team, name=f"y{k}", data=png((200, 9, 9), 199 + k)) for k in range(2)])

    first = researcher_client.post("/api/surveys/", {"slug": "a", "title": "t", "iri_jobs": [one_class.pk], "task_type": "classification"}, format="json")
    second = researcher_client.post("/api/surveys/", {"slug": "b", "title": "t", "iri_jobs": [unlabelled.pk], "task_type": "classification"}, format="json")

    assert first.status_code == 400 and "categories" in first.json()["message"]
    assert second.status_code == 400 and "class label" in second.json()["message"]


@pytest.mark.parametrize("keep, fields, field", [
    (1, {"practice_trials": 2, "screening_trials": 2}, "screening_trials"),  # feedback photos must not be screened
    (0, {"catch_trials": 1}, "catch_trials"),
])
def test_too_few_natural_photos_fail_the_build_naming_the_trials_that_need_them_and_a_new_try_replaces_it(
        researcher_client, labelled, keep, fields, field):
    iri_set, natural = labelled
    for photo in natural[keep:]:
        photo.delete()
    body = {"slug": "bad", "title": "t", "iri_jobs": [iri_set.pk], "task_type": "classification"}

    created = researcher_client.post("/api/surveys/", {**body, **fields}, format="json")
    (build,) = queued_runs_perform()  # the worker's build finds too few photos
    shown = researcher_client.get("/api/surveys/bad").json()
    publish = researcher_client.post("/api/surveys/bad/publish")

    assert created.status_code == 201 and build.status == "FAILED"
    assert shown["build"] == "failed" and shown["build_error"] == build.error and shown["trials"] == 0
    assert build.error.startswith(f"{field}: ") and "Car, Cat, Dog" in build.error
    assert not Trial.objects.exists(), "a failed build leaves no trials"
    assert publish.status_code == 400 and "its build failed" in publish.json()["message"]
    assert survey_posted(researcher_client, body)["build"] == "built", "the same slug again replaces the failed one"
    assert Survey.objects.get().trials.exists()


def test_practice_feedback_names_the_right_category_and_main_answers_get_none(labelled):
    survey = classification(labelled[0], screening_trials=0, catch_trials=0)
    client = APIClient()
    token = enroll(client, survey).json()["token"]
    client.post(f"/api/p/sessions/{token}/consent")
    trials = client.get(f"/api/p/sessions/{token}/trials").json()
    right = Trial.objects.get(public_id=trials["practice"][0]["id"]).target_option

    practice = client.post(f"/api/p/sessions/{token}/responses", {"trial": trials["practice"][0]["id"], "choice": (right + 1) % 3,
                                                                 "rt_ms": 500, "idempotency_key": new_key(), "timing": timing(300)}, format="json")
    main = client.post(f"/api/p/sessions/{token}/responses", {"trial": trials["trials"][0]["id"], "choice": 0, "rt_ms": 500,
                                                             "idempotency_key": new_key(), "timing": timing(300)}, format="json")

    assert practice.json()["feedback"] == {"correct": False, "correct_choice": right}
    assert main.json() == {"saved": True}


def test_progress_counts_practice_and_screening_apart_from_the_main_trials(labelled):
    survey = classification(labelled[0])  # 2 practice, 3 screening, 6 main + 1 catch
    client = APIClient()
    token = enroll(client, survey, prolific_pid="P1").json()["token"]
    client.post(f"/api/p/sessions/{token}/consent")
    trials = client.get(f"/api/p/sessions/{token}/trials").json()
    answered = trials["practice"] + trials["screening"] + trials["trials"][:1]
    right = dict(Trial.objects.filter(public_id__in=[e["id"] for e in answered]).values_list("public_id", "target_option"))

    for entry in answered:  # right answers: practice and screening pass, the session goes on
        answer = {"trial": entry["id"], "choice": right[entry["id"]], "rt_ms": 500, "idempotency_key": new_key(),
                  "timing": timing(300)}
        assert client.post(f"/api/p/sessions/{token}/responses", answer, format="json").status_code == 201
    body = enroll(client, survey, prolific_pid="P1", token=token).json()
    following = client.get(f"/api/p/sessions/{token}/next").json()

    assert {k: body[k] for k in ("total", "done", "practice_total", "practice_done", "screening_total", "screening_done")} == {
        "total": 7, "done": 1, "practice_total": 2, "practice_done": 2, "screening_total": 3, "screening_done": 3}
    assert (following["total"], following["done"]) == (7, 1) and following["trial"]["id"] == trials["trials"][1]["id"]
    assert survey_monitor(survey=survey)["participants"][0]["done"] == 1
