"""Researchers upload weights as checkpoints: the request stores them by hash, a worker loads them safely
(weights_only) in an operation run, and jobs may use them only once that check passed."""
import hashlib
import io
import os

import pytest
import torch

from backend.exceptions import ApplicationError
from iri_worker import engine
from iri_worker.engine import backbones as engine_backbones
from iri_worker.models import Checkpoint, IriJob
from iri_worker.selectors import iri_job_record
from iri_worker.services import checkpoint_create, iri_job_run
from operations.models import OperationRun
from operations.tasks import operation_run_execute
from tests.conftest import TINY_SPEC

pytestmark = pytest.mark.django_db


class RunsCodeWhenUnpickled:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def upload(data: bytes, name="weights.pt"):
    fh = io.BytesIO(data)
    fh.name = name
    return fh


def tiny_weights(**renames) -> bytes:
    state = engine.load_backbone("tiny_cnn").module.state_dict()
    state = {renames.get(k, k): v.clone() * 0.5 for k, v in state.items()}
    out = io.BytesIO()
    torch.save(state, out)
    return out.getvalue()


def uploaded(client, data: bytes, capture, backbone="tiny_cnn", **fields) -> dict:
    """POST the weights as the API's client does; the answer (the check is queued once the request commits)."""
    with capture(execute=False) as queued:
        response = client.post("/api/iri/checkpoints", {"file": upload(data), "backbone": backbone, **fields},
                               format="multipart")
    assert response.status_code == 201, response.json()
    assert len(queued) == 1, "one check is queued"
    return response.json()


def checked(client, body: dict) -> dict:
    """What a worker does with the queued check (operations' task, run here), then the checkpoint as GET shows it."""
    run = OperationRun.objects.get(kind="checkpoint_check", subject_id=body["id"])
    operation_run_execute(run.pk)
    return client.get(f"/api/iri/checkpoints/{body['id']}").json()


def test_uploaded_weights_are_stored_by_hash_checked_by_a_worker_and_a_job_records_them(
        researcher_client, photos, django_capture_on_commit_callbacks):
    data = tiny_weights()
    body = uploaded(researcher_client, data, django_capture_on_commit_callbacks, name="half")
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["size"] == len(data)
    assert body["status"] == "CHECKING" and body["error"] == ""

    def job_with_it():
        return researcher_client.post("/api/iri/jobs", {"targets": [photos[0].pk], "spec": TINY_SPEC,
                                                        "checkpoint": body["id"]}, format="json")

    too_early = job_with_it()
    assert too_early.status_code == 400 and "still being checked" in too_early.json()["message"]

    assert checked(researcher_client, body)["status"] == "READY"
    run = OperationRun.objects.get(kind="checkpoint_check")
    assert run.status == OperationRun.Status.DONE and run.result["status"] == "READY"

    response = job_with_it()
    assert response.status_code == 201, response.json()
    job = IriJob.objects.get(pk=response.json()["id"])
    assert job.spec["checkpoint_sha256"] == body["sha256"] and job.spec["weights_path"] is None
    iri_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == IriJob.Status.DONE, job.error
    assert iri_job_record(job=job)["checkpoint"]["sha256"] == body["sha256"]


def test_the_upload_request_stores_the_file_and_loads_nothing(researcher_client, django_capture_on_commit_callbacks,
                                                              monkeypatch):
    """Loading the weights is the worker's: the request builds no model and calls no torch.load."""
    def refused(*args, **kwargs):
        raise AssertionError("the web request loaded the weights")

    data = tiny_weights()
    monkeypatch.setattr(engine_backbones, "_load_cached", refused)
    monkeypatch.setattr(torch, "load", refused)
    body = uploaded(researcher_client, data, django_capture_on_commit_callbacks)

    checkpoint = Checkpoint.objects.get(pk=body["id"])
    assert checkpoint.status == Checkpoint.Status.CHECKING and checkpoint.file.size == body["size"]


def test_a_pickle_that_would_run_code_is_refused_by_the_check_and_never_executed(
        researcher_client, photos, tmp_path, media_root, django_capture_on_commit_callbacks):
    marker = tmp_path / "pwned"
    evil = io.BytesIO()
    torch.save({"conv1.weight": RunsCodeWhenUnpickled(f"touch {marker}")}, evil)

    body = uploaded(researcher_client, evil.getvalue(), django_capture_on_commit_callbacks)
    shown = checked(researcher_client, body)

    assert shown["status"] == "REFUSED"
    assert "refused" in shown["error"] and "weights_only" in shown["error"]
    assert not marker.exists()
    assert OperationRun.objects.get(kind="checkpoint_check").error == shown["error"], "the run says why too"
    sha256 = hashlib.sha256(evil.getvalue()).hexdigest()
    assert not list(media_root.rglob(f"{sha256}*")), "the refused file is not kept"
    job = researcher_client.post("/api/iri/jobs", {"targets": [photos[0].pk], "spec": TINY_SPEC,
                                                   "checkpoint": body["id"]}, format="json")
    assert job.status_code == 400 and "was refused by its check" in job.json()["message"]


def test_weights_that_do_not_fit_the_architecture_say_which_keys_and_a_fixed_upload_is_checked_anew(
        researcher_client, django_capture_on_commit_callbacks):
    data = tiny_weights(**{"fc.weight": "head.weight"})

    shown = checked(researcher_client, uploaded(researcher_client, data, django_capture_on_commit_callbacks))

    assert shown["status"] == "REFUSED"
    assert "does not fit backbone 'tiny_cnn'" in shown["error"]
    assert "fc.weight" in shown["error"] and "head.weight" in shown["error"]
    again = uploaded(researcher_client, data, django_capture_on_commit_callbacks)  # refused before: checked again
    assert again["status"] == "CHECKING" and Checkpoint.objects.count() == 1


def test_a_checkpoint_over_the_size_limit_or_for_no_architecture_is_refused_by_the_request(researcher_client, settings):
    too_big = researcher_client.post("/api/iri/checkpoints", {"file": upload(tiny_weights()), "backbone": "tiny_cnn"},
                                     format="multipart")
    unknown = researcher_client.post("/api/iri/checkpoints", {"file": upload(b"x"), "backbone": "tiny_cn"},
                                     format="multipart")
    settings.IRI_MAX_CHECKPOINT_BYTES = 100
    over = researcher_client.post("/api/iri/checkpoints", {"file": upload(tiny_weights()), "backbone": "tiny_cnn"},
                                  format="multipart")

    assert too_big.status_code == 201
    assert over.status_code == 400 and "larger than" in over.json()["message"]
    assert unknown.status_code == 400 and "Did you mean 'tiny_cnn'" in unknown.json()["message"]
    assert Checkpoint.objects.count() == 1 and OperationRun.objects.count() == 1


def test_a_job_cannot_use_weights_of_another_architecture_or_a_server_path(
        researcher_client, photos, django_capture_on_commit_callbacks):
    checkpoint = checked(researcher_client, uploaded(researcher_client, tiny_weights(), django_capture_on_commit_callbacks))

    wrong = researcher_client.post("/api/iri/jobs", {"targets": [photos[0].pk], "checkpoint": checkpoint["id"],
                                                     "spec": {**TINY_SPEC, "backbone": "resnet18"}}, format="json")
    path = researcher_client.post("/api/iri/jobs", {"targets": [photos[0].pk],
                                                    "spec": {**TINY_SPEC, "weights_path": "/etc/passwd"}}, format="json")

    assert wrong.status_code == 400 and "for backbone 'tiny_cnn'" in wrong.json()["message"]
    assert path.status_code == 400 and "upload the weights as a checkpoint" in path.json()["message"]
    assert not IriJob.objects.exists()


def test_weights_checked_in_the_process_of_a_command_are_ready_or_leave_nothing(team):
    """checkpoint_create (commands, tests): the check in this process, as before the worker did it."""
    ready = checkpoint_create(team=team, name="w", backbone="tiny_cnn", data=tiny_weights())
    with pytest.raises(ApplicationError, match="does not fit"):
        checkpoint_create(team=team, name="x", backbone="tiny_cnn", data=tiny_weights(**{"fc.bias": "b"}))

    assert ready.status == Checkpoint.Status.READY
    assert list(Checkpoint.objects.all()) == [ready]
