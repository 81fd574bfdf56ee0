"""Which int8 program a study builds under ``[target] backend = "auto"``: the faster one, timed on the teacher.

Two builders make an int8 program (:mod:`tradeoff.spaces.int8`): PT2E compiled by inductor, and
torch.ao's FX kernels run eagerly. Which is faster depends on the host and the network. At batch 1 both
are bound by per-operator overhead rather than by their int8 kernels (docs/BENCHMARKS.md, issue 25): on
a Xeon with VNNI and AMX the FX program ran 1.34-1.77x faster, and on digits' network the inductor one
was slower than fp32. So once per study, before the first candidate, the teacher is built as a uniform
int8 program (every conv/linear layer at 8 bits, as the int8 warm start) by both builders, and the two
are timed interleaved at the target's batch and threads (measured, :func:`tradeoff.objectives.measure_latency`).
Every trial of the study then builds with the faster one. The choice is stored on the study
(``record.STUDY_BACKEND``), so workers and resumed runs build the same program without timing again.

Nothing is timed when the spec names a backend, when the target is not a CPU, or when no activation
width of the space runs as int8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tradeoff.objectives import measure_latency
from tradeoff.spaces import INT8_MAX_BITS, WEIGHT_LAYERS, DeployError
from tradeoff.spaces.int8 import build_int8

__all__ = ["BACKENDS_TIMED", "BackendChoice", "choose_backend", "needs_choice"]

BACKENDS_TIMED = ("inductor", "fx")  # the two int8 builders; on a tie in the timing, inductor (listed first)


@dataclass(frozen=True)
class BackendChoice:
    """The int8 backend a study builds with, and why.

    Args:
        backend: ``"inductor"`` or ``"fx"``.
        reason: One line: what was timed and how, or which builder failed.
        ms: Median batch latency (ms) of the teacher's uniform int8 program per builder that built it.

    Example:
        >>> c = BackendChoice("fx", "timed", {"inductor": 0.8, "fx": 0.6})
        >>> BackendChoice.from_json(c.as_json()) == c
        True
    """

    backend: str
    reason: str
    ms: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS_TIMED:
            raise ValueError(f"backend must be one of {list(BACKENDS_TIMED)}, got {self.backend!r}.")

    def as_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "reason": self.reason, "ms": dict(self.ms)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BackendChoice:
        ms = {name: float(value) for name, value in data.get("ms", {}).items()}
        return cls(str(data["backend"]), str(data.get("reason", "")), ms)


def needs_choice(backend: str, device: str, activation_bits: tuple[int, ...]) -> bool:
    """Whether a study with this ``[target] backend``, device and activation widths times the two builders.

    Example:
        >>> needs_choice("auto", "cpu", (8, 32)), needs_choice("fx", "cpu", (8,)), needs_choice("auto", "cpu", (32,))
        (True, False, False)
    """
    return backend == "auto" and device == "cpu" and min(activation_bits) <= INT8_MAX_BITS


def choose_backend(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    calibration: list[tuple[torch.Tensor, ...]],
    *,
    threads: int,
) -> BackendChoice | None:
    """Build ``model`` as a uniform int8 program with both builders, time them interleaved, keep the faster.

    A builder that cannot build it (no C++ compiler for inductor, an operator FX cannot quantize) loses;
    when neither can, ``None``: the study keeps ``auto``'s per-trial fallback.

    Example:
        >>> m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
        >>> x = (torch.randn(1, 16),)
        >>> choose_backend(m, x, [x], threads=1).backend in BACKENDS_TIMED
        True
    """
    layers = {name: m for name, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)}
    built: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for backend in BACKENDS_TIMED:
        try:
            form = build_int8(model, list(layers), [], layers, example_inputs, calibration, threads, backend)
        except DeployError as exc:
            failed[backend] = str(exc).splitlines()[0]
        else:
            built[backend] = form.module
    if not built:
        return None
    if len(built) == 1:
        (backend,) = built
        loser = next(b for b in BACKENDS_TIMED if b != backend)
        return BackendChoice(backend, f"{loser} could not build the teacher's int8 program: {failed[loser]}")
    timed = measure_latency(built["fx"], example_inputs, threads=threads, reference=built["inductor"])
    ms = {"inductor": float(timed["reference_ms"]), "fx": float(timed["median_ms"])}
    backend = "fx" if ms["fx"] < ms["inductor"] else "inductor"
    batch = int(example_inputs[0].shape[0]) if example_inputs and isinstance(example_inputs[0], torch.Tensor) else 1
    reason = (
        f"the teacher as a uniform int8 program, timed interleaved at batch {batch}, {threads} thread(s) (measured): "
        f"inductor {ms['inductor']:.4g} ms, fx {ms['fx']:.4g} ms"
    )
    return BackendChoice(backend, reason, ms)
