"""Latency: wall time of one forward pass of the executable form, measured on the target.

Method (why each step):
  * ``torch.utils.benchmark.Timer`` does the timing: it pins the thread count, warms up while
    it sizes its blocks, and returns per-block times whose median resists outliers.
  * One thread by default: on small shared machines two threads are slower and far noisier.
  * Interleaving: the machine drifts by tens of percent between minutes, so when the uncompressed
    reference model is given, candidate and reference are timed alternately (A B A B ...) and the
    median of the per-round ratios is kept. The reported latency is then the study's baseline
    latency times that ratio, so the normalised latency ``l = latency / latency0`` is the ratio
    measured side by side, not the ratio of two figures taken minutes apart.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import nn
from torch.utils import benchmark

from ._base import EvalContext, Measurement, Objective, as_args, describe_device

ROUNDS = 3  # A/B rounds: odd, so the median ratio is one observed round
MIN_RUN_TIME_S = 0.05  # per timed block set: hundreds of runs of a sub-ms model, ~0.3 s per trial


def time_forward(
    model: nn.Module, inputs: tuple[Any, ...], *, threads: int = 1, min_run_time: float = MIN_RUN_TIME_S
) -> benchmark.Measurement:
    """Time ``model(*inputs)`` under ``no_grad`` with ``threads`` intra-op threads.

    Example:
        >>> m = time_forward(nn.Linear(4, 4), (torch.randn(1, 4),), min_run_time=0.01)
        >>> m.median > 0
        True
    """
    model.eval()
    timer = benchmark.Timer(
        stmt="with torch.no_grad(): model(*inputs)",
        globals={"model": model, "inputs": as_args(inputs), "torch": torch},
        num_threads=threads,
    )
    with torch.no_grad():  # one untimed call compiles lazy paths before the timer sizes blocks
        model(*as_args(inputs))
    return timer.blocked_autorange(min_run_time=min_run_time)


def measure_latency(
    model: nn.Module,
    inputs: tuple[Any, ...],
    *,
    threads: int = 1,
    reference: nn.Module | None = None,
    rounds: int = ROUNDS,
    min_run_time: float = MIN_RUN_TIME_S,
) -> dict[str, Any]:
    """Median latency of ``model`` in ms, and its ratio to ``reference`` timed interleaved.

    Returns a dict with ``median_ms``, ``iqr_ms``, ``repeats`` (timed runs in all), ``rounds``
    and, when ``reference`` is given, ``reference_ms`` and ``ratio`` (median of per-round ratios).

    Example:
        >>> r = measure_latency(nn.Linear(4, 4), (torch.randn(1, 4),), rounds=1, min_run_time=0.01)
        >>> sorted(r)
        ['iqr_ms', 'median_ms', 'repeats', 'rounds', 'threads']
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}.")
    cand_ms, ref_ms, iqr_ms, repeats = [], [], [], 0
    for _ in range(rounds):
        m = time_forward(model, inputs, threads=threads, min_run_time=min_run_time)
        cand_ms.append(m.median * 1e3)
        iqr_ms.append(m.iqr * 1e3)
        repeats += m.number_per_run * len(m.times)
        if reference is not None:
            r = time_forward(reference, inputs, threads=threads, min_run_time=min_run_time)
            ref_ms.append(r.median * 1e3)
    out: dict[str, Any] = {
        "median_ms": statistics.median(cand_ms),
        "iqr_ms": statistics.median(iqr_ms),
        "repeats": repeats,
        "rounds": rounds,
        "threads": threads,
    }
    if reference is not None:
        out["reference_ms"] = statistics.median(ref_ms)
        out["ratio"] = statistics.median(c / r for c, r in zip(cand_ms, ref_ms))
    return out


class LatencyMs(Objective):
    """Latency of one forward pass at the target batch size, measured on the executable form."""

    name = "latency_ms"
    direction = "minimize"
    unit = "ms"

    def measure(self, model: nn.Module, ctx: EvalContext) -> Measurement:
        executable = ctx.executable if ctx.executable is not None else model
        reference = ctx.reference if ctx.reference_latency_ms is not None else None
        r = measure_latency(executable, ctx.example_inputs, threads=ctx.threads, reference=reference)
        details = {
            **r,
            "executed_as": ctx.executed_as,
            "batch_size": int(as_args(ctx.example_inputs)[0].shape[0]),
            "device": describe_device(ctx.device),
            "torch": torch.__version__,
        }
        if reference is not None:
            value = ctx.reference_latency_ms * r["ratio"]
            method = "torch.utils.benchmark, interleaved with the baseline; baseline latency x ratio"
            details["baseline_latency_ms"] = ctx.reference_latency_ms
        else:
            value = r["median_ms"]
            method = "torch.utils.benchmark, median of blocks"
        return Measurement(value, self.unit, "measured", method, details)
