"""What this CPU computes natively: the ISA features behind 16-bit floats and int8 dot products.

PyTorch's cpuinfo reports the features (:func:`cpu_capabilities`, the probe tests replace);
:func:`supports_float16` and :func:`has_vnni` read them through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .widths import FLOAT16_KINDS

# ISA features under which PyTorch's CPU kernels compute natively in that 16-bit float
FLOAT16_FLAGS: dict[str, tuple[str, ...]] = {
    "bf16": ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"),  # x86 AVX-512/AMX; ARM BF16 extensions
    "fp16": ("avx512_fp16", "amx_fp16", "fp16_arith"),  # x86 AVX-512/AMX; ARM half-precision arithmetic
}
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # u8 x s8 dot products into int32 (no int16 saturation)


def cpu_capabilities() -> Mapping[str, Any]:
    """The CPU's ISA features as PyTorch's cpuinfo sees them (the probe tests replace).

    Example:
        >>> isinstance(cpu_capabilities(), Mapping)
        True
    """
    return torch.cpu.get_capabilities()


def _any_flag(flags: tuple[str, ...]) -> bool:
    caps = cpu_capabilities()
    return any(bool(caps.get(flag, False)) for flag in flags)


def supports_float16(kind: str, device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes natively in the 16-bit float ``kind`` (``"bf16"`` or ``"fp16"``).

    On CPU: the ISA features PyTorch's kernels use for that type (AVX-512 BF16/FP16 or AMX on x86,
    the BF16/FP16 arithmetic extensions on ARM). Without them a 16-bit model is emulated through
    fp32 conversions and runs slower than fp32. On CUDA: fp16 always, bf16 where the GPU has it.

    Example:
        >>> isinstance(supports_float16("bf16", "cpu"), bool)
        True
        >>> supports_float16("fp8")
        Traceback (most recent call last):
        ...
        ValueError: float16 kind must be one of ['bf16', 'fp16'], got 'fp8'.
    """
    if kind not in FLOAT16_KINDS:
        raise ValueError(f"float16 kind must be one of {list(FLOAT16_KINDS)}, got {kind!r}.")
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and (kind == "fp16" or torch.cuda.is_bf16_supported())
    if dev.type == "cpu":
        return _any_flag(FLOAT16_FLAGS[kind])
    return False


def has_vnni() -> bool:
    """Whether the CPU multiplies u8 x s8 pairs into int32 (VNNI/AMX); without it int16 sums saturate.

    Example:
        >>> isinstance(has_vnni(), bool)
        True
    """
    return _any_flag(VNNI_FLAGS)
