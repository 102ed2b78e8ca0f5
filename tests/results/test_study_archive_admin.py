"""The study archive from the survey report page (issue 21, part E): a researcher asks for it, a worker builds it
with progress, the page offers the file with its size and SHA-256, and the file is the archive the command writes.
It is stored privately: only the report page's download hands it out, to the survey's own team."""
import hashlib
import io
import json
import zipfile

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import Client

from results import archive as archive_module
from results.archive import ARCHIVE_NO_ANSWERS
from operations.models import OperationRun
from operations.tasks import operation_run_execute
from teams.models import AuditEntry, Role
from teams.services import membership_set, team_create
from tests.results.helpers import not_target, session_answer, target

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def archive_asked(client, survey, capture) -> tuple:
    """The report page's button, pressed: (the response, the callbacks that would enqueue the worker's task)."""
    with capture(execute=False) as enqueued:
        response = client.post(f"/admin/results/surveyreport/{survey.pk}/report/archive")
    return response, enqueued


def entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_a_researcher_builds_the_archive_from_the_report_page_and_downloads_what_the_command_writes(
        live_survey, researcher, tmp_path, monkeypatch, django_capture_on_commit_callbacks):
    session_answer(live_survey, pid="PID-A", choose=target)
    session_answer(live_survey, pid="PID-B", choose=not_target)
    client = signed_in(researcher)
    report = f"/admin/results/surveyreport/{live_survey.pk}/report/"

    asked, enqueued = archive_asked(client, live_survey, django_capture_on_commit_callbacks)

    assert asked.status_code == 302 and len(enqueued) == 1  # handed to a worker once the request commits
    run = OperationRun.objects.get(subject_id=live_survey.pk, kind="archive")
    assert run.status == OperationRun.Status.QUEUED and run.created_by == researcher
    page = client.get(report).content.decode()
    assert "Study archive" in page and "Queued" in page and 'http-equiv="refresh"' in page
    assert 'value="Build the study archive" disabled' in page

    # A second click while it waits starts nothing new.
    again, enqueued_again = archive_asked(client, live_survey, django_capture_on_commit_callbacks)
    assert again.status_code == 302 and not enqueued_again
    assert OperationRun.objects.filter(kind="archive").count() == 1

    seen = []  # the steps the worker reports as it goes
    write = archive_module.study_archive_write
    monkeypatch.setattr(archive_module, "study_archive_write", lambda **kw: write(
        **{**kw, "progress": lambda share, step: seen.append(step) or kw["progress"](share, step)}))
    operation_run_execute(run.pk)  # what the worker does
    monkeypatch.undo()

    run.refresh_from_db()
    assert run.status == OperationRun.Status.DONE and run.progress == 1.0, run.error
    assert seen[0] == "report" and "answers" in seen and seen[-1] == "done"
    assert run.result["file"].startswith(f"archives/{live_survey.pk}/") and default_storage.exists(run.result["file"])
    assert not run.result["file"].startswith("img/")  # the only stored files the site serves
    page = client.get(report).content.decode()
    assert run.result["sha256"] in page and f"{run.result['bytes']} bytes" in page
    assert f'href="/admin/results/surveyreport/{live_survey.pk}/report/archive.zip"' in page

    download = client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/archive.zip")
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    assert f'filename="study-{live_survey.slug}.zip"' in download["Content-Disposition"]
    data = b"".join(download.streaming_content)
    assert hashlib.sha256(data).hexdigest() == run.result["sha256"] and len(data) == run.result["bytes"]
    assert AuditEntry.objects.filter(action="survey.export", details__export="study-archive.zip").exists()
    assert AuditEntry.objects.filter(action="survey.archive", details__run=run.pk).exists()

    # The same archive the command writes: the same files, the same answers, sessions and report.
    out = tmp_path / "command.zip"
    call_command("study_archive", live_survey.slug, "--out", str(out))
    built, written = entries(data), entries(out.read_bytes())
    assert sorted(built) == sorted(written)
    for name in built:
        if name.startswith("data/") or name.startswith("stimuli/") or name in ("reanalyse.py", "design/design.json"):
            assert built[name] == written[name], name
    assert "PID-A" not in built[f"data/study-{live_survey.slug}_data-sessions_data.csv"].decode()  # pseudonyms
    assert json.loads(built["manifest.json"])["identified"] is False


def test_another_teams_researcher_can_neither_build_nor_download_the_archive(
        live_survey, researcher, django_user_model, django_capture_on_commit_callbacks):
    session_answer(live_survey, pid="A", choose=target)
    archive_asked(signed_in(researcher), live_survey, django_capture_on_commit_callbacks)
    operation_run_execute(OperationRun.objects.get(kind="archive").pk)
    stranger = django_user_model.objects.create_user(username="lab-b", is_staff=True)
    membership_set(team=team_create(name="Lab B"), user=stranger, role=Role.RESEARCHER)
    client = signed_in(stranger)

    asked, enqueued = archive_asked(client, live_survey, django_capture_on_commit_callbacks)

    assert asked.status_code == 404 and not enqueued
    assert client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/archive.zip").status_code == 404
    assert client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/").status_code == 404
    assert OperationRun.objects.filter(kind="archive").count() == 1


def test_a_viewer_downloads_the_archive_but_cannot_build_one(
        live_survey, team, researcher, django_user_model, django_capture_on_commit_callbacks):
    viewer = django_user_model.objects.create_user(username="viewer", is_staff=True)
    membership_set(team=team, user=viewer, role=Role.VIEWER)
    session_answer(live_survey, pid="A", choose=target)
    client = signed_in(viewer)
    assert client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/archive.zip").status_code == 404  # none yet

    asked, enqueued = archive_asked(client, live_survey, django_capture_on_commit_callbacks)

    assert asked.status_code == 403 and not enqueued
    archive_asked(signed_in(researcher), live_survey, django_capture_on_commit_callbacks)
    operation_run_execute(OperationRun.objects.get(kind="archive").pk)
    assert client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/archive.zip").status_code == 200


def test_an_archive_of_a_survey_without_answers_fails_and_the_page_says_why(
        live_survey, researcher, django_capture_on_commit_callbacks):
    client = signed_in(researcher)
    archive_asked(client, live_survey, django_capture_on_commit_callbacks)
    run = OperationRun.objects.get(kind="archive")

    operation_run_execute(run.pk)

    run.refresh_from_db()
    sentence = ARCHIVE_NO_ANSWERS.format(slug=live_survey.slug)
    assert run.status == OperationRun.Status.FAILED and run.error == sentence
    assert not default_storage.exists(f"archives/{live_survey.pk}") or not default_storage.listdir(
        f"archives/{live_survey.pk}")[1]
    page = client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/").content.decode()
    assert "has no answers yet: there is nothing to archive" in page and "Failed" in page
    assert client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/archive.zip").status_code == 404
    # Once it has failed, the button starts a new run.
    again, enqueued = archive_asked(client, live_survey, django_capture_on_commit_callbacks)
    assert len(enqueued) == 1 and OperationRun.objects.filter(kind="archive").count() == 2
