"""A [target] this host cannot meet is a spec error naming the field, found before anything is allocated."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tradeoff.studies import SpecError, check_target_fits, parse_spec
from tradeoff.studies import host as host_mod
from tradeoff.studies.host import (
    MEMORY_SHARE,
    check_batch_fits,
    check_threads,
    cores_available,
    human_bytes,
    input_bytes,
    memory_available,
)
from tradeoff.studies.tasks import load_task

USER_TASK = "tests.studies.user_task:make_task"  # example inputs: one sample of 12 float32 features (48 bytes)


def spec_with(**target: object):
    return parse_spec({"study": {"name": "h"}, "task": {"name": USER_TASK}, "target": target})


def test_cores_follow_this_process_affinity() -> None:
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cores_available() == expected


def test_threads_beyond_the_cores_name_the_field_the_cores_and_what_to_use() -> None:
    check_threads(2, cores=2)
    with pytest.raises(SpecError) as refused:
        check_threads(100000, cores=2)
    assert str(refused.value) == (
        "target.threads = 100000: this host has 2 cores available; use at most 2 (1 is the quietest for timing)."
    )
    with pytest.raises(SpecError, match="target.threads = 2: this host has 1 core available; use at most 1"):
        check_threads(2, cores=1)


def test_threads_are_checked_against_this_host() -> None:
    check_target_fits(spec_with(threads=cores_available()))
    with pytest.raises(SpecError, match=f"target.threads = {cores_available() + 1}: this host has"):
        check_target_fits(spec_with(threads=cores_available() + 1))


def test_input_bytes_are_computed_from_shapes_and_dtypes() -> None:
    inputs = (torch.zeros(1, 1, 8, 8), torch.zeros(3, 5, dtype=torch.int64), torch.zeros(2, 4, dtype=torch.float16))
    assert input_bytes(inputs, 10) == 10 * (64 * 4 + 5 * 8 + 4 * 2)
    assert input_bytes((torch.zeros(1, 1, 8, 8),), 1_000_000_000) == 256_000_000_000  # the batch that got through
    assert human_bytes(1023) == "1023 B" and human_bytes(1536) == "1.5 KiB" and human_bytes(2**50 * 3) == "3.0 PiB"


def test_a_batch_over_half_the_memory_is_refused_with_the_largest_that_fits() -> None:
    x = (torch.zeros(1, 1, 8, 8),)  # 256 bytes a sample
    available = {"cpu": 1024 * 256}  # room for 1024 samples, half of it for the inputs: 512
    check_batch_fits(x, 512, available=available)
    with pytest.raises(SpecError) as refused:
        check_batch_fits(x, 513, available=available)
    message = str(refused.value)
    assert message.startswith("target.batch_size = 513: the example inputs alone would take 128.2 KiB on cpu")
    assert "more than 50% of the 256.0 KiB available there" in message
    assert message.endswith("use a batch_size of at most 512.")
    check_batch_fits(x, 10**12, available={"cpu": None})  # memory that cannot be read is not checked


def test_a_cuda_target_is_checked_on_the_gpu_the_inputs_are_copied_to() -> None:
    x = (torch.zeros(1, 1, 8, 8),)
    with pytest.raises(SpecError, match="on cuda .*available there"):
        check_batch_fits(x, 1000, "cuda", available={"cpu": 2**40, "cuda": 1000})
    check_batch_fits(x, 1000, "cuda", available={"cpu": 2**40, "cuda": 2**30})


def test_memory_available_reads_this_host() -> None:
    free = memory_available("cpu")
    assert free is None or 0 < free <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if Path("/proc/meminfo").exists():
        assert free is not None


def test_the_batch_that_got_through_is_refused_before_anything_is_allocated(monkeypatch) -> None:
    """``threads = 100000`` and ``batch_size = 10**12`` once reached a 256 GB allocation at run time."""
    from tradeoff.search.trial_env import TrialEnv

    task = load_task(USER_TASK)
    allocated: list[int] = []
    monkeypatch.setattr("tradeoff.search.trial_env.shared_inputs", lambda *a, **k: allocated.append(1))
    with pytest.raises(SpecError, match=r"target.batch_size = 1000000000000: the example inputs alone would take"):
        TrialEnv.prepare(spec_with(batch_size=10**12), task)
    with pytest.raises(SpecError, match="target.threads = 100000"):
        TrialEnv.prepare(spec_with(threads=100000, batch_size=10**12), task)
    assert allocated == []


def test_a_batch_that_fits_passes_and_the_share_is_half(monkeypatch) -> None:
    task = load_task(USER_TASK)
    monkeypatch.setattr(host_mod, "memory_available", lambda device="cpu": 48 * 100)  # 100 samples of 48 bytes
    check_target_fits(spec_with(batch_size=int(100 * MEMORY_SHARE)), task)
    with pytest.raises(SpecError, match="use a batch_size of at most 50"):
        check_target_fits(spec_with(batch_size=51), task)


def test_a_container_memory_limit_caps_what_is_available(monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text(f"{2**30}\n")
    (tmp_path / "memory.current").write_text(f"{2**29}\n")
    monkeypatch.setattr(host_mod, "_CGROUP", tmp_path)
    monkeypatch.setattr(host_mod, "_meminfo_available", lambda: 2**40)
    assert memory_available("cpu") == 2**29  # the limit leaves half a GiB, whatever the host has free
    (tmp_path / "memory.max").write_text("max\n")
    assert memory_available("cpu") == 2**40
