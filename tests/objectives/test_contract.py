"""The contract every objective keeps: a named, directed figure with its provenance."""

from __future__ import annotations

import math

import pytest
import torch

from tradeoff.objectives import DIRECTIONS, OBJECTIVE_NAMES, EvalContext, Measurement, Objective, default_objectives

OBJECTIVES = {o.name: o for o in default_objectives()}


@pytest.fixture(params=OBJECTIVE_NAMES)
def objective(request: pytest.FixtureRequest) -> Objective:
    return OBJECTIVES[request.param]


def test_the_four_objectives_in_study_order() -> None:
    assert [o.name for o in default_objectives()] == list(OBJECTIVE_NAMES)
    assert [o.direction for o in default_objectives()] == list(DIRECTIONS)


def test_measure_returns_a_finite_value_with_provenance(objective: Objective, tiny_cnn, tiny_batches) -> None:
    x = tiny_batches[0][0][:1]
    ctx = EvalContext(example_inputs=(x,), val=tiny_batches, reference=tiny_cnn, reference_latency_ms=1.0)
    m = objective.measure(tiny_cnn, ctx)
    assert isinstance(m, Measurement)
    assert math.isfinite(m.value) and m.value >= 0
    prov = m.provenance()
    assert prov["source"] in ("measured", "computed", "estimated")
    assert prov["method"] and prov["unit"] == objective.unit


def test_measurement_rejects_unknown_sources_and_nan() -> None:
    with pytest.raises(ValueError, match="source"):
        Measurement(1.0, "ms", "guessed", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="real number"):
        Measurement(float("nan"), "ms", "measured", "x")


def test_estimated_objectives_say_so() -> None:
    x = torch.randn(1, 1, 8, 8)
    from tests.conftest import TinyCNN

    ctx = EvalContext(example_inputs=(x,))
    assert OBJECTIVES["energy_mj"].measure(TinyCNN(), ctx).source == "estimated"
    assert OBJECTIVES["energy_mj"].measure(TinyCNN(), ctx).details["energy_model"] == "horowitz-isscc2014-45nm/v1"
