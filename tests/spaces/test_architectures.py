"""Pruning, quantization and recipes on four architectures: residual, mobile (depthwise + SE), MLP, transformer."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from torch import nn

from tests.architectures import cases
from tradeoff.objectives import profile
from tradeoff.objectives.profile import size_bytes
from tradeoff.spaces import ApplyContext, PruningConfig, QuantizationConfig, Recipe, RecipeSpace, auto_groups
from tradeoff.spaces.pruning import PruningSpace
from tradeoff.spaces.quantization import QuantizationSpace

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


@pytest.mark.parametrize("name", NAMES)
def test_unstructured_50_percent_halves_nonzero_weights_and_shrinks_the_file_not_the_shapes(name: str) -> None:
    model, x = cases()[name]
    before, shape = profile(model, x), model(*x).shape
    cfg = PruningConfig(ratio=0.5, kind="unstructured")
    pruned = QuantizationConfig().bake_(cfg.apply_(model, ApplyContext(x)))
    after = profile(pruned, x)
    assert pruned(*x).shape == shape
    assert after.params == before.params and after.macs == before.macs  # dense: no work removed
    layers = [m for m in pruned.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.numel() > 0]
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    prunable = sum(m.weight.numel() for m in layers[:-1] if m is not layers[-1])  # the output layer is kept
    assert zeros >= 0.45 * prunable  # about half of every conv/linear weight but the output layer's
    assert after.nonzero_params <= before.nonzero_params - zeros
    assert after.size_bytes < 0.8 * before.size_bytes  # counted through the bitmask encoding


@pytest.mark.parametrize("name", NAMES)
def test_per_group_recipes_round_trip_through_json_and_apply(name: str) -> None:
    model, x = cases()[name]
    groups = auto_groups(model)
    assert groups, "every architecture has at least one group of weight layers"
    space = RecipeSpace(
        pruning=PruningSpace(
            ratio=(0.1, 0.4), kind=("structured", "unstructured"), importance=("l1", "l2"), groups=groups
        ),
        quantization=QuantizationSpace(weight_bits=(4, 8, 16, 32), activation_bits=(8, 32), groups=groups),
    ).resolved(1e-3)  # the rate a study would derive (find_lr)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=len(name)))
    for _ in range(3):
        recipe = space.sample(study.ask())
        text = json.dumps(recipe.to_dict())
        assert Recipe.from_dict(json.loads(text)) == recipe  # every config, groups included
        student = recipe.quantization.apply_(recipe.pruning.apply_(cases()[name][0], ApplyContext(x)), ApplyContext(x))
        student = recipe.quantization.bake_(student)
        assert student(*x).shape == model(*x).shape
        bits = recipe.quantization.weight_bits_by_layer(student)
        assert size_bytes(student, bits) <= size_bytes(model)


def test_stage_ratios_prune_stages_differently_on_the_resnet() -> None:
    model, x = cases()["resnet"]
    cfg = PruningConfig(ratio=0.0, groups={"layers.2": 0.5})
    pruned = cfg.apply_(model, ApplyContext(x))
    assert pruned.stem[0].out_channels == 16  # untouched stage
    assert pruned.layers[2].c1.out_channels == 32  # 64 -> 32 inside the selected block
