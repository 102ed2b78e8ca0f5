"""A researcher uploads weights in the admin: the request stores them and returns while they are still CHECKING (no
worker runs yet); a real Celery worker then loads them with weights_only=True, and the checkpoint's page shows the
check's progress and its end: READY weights are offered to a new job, a pickle that would run code is REFUSED with
the reason and never runs."""
import io
import os

import torch
from django.test import Client

from iri_worker.models import Checkpoint
from operations.models import OperationRun
from tests.conftest import wait_for
from tests.iri_worker.test_checkpoints import RunsCodeWhenUnpickled, tiny_weights


def weights_file(data: bytes, name: str) -> io.BytesIO:
    fh = io.BytesIO(data)
    fh.name = name
    return fh


def test_weights_uploaded_in_the_admin_are_checked_by_a_worker_after_the_request_returned(
        celery_worker_starter, researcher, tmp_path):
    client = Client()
    client.force_login(researcher)
    marker = tmp_path / "pwned"
    evil = io.BytesIO()
    torch.save({"conv1.weight": RunsCodeWhenUnpickled(f"touch {marker}")}, evil)

    for name, data in (("half.pt", tiny_weights()), ("evil.pt", evil.getvalue())):
        added = client.post("/admin/iri_worker/checkpoint/add/",
                            {"name": name, "backbone": "tiny_cnn", "weights": weights_file(data, name)})
        assert added.status_code == 302, added.content.decode()[-2000:]
    half, bad = Checkpoint.objects.get(name="half.pt"), Checkpoint.objects.get(name="evil.pt")

    # The requests returned with nothing loaded: no worker runs yet, the checks wait in the queue.
    assert half.status == bad.status == Checkpoint.Status.CHECKING
    assert set(OperationRun.objects.values_list("kind", "status")) == {("checkpoint_check", "QUEUED")}
    page = client.get(f"/admin/iri_worker/checkpoint/{half.pk}/change/").content.decode()
    assert "Being checked" in page and "checkpoint check Queued (0%)" in page
    assert str(half) not in client.get("/admin/iri_worker/irijob/add/").content.decode()

    celery_worker_starter()
    wait_for(lambda: not OperationRun.objects.filter(status__in=["QUEUED", "RUNNING"]).exists())

    half.refresh_from_db()
    bad.refresh_from_db()
    assert half.status == Checkpoint.Status.READY and bad.status == Checkpoint.Status.REFUSED
    assert "weights_only" in bad.error and not marker.exists() and not bad.file
    assert os.path.exists(half.file.path)
    page = client.get(f"/admin/iri_worker/checkpoint/{half.pk}/change/").content.decode()
    assert "Ready" in page and "checkpoint check Done (100%)" in page
    refused = client.get(f"/admin/iri_worker/checkpoint/{bad.pk}/change/").content.decode()
    assert "Refused" in refused and "checkpoint check Failed" in refused and "weights_only=True" in refused
    assert str(half) in client.get("/admin/iri_worker/irijob/add/").content.decode()
