"""A deployable form's identity and its latency: what latency reuse (:mod:`.reuse`) matches and copies.

Latency depends on the program that runs, not on the values in it, so two trials whose deployable
forms share a :func:`deployable_key` can share one timing (``[search] reuse_latency``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from tradeoff.objectives import Measurement, describe_device
from tradeoff.spaces import INT8_MAX_BITS, Deployable

LatencyLookup = Callable[[str], "tuple[int, Measurement] | None"]
"""``deployable key -> (trial number, latency measurement)`` of an earlier trial that timed the same
deployable form, or ``None``: asked once per trial before timing."""


def deployable_key(
    snapshot: nn.Module,
    deployed: Deployable,
    weight_bits: dict[str, int],
    activation_bits: int,
    example_inputs: tuple[Any, ...],
    *,
    threads: int,
    device: str,
) -> str:
    """A hash of everything a forward pass's time depends on, and nothing it does not.

    Latency is a property of the program that runs, not of the values in it: the layers and their
    shapes (pruning decides these), which layers run in which precision and on what kernels
    (``deployable_form``, the backend and the low-precision layer set), the input shapes, threads, device
    and torch build. Weight values, and so distillation's temperature and alpha, and the weight
    width of a layer that executes in fp32 either way (weight-only quantization) or in int8 either
    way (4-bit codes run on int8 kernels), do not enter it. Two trials with the same key time the
    same deployable form.

    Example:
        >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
        >>> d = Deployable(m, "fp32", "eager", 0.0, "")
        >>> x = (torch.randn(1, 4),)
        >>> a = deployable_key(m, d, {"0": 8}, 32, x, threads=1, device="cpu")
        >>> a == deployable_key(m, d, {"0": 4}, 32, x, threads=1, device="cpu")  # weight-only: fp32 both
        True
        >>> a == deployable_key(m, d, {}, 32, x, threads=2, device="cpu")
        False
    """
    form = deployed.form  # "int8", "int8+fp32", "bf16", "fp16+fp32", ... (tradeoff.spaces.deploy)
    if form.startswith("int8"):
        low = {name: "int8" for name, bits in weight_bits.items() if bits <= INT8_MAX_BITS}
        low["activations"] = f"{activation_bits}-bit"
    elif form.startswith(("bf16", "fp16")):
        low = {name: form for name, bits in weight_bits.items() if bits == 16}
    else:
        low = {}
    tensors = {
        name: [list(t.shape), str(t.dtype)] for name, t in [*snapshot.named_parameters(), *snapshot.named_buffers()]
    }
    described = {
        "modules": {name: type(m).__name__ for name, m in snapshot.named_modules()},
        "tensors": tensors,
        "deployable_form": deployed.form,
        "backend": deployed.backend,
        "runs_as": type(deployed.module).__name__,  # an fx program frozen as TorchScript, or run eagerly
        "low_precision": low,
        "inputs": [[list(x.shape), str(x.dtype)] if isinstance(x, torch.Tensor) else repr(x) for x in example_inputs],
        "threads": threads,
        "device": describe_device(device),
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:20]


def reused_latency(m: Measurement, trial: int) -> Measurement:
    """An earlier trial's latency, labelled as reused (its source stays what it was: measured).

    Example:
        >>> m = reused_latency(Measurement(2.0, "ms", "measured", "ABBA", {}), 3)
        >>> m.source, m.details, m.method
        ('measured', {'reused_from_trial': 3}, 'ABBA; timed once for this deployable form, on trial 3')
    """
    return replace(
        m,
        method=f"{m.method}; timed once for this deployable form, on trial {trial}",
        details={**m.details, "reused_from_trial": trial},
    )


def latency_measurement(provenance: dict[str, Any], value: float) -> Measurement:
    """Rebuild a stored latency :class:`Measurement` from a trial's provenance entry and its value.

    Example:
        >>> latency_measurement({"unit": "ms", "source": "measured", "method": "ABBA", "ratio": 0.5}, 1.5)
        Measurement(value=1.5, unit='ms', source='measured', method='ABBA', details={'ratio': 0.5})
    """
    details = {k: v for k, v in provenance.items() if k not in ("source", "method", "unit")}
    return Measurement(float(value), provenance["unit"], provenance["source"], provenance["method"], details)
