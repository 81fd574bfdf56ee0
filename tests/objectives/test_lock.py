"""Two processes cannot be inside a measurement section of the same device at once."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from tradeoff.objectives import measurement_lock
from tradeoff.objectives._lock import lock_path


def _hold(device: str, lock_dir: str, inside, release) -> None:
    import os

    os.environ["TRADEOFF_LOCK_DIR"] = lock_dir
    with measurement_lock(device):
        inside.set()
        release.wait(30)


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEOFF_LOCK_DIR", str(tmp_path))
    return str(tmp_path)


def test_a_second_process_waits_until_the_first_leaves(lock_dir: str) -> None:
    ctx = mp.get_context("spawn")
    inside, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=("cpu", lock_dir, inside, release))
    holder.start()
    try:
        assert inside.wait(30), "the holder never entered"
        with pytest.raises(TimeoutError, match="another process holds the measurement lock"):
            with measurement_lock("cpu", timeout=0.2):
                pass
        with measurement_lock("cuda:0", timeout=0.2):  # other devices are not blocked
            pass
        release.set()
        holder.join(30)
        with measurement_lock("cpu", timeout=5) as waited:
            assert waited >= 0
    finally:
        release.set()
        holder.join(30)
        if holder.is_alive():
            holder.kill()


def test_lock_files_are_per_device(lock_dir: str) -> None:
    assert lock_path("cuda:1").name == "tradeoff-measure-cuda_1.lock"
    assert lock_path("cpu") != lock_path("cuda:0")
