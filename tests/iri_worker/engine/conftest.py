"""Shared cast for the engine tests: the tiny CPU backbone and small random images."""

import pytest
import torch

from iri_worker.engine import load_backbone


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
