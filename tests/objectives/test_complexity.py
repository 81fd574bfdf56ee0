from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tradeoff.objectives import profile, size_bytes
from tradeoff.objectives.packing import packed_state_dict, unpacked_weight
from tradeoff.objectives.profile import weight_encoding


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


# ------------------------------------------------- size_bytes against a real file of packed weights


class ResNetish(nn.Module):
    """~1.2 M parameters in residual conv blocks (a tenth of ResNet-18).

    torch.save spends ~300 bytes of headers per tensor; on the 57 k-parameter digits CNN at 8 bits
    that is ~20 % of the file, on a model this size ~1.5 %: size_bytes counts the payload.
    """

    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()) for _ in range(8)
        )
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("bits", [8, 4, 32])
def test_size_bytes_is_within_5_percent_of_the_saved_weights_file(bits: int, tmp_path) -> None:
    model = ResNetish()
    layers = {n: bits for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    path = tmp_path / "weights.pt"
    torch.save(packed_state_dict(model, layers), path)
    on_disk = path.stat().st_size
    computed = size_bytes(model, layers)
    assert abs(on_disk - computed) / on_disk < 0.05, (on_disk, computed)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_packed_weights_decode_to_the_quantized_values(bits: int) -> None:
    from tradeoff.spaces import ApplyContext, QuantizationConfig

    torch.manual_seed(bits)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.Flatten(), nn.Linear(5 * 6 * 6, 4))
    cfg = QuantizationConfig(weight_bits=bits)
    model = cfg.bake_(cfg.apply_(model, ApplyContext((torch.randn(1, 3, 8, 8),))))
    packed = packed_state_dict(model, cfg.weight_bits_by_layer(model))
    for name in ("0", "2"):
        w = getattr(model, name).weight.detach()
        assert torch.allclose(unpacked_weight(packed, f"{name}.weight", bits), w, atol=1e-6)
    if weight_encoding(model[0].weight, bits)[0] == "dense":
        assert packed["0.weight.packed"].numel() == -(-5 * 3 * 3 * 3 * bits // 8)


def _sparse_linear(rows: int, cols: int, density: float, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    m = nn.Linear(cols, rows, bias=False)
    with torch.no_grad():
        m.weight.mul_((torch.rand_like(m.weight) < density).float())
    return m


@pytest.mark.parametrize(
    ("density", "expected"),
    [(1.0, "dense"), (0.3, "bitmask"), (0.01, "csr")],  # 32-bit values: bitmask wins below ~97 %, CSR below ~6 %
)
def test_the_smallest_encoding_is_chosen_and_counted(density: float, expected: str) -> None:
    m = _sparse_linear(64, 512, density)
    encoding, nbytes = weight_encoding(m.weight, 32)
    assert encoding == expected
    nnz = int(torch.count_nonzero(m.weight))
    dense, bitmask, csr = 4 * m.weight.numel(), 64 * 512 // 8 + 4 * nnz, 4 * nnz + 2 * nnz + 4 * 65
    assert nbytes == min(dense, bitmask, csr)
    assert size_bytes(m) == nbytes  # the weight is the layer's only parameter


@pytest.mark.parametrize("bits", [32, 8, 4])
@pytest.mark.parametrize("density", [0.3, 0.02])
def test_sparse_weights_round_trip_and_match_the_file_size(bits: int, density: float, tmp_path) -> None:
    model = nn.Sequential(_sparse_linear(512, 2048, density), nn.ReLU(), _sparse_linear(10, 512, 1.0, seed=1))
    layers = {"0": bits, "2": bits} if bits < 32 else {}
    if bits < 32:  # put the weights on the grid first, as a baked model has them
        from tradeoff.spaces import ApplyContext, QuantizationConfig

        cfg = QuantizationConfig(weight_bits=bits)
        model = cfg.bake_(cfg.apply_(model, ApplyContext((torch.randn(1, 2048),))))
    packed = packed_state_dict(model, layers)
    assert "0.weight.mask" in packed or "0.weight.crow" in packed
    assert torch.allclose(unpacked_weight(packed, "0.weight", bits), model[0].weight, atol=1e-6)
    assert torch.allclose(unpacked_weight(packed, "2.weight", bits), model[2].weight, atol=1e-6)
    path = tmp_path / "w.pt"
    torch.save(packed, path)
    on_disk, computed = path.stat().st_size, size_bytes(model, layers)
    assert abs(on_disk - computed) / on_disk < 0.05, (on_disk, computed)
    assert computed < size_bytes(_sparse_linear(512, 2048, 1.0), {"": bits} if bits < 32 else {}) * 0.8


# ------------------------------------------------- size_bytes_floor: the least size fine-tuning could reach


def _random_model(gen: torch.Generator) -> tuple[nn.Module, dict[str, int]]:
    """Conv and linear layers of random shapes, their weights pruned at random densities, each at a random width."""
    from tradeoff.spaces.widths import WEIGHT_BITS

    def pick(n: int) -> int:
        return int(torch.randint(1, n + 1, (1,), generator=gen))

    c = pick(6)
    model = nn.Sequential(  # shapes are what matter: no forward pass here
        nn.Conv2d(2, c, pick(3)), nn.BatchNorm2d(c), nn.Linear(pick(40), pick(40)), nn.Linear(pick(300), pick(20))
    )
    with torch.no_grad():
        for i in (0, 2, 3):
            w = model[i].weight
            density = float(torch.rand(1, generator=gen))
            w.copy_(torch.randn(w.shape, generator=gen) * (torch.rand(w.shape, generator=gen) < density).float())
    return model, {str(i): WEIGHT_BITS[pick(len(WEIGHT_BITS)) - 1] for i in (0, 2, 3)}


def test_the_size_floor_is_never_above_the_size() -> None:
    from tradeoff.objectives import size_bytes_floor

    gen, below = torch.Generator().manual_seed(0), 0
    for _ in range(40):
        model, bits = _random_model(gen)
        floor = size_bytes_floor(model, bits)
        assert floor <= size_bytes(model, bits), bits
        below += floor < size_bytes(model, bits)
        assert size_bytes_floor(model) == size_bytes(model)  # fp32: the current packing, zeros from pruning kept
        assert size_bytes_floor(model, {k: 16 for k in bits}) == size_bytes(model, {k: 16 for k in bits})
    assert below > 10  # most draws have a quantized weight with non-zero codes


def test_the_size_floor_is_below_the_size_of_a_dense_two_bit_layer() -> None:
    from tradeoff.objectives import size_bytes_floor

    m = nn.Linear(64, 16)
    assert size_bytes_floor(m) == size_bytes(m) == 4 * (64 * 16 + 16)
    dense = math.ceil(64 * 16 * 2 / 8) + 4 * 16 + 4 * 16  # 2-bit codes, fp32 scales, fp32 bias
    empty_bitmask, empty_csr = 64 * 16 // 8, 4 * (16 + 1)  # no non-zero code: the mask alone, the row pointers alone
    floor = min(empty_bitmask, empty_csr) + 4 * 16 + 4 * 16
    assert size_bytes(m, {"": 2}) == dense and size_bytes_floor(m, {"": 2}) == floor < dense


def test_two_bit_codes_moved_to_zero_shrink_the_size_but_never_below_the_floor() -> None:
    """What fine-tuning can do: the same shapes and widths, weights that now round mostly to code 0."""
    from tradeoff.objectives import size_bytes_floor
    from tradeoff.spaces import ApplyContext, QuantizationConfig

    cfg = QuantizationConfig(weight_bits=2)

    def baked(weight: torch.Tensor) -> nn.Module:
        m = nn.Linear(256, 32, bias=False)
        with torch.no_grad():
            m.weight.copy_(weight)
        return cfg.bake_(cfg.apply_(m, ApplyContext((torch.randn(1, 256),))))

    signs = torch.where(torch.rand(32, 256, generator=torch.Generator().manual_seed(0)) < 0.5, -1.0, 1.0)
    before = baked(signs)  # every weight at the channel's maximum: every code +-1, dense
    tuned = signs * 0.3
    tuned[:, :8] = signs[:, :8]  # a few weights per channel stay large; the rest round to code 0
    after = baked(tuned)
    bits = {"": 2}
    assert int(torch.count_nonzero(before.weight)) == 32 * 256 and int(torch.count_nonzero(after.weight)) == 32 * 8
    assert weight_encoding(before.weight, 2)[0] == "dense" and weight_encoding(after.weight, 2)[0] != "dense"
    floor = size_bytes_floor(before, bits)
    assert floor == size_bytes_floor(after, bits)  # shapes and widths alone
    assert floor <= size_bytes(after, bits) < size_bytes(before, bits)
