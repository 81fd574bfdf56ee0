"""Latency: wall time of one forward pass of the deployable form, measured on the target.

Method (why each step):
  * ``torch.utils.benchmark.Timer`` runs the timed calls: it pins the intra-op thread count and,
    sizing its blocks once, warms the model up. One thread by default: on small shared machines
    two threads are slower and far noisier.
  * Blocks are timed in rounds. With a reference model (the uncompressed baseline), each round
    times one block of the candidate and one of the reference, alternating which goes first
    (ABBA...), and keeps their ratio: the machine drifts by tens of percent between minutes, and a
    ratio taken within one round cancels that drift.
  * Adaptive repeats: rounds go on until the 95 % confidence interval of the median (ratio, or
    time without a reference) is within ``ci_bound`` (default +-2 %) of it, or a time cap is hit.
    The interval is the distribution-free one from order statistics (``scipy.stats.quantile_test``),
    so no normality is assumed of timings that are anything but normal.
  * With a reference, the reported latency is the study's baseline latency times the median ratio,
    so the normalised latency ``l = latency / latency0`` is a side-by-side ratio.
  * On CUDA, blocks are timed with CUDA events after a synchronize; the same rounds apply.
  * Every measurement holds the device's host-wide lock (:mod:`tradeoff.objectives._lock`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import quantile_test
from torch import nn
from torch.utils import benchmark

from ._base import EvalContext, Measurement, Objective, as_args, describe_device, inference_mode_of, on_device
from ._lock import measurement_lock

CI_BOUND = 0.02  # stop when the 95 % CI of the median is within +-2 % of it
CONFIDENCE = 0.95
MIN_ROUNDS = 6  # the fewest rounds whose order-statistic CI of the median is finite at 95 %
MAX_TIME_S = 3.0  # cap per measurement: a trial's latency costs at most ~3 s of its budget
BLOCK_TIME_S = 0.01  # one block: long enough to drown the timer's overhead, short enough to interleave


def median_ci(samples: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Median of ``samples`` and its distribution-free confidence interval ``(median, low, high)``.

    Low or high are infinite when there are too few samples for the confidence asked.

    Example:
        >>> median_ci([float(i) for i in range(1, 20)])
        (10.0, 5.0, 15.0)
    """
    x = np.asarray(samples, dtype=float)
    if len(x) == 0:
        raise ValueError("median_ci needs at least one sample.")
    med = float(np.median(x))
    ci = quantile_test(x, q=med, p=0.5).confidence_interval(confidence)
    low = float(ci.low) if np.isfinite(ci.low) else -np.inf
    high = float(ci.high) if np.isfinite(ci.high) else np.inf
    return med, low, high


def relative_halfwidth(med: float, low: float, high: float) -> float:
    """Half the CI width relative to the median (``inf`` while the CI is unbounded)."""
    if not (np.isfinite(low) and np.isfinite(high)) or med == 0:
        return float("inf")
    return (high - low) / 2 / abs(med)


def _finite(x: float) -> float | None:
    """``None`` for an unbounded interval end: stored figures stay strict JSON."""
    return float(x) if np.isfinite(x) else None


def _device_of(inputs: tuple[Any, ...]) -> torch.device:
    first = next((x for x in inputs if isinstance(x, torch.Tensor)), None)
    return first.device if first is not None else torch.device("cpu")


class _Block:
    """Times blocks of ``number`` forward calls of one model: per-call seconds of each block."""

    def __init__(self, model: nn.Module, inputs: tuple[Any, ...], threads: int, block_time: float) -> None:
        self.model = inference_mode_of(model)
        self.inputs = as_args(inputs)
        self.cuda = _device_of(self.inputs).type == "cuda"
        self.timer = benchmark.Timer(
            stmt="with torch.no_grad(): model(*inputs)",  # no setup: it would leak grad mode to the caller
            globals={"model": self.model, "inputs": self.inputs, "torch": torch},
            num_threads=threads,
        )
        with torch.no_grad():
            self.model(*self.inputs)  # the first call builds lazy state; never timed
        warm = self.timer.blocked_autorange(min_run_time=block_time)  # sizes blocks; warms up
        self.number = max(1, int(block_time / max(warm.median, 1e-9)))
        self.calls = 0

    def __call__(self) -> float:
        self.calls += self.number
        if self.cuda:
            return self._cuda_block()
        return self.timer.timeit(self.number).median

    @torch.no_grad()
    def _cuda_block(self) -> float:
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(self.number):
            self.model(*self.inputs)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / self.number


def measure_latency(
    model: nn.Module,
    inputs: tuple[Any, ...],
    *,
    threads: int = 1,
    reference: nn.Module | None = None,
    device: str | None = None,
    ci_bound: float = CI_BOUND,
    max_time: float = MAX_TIME_S,
    min_rounds: int = MIN_ROUNDS,
    block_time: float = BLOCK_TIME_S,
) -> dict[str, Any]:
    """Median latency of ``model`` in ms, and its ratio to ``reference`` timed interleaved.

    Returns ``median_ms``, ``iqr_ms`` (spread of block medians), ``ci_low_ms``/``ci_high_ms``,
    ``ci_halfwidth`` (relative), ``converged`` (the CI bound was met before the cap), ``rounds``,
    ``repeats`` (timed calls of the candidate), ``threads``, ``lock_wait_s`` and, with a
    reference, ``reference_ms``, ``ratio`` and ``ratio_ci_low``/``ratio_ci_high``.

    Example:
        >>> r = measure_latency(nn.Linear(4, 4), (torch.randn(1, 4),), max_time=0.2)
        >>> r["median_ms"] > 0 and r["rounds"] >= 6
        True
    """
    if min_rounds < 1:
        raise ValueError(f"min_rounds must be >= 1, got {min_rounds}.")
    device = device or str(_device_of(as_args(inputs)))
    with measurement_lock(device) as waited:
        cand = _Block(model, inputs, threads, block_time)
        ref = _Block(reference, inputs, threads, block_time) if reference is not None else None
        cand_s: list[float] = []
        ref_s: list[float] = []
        start = time.perf_counter()
        converged = False
        while True:
            order: list[tuple[_Block, list[float]]] = [(cand, cand_s)] + ([(ref, ref_s)] if ref else [])
            if len(cand_s) % 2:
                order.reverse()  # ABBA: alternate which model goes first
            for block, out in order:
                out.append(block())
            if len(cand_s) >= min_rounds:
                tracked = [c / r for c, r in zip(cand_s, ref_s, strict=True)] if ref else cand_s
                if relative_halfwidth(*median_ci(tracked)) <= ci_bound:
                    converged = True
                    break
            if len(cand_s) >= min_rounds and time.perf_counter() - start >= max_time:
                break  # the cap never cuts below min_rounds

    med, low, high = median_ci(cand_s)
    q1, q3 = np.percentile(cand_s, [25, 75])
    out: dict[str, Any] = {
        "median_ms": med * 1e3,
        "iqr_ms": float(q3 - q1) * 1e3,
        "ci_low_ms": _finite(low * 1e3),
        "ci_high_ms": _finite(high * 1e3),
        "ci_halfwidth": _finite(relative_halfwidth(med, low, high)),
        "converged": converged,
        "rounds": len(cand_s),
        "repeats": cand.calls,
        "threads": threads,
        "lock_wait_s": round(waited, 4),
    }
    if ref is not None:
        ratios = [c / r for c, r in zip(cand_s, ref_s, strict=True)]
        rmed, rlow, rhigh = median_ci(ratios)
        out.update(
            reference_ms=statistics.median(ref_s) * 1e3,
            ratio=rmed,
            ratio_ci_low=_finite(rlow),
            ratio_ci_high=_finite(rhigh),
            ci_halfwidth=_finite(relative_halfwidth(rmed, rlow, rhigh)),
        )
    return out


class LatencyMs(Objective):
    """Latency of one forward pass at the target batch size, measured on the deployable form."""

    name = "latency_ms"
    direction = "minimize"
    unit = "ms"

    def __init__(self, *, measure: Callable[..., dict[str, Any]] = measure_latency) -> None:
        self._measure = measure

    def measure(self, model: nn.Module, ctx: EvalContext) -> Measurement:
        deployable = ctx.deployable if ctx.deployable is not None else model
        reference = ctx.reference if ctx.reference_latency_ms is not None else None
        deployable, inputs = on_device(deployable, ctx.example_inputs, ctx.device)
        reference, _ = on_device(reference, ctx.example_inputs, ctx.device)
        r = self._measure(deployable, inputs, threads=ctx.threads, reference=reference, device=ctx.device)
        details = {
            **r,
            "deployable_form": ctx.deployable_form,
            **{f"deployable_{k}": v for k, v in ctx.deployable_details.items()},
            "batch_size": int(as_args(ctx.example_inputs)[0].shape[0]),
            "device": describe_device(ctx.device),
            "torch": torch.__version__,
            "spread": r["iqr_ms"],
        }
        if reference is not None:
            value = ctx.reference_latency_ms * r["ratio"]
            method = "torch.utils.benchmark blocks, ABBA-interleaved with the baseline; baseline latency x median ratio"
            details["baseline_latency_ms"] = ctx.reference_latency_ms
        else:
            value = r["median_ms"]
            method = "torch.utils.benchmark blocks, median until its 95% CI is within the bound"
        return Measurement(value, self.unit, "measured", method, details)
