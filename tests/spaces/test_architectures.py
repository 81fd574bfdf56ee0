"""Pruning and quantization on architectures beyond the demo CNN (groundwork for issue 3)."""

from __future__ import annotations

import pytest
import torch

from tests.architectures import cases
from tradeoff.objectives import profile
from tradeoff.spaces import ApplyContext, PruningConfig, QuantizationConfig

NAMES = sorted(cases())


@pytest.mark.parametrize("name", NAMES)
def test_pruning_30_percent_shrinks_params_and_macs_and_keeps_the_output_shape(name: str) -> None:
    model, x = cases()[name]
    before, shape = profile(model, x), model(*x).shape
    pruned = PruningConfig(ratio=0.3).apply_(model, ApplyContext(x))
    after = profile(pruned, x)
    assert pruned(*x).shape == shape
    assert after.params < 0.8 * before.params and after.macs < 0.8 * before.macs


@pytest.mark.parametrize("name", NAMES)
def test_8_bit_weights_keep_outputs_close(name: str) -> None:
    model, x = cases()[name]
    reference = model(*x)
    cfg = QuantizationConfig(weight_bits=8)
    quantized = cfg.bake_(cfg.apply_(model, ApplyContext(x)))
    rel = (quantized(*x) - reference).norm() / reference.norm()
    assert rel < 0.02  # per-channel symmetric int8 grid: ~0.4 % step of each channel's range
    assert not torch.equal(quantized(*x), reference)  # the weights did move onto the grid
