from __future__ import annotations

import torch
from torch import nn

from tradeoff.objectives import EvalContext, LatencyMs, measure_latency

X = (torch.randn(1, 256),)
SMALL = nn.Linear(256, 8).eval()
BIG = nn.Sequential(*[nn.Linear(256, 256) for _ in range(32)]).eval()  # ~32x the work of SMALL


def test_interleaved_ratio_orders_a_much_heavier_model_above_a_light_one() -> None:
    r = measure_latency(BIG, X, reference=SMALL, rounds=3, min_run_time=0.02)
    assert r["ratio"] > 1.0 and r["reference_ms"] > 0 and r["repeats"] >= 3
    assert r["threads"] == 1


def test_latency_objective_reports_baseline_times_ratio_when_a_reference_is_given() -> None:
    ctx = EvalContext(example_inputs=X, reference=SMALL, reference_latency_ms=10.0, executed_as="fp32")
    m = LatencyMs().measure(SMALL, ctx)
    assert m.value == 10.0 * m.details["ratio"]
    assert m.source == "measured" and m.details["executed_as"] == "fp32"
    assert m.details["batch_size"] == 1 and "torch" in m.details and m.details["device"]


def test_latency_objective_times_the_executable_form_not_the_scored_model() -> None:
    calls = {"scored": 0, "exe": 0}

    class Counting(nn.Module):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls[self.key] += 1
            return x

    LatencyMs().measure(Counting("scored"), EvalContext(example_inputs=X, executable=Counting("exe")))
    assert calls["scored"] == 0 and calls["exe"] > 0
