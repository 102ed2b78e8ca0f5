"""On a GPU machine the worker generates on CUDA, records the device, and a real out-of-memory
halves the chunk (the CPU-only suite skips this file; run it with `pytest -m gpu` where CUDA is)."""
import pytest
import torch

from iri_worker import engine
from iri_worker.models import IriChunk, IriJob
from iri_worker.selectors import iri_job_record
from iri_worker.services import iri_job_create, iri_job_run
from tests.conftest import TINY_SPEC

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.django_db,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_a_job_runs_on_the_gpu_and_records_the_device(photos):
    job = iri_job_create(targets=photos, spec={**TINY_SPEC, "backbone": "resnet18", "precision": "bf16"}, chunk_size=2)

    iri_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == IriJob.Status.DONE, job.error
    assert job.images.count() == len(photos)
    chunks = iri_job_record(job=job)["chunks"]
    assert {c["device"] for c in chunks} == {"cuda"}
    assert all(torch.cuda.get_device_name(0) == c["device_name"] for c in chunks)
    assert all(image.final_loss < image.initial_loss for image in job.images.all())


def test_a_real_cuda_out_of_memory_halves_the_chunk_until_it_fits(photos):
    """Cap this process's share of the GPU a little above what one image needs: three cannot fit."""
    spec = {**TINY_SPEC, "backbone": "resnet50", "image_size": 512, "steps": 2}
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    engine.invert(engine.InversionSpec.from_dict(spec), torch.rand(1, 3, 512, 512), device="cuda")
    one_image = torch.cuda.max_memory_reserved()
    torch.cuda.set_per_process_memory_fraction(1.6 * one_image / torch.cuda.mem_get_info()[1])
    try:
        job = iri_job_create(targets=photos, spec=spec, chunk_size=3)
        iri_job_run(job_id=job.pk)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()

    job.refresh_from_db()
    assert job.status == IriJob.Status.DONE, job.error
    assert job.images.count() == 3
    first = job.chunks.get(index=0)
    assert first.status == IriChunk.Status.SPLIT and "Out of memory with 3 targets on cuda" in first.error
