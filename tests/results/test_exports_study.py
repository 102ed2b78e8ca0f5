"""Exports that carry the study (issue 21, part B): every answer with its trial kind, the browser's timing, the
mistimed flag and the session's device facts, the same through the API (CSV, JSON, pages) and the admin; and a
classification survey's model-vs-human raw data, one file per subject in a zip, read back the way model-vs-human
reads its raw-data folder."""
import csv
import io
import json
import os
import uuid
import zipfile

import numpy as np
import pytest
from PIL import Image
from rest_framework.test import APIClient

from iri_worker.models import IriImage, IriJob
from iri_worker.services.storage import stored_image_save
from results.export_answers import (
    ANSWER_COLUMNS,
    DEVICE_COLUMNS,
    DEVICE_FACTS,
    TIMING_COLUMNS,
    answer_rows,
)
from results.export_model_vs_human import MVH_COLUMNS, mvh_experiment_name, mvh_file_name
from results.services import alignment_report
from surveys.answer_api import TIMING_FIELDS
from surveys.apis import ClientInfoSerializer
from surveys.models import Survey, Trial
from surveys.services import survey_create, survey_publish
from teams.models import Role
from teams.services import membership_set, team_create
from tests.conftest import new_key
from tests.results.helpers import session_answer, target
from tests.surveys.test_classification import labelled_photos

pytestmark = pytest.mark.django_db

LAYERS = ("relu1", "relu2")
DEVICE = {"window_w": 1400, "window_h": 900, "screen_w": 1920, "screen_h": 1080, "dpr": 2.0, "touch": False,
          "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120", "refresh_hz": 59.94}


def sweep(team) -> list[IriJob]:
    """A two-layer sweep: the engine's IRI set of six labelled photos at the first layer, and its copy at the second
    (each IRI its own picture, as the engine would store another layer's)."""
    made, _ = labelled_photos(team)
    IriJob.objects.filter(pk=made.pk).update(spec={**made.spec, "layer": LAYERS[0]})
    made.refresh_from_db()
    copy = IriJob.objects.create(team=team, name=f"sweep · {LAYERS[1]}", spec={**made.spec, "layer": LAYERS[1]},
                                 status=IriJob.Status.DONE)
    copy.targets.set(made.targets.all())
    for iri in made.images.all():
        pixels = np.asarray(Image.open(iri.image.file.open("rb")).convert("RGB")).astype(int)
        noisy = np.clip(pixels + np.random.default_rng(iri.pk).integers(-40, 41, pixels.shape), 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(noisy).save(out, format="PNG")
        stored = stored_image_save(png_bytes=out.getvalue(), width=pixels.shape[1], height=pixels.shape[0])
        fields = {f.attname: getattr(iri, f.attname) for f in IriImage._meta.concrete_fields
                  if f.name not in ("id", "job")}
        IriImage.objects.create(**{**fields, "image_id": stored.pk}, job=copy)
    return [made, copy]


def classification(sets, **fields) -> Survey:
    fields = {"practice_trials": 2, "screening_trials": 3, "catch_trials": 1, "rt_floor_ms": 0, "image_ms": 300,
              **fields}
    return survey_publish(survey=survey_create(slug="sweep_study", title="t", iri_jobs=sets,
                                               task_type=Survey.TaskType.CLASSIFY, **fields))


def timing(shown_ms: float, hz: float = 60.0, onset: float = 1000.0) -> dict:
    return {"image_onset_ms": onset, "image_offset_ms": onset + shown_ms, "shown_ms": shown_ms, "refresh_hz": hz,
            "frames": round(shown_ms * hz / 1000)}


def walk(survey, pid: str, *, device: dict, wrong_every: int = 0) -> dict:
    """One person through the participant API: practice, screening (passed), then main and catch trials, each answer
    with the browser's timing; the first main-block answer was up two frames too long. Returns public id ->
    (kind, choice, timing)."""
    client = APIClient()
    token = client.post(f"/api/p/surveys/{survey.slug}/enroll", {"prolific_pid": pid, "client": device},
                        format="json").json()["token"]
    client.post(f"/api/p/sessions/{token}/consent")
    entries = client.get(f"/api/p/sessions/{token}/trials").json()
    trials = {t.public_id: t for t in Trial.objects.filter(survey=survey)}
    sent = {}
    block = [(e, "practice") for e in entries["practice"]] + [(e, "screening") for e in entries["screening"]]
    block += [(e, None) for e in entries["trials"]]
    for n, (entry, _) in enumerate(block):
        trial = trials[entry["id"]]
        first_after_screening = n == len(entries["practice"]) + len(entries["screening"])
        shown = 333.4 if first_after_screening else 300.0
        choice = trial.target_option
        if wrong_every and trial.kind == Trial.Kind.MAIN and n % wrong_every == 0:
            choice = (choice + 1) % trial.n_options
        answer = {"trial": entry["id"], "choice": choice, "rt_ms": 500 + n, "idempotency_key": new_key(),
                  "timing": timing(shown, onset=1000.0 * (n + 1))}
        assert client.post(f"/api/p/sessions/{token}/responses", answer, format="json").status_code == 201
        sent[entry["id"]] = (trial.kind, choice, answer["timing"])
    assert client.post(f"/api/p/sessions/{token}/complete").status_code == 200
    return sent


def text(response) -> str:
    assert response.status_code == 200, response.content[:300]
    return b"".join(response.streaming_content).decode()


def blob(response) -> bytes:
    assert response.status_code == 200, response.content[:300]
    return b"".join(response.streaming_content)


def plain(value) -> str:
    """A value as the CSV export writes it."""
    return "" if value is None else str(value)


# -- the answers export -------------------------------------------------------------------------------------------


def test_the_export_columns_are_what_the_participant_api_stores():
    assert sorted(TIMING_COLUMNS) == sorted(TIMING_FIELDS)
    assert sorted(DEVICE_FACTS) == sorted(ClientInfoSerializer().fields)
    assert {"kind", "category", "chosen_category", "mistimed", *TIMING_COLUMNS, *DEVICE_COLUMNS} <= set(ANSWER_COLUMNS)
    assert len(ANSWER_COLUMNS) == len(set(ANSWER_COLUMNS))


def test_every_answer_carries_its_kind_timing_mistimed_flag_and_device_through_the_api_and_the_admin(team, researcher):
    survey = classification(sweep(team))
    sent = walk(survey, "P1", device=DEVICE)
    api = APIClient()
    api.force_authenticate(researcher)
    base = f"/api/results/surveys/{survey.slug}"

    rows = list(csv.DictReader(io.StringIO(text(api.get(f"{base}/export/answers.csv")))))
    as_json = json.loads(text(api.get(f"{base}/export/answers.json")))
    page = api.get(f"{base}/answers", {"limit": 10**4}).json()["results"]

    # Practice, screening, catch and main answers, each under its own kind (screening was labelled main before).
    kinds = {kind: sum(k == kind for k, *_ in sent.values()) for kind in ("practice", "screening", "catch", "main")}
    assert all(kinds.values()) and sum(kinds.values()) == len(sent) == len(rows)
    assert {kind: sum(r["kind"] == kind for r in rows) for kind in kinds} == kinds
    assert list(rows[0]) == ANSWER_COLUMNS
    for row in rows:
        kind, choice, measured = sent[row["trial"]]
        assert row["kind"] == kind
        assert {c: row[c] for c in TIMING_COLUMNS} == {c: plain(measured[c]) for c in TIMING_COLUMNS}
        assert {c: row[f"device_{c}"] for c in DEVICE_FACTS} == {c: plain(DEVICE[c]) for c in DEVICE_FACTS}
        trial = Trial.objects.get(public_id=row["trial"])
        names = survey.categories
        assert (row["category"], row["chosen_category"]) == (names[trial.target_option], names[choice])
        assert row["mistimed"] == str(measured["shown_ms"] == 333.4)  # two frames over at 60 Hz: flagged at completion
    assert sum(r["mistimed"] == "True" for r in rows) == 1
    # The JSON export and the API's pages carry the same rows, with numbers and booleans as such.
    assert as_json == page == json.loads(json.dumps(list(answer_rows(survey=survey))))
    assert [{k: plain(v) for k, v in r.items()} for r in as_json] == rows
    mistimed = next(r for r in as_json if r["mistimed"])
    assert mistimed["shown_ms"] == 333.4 and mistimed["frames"] == 20 and mistimed["device_touch"] is False
    assert mistimed["device_refresh_hz"] == 59.94 and mistimed["refresh_hz"] == 60.0
    # The admin's exports are the same files.
    from django.test import Client

    admin = Client()
    admin.force_login(researcher)
    for name in ("answers.csv", "answers.json"):
        assert text(admin.get(f"/admin/results/surveyreport/{survey.pk}/report/export/{name}")) == text(
            api.get(f"{base}/export/{name}"))


def test_a_mistimed_answer_names_its_rule_only_where_the_survey_leaves_mistimed_answers_out(team):
    survey = classification(sweep(team), practice_trials=0, screening_trials=0, catch_trials=0)
    walk(survey, "P1", device=DEVICE)

    kept = [r for r in answer_rows(survey=survey) if r["mistimed"]]
    survey.exclude_mistimed = True
    survey.save(update_fields=["exclude_mistimed"])
    left_out = [r for r in answer_rows(survey=survey) if r["mistimed"]]

    assert len(kept) == len(left_out) == 1
    assert (kept[0]["included"], kept[0]["exclusion_rules"]) == (True, "")
    assert (left_out[0]["included"], left_out[0]["exclusion_rules"]) == (False, "mistimed")


def test_a_2afc_answer_has_no_timing_no_category_and_is_not_mistimed(live_survey):
    session_answer(live_survey, pid="A", choose=target)

    rows = list(answer_rows(survey=live_survey))

    assert rows and {r["kind"] for r in rows} <= {"main", "catch", "practice"}
    assert all(r[c] is None for r in rows for c in TIMING_COLUMNS + DEVICE_COLUMNS)
    assert all(r["mistimed"] is False and r["category"] == r["chosen_category"] == "" for r in rows)


# -- model-vs-human -----------------------------------------------------------------------------------------------


def short_imagename(imagename: str) -> str:
    """modelvshuman/helper/plotting_helper.py get_short_imagename: the image's own name without an experiment's
    prefix (their error consistency pairs two subjects' trials by it)."""
    splits = imagename.split("_")
    if len(splits) > 1:
        name = splits[-2:]
        return name[0] + "_" + name[1] if name[0].startswith("n0") else name[1]
    return splits[0]


def read_raw_data(directory: str) -> list[dict]:
    """model-vs-human's reading of raw-data/<experiment>/ (plotting_helper.read_all_csv_files_from_directory and
    get_experimental_data) without pandas: every .csv in sorted order, column names lower-cased, condition as text,
    image_id from the imagename."""
    rows = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".csv"):
            with open(os.path.join(directory, name), newline="") as f:
                for row in csv.DictReader(f):
                    row = {k.lower(): v for k, v in row.items()}
                    image_id = short_imagename(row["imagename"])
                    rows.append({**row, "condition": str(row["condition"]), "image_id": image_id, "file": name})
    return rows


def accuracy(rows: list[dict]) -> float:
    """analyses.SixteenClassAccuracy: the share of rows whose object_response is the category."""
    return sum(r["object_response"] == r["category"] for r in rows) / len(rows)


def test_a_classification_surveys_model_vs_human_zip_reads_back_as_their_raw_data(team, researcher_client, tmp_path):
    survey = classification(sweep(team))
    walk(survey, "P1", device=DEVICE)
    walk(survey, "P2", device=DEVICE, wrong_every=3)
    base = f"/api/results/surveys/{survey.slug}/export"

    response = researcher_client.get(f"{base}/model-vs-human.zip")
    body = blob(response)
    again = blob(researcher_client.get(f"{base}/model-vs-human.zip"))
    combined = list(csv.DictReader(io.StringIO(text(researcher_client.get(f"{base}/model-vs-human.csv")))))
    raw = tmp_path / "raw-data"
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        archive.extractall(raw)
    experiment = mvh_experiment_name(survey=survey)
    rows = read_raw_data(str(raw / experiment))

    assert response["Content-Type"] == "application/zip" and body == again  # the same answers, the same bytes
    assert response["Content-Disposition"] == f'attachment; filename="{survey.slug}-model-vs-human.zip"'
    assert experiment == "sweep-study" and os.listdir(raw) == [experiment]
    # One file per subject, named <experiment>_<subject>_session_<n>.csv, headed like their human raw data.
    subjects = sorted({r["subj"] for r in rows})
    assert len(subjects) == 2 and all(s.startswith("subject-") for s in subjects)  # how they tell people from networks
    named = sorted(mvh_file_name(experiment=experiment, subject=s) for s in subjects)
    assert sorted(os.listdir(raw / experiment)) == named
    for r in rows:
        assert r["file"] == f"{experiment}_{r['subj']}_session_{r['session']}.csv"
    with open(raw / experiment / rows[0]["file"], newline="") as f:
        assert next(csv.reader(f)) == MVH_COLUMNS
    # object_response the chosen category, category the true one, condition the layer.
    assert {r["category"] for r in rows} | {r["object_response"] for r in rows} <= set(survey.categories)
    assert {r["condition"] for r in rows} == set(LAYERS)
    main = Trial.objects.filter(survey=survey, kind=Trial.Kind.MAIN).select_related("query", "iri__target")
    by_image = {f"{t.query.sha256}.png": t for t in main}
    for r in rows:
        trial = by_image[r["image_id"]]  # the imagename has no prefix: image_id is the stimulus itself
        assert r["category"] == survey.categories[trial.target_option] == trial.iri.target.label.title()
        assert r["condition"] == trial.iri.job.layer
    # Their accuracy per condition is the report's.
    report = alignment_report(survey=survey, n_boot=50)
    for condition in report["conditions"]:
        in_condition = [r for r in rows if r["condition"] == condition["layer"]]
        assert len(in_condition) == condition["n_answers"]
        assert accuracy(in_condition) == pytest.approx(condition["alignment"])
    assert accuracy(rows) < 1  # P2 was wrong now and then, so the check has teeth
    # Per subject, trials count 1, 2, ... and rt is in seconds; the zip holds exactly the one-file CSV's rows.
    for s in subjects:
        ordinals = [int(r["trial"]) for r in rows if r["subj"] == s]
        assert ordinals == list(range(1, len(ordinals) + 1))
    assert all(0.5 <= float(r["rt"]) < 1 for r in rows)
    strip = lambda r: tuple(r[c.lower()] for c in MVH_COLUMNS)  # noqa: E731
    assert sorted(map(strip, rows)) == sorted(tuple(r[c] for c in MVH_COLUMNS) for r in combined)


def test_a_2afc_surveys_model_vs_human_files_keep_their_layout(live_survey, researcher_client, tmp_path):
    session_answer(live_survey, pid="A", choose=target)
    session_answer(live_survey, pid="B", choose=lambda t: (t.target_option + 1) % t.n_options)
    base = f"/api/results/surveys/{live_survey.slug}/export"

    combined = list(csv.DictReader(io.StringIO(text(researcher_client.get(f"{base}/model-vs-human.csv")))))
    with zipfile.ZipFile(io.BytesIO(blob(researcher_client.get(f"{base}/model-vs-human.zip")))) as archive:
        archive.extractall(tmp_path)
    rows = read_raw_data(str(tmp_path / mvh_experiment_name(survey=live_survey)))

    # category = the target photo's name; object_response = it when the target was chosen, else the foil.
    right = [r for r in combined if r["object_response"] == r["category"]]
    wrong = [r for r in combined if r["object_response"] != r["category"]]
    assert right and wrong
    assert all(r["object_response"] == "seed" or r["object_response"].startswith("foil-") for r in wrong)
    label = alignment_report(survey=live_survey, n_boot=10)["conditions"][0]["condition"]  # the full label, as before
    assert " · " in label and {r["condition"] for r in combined} == {label}
    assert len({r["file"] for r in rows}) == 2
    assert sorted(tuple(r[c.lower()] for c in MVH_COLUMNS) for r in rows) == sorted(
        tuple(r[c] for c in MVH_COLUMNS) for r in combined)


# -- one team's exports are its own --------------------------------------------------------------------------------


def test_another_labs_researcher_gets_none_of_the_exports(live_survey, django_user_model):
    session_answer(live_survey, pid="A", choose=target)
    lab_b = team_create(name="Lab B")
    stranger = django_user_model.objects.create_user(username=f"b-{uuid.uuid4().hex[:6]}", password="pw-b-123456",
                                                     is_staff=True)
    membership_set(team=lab_b, user=stranger, role=Role.RESEARCHER)
    api = APIClient()
    api.force_authenticate(stranger)
    from django.test import Client

    admin = Client()
    admin.force_login(stranger)

    for name in ("answers.csv", "answers.json", "model-vs-human.csv", "model-vs-human.zip", "participants.csv"):
        assert api.get(f"/api/results/surveys/{live_survey.slug}/export/{name}").status_code == 404
        admin_export = admin.get(f"/admin/results/surveyreport/{live_survey.pk}/report/export/{name}")
        assert admin_export.status_code == 404
    assert api.get(f"/api/results/surveys/{live_survey.slug}/answers").status_code == 404
