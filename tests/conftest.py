"""Shared fixtures: one teacher cache for the whole session, small models defined here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built-in teachers train once per test session, into a folder of the session's own."""
    path = Path(os.environ.get("TRADEOFF_TEST_CACHE_DIR") or tmp_path_factory.mktemp("tradeoff-cache"))
    os.environ["TRADEOFF_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_worker() -> None:
    """Studies run in one process unless a test asks for more: a seeded study is then reproducible, and
    tests can watch every trial from the test process (the parallel tests unset this themselves)."""
    os.environ["TRADEOFF_WORKERS"] = "1"


@pytest.fixture(scope="session")
def digits_task(_cache_dir: Path):
    from tradeoff.studies.builtin_tasks import digits

    return digits()


class TinyCNN(nn.Module):
    """Conv-BN-ReLU x2, pooling, linear head: the smallest model with prunable coupled channels."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture
def tiny_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(4)]
