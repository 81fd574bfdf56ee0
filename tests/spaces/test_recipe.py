from __future__ import annotations

import pytest
import torch

from tradeoff.spaces import (
    ApplyContext,
    Compression,
    DistillationConfig,
    PruningConfig,
    QuantizationConfig,
    Recipe,
    cache_teacher_outputs,
    compress,
)


def _recipe() -> Recipe:
    return Recipe(
        pruning=PruningConfig(ratio=0.5),
        quantization=QuantizationConfig(weight_bits=4, activation_bits=8),
        distillation=DistillationConfig(temperature=2.0, alpha=0.5, steps=10),
    )


def test_json_round_trip_is_exact() -> None:
    r = _recipe()
    assert Recipe.from_json(r.to_json()) == r
    assert r.to_dict()["format"] == "tradeoff.recipe/1"


def test_wrong_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="format"):
        Recipe.from_dict({**_recipe().to_dict(), "format": "other/9"})


def test_compress_leaves_the_original_untouched_and_is_reproducible(tiny_cnn, tiny_batches) -> None:
    x = tiny_batches[0][0]
    ref = tiny_cnn(x).detach()
    ctx = ApplyContext(
        (x[:1],), train=tiny_batches, teacher_logits=cache_teacher_outputs(tiny_cnn, tiny_batches), seed=7
    )
    a = compress(_recipe(), tiny_cnn, ctx)
    b = compress(_recipe(), tiny_cnn, ctx)
    assert torch.equal(tiny_cnn(x), ref)
    assert torch.equal(a.scored(x), b.scored(x))
    assert a.deployable.form == "int8" and a.activation_bits == 8  # 4-bit weights execute as int8 codes
    assert a.deployable.module(x[:1]).shape == a.scored(x[:1]).shape
    assert set(a.weight_bits.values()) == {4}
    assert set(a.seconds) == {"prune", "quantize", "distil", "deploy"}
    plain = compress(_recipe(), tiny_cnn, ctx, deploy=False)  # export and apply need no timing
    assert plain.deployable.form == "fp32" and torch.equal(plain.scored(x), a.scored(x))


def test_staged_compression_with_a_snapshot_and_pauses_builds_the_model_compress_builds(tiny_cnn, tiny_batches) -> None:
    """A trial snapshots (bakes a copy and deploys it) before fine-tuning and pauses at rungs; neither
    may change the model, or an export rebuilt with ``compress`` would not match the trial."""
    x = tiny_batches[0][0]
    ctx = ApplyContext(
        (x[:1],), train=tiny_batches, teacher_logits=cache_teacher_outputs(tiny_cnn, tiny_batches), seed=3
    )
    recipe = Recipe(
        pruning=PruningConfig(ratio=0.25, kind="unstructured"),
        quantization=QuantizationConfig(weight_bits=4, activation_bits=8),
        distillation=DistillationConfig(temperature=2.0, alpha=0.5, steps=9),
    )
    whole = compress(recipe, tiny_cnn, ctx, deploy=False).scored
    stages = Compression(recipe, tiny_cnn, ctx)
    baked, deployed = stages.snapshot()
    assert deployed.form == "int8" and baked(x).shape == (16, 3)
    stages.distil_to(2)
    stages.distil_to(5)
    assert stages.steps_done == 5
    staged = stages.finish()
    assert stages.steps_done == 9
    assert torch.equal(staged(x), whole(x))
    assert not torch.equal(baked(x), staged(x))  # the snapshot is of the model before fine-tuning


def test_baking_a_copy_leaves_the_original_parametrized_model_working(tiny_cnn, tiny_batches) -> None:
    import copy

    cfg = QuantizationConfig(weight_bits=4)
    model = cfg.apply_(copy.deepcopy(tiny_cnn), ApplyContext((tiny_batches[0][0],), train=tiny_batches))
    before = model(tiny_batches[0][0])
    cfg.bake_(copy.deepcopy(model))
    assert torch.equal(model(tiny_batches[0][0]), before)  # still fake-quantized, weights intact
