from __future__ import annotations

import pytest
import torch
from torch import nn

from tradeoff.spaces import ApplyContext, QuantizationConfig, executable_form
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


def test_executable_form_drops_fake_quant_and_keeps_baked_weights(tiny_cnn, tiny_batches) -> None:
    cfg = QuantizationConfig(weight_bits=4, activation_bits=4)
    scored = cfg.bake_(_apply(cfg, tiny_cnn, tiny_batches))
    exe, form = executable_form(scored)
    assert form == "fp32"
    assert not any(isinstance(h, ActivationFakeQuant) for m in exe.modules() for h in m._forward_pre_hooks.values())
    assert torch.equal(exe.head.weight, scored.head.weight)
    x = tiny_batches[0][0]
    assert not torch.equal(exe(x), scored(x))  # scored sees 4-bit activations, the fp32 form does not


def test_weight_only_quantization_scores_what_executes(tiny_cnn, tiny_batches) -> None:
    cfg = QuantizationConfig(weight_bits=8)
    scored = cfg.bake_(_apply(cfg, tiny_cnn, tiny_batches))
    exe, _ = executable_form(scored)
    x = tiny_batches[0][0]
    assert torch.equal(exe(x), scored(x))


@pytest.mark.parametrize(
    "field,value", [("weight_bits", 1), ("weight_bits", 12), ("activation_bits", 2), ("weight_bits", True)]
)
def test_unsupported_widths_are_rejected_with_the_allowed_list(field, value) -> None:
    with pytest.raises(ValueError, match=rf"{field} must be one of \[.*\], got"):
        QuantizationConfig(**{field: value})
