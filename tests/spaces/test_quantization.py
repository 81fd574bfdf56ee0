from __future__ import annotations

import optuna
import pytest
import torch
from torch import nn

from tradeoff.spaces import ApplyContext, QuantizationConfig, QuantizationSpace, strip_activation_quant
from tradeoff.spaces.quantization import ActivationFakeQuant


def _apply(cfg: QuantizationConfig, model: nn.Module, batches) -> nn.Module:
    return cfg.apply_(model, ApplyContext(example_inputs=(batches[0][0],), train=batches))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_baked_weights_take_at_most_2_to_the_bits_levels_per_channel(bits, tiny_cnn, tiny_batches) -> None:
    cfg = QuantizationConfig(weight_bits=bits)
    model = cfg.bake_(_apply(cfg, tiny_cnn, tiny_batches))
    w = model.features[3].weight.detach()
    for channel in w.flatten(1):
        assert channel.unique().numel() <= 2**bits - 1  # symmetric: -(2^(b-1)-1) .. 2^(b-1)-1
    assert cfg.weight_bits_by_layer(model) == {"features.0": bits, "features.3": bits, "head": bits}


def test_weight_fake_quant_passes_gradients_straight_through(tiny_cnn, tiny_batches) -> None:
    cfg = QuantizationConfig(weight_bits=4)
    model = _apply(cfg, tiny_cnn, tiny_batches).train()
    x, y = tiny_batches[0]
    nn.functional.cross_entropy(model(x), y).backward()
    grad = model.features[0].parametrizations.weight.original.grad
    assert grad is not None and grad.abs().sum() > 0


def test_activation_fake_quant_limits_layer_inputs_to_2_to_the_bits_values(tiny_cnn, tiny_batches) -> None:
    cfg = QuantizationConfig(activation_bits=4)
    model = _apply(cfg, tiny_cnn, tiny_batches)
    seen = []
    model.head.register_forward_pre_hook(lambda m, a: seen.append(a[0]), prepend=False)
    model(tiny_batches[1][0])
    assert seen[0].unique().numel() <= 16
    hooks = [h for h in model.head._forward_pre_hooks.values() if isinstance(h, ActivationFakeQuant)]
    assert len(hooks) == 1 and not hooks[0].calibrating and hooks[0].hi > 0


def test_strip_activation_quant_drops_fake_quant_and_keeps_baked_weights(tiny_cnn, tiny_batches) -> None:
    cfg = QuantizationConfig(weight_bits=4, activation_bits=4)
    scored = cfg.bake_(_apply(cfg, tiny_cnn, tiny_batches))
    exe = strip_activation_quant(scored)
    assert not any(isinstance(h, ActivationFakeQuant) for m in exe.modules() for h in m._forward_pre_hooks.values())
    assert torch.equal(exe.head.weight, scored.head.weight)
    x = tiny_batches[0][0]
    assert not torch.equal(exe(x), scored(x))  # scored sees 4-bit activations, the fp32 form does not


def test_weight_only_quantization_scores_what_executes(tiny_cnn, tiny_batches) -> None:
    cfg = QuantizationConfig(weight_bits=8)
    scored = cfg.bake_(_apply(cfg, tiny_cnn, tiny_batches))
    exe = strip_activation_quant(scored)
    x = tiny_batches[0][0]
    assert torch.equal(exe(x), scored(x))


@pytest.mark.parametrize(
    "field,value", [("weight_bits", 1), ("weight_bits", 12), ("activation_bits", 2), ("weight_bits", True)]
)
def test_unsupported_widths_are_rejected_with_the_allowed_list(field, value) -> None:
    with pytest.raises(ValueError, match=rf"{field} must be one of \[.*\], got"):
        QuantizationConfig(**{field: value})


def test_group_widths_apply_to_selected_layers_and_only_those_get_quantized_inputs(tiny_cnn, tiny_batches) -> None:
    x = tiny_batches[0][0]
    cfg = QuantizationConfig(weight_bits=32, activation_bits=8, groups={"features.3": 4, "head": 8})
    model = cfg.apply_(tiny_cnn, ApplyContext((x[:1],), train=tiny_batches))
    hooked = {
        n
        for n, m in model.named_modules()
        if any(isinstance(h, ActivationFakeQuant) for h in m._forward_pre_hooks.values())
    }
    assert hooked == {"features.3", "head"}  # features.0 runs in fp32, inputs included
    model = cfg.bake_(model)
    assert cfg.weight_bits_by_layer(model) == {"features.3": 4, "head": 8}
    w = model.features[3].weight.detach()
    levels = (w / w.abs().flatten(1).amax(1).view(-1, 1, 1, 1) * 7).round()
    assert torch.allclose(levels / 7 * w.abs().flatten(1).amax(1).view(-1, 1, 1, 1), w, atol=1e-6)  # 4-bit grid
    assert len(model.features[0].weight.unique()) > 50  # untouched fp32


@pytest.mark.parametrize(("float16", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_16_bits_means_a_16_bit_float(tiny_cnn, tiny_batches, float16: str, dtype: torch.dtype) -> None:
    x = tiny_batches[0][0]
    original = tiny_cnn.features[0].weight.detach().clone()
    cfg = QuantizationConfig(weight_bits=16, activation_bits=16, float16=float16)
    model = cfg.bake_(cfg.apply_(tiny_cnn, ApplyContext((x[:1],), train=tiny_batches)))
    w = model.features[0].weight.detach()
    assert torch.equal(w.to(dtype).float(), w)  # exactly representable in that float
    assert not torch.equal(w, original)  # and moved there: fp32 weights rarely are
    if dtype == torch.float16:  # fp16's finer mantissa: not on bf16's grid (bf16 values all fit fp16)
        assert not torch.equal(w.to(torch.bfloat16).float(), w)


def test_space_samples_a_width_per_group() -> None:
    space = QuantizationSpace(
        weight_bits=(4, 8, 32), activation_bits=(32,), groups={"stem": "features.0", "head": "head"}
    )
    assert set(space.distributions()) == {
        "quantization.weight_bits",
        "quantization.weight_bits@stem",
        "quantization.weight_bits@head",
    }
    cfg = space.sample(
        optuna.trial.FixedTrial(
            {"quantization.weight_bits": 4, "quantization.weight_bits@stem": 8, "quantization.weight_bits@head": 32}
        )
    )
    assert cfg.groups == {"features.0": 8, "head": 32}
    assert cfg.bits_of("features.3") == 4 and cfg.bits_of("head") == 32
    assert space.identity().is_identity
    assert space.identity_params()["quantization.weight_bits@stem"] == 32


def test_bad_group_width_is_named() -> None:
    with pytest.raises(ValueError, match="group 'layer1'"):
        QuantizationConfig(groups={"layer1": 12})
    with pytest.raises(ValueError, match="float16"):
        QuantizationConfig(float16="fp8")
