from __future__ import annotations

import pytest
import torch
from torch import nn

from tradeoff.objectives import profile
from tradeoff.spaces import ApplyContext, PruningConfig, PruningSpace
from tradeoff.spaces.pruning import output_layers, recalibrate_batchnorm


def test_structured_pruning_removes_channels_for_real(tiny_cnn, tiny_batches) -> None:
    x = tiny_batches[0][0]
    before = profile(tiny_cnn, (x[:1],))
    pruned = PruningConfig(ratio=0.5).apply_(tiny_cnn, ApplyContext((x[:1],), train=tiny_batches))
    after = profile(pruned, (x[:1],))
    convs = [m for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8]
    assert pruned.head.in_features == 8 and pruned.head.out_features == 3  # classes kept
    assert after.params < before.params / 2
    assert after.macs < before.macs / 2
    assert pruned(x).shape == (16, 3)
    assert not any("mask" in name for name, _ in pruned.named_buffers())  # no masks: dense and smaller


def test_output_layer_is_protected(tiny_cnn) -> None:
    assert output_layers(tiny_cnn, (torch.randn(1, 1, 8, 8),)) == [tiny_cnn.head]


def test_batchnorm_recalibration_matches_the_data(tiny_cnn, tiny_batches) -> None:
    bn = tiny_cnn.features[1]
    bn.running_mean.fill_(100.0)
    recalibrate_batchnorm(tiny_cnn, tiny_batches)
    with torch.no_grad():
        conv_out = tiny_cnn.features[0](torch.cat([x for x, _ in tiny_batches]))
    expected = conv_out.mean(dim=(0, 2, 3))
    assert torch.allclose(bn.running_mean, expected, atol=1e-4)
    assert bn.momentum == 0.1  # restored after recalibration


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, "0.5"])
def test_ratio_outside_unit_interval_is_rejected(ratio) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        PruningConfig(ratio=ratio)


def test_space_rejects_reversed_range_and_unknown_kind() -> None:
    with pytest.raises(ValueError, match="low <= high"):
        PruningSpace(ratio=(0.6, 0.2))
    with pytest.raises(ValueError, match="kind"):
        PruningSpace(kind=("random",))
