"""Shared fixtures: one teacher cache for the whole session, small models defined here, and a private
PostgreSQL cluster (one per session, one fresh database per test)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.pg import PgCluster


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


@pytest.fixture(scope="session")
def pg_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgCluster]:
    """One private PostgreSQL cluster for the session (tests/pg.py), stopped when the session ends.

    Skips without PostgreSQL, fails instead under ``TRADEOFF_REQUIRE_POSTGRES=1`` (.ci/run installs it).
    The cluster lives in a fresh folder under ``$TRADEOFF_PG_ROOT`` when set (.ci/run's exit trap stops
    whatever is left there), else in the session's temporary folder.
    """
    reason = PgCluster.available()
    if reason is not None:
        if os.environ.get("TRADEOFF_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason}; .ci/run installs Debian's postgresql", pytrace=False)
        pytest.skip(reason)
    base = os.environ.get("TRADEOFF_PG_ROOT")
    root = Path(tempfile.mkdtemp(prefix="pg-", dir=base)) if base else tmp_path_factory.mktemp("pg")
    cluster = PgCluster(root)
    request.addfinalizer(cluster.stop)  # registered before start: a half-started server is stopped too
    cluster.start()
    yield cluster


def _database_name(test_name: str) -> str:
    """``test_name`` as a PostgreSQL database name: lower case, [a-z0-9_], a random suffix, 63 bytes at most."""
    stem = re.sub(r"[^a-z0-9_]+", "_", test_name.lower()).strip("_") or "test"
    return f"{stem[:56]}_{secrets.token_hex(3)}"


@pytest.fixture
def pg_url(pg_cluster: PgCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL (``postgresql+psycopg://...``) of a fresh, empty database for this test, dropped afterwards.

    A test may stop the session's server (workers riding out an outage): teardown starts it again so the
    tests after it find it running.
    """
    name = _database_name(request.node.name)
    url = pg_cluster.create_database(name)
    yield url
    if not pg_cluster.running:
        pg_cluster.start()
    # A test may have left connections (or a stopped worker) behind: FORCE disconnects them, and a
    # database that still cannot be dropped only costs disk space in a throw-away cluster.
    with contextlib.suppress(Exception):
        pg_cluster.drop_database(name)
