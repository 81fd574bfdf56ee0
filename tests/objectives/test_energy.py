from __future__ import annotations

import pytest
import torch
from torch import nn

from tradeoff.objectives import EnergyMj, EnergyModel, EvalContext, profile


def test_per_mac_energy_follows_the_documented_table() -> None:
    e = EnergyModel()
    assert e.mac_pj(32, 32) == pytest.approx(3.7 + 0.9)
    assert e.mac_pj(8, 8) == pytest.approx(0.2 + 0.03)
    assert e.mac_pj(4, 8) == pytest.approx(0.2 * 32 / 64 + 0.03)
    assert e.mac_pj(16, 16) == pytest.approx(0.2 * 4 + 0.03 * 2)
    assert e.mac_pj(4, 32) == pytest.approx(4.6)  # fp32 activations: fp32 MAC


def test_energy_of_a_known_layer() -> None:
    m = nn.Linear(10, 4, bias=False)
    x = (torch.randn(1, 10),)
    e = EnergyModel()
    parts = e.energy_pj(profile(m, x, {"": 8}, 8))
    assert parts["compute_pj"] == pytest.approx(40 * 0.23)
    assert parts["weights_pj"] == pytest.approx((40 + 4 * 4) * 160)  # int8 weights + fp32 scales from DRAM
    assert parts["activations_pj"] == pytest.approx((10 + 4) * 1 * 2.5)  # 8-bit in/out through SRAM
    measured = EnergyMj().measure(m, EvalContext(example_inputs=x, weight_bits={"": 8}, activation_bits=8))
    assert measured.value == pytest.approx(sum(parts.values()) * 1e-9)


def test_lower_widths_cost_less_energy() -> None:
    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    x = (torch.randn(1, 64),)
    bits = lambda b: {"0": b, "2": b}  # noqa: E731
    fp32 = EnergyMj().measure(m, EvalContext(example_inputs=x)).value
    int8 = EnergyMj().measure(m, EvalContext(example_inputs=x, weight_bits=bits(8), activation_bits=8)).value
    int4 = EnergyMj().measure(m, EvalContext(example_inputs=x, weight_bits=bits(4), activation_bits=8)).value
    assert fp32 > int8 > int4
