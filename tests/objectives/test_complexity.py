from __future__ import annotations

import math

import torch
from torch import nn

from tradeoff.objectives import profile, size_bytes


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3)
    )


def test_macs_params_and_bops_by_hand() -> None:
    m = _model()
    p = profile(m, (torch.randn(1, 2, 5, 5),), {"0": 4, "4": 8}, activation_bits=8)
    conv_macs = 4 * 5 * 5 * (2 * 3 * 3)  # outputs x (in_ch x kh x kw)
    lin_macs = 100 * 3
    assert [l.macs for l in p.layers] == [conv_macs, lin_macs]
    assert p.macs == conv_macs + lin_macs
    assert p.bops == conv_macs * 4 * 8 + lin_macs * 8 * 8
    assert p.params == (72 + 4) + (4 + 4) + (300 + 3)


def test_macs_scale_with_batch() -> None:
    m = _model()
    assert profile(m, (torch.randn(3, 2, 5, 5),)).macs == 3 * profile(m, (torch.randn(1, 2, 5, 5),)).macs


def test_size_counts_packed_weights_scales_and_fp32_rest() -> None:
    m = _model()
    fp32 = 4 * ((72 + 4) + (4 + 4 + 4 + 4) + (300 + 3))  # BN: weight, bias, running mean, running var
    assert size_bytes(m) == fp32
    q = size_bytes(m, {"0": 4, "4": 2})
    expected = (math.ceil(72 * 4 / 8) + 4 * 4 + 4 * 4) + 4 * 16 + (math.ceil(300 * 2 / 8) + 4 * 3 + 4 * 3)
    assert q == expected


def test_nonzero_params_count_zeros() -> None:
    m = nn.Linear(4, 2)
    with torch.no_grad():
        m.weight[0].zero_()
    assert profile(m, (torch.randn(1, 4),)).nonzero_params == 10 - 4


def test_attention_matmuls_are_counted_outside_weight_layers() -> None:
    class Attn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = self.q(x)
            return q @ q.transpose(-1, -2)

    p = profile(Attn(), (torch.randn(1, 5, 8),))
    assert p.layers[0].macs == 5 * 8 * 8
    assert p.other_macs == 5 * 5 * 8
