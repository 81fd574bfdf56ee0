"""The measurement target's fingerprint: what must match for two hosts' latency and energy to be comparable.

A study measures on one kind of machine. Its fingerprint is recorded when the study is created,
and a host whose fingerprint differs may not add trials to it (``tradeoff worker`` and a resumed
``launch`` refuse, naming the difference): a front mixing timings of two CPUs would rank configs
by the machine they happened to run on. Comparing targets is done by comparing studies
(``tradeoff dashboard``'s compare page).

What decides the kernels and so the timings: the CPU model and the instruction-set extensions
PyTorch dispatches on (AVX2, AVX-512, VNNI, AMX; NEON/SVE on Arm) and the capability PyTorch picked
from them, or the GPU's name on a CUDA target; the threads a trial runs at; the torch version.
Core count and memory size are not part of it: they do not change a one-thread forward pass.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

# the /proc/cpuinfo flags that change which kernels run (x86: oneDNN/FBGEMM paths; Arm: NEON/SVE/int8 dot)
KERNEL_FLAGS = frozenset(
    {
        "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx_vnni",
        "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
        "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16",
    }
)  # fmt: skip


def _cpuinfo(text: str | None = None) -> tuple[str, list[str]]:
    """The CPU's model name and its kernel-relevant flags, from ``/proc/cpuinfo`` (``text``) where it exists."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            text = ""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model or platform.processor() or platform.machine(), sorted(flags & KERNEL_FLAGS)


def target_fingerprint(device: str, threads: int, *, cpuinfo: str | None = None) -> dict[str, Any]:
    """This host's fingerprint as a measurement target (see the module docstring).

    Example:
        >>> info = "model name : Doc CPU 9000\\nflags : fpu sse2 avx2 fma avx512f\\n"
        >>> target_fingerprint("cpu", 1, cpuinfo=info)["cpu_flags"]
        ['avx2', 'avx512f', 'fma']
    """
    model, flags = _cpuinfo(cpuinfo)
    capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else ""
    gpu = None
    if device.startswith("cuda") and torch.cuda.is_available():
        index = int(device.partition(":")[2] or 0)
        gpu = torch.cuda.get_device_name(index)
    return {
        "device": device.split(":")[0],
        "cpu": model,
        "cpu_flags": flags,
        "cpu_capability": capability,
        "gpu": gpu,
        "threads": threads,
        "torch": torch.__version__,
    }


def fingerprint_differences(stored: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """What differs between a study's fingerprint and this host's, one phrase each (empty: the same target).

    On a GPU target the CPU does not decide the timings, so only the GPU, threads and torch count.

    Example:
        >>> a = {"device": "cpu", "cpu": "A", "cpu_flags": ["avx2"], "threads": 1, "torch": "2.13.0"}
        >>> fingerprint_differences(a, {**a, "cpu_flags": ["avx2", "avx512f"]})
        ["cpu_flags: the study's ['avx2'], this host's ['avx2', 'avx512f']"]
    """
    keys = ["device", "gpu", "threads", "torch"]
    if stored.get("device", "cpu") == "cpu":
        keys[1:1] = ["cpu", "cpu_flags", "cpu_capability"]
    out = []
    for key in keys:
        if key in stored and stored.get(key) != here.get(key):
            out.append(f"{key}: the study's {stored.get(key)!r}, this host's {here.get(key)!r}")
    return out
