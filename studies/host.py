"""Whether this host can meet a spec's ``[target]``: cores for its threads, memory for its batch.

A limit the machine cannot meet is a spec error that names the field (:class:`~.spec.SpecError`:
exit 2, nothing written), found before any work, not an allocation failure at run time. The
check runs where every run path starts (``tradeoff.search.trial_env.TrialEnv.prepare``), on the host
that runs the trials: a spec written on a large machine is checked again on a small one.

* ``target.threads`` must not exceed the cores this process may run on (:func:`cores_available`).
* The task's example inputs at ``target.batch_size`` (what :func:`~.shared.at_batch_size` builds)
  must fit in :data:`MEMORY_SHARE` of the memory available on the device that holds them, and on
  a CUDA target also on the GPU they are copied to. The bytes are computed from the shapes, before
  anything is allocated (:func:`input_bytes`).

Example:
    >>> input_bytes((torch.zeros(1, 1, 8, 8),), 1_000_000_000)  # digits at batch 10^9: 256 GB
    256000000000
    >>> human_bytes(256_000_000_000)
    '238.4 GiB'
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .spec import Spec, SpecError
from .tasks import Task

# The example batch alone may take at most half of the memory available: the forward pass's
# activations (several times the input on a conv net), the compressed copies of the model and the
# teacher's outputs need room beside it, and a batch that fills memory by itself fails later anyway.
MEMORY_SHARE = 0.5
QUIETEST_THREADS = 1  # one thread: the quietest timing (README, [target]); what the message suggests
_CGROUP = Path("/sys/fs/cgroup")  # cgroup v2: a container's memory limit, which /proc/meminfo does not show


def cores_available() -> int:
    """The cores this process may run on: its CPU affinity where the OS has one, else the CPU count.

    Example:
        >>> 1 <= cores_available() <= (os.cpu_count() or 1)
        True
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def memory_available(device: str | torch.device = "cpu") -> int | None:
    """Bytes that can still be allocated on ``device``, or None when this host cannot tell.

    CPU: ``MemAvailable`` from ``/proc/meminfo`` (else the free pages ``os.sysconf`` reports), capped
    by the room left under a cgroup v2 memory limit (a container's); CUDA: ``torch.cuda.mem_get_info``.

    Example:
        >>> memory_available("cpu") is None or memory_available("cpu") > 0
        True
        >>> memory_available("meta") is None  # tensors without storage take no memory
        True
    """
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    found = [n for n in (_meminfo_available(), _cgroup_room()) if n is not None]
    return min(found) if found else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file says kB and means KiB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_room() -> int | None:
    """What a cgroup v2 memory limit leaves (limit - usage), or None without a limit."""
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((_CGROUP / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def input_bytes(example_inputs: Sequence[torch.Tensor], batch_size: int) -> int:
    """Bytes the example inputs take at ``batch_size`` (batch dimension first), computed, not allocated.

    Example:
        >>> input_bytes((torch.zeros(1, 3, 32, 32), torch.zeros(1, 7, dtype=torch.int64)), 4)
        49376
    """
    return sum(math.prod(x.shape[1:]) * x.element_size() * batch_size for x in example_inputs)


def human_bytes(n: float) -> str:
    """``n`` bytes in binary units, as ``free -h`` shows them.

    Example:
        >>> human_bytes(512), human_bytes(3 * 1024**3)
        ('512 B', '3.0 GiB')
    """
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        if n < 1024 or unit == "PiB":
            break
    return f"{n:.1f} {unit}"


def check_threads(threads: int, *, cores: int | None = None) -> None:
    """Refuse ``target.threads`` beyond the cores this host has for this process.

    Raises:
        SpecError: naming ``target.threads``, the cores available and what to use instead.

    Example:
        >>> check_threads(1)
        >>> check_threads(100000, cores=2)
        Traceback (most recent call last):
        ...
        tradeoff.studies.spec.SpecError: target.threads = 100000: this host has 2 cores available; use at most 2 ...
    """
    cores = cores_available() if cores is None else cores
    if threads > cores:
        raise SpecError(
            f"target.threads = {threads}: this host has {cores} core{'s' if cores != 1 else ''} available; "
            f"use at most {cores} ({QUIETEST_THREADS} is the quietest for timing)."
        )


def check_batch_fits(
    example_inputs: Sequence[torch.Tensor],
    batch_size: int,
    device: str = "cpu",
    *,
    available: dict[str, int | None] | None = None,  # bytes per device; None: asked of this host
) -> None:
    """Refuse a ``target.batch_size`` whose example inputs would not fit, before allocating them.

    The inputs are resized on the device that holds them (:func:`~.shared.at_batch_size`), and on a
    CUDA target copied to the GPU as well: each of those devices must hold its part within
    :data:`MEMORY_SHARE` of its available memory. A device whose memory cannot be read is not checked.

    Raises:
        SpecError: naming ``target.batch_size``, the bytes needed, the memory available and the
            largest batch that fits.

    Example:
        >>> x = (torch.zeros(1, 1, 8, 8),)  # 256 bytes a sample
        >>> check_batch_fits(x, 64, available={"cpu": 2**30})
        >>> check_batch_fits(x, 1_000_000_000, available={"cpu": 2**30})
        Traceback (most recent call last):
        ...
        tradeoff.studies.spec.SpecError: target.batch_size = 1000000000: the example inputs alone would take 238.4 GiB ...
    """
    need: dict[str, int] = {}
    for x in example_inputs:
        key = str(x.device)
        need[key] = need.get(key, 0) + input_bytes((x,), batch_size)
    if torch.device(device).type == "cuda":  # latency and energy time copies on the target
        need[device] = max(need.get(device, 0), input_bytes(example_inputs, batch_size))
    for where, needed in need.items():
        free = available.get(where) if available is not None else memory_available(where)
        if free is None or needed <= MEMORY_SHARE * free:
            continue
        per_sample = max(1, needed // batch_size)
        fits = int(MEMORY_SHARE * free // per_sample)
        raise SpecError(
            f"target.batch_size = {batch_size}: the example inputs alone would take {human_bytes(needed)} on "
            f"{where} ({human_bytes(per_sample)} a sample), more than {MEMORY_SHARE:.0%} of the "
            f"{human_bytes(free)} available there (the forward pass needs room beside them); "
            + (f"use a batch_size of at most {fits}." if fits >= 1 else "free memory or use a smaller input.")
        )


def check_target_fits(spec: Spec, task: Task | None = None) -> None:
    """Refuse a ``[target]`` this host cannot meet, before any work: threads, and with ``task`` its batch.

    Raises:
        SpecError: naming the field (``target.threads``, ``target.batch_size``) and what to do.

    Example:
        >>> from tradeoff.studies import parse_spec
        >>> spec = parse_spec({"study": {"name": "s"}, "task": {"name": "digits"}, "target": {"threads": 100000}})
        >>> check_target_fits(spec)
        Traceback (most recent call last):
        ...
        tradeoff.studies.spec.SpecError: target.threads = 100000: this host has ... available; use at most ...
    """
    check_threads(spec.target.threads)
    if task is not None:
        check_batch_fits(task.example_inputs, spec.target.batch_size, spec.target.device)
