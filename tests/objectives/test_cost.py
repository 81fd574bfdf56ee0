from __future__ import annotations

import pytest

from tradeoff.objectives import Constraints, Weights, constraint_values, normalise, objective_names, weighted_cost

BASE = dict(accuracy=0.8, size_bytes=1000.0, latency_ms=2.0, energy_mj=0.5)


def test_baseline_normalises_to_zero_error_and_unit_ratios() -> None:
    assert normalise(BASE, BASE).tolist() == [0.0, 1.0, 1.0, 1.0]


def test_cost_is_the_weighted_sum_of_the_normalised_point() -> None:
    v = dict(accuracy=0.76, size_bytes=250.0, latency_ms=1.0, energy_mj=0.1)
    w = Weights((0.6, 0.2, 0.1, 0.1))
    assert weighted_cost(v, BASE, w) == pytest.approx(0.6 * 0.05 + 0.2 * 0.25 + 0.1 * 0.5 + 0.1 * 0.2)


def test_constraints_are_nonpositive_exactly_when_met() -> None:
    c = Constraints(max_accuracy_drop=0.02, max_latency_ms=1.5, max_size_bytes=500, max_energy_mj=0.2)
    ok = constraint_values(dict(accuracy=0.79, size_bytes=500.0, latency_ms=1.0, energy_mj=0.2), BASE, c)
    assert all(v <= 0 for v in ok.values()) and set(ok) == {
        "max_accuracy_drop",
        "max_latency_ms",
        "max_size_bytes",
        "max_energy_mj",
    }
    bad = constraint_values(dict(accuracy=0.75, size_bytes=501.0, latency_ms=1.6, energy_mj=0.3), BASE, c)
    assert all(v > 0 for v in bad.values())
    assert constraint_values(BASE, BASE, Constraints()) == {}


def test_weights_parse_and_errors() -> None:
    assert Weights.parse("accuracy=1").as_dict() == dict(accuracy=1.0, size_bytes=0.0, latency_ms=0.0, energy_mj=0.0)
    with pytest.raises(ValueError, match="NAME=NUMBER"):
        Weights.parse("size=1")
    with pytest.raises(ValueError, match="not a number"):
        Weights.parse("accuracy=high")
    with pytest.raises(ValueError, match=">= 0"):
        Weights((-1.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="> 0"):
        Weights((0.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="unknown objective"):
        Weights.from_mapping({"bops": 1.0})


def test_another_complexity_objective_takes_the_second_place() -> None:
    names = objective_names("bops")
    assert names == ("accuracy", "bops", "latency_ms", "energy_mj")
    w = Weights.parse("accuracy=0.5,bops=0.5", names)
    base = dict(accuracy=0.8, bops=1e6, latency_ms=2.0, energy_mj=0.5)
    v = dict(base, bops=2.5e5)
    assert normalise(v, base, names).tolist() == [0.0, 0.25, 1.0, 1.0]
    assert weighted_cost(v, base, w) == pytest.approx(0.125)
    with pytest.raises(ValueError, match="NAME one of accuracy, bops"):
        Weights.parse("size_bytes=1", names)
    with pytest.raises(ValueError, match="objective names must be"):
        Weights((1.0, 0, 0, 0), ("accuracy", "latency_ms", "bops", "energy_mj"))


def test_zero_baseline_cannot_normalise() -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        normalise(BASE, dict(BASE, latency_ms=0.0))
