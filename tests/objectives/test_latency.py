from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn

from tradeoff.objectives import EvalContext, LatencyMs, measure_latency, median_ci
from tradeoff.objectives import latency as latency_module
from tradeoff.objectives.latency import relative_halfwidth

X = (torch.randn(1, 256),)
SMALL = nn.Linear(256, 8).eval()
BIG = nn.Sequential(*[nn.Linear(256, 256) for _ in range(32)]).eval()  # ~32x the work of SMALL


def test_median_ci_is_the_order_statistic_interval() -> None:
    med, low, high = median_ci([float(i) for i in range(1, 20)])
    assert (med, low, high) == (10.0, 5.0, 15.0)  # ranks 5 and 15 of 19: 96.8 % coverage
    assert median_ci([3.0, 1.0, 2.0])[1:] == (float("-inf"), float("inf"))  # too few for 95 %
    assert relative_halfwidth(10.0, 9.0, 11.0) == pytest.approx(0.1)
    assert relative_halfwidth(10.0, float("-inf"), 11.0) == float("inf")


class FakeBlock:
    """Stands in for a timed block: returns scripted per-call seconds and logs call order."""

    log: list[str] = []

    def __init__(self, model, inputs, threads, block_time) -> None:
        self.key = "cand" if model is SMALL else "ref"
        self.times = itertools.cycle(SCRIPT[self.key])
        self.calls = 0
        self.number = 10

    def __call__(self) -> float:
        FakeBlock.log.append(self.key)
        self.calls += self.number
        return next(self.times)


SCRIPT: dict[str, list[float]] = {}


def test_stops_as_soon_as_the_ci_is_tight_and_alternates_order(monkeypatch) -> None:
    monkeypatch.setattr(latency_module, "_Block", FakeBlock)
    SCRIPT.update(cand=[1e-3], ref=[2e-3])  # noiseless: CI collapses at the first check
    FakeBlock.log = []
    r = measure_latency(SMALL, X, reference=BIG, min_rounds=6, max_time=60)
    assert r["converged"] and r["rounds"] == 6 and r["ratio"] == pytest.approx(0.5)
    assert r["median_ms"] == pytest.approx(1.0) and r["reference_ms"] == pytest.approx(2.0)
    assert FakeBlock.log[:6] == ["cand", "ref", "ref", "cand", "cand", "ref"]  # ABBA...
    assert r["repeats"] == 60


def test_gives_up_at_the_time_cap_and_says_so(monkeypatch) -> None:
    monkeypatch.setattr(latency_module, "_Block", FakeBlock)
    SCRIPT.update(cand=[1e-3, 3e-3, 1e-3, 5e-3], ref=[1e-3])  # +-100 %: never within 2 %
    r = measure_latency(SMALL, X, reference=BIG, min_rounds=6, max_time=0.05)
    assert not r["converged"] and r["rounds"] >= 6 and r["ci_halfwidth"] > 0.02


def test_interleaved_ratio_orders_a_much_heavier_model_above_a_light_one() -> None:
    r = measure_latency(BIG, X, reference=SMALL, max_time=0.5)
    assert r["ratio"] > 1.0 and r["reference_ms"] > 0 and r["repeats"] >= r["rounds"] >= 6
    assert r["threads"] == 1


def test_timing_leaves_grad_mode_and_threads_as_they_were() -> None:
    threads = torch.get_num_threads()
    measure_latency(SMALL, X, max_time=0.1, threads=1)
    assert torch.is_grad_enabled() and torch.get_num_threads() == threads


def test_latency_objective_reports_baseline_times_ratio_when_a_reference_is_given() -> None:
    ctx = EvalContext(example_inputs=X, reference=SMALL, reference_latency_ms=10.0, deployable_form="fp32")
    m = LatencyMs().measure(SMALL, ctx)
    assert m.value == 10.0 * m.details["ratio"]
    assert m.source == "measured" and m.details["deployable_form"] == "fp32"
    assert m.details["batch_size"] == 1 and "torch" in m.details and m.details["device"]
    assert {"repeats", "spread", "ci_halfwidth", "converged", "lock_wait_s"} <= set(m.details)


def test_latency_objective_times_the_deployable_form_not_the_scored_model() -> None:
    calls = {"scored": 0, "exe": 0}

    class Counting(nn.Module):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls[self.key] += 1
            return x

    LatencyMs().measure(Counting("scored"), EvalContext(example_inputs=X, deployable=Counting("exe")))
    assert calls["scored"] == 0 and calls["exe"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_path_times_with_events_on_the_gpu() -> None:
    model, ref = copy.deepcopy(BIG).to("cuda"), copy.deepcopy(SMALL).to("cuda")
    r = measure_latency(model, (X[0].to("cuda"),), reference=ref, max_time=1.0)
    assert r["median_ms"] > 0 and r["ratio"] > 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_measuring_on_cuda_leaves_the_callers_models_on_the_cpu() -> None:
    ctx = EvalContext(example_inputs=X, reference=SMALL, reference_latency_ms=1.0, device="cuda")
    LatencyMs().measure(BIG, ctx)
    assert next(BIG.parameters()).device.type == "cpu" and next(SMALL.parameters()).device.type == "cpu"


def test_unbounded_intervals_are_stored_as_null_not_infinity(monkeypatch) -> None:
    monkeypatch.setattr(latency_module, "_Block", FakeBlock)
    SCRIPT.update(cand=[1e-3, 2e-3], ref=[1e-3])
    r = measure_latency(SMALL, X, reference=BIG, min_rounds=2, max_time=0.0)  # 2 rounds: no 95 % CI yet
    assert r["rounds"] == 2 and r["ci_halfwidth"] is None and r["ratio_ci_low"] is None
    import json

    json.dumps(r, allow_nan=False)  # strict JSON
