"""Shared cast for the engine tests: the tiny CPU backbone and small random images."""

import pytest
import torch

from iri_worker.engine import load_backbone


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core host OpenMP threads
    spin-waiting on each other made a 32 px step ~100x slower (measured). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny():
    """The tiny random CNN (32 px): cheap enough for whole inversion loops on 2 cores."""
    return load_backbone("tiny_cnn")


@pytest.fixture(scope="session")
def random_images():
    """Factory for deterministic (batch, 3, size, size) float images in [0, 1]."""

    def make(batch: int, size: int = 32, seed: int = 1) -> torch.Tensor:
        return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))

    return make
