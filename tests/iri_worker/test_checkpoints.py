"""Researchers upload weights as checkpoints; they are loaded safely (weights_only) and recorded by hash."""
import hashlib
import io
import os

import pytest
import torch

from iri_worker import engine
from iri_worker.models import Checkpoint, IriJob
from iri_worker.selectors import iri_job_record
from iri_worker.services import iri_job_run
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


def test_uploaded_weights_are_stored_by_hash_and_a_job_records_them(researcher_client, photos):
    data = tiny_weights()
    response = researcher_client.post("/api/iri/checkpoints", {"file": upload(data), "backbone": "tiny_cnn", "name": "half"},
                                      format="multipart")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["size"] == len(data)

    response = researcher_client.post("/api/iri/jobs", {"targets": [photos[0].pk], "spec": TINY_SPEC,
                                                        "checkpoint": body["id"]}, format="json")
    assert response.status_code == 201, response.json()
    job = IriJob.objects.get(pk=response.json()["id"])
    assert job.spec["checkpoint_sha256"] == body["sha256"] and job.spec["weights_path"] is None
    iri_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == IriJob.Status.DONE, job.error
    assert iri_job_record(job=job)["checkpoint"]["sha256"] == body["sha256"]


def test_a_pickle_that_would_run_code_is_refused_and_never_executed(researcher_client, tmp_path, media_root):
    marker = tmp_path / "pwned"
    evil = io.BytesIO()
    torch.save({"conv1.weight": RunsCodeWhenUnpickled(f"touch {marker}")}, evil)

    response = researcher_client.post("/api/iri/checkpoints", {"file": upload(evil.getvalue()), "backbone": "tiny_cnn"},
                                      format="multipart")

    assert response.status_code == 400
    assert "refused" in response.json()["message"] and "weights_only" in response.json()["message"]
    assert not marker.exists()
    assert not Checkpoint.objects.exists()
    sha256 = hashlib.sha256(evil.getvalue()).hexdigest()
    assert not list(media_root.rglob(f"{sha256}*"))  # nothing of it was stored


def test_weights_that_do_not_fit_the_architecture_say_which_keys(researcher_client):
    data = tiny_weights(**{"fc.weight": "head.weight"})

    response = researcher_client.post("/api/iri/checkpoints", {"file": upload(data), "backbone": "tiny_cnn"}, format="multipart")

    assert response.status_code == 400
    message = response.json()["message"]
    assert "does not fit backbone 'tiny_cnn'" in message
    assert "fc.weight" in message and "head.weight" in message
    assert not Checkpoint.objects.exists()


def test_a_checkpoint_over_the_size_limit_is_refused(researcher_client, settings):
    settings.IRI_MAX_CHECKPOINT_BYTES = 100

    response = researcher_client.post("/api/iri/checkpoints", {"file": upload(tiny_weights()), "backbone": "tiny_cnn"},
                                      format="multipart")

    assert response.status_code == 400 and "larger than" in response.json()["message"]


def test_a_job_cannot_use_weights_of_another_architecture_or_a_server_path(researcher_client, photos):
    checkpoint = researcher_client.post("/api/iri/checkpoints", {"file": upload(tiny_weights()), "backbone": "tiny_cnn"},
                                        format="multipart").json()

    wrong = researcher_client.post("/api/iri/jobs", {"targets": [photos[0].pk], "checkpoint": checkpoint["id"],
                                                     "spec": {**TINY_SPEC, "backbone": "resnet18"}}, format="json")
    path = researcher_client.post("/api/iri/jobs", {"targets": [photos[0].pk],
                                                    "spec": {**TINY_SPEC, "weights_path": "/etc/passwd"}}, format="json")

    assert wrong.status_code == 400 and "for backbone 'tiny_cnn'" in wrong.json()["message"]
    assert path.status_code == 400 and "upload the weights as a checkpoint" in path.json()["message"]
    assert not IriJob.objects.exists()
