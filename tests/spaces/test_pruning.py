from __future__ import annotations

import pytest
import torch
from torch import nn

from tradeoff.objectives import profile
from tradeoff.spaces import ApplyContext, PruningConfig, PruningSpace, QuantizationConfig
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


def _conv_widths(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("importance", ["l1", "l2", "taylor"])
def test_each_importance_criterion_prunes_and_they_rank_channels_differently(
    tiny_cnn, tiny_batches, importance: str
) -> None:
    import copy

    x = tiny_batches[0][0]
    ctx = ApplyContext((x[:1],), train=tiny_batches)
    pruned = PruningConfig(ratio=0.5, importance=importance).apply_(copy.deepcopy(tiny_cnn), ctx)
    assert _conv_widths(pruned) == [4, 8]
    assert all(p.grad is None for p in pruned.parameters())  # Taylor's gradients are not left behind


def test_taylor_keeps_other_channels_than_magnitude(tiny_cnn, tiny_batches) -> None:
    import copy

    ctx = ApplyContext((tiny_batches[0][0][:1],), train=tiny_batches)
    kept = {}
    for importance in ("l2", "taylor"):
        pruned = PruningConfig(ratio=0.5, importance=importance).apply_(copy.deepcopy(tiny_cnn), ctx)
        kept[importance] = pruned.features[3].weight.detach().clone()
    assert not torch.equal(kept["l2"], kept["taylor"])


def test_taylor_without_training_data_says_what_to_do(tiny_cnn) -> None:
    with pytest.raises(ValueError, match="taylor importance needs training batches"):
        PruningConfig(ratio=0.5, importance="taylor").apply_(tiny_cnn, ApplyContext((torch.randn(1, 1, 8, 8),)))


def test_group_ratios_apply_to_the_layers_their_patterns_select(tiny_cnn, tiny_batches) -> None:
    ctx = ApplyContext((tiny_batches[0][0][:1],), train=tiny_batches)
    pruned = PruningConfig(ratio=0.0, groups={"features.3": 0.75}).apply_(tiny_cnn, ctx)
    assert _conv_widths(pruned) == [8, 4]  # only the selected conv lost channels


def test_protected_layers_keep_their_width(tiny_cnn, tiny_batches) -> None:
    ctx = ApplyContext((tiny_batches[0][0][:1],), train=tiny_batches)
    pruned = PruningConfig(ratio=0.5, protect=("features.0",)).apply_(tiny_cnn, ctx)
    assert _conv_widths(pruned) == [8, 8]


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_unstructured_pruning_zeroes_weights_keeps_shapes_and_masks_survive_tuning(
    tiny_cnn, tiny_batches, scope: str
) -> None:
    from tradeoff.spaces import DistillationConfig

    x = tiny_batches[0][0]
    ctx = ApplyContext((x[:1],), train=tiny_batches, seed=0)
    cfg = PruningConfig(ratio=0.6, kind="unstructured", scope=scope)
    model = cfg.apply_(tiny_cnn, ctx)
    assert _conv_widths(model) == [8, 16]  # nothing removed: same shapes
    model = DistillationConfig(alpha=0.0, steps=20, lr=1e-2).apply_(model, ctx)  # tuning moves weights...
    model = QuantizationConfig().bake_(model)  # ...bake drops the masks, leaving plain weights
    layers = [model.features[0], model.features[3]]
    zeros = [float((m.weight == 0).float().mean()) for m in layers]
    total = sum(float((m.weight == 0).sum()) for m in layers) / sum(m.weight.numel() for m in layers)
    assert abs(total - 0.6) < 0.01  # ...but the pruned weights stayed at zero
    if scope == "layer":
        assert all(abs(z - 0.6) < 0.02 for z in zeros)
    assert float((model.head.weight == 0).float().mean()) == 0.0  # the output layer is protected
    assert not any(n.endswith("mask") for n, _ in model.named_buffers())


def test_global_unstructured_threshold_is_shared_across_layers(tiny_cnn, tiny_batches) -> None:
    with torch.no_grad():
        tiny_cnn.features[0].weight.mul_(100.0)  # one layer's weights are far larger
    ctx = ApplyContext((tiny_batches[0][0][:1],), train=tiny_batches)
    model = PruningConfig(ratio=0.5, kind="unstructured", scope="global").apply_(tiny_cnn, ctx)
    bake = QuantizationConfig().bake_(model)  # masks baked into plain weights
    big, small = (float((m.weight == 0).float().mean()) for m in (bake.features[0], bake.features[3]))
    assert big < 0.05 and small > 0.5  # one threshold: the small-weight layer takes the cuts


def test_space_samples_one_ratio_per_group_and_identity_covers_them() -> None:
    import optuna

    space = PruningSpace(ratio=(0.0, 0.6), groups={"stem": "features.0", "body": "features.3,features.6"})
    dists = space.distributions()
    assert set(dists) == {"pruning.ratio", "pruning.ratio@stem", "pruning.ratio@body"}
    cfg = space.sample(
        optuna.trial.FixedTrial({"pruning.ratio": 0.1, "pruning.ratio@stem": 0.2, "pruning.ratio@body": 0.5})
    )
    assert cfg.groups == {"features.0": 0.2, "features.3,features.6": 0.5}
    assert cfg.ratio_of("features.6") == 0.5 and cfg.ratio_of("head") == 0.1
    assert space.identity().is_identity
    assert space.identity_params() == {"pruning.ratio": 0.0, "pruning.ratio@stem": 0.0, "pruning.ratio@body": 0.0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"importance": "random"}, "importance"),
        ({"scope": "model"}, "scope"),
        ({"groups": {"": 0.5}}, "pattern"),
        ({"groups": {"layer1": 1.0}}, "group 'layer1'"),
        ({"protect": "stem"}, "protect"),
    ],
)
def test_bad_pruning_values_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PruningConfig(ratio=0.1, **kwargs)
