"""The contract every objective follows: measure a model, return a value with its provenance.

An objective is one of the four figures the study optimises (``accuracy``, ``size_bytes``,
``latency_ms``, ``energy_mj``). Each returns a :class:`Measurement` that says whether the value was
*measured* on the target, *computed* exactly from the model (size, MACs: arithmetic, no
approximation), or *estimated* by a documented model (energy without counters), and how. Nothing here knows about
Optuna or about how the model was compressed: the caller hands over the model and an
:class:`EvalContext` holding everything else (data, bit-widths, thread count, reference model).
"""

from __future__ import annotations

import abc
import copy
import math
import os
import platform
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from .profile import ModelProfile, profile

Source = Literal["measured", "computed", "estimated"]
Direction = Literal["maximize", "minimize"]
Batch = tuple[Any, torch.Tensor]
Metric = Callable[[torch.Tensor, torch.Tensor], float]

SOURCES: tuple[str, ...] = ("measured", "computed", "estimated")  # one vocabulary everywhere (issue 27)


def as_args(inputs: Any) -> tuple[Any, ...]:
    """Inputs of a batch as positional arguments: a tensor becomes a 1-tuple, a tuple stays."""
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def inference_mode_of(model: Any) -> Any:
    """``model`` in eval mode, without calling ``eval()`` on forms that refuse it (exported graphs)."""
    if isinstance(model, nn.Module) and model.training:
        model.eval()
    return model


def on_device(model: nn.Module | None, inputs: tuple[Any, ...], device: str) -> tuple[nn.Module | None, tuple]:
    """``model`` and ``inputs`` on ``device`` for timing or energy reading.

    On the CPU they are returned as they are; elsewhere the model is *copied* to the device, so
    the caller's model (often the teacher every trial copies from) stays where it was.
    """
    if device == "cpu":
        return model, as_args(inputs)
    moved = tuple(x.to(device) if isinstance(x, torch.Tensor) else x for x in as_args(inputs))
    return (copy.deepcopy(model).to(device) if model is not None else None), moved


def top1(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy of class scores ``(N, C)`` against integer labels ``(N,)``.

    Example:
        >>> top1(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        0.5
    """
    return float((outputs.argmax(dim=-1) == targets).float().mean().item())


def describe_device(device: str = "cpu") -> str:
    """A human-readable name of the device figures were taken on (CPU model and cores, or GPU)."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA)"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical cores"


@dataclass(frozen=True)
class Measurement:
    """One figure and how it was obtained.

    Args:
        value: The figure, in ``unit``.
        unit: Unit of ``value`` (e.g. ``"ms"``, ``"bytes"``, ``"mJ"``, ``"fraction"``).
        source: ``"measured"`` on the target, ``"computed"`` exactly from the model, or ``"estimated"``
            by a documented model.
        method: How, in a few words (e.g. ``"torch.utils.benchmark, median of blocks"``).
        details: Anything else a reader needs to trust it (repeats, spread, device, model name).

    Example:
        >>> Measurement(1.5, "ms", "measured", "timer").provenance()["source"]
        'measured'
    """

    value: float
    unit: str
    source: Source
    method: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"Measurement source must be one of {SOURCES}, got {self.source!r}.")
        if not isinstance(self.value, (int, float)) or math.isnan(float(self.value)):
            raise ValueError(f"Measurement value must be a real number, got {self.value!r}.")

    def provenance(self) -> dict[str, Any]:
        """JSON-ready description of how the value was obtained (value excluded)."""
        return {"source": self.source, "method": self.method, "unit": self.unit, **self.details}


@dataclass(frozen=True)
class EvalContext:
    """Everything an objective may need besides the model itself.

    Args:
        example_inputs: Inputs of one forward pass at the target batch size.
        val: Held-out ``(inputs, targets)`` batches (accuracy only).
        metric: ``(outputs, targets) -> float``; default top-1.
        weight_bits: Bit-width of each quantized layer's weights by module name; absent = 32.
        activation_bits: Bit-width of the activations entering quantized layers.
        deployable: The deployable form: what really runs on the target (latency is timed on
            it). ``None`` means the model itself runs as given.
        deployable_form: Name of that form (e.g. ``"fp32"``, ``"int8"``), recorded with latency.
        deployable_details: How that form runs (``backend``, ``note``), recorded with latency.
        reference: The uncompressed model in its deployable form, timed interleaved with the
            candidate so that latency can be normalised within the same moment.
        reference_latency_ms: The study's baseline latency; with ``reference`` the candidate's
            latency is reported as this reference times the interleaved ratio.
        threads: Intra-op threads for timing (1 is the quietest on small shared machines).
        device: Target device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    """

    example_inputs: tuple[Any, ...]
    val: Iterable[Batch] = ()
    metric: Metric = top1
    weight_bits: Mapping[str, int] = field(default_factory=dict)
    activation_bits: int = 32
    deployable: nn.Module | None = None
    deployable_form: str = "fp32"
    deployable_details: Mapping[str, Any] = field(default_factory=dict)
    reference: nn.Module | None = None
    reference_latency_ms: float | None = None
    threads: int = 1
    device: str = "cpu"
    _profiles: dict[int, ModelProfile] = field(default_factory=dict, repr=False, compare=False)

    def profile(self, model: nn.Module) -> ModelProfile:
        """The :class:`~tradeoff.objectives.profile.ModelProfile` of ``model`` at this context's
        widths, computed once per model (it costs a counted forward pass) and shared by objectives.

        Example:
            >>> ctx = EvalContext(example_inputs=(torch.ones(1, 3),))
            >>> m = nn.Linear(3, 2)
            >>> ctx.profile(m).macs, ctx.profile(m) is ctx.profile(m)
            (6, True)
        """
        key = id(model)
        if key not in self._profiles:
            self._profiles[key] = profile(model, self.example_inputs, self.weight_bits, self.activation_bits)
        return self._profiles[key]


class Objective(abc.ABC):
    """A figure the study optimises. Subclasses set ``name``, ``direction`` and ``unit``
    (as class attributes, or per instance when one class serves several figures)."""

    name: str
    direction: Direction
    unit: str

    @abc.abstractmethod
    def measure(self, model: nn.Module, ctx: EvalContext) -> Measurement:
        """Measure ``model`` (the compressed model as scored) in context ``ctx``."""
