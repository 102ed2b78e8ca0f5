"""The study archive (issue 21, part E): a Psych-DS dataset whose CSVs validate against their Frictionless schemas
and whose reanalyse.py, run in a fresh virtual environment that has only numpy, recomputes the report exactly."""
import csv
import fcntl
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from results.archive_columns import UNDESCRIBED
from surveys.services import participant_enroll
from teams.models import AuditEntry
from teams.services import team_create
from tests.results.helpers import not_target, session_answer, survey_make, target
from tests.results.test_recognition_report import recognised_by_two_people
from tests.surveys.test_assignment import answer_all

pytestmark = pytest.mark.django_db

NUMPY_WHEELS = ("/opt/pypi/files", "/opt/pypi-more/files", "/opt/wheels")
TABLES = ("answers", "trials", "sessions", "conditions", "assignments")


@pytest.fixture(scope="session")
def numpy_python(request) -> str:
    """A fresh virtual environment with numpy and nothing else (made once, kept in the pytest cache)."""
    folder = Path(request.config.cache.mkdir("study-archive-numpy-venv"))
    python = folder / "bin" / "python"
    # One test process makes it while the others wait (xdist: two processes making it at once broke it).
    with open(folder.parent / "study-archive-numpy-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = (python.exists() and (folder / "pyvenv.cfg").exists()
                 and subprocess.run([str(python), "-c", "import numpy"], capture_output=True).returncode == 0)
        if not ready:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
            links = [arg for path in NUMPY_WHEELS if Path(path).is_dir() for arg in ("--find-links", path)]
            install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "numpy"]
            done = subprocess.run([*install, "--no-index", *links], capture_output=True, text=True)
            if done.returncode:  # no local wheel: the package index
                subprocess.run(install, check=True)
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                            check=True)
    assert {p["name"].lower() for p in json.loads(listed.stdout)} <= {"numpy", "pip", "setuptools"}
    return str(python)


def archive_make(survey, tmp_path, *args) -> Path:
    out = tmp_path / f"{survey.slug}.zip"
    call_command("study_archive", survey.slug, "--out", str(out), "--n-boot", "200", *args)
    folder = tmp_path / survey.slug
    with zipfile.ZipFile(out) as archive:
        archive.extractall(folder)
    return folder


def reanalyse(python: str, folder: Path) -> tuple[subprocess.CompletedProcess, dict | None]:
    result_file = folder.parent / f"{folder.name}-reanalysis.json"
    done = subprocess.run([python, "reanalyse.py", "--json", str(result_file)], cwd=folder, capture_output=True,
                          text=True)
    return done, json.loads(result_file.read_text()) if result_file.exists() else None


def archive_check(folder: Path, *, slug: str) -> None:
    """Psych-DS layout, schema.org description, Frictionless schemas that describe every column and validate."""
    from frictionless import Package

    description = json.loads((folder / "dataset_description.json").read_text())
    assert description["@type"] == "Dataset" and description["@context"].startswith("https://schema.org")
    for key in ("name", "description", "variableMeasured", "author", "license", "datePublished", "date"):
        assert description[key], key
    for table in TABLES:
        assert (folder / "data" / f"study-{slug}_data-{table}_data.csv").is_file()
    package = json.loads((folder / "datapackage.json").read_text())
    for resource in package["resources"]:
        fields = resource["schema"]["fields"]
        with (folder / resource["path"]).open(newline="") as f:
            assert next(csv.reader(f)) == [field["name"] for field in fields]
        assert all(field["description"] and field["description"] != UNDESCRIBED for field in fields), resource["name"]
    assert any(f.get("unit") == "ms" for f in package["resources"][0]["schema"]["fields"])
    report = Package(str(folder / "datapackage.json"), basepath=str(folder)).validate()
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])[:10]
    manifest = json.loads((folder / "manifest.json").read_text())["files"]
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest) == files
    assert any(name.startswith("stimuli/images/") and name.endswith(".png") for name in files)
    assert {"reanalyse.py", "report/report.json", "design/design.json", "analysis/alignment.py"} <= files
    assert any(name.startswith("plan/") and name.endswith("-analysis-plan.json") for name in files)
    iri_sets = json.loads((folder / "stimuli" / "iri_sets.json").read_text())
    assert all(s["spec"] and "sha256" in s["checkpoint"] and "versions" in s for s in iri_sets)


def recomputed_identically(python: str, folder: Path) -> dict:
    done, result = reanalyse(python, folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All identical to report/report.json" in done.stdout
    assert result["different"] == [] and result["compared"] > 50
    return result


def test_a_2afc_archive_validates_and_reanalyse_recomputes_the_report_with_numpy_alone(live_survey, tmp_path,
                                                                                       numpy_python):
    session_answer(live_survey, pid="PROLIFIC-A", choose=target)
    session_answer(live_survey, pid="PROLIFIC-B", choose=not_target)
    session_answer(live_survey, pid="PROLIFIC-C", choose=lambda t: t.target_option if t.pk % 2 else 1 - t.target_option)

    folder = archive_make(live_survey, tmp_path)

    archive_check(folder, slug=live_survey.slug)
    result = recomputed_identically(numpy_python, folder)
    (condition,) = result["recomputed"]["conditions"]
    report = json.loads((folder / "report" / "report.json").read_text())
    assert condition["ci_low"] == report["conditions"][0]["ci_low"] is not None and report["n_boot"] == 200
    assert {"exclusions", "agreement", "collection", "conditions", "comparisons"} <= set(result["sections"])
    assert result["recomputed"]["collection"]["design"] == "fixed"
    # External IDs are pseudonyms unless asked otherwise; nothing in the archive carries the raw PID.
    text = "".join(p.read_text(errors="ignore") for p in folder.rglob("*.csv"))
    assert "PROLIFIC-A" not in text and not AuditEntry.objects.filter(action="study_archive.identified").exists()


def test_a_clustering_archive_recomputes_the_report(photos, iri_set, tmp_path, numpy_python):
    from tests.conftest import finished_iri_set

    second = finished_iri_set(photos, rng_seed=3)
    survey = survey_make(slug="clusters", iri_jobs=[iri_set, second], task_type="cluster")
    session_answer(survey, pid="A", choose=target)
    session_answer(survey, pid="B", choose=lambda t: (t.target_option + 1) % t.n_options)
    session_answer(survey, pid="C", choose=lambda t: t.target_option if t.pk % 3 else 0, rt_ms=150.0)  # all too fast

    folder = archive_make(survey, tmp_path)

    archive_check(folder, slug=survey.slug)
    result = recomputed_identically(numpy_python, folder)
    counts = {c["rule"]: c for c in result["recomputed"]["exclusions"]["counts"]}
    assert counts["rt_floor"]["answers"] > 0
    assert result["recomputed"]["agreement"]["fleiss_kappa"]["categories"][0] == "chose_right_reference"


def test_a_classification_archive_recomputes_the_recognition_section(team, tmp_path, numpy_python):
    survey, car = recognised_by_two_people(team)
    half = participant_enroll(survey=survey, prolific_pid="half")[0]
    answer_all(half, choose=lambda t: t.target_option if t.pk % 2 else car)

    folder = archive_make(survey, tmp_path)

    archive_check(folder, slug=survey.slug)
    result = recomputed_identically(numpy_python, folder)
    recognition = result["recomputed"]["recognition"]
    assert recognition["conditions"][0]["error_consistency"] is not None
    assert recognition["overall"]["network_accuracy"] == pytest.approx(8 / 12)


def test_a_csv_edited_after_export_is_detected_from_the_manifest(live_survey, tmp_path, numpy_python):
    session_answer(live_survey, pid="A", choose=target)
    session_answer(live_survey, pid="B", choose=not_target)
    folder = archive_make(live_survey, tmp_path)
    answers = folder / "data" / f"study-{live_survey.slug}_data-answers_data.csv"
    text = answers.read_text()
    edited = text.replace(",False,", ",True,", 1)  # one answer turned right after the fact
    assert edited != text
    answers.write_text(edited)

    done, result = reanalyse(numpy_python, folder)

    assert done.returncode == 2 and result is None
    assert f"data/study-{live_survey.slug}_data-answers_data.csv was changed after export" in done.stderr
    assert "nothing was recomputed" in done.stderr


def test_identified_archives_keep_the_raw_ids_and_are_audit_logged(live_survey, tmp_path):
    session_answer(live_survey, pid="PROLIFIC-RAW", choose=target)

    folder = archive_make(live_survey, tmp_path, "--identified")

    sessions = (folder / "data" / f"study-{live_survey.slug}_data-sessions_data.csv").read_text()
    assert "PROLIFIC-RAW" in sessions
    entry = AuditEntry.objects.get(action="study_archive.identified")
    assert entry.object_id == str(live_survey.pk) and entry.team == live_survey.team


def test_a_survey_without_answers_is_refused_in_words_and_nothing_is_written(live_survey, tmp_path):
    out = tmp_path / "empty.zip"
    with pytest.raises(CommandError, match="has no answers yet: there is nothing to archive"):
        call_command("study_archive", live_survey.slug, "--out", str(out))
    assert list(tmp_path.iterdir()) == []


def test_another_teams_survey_is_not_found(live_survey, tmp_path):
    session_answer(live_survey, pid="A", choose=target)
    other = team_create(name="Lab B")
    with pytest.raises(CommandError, match="no survey with the slug 'pilot' in that team"):
        call_command("study_archive", live_survey.slug, "--out", str(tmp_path / "x.zip"), "--team", str(other.pk))
    assert list(tmp_path.iterdir()) == []


def test_an_adaptive_archive_recomputes_each_sets_design_effect_interval(photos, iri_set, tmp_path, numpy_python):
    from surveys.services import survey_create, survey_publish
    from tests.conftest import finished_iri_set

    second = finished_iri_set(photos, rng_seed=4)  # the same condition key: one condition pools two sets
    survey = survey_publish(survey=survey_create(slug="adaptive", title="t", iri_jobs=[iri_set, second],
                                                 precision_goal=0.25))
    mixed = lambda t: t.target_option if t.pk % 2 else 1 - t.target_option  # noqa: E731
    for k, choose in enumerate((target, not_target, target, mixed)):
        session_answer(survey, pid=f"P{k}", choose=choose)

    folder = archive_make(survey, tmp_path)

    result = recomputed_identically(numpy_python, folder)
    collection = result["recomputed"]["collection"]
    assert collection["design"] == "adaptive" and len(collection["sets"]) == 2
    assert all(0 < s["half_width"] < 0.5 and s["design_effect"] >= 1 for s in collection["sets"])
    assert result["largest_gap"] < 1e-9  # numpy's t quantile against scipy's



def test_the_assignments_table_postgresql_writes_is_what_csv_writer_writes_of_the_rows(live_survey, tmp_path):
    from io import StringIO

    from surveys.models import Assignment

    session_answer(live_survey, pid="A", choose=target)
    session_answer(live_survey, pid="B", choose=not_target)
    Assignment.objects.filter(pk=Assignment.objects.order_by("id").first().pk).update(option_order="")  # none shown
    assignments = Assignment.objects.filter(participant__survey=live_survey).order_by("participant_id", "position")
    expected = StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    writer.writerow(["participant_id", "trial_id", "position", "option_order"])
    writer.writerows(assignments.values_list("participant_id", "trial_id", "position", "option_order"))

    folder = archive_make(live_survey, tmp_path)

    written = (folder / "data" / f"study-{live_survey.slug}_data-assignments_data.csv").read_text()
    assert written == expected.getvalue() and written.count("\n") == 1 + assignments.count() > 3
