from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tradeoff.objectives import evaluate
from tradeoff.spaces import (
    ApplyContext,
    DistillationConfig,
    PruningConfig,
    cache_teacher_outputs,
    distillation_loss,
    materialise,
)


def test_loss_matches_the_formula() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    T, a = 3.0, 0.7
    p_t = F.softmax(t / T, dim=-1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / T, dim=-1))).sum(-1).mean()
    expected = (1 - a) * F.cross_entropy(s, y) + a * T * T * kl
    assert torch.allclose(distillation_loss(s, t, y, T, a), expected, atol=1e-6)
    assert torch.allclose(distillation_loss(s, t, y, T, 0.0), F.cross_entropy(s, y))


def test_teacher_outputs_are_cached_per_batch(tiny_cnn, tiny_batches) -> None:
    cached = cache_teacher_outputs(tiny_cnn, tiny_batches)
    assert len(cached) == len(tiny_batches)
    with torch.no_grad():
        assert torch.equal(cached[2], tiny_cnn(tiny_batches[2][0]))


def test_distillation_recovers_accuracy_of_a_pruned_student(digits_task) -> None:
    train = materialise(digits_task.train)
    ctx = ApplyContext(
        example_inputs=digits_task.example_inputs,
        train=train,
        teacher_logits=cache_teacher_outputs(digits_task.model, train),
        seed=0,
    )
    import copy

    pruned = PruningConfig(ratio=0.7).apply_(copy.deepcopy(digits_task.model), ctx)
    before = evaluate(pruned, digits_task.val)
    tuned = DistillationConfig(temperature=4.0, alpha=0.7, steps=150).apply_(pruned, ctx)
    after = evaluate(tuned, digits_task.val)
    assert after > before + 0.02
    assert after >= 0.9


def test_soft_loss_needs_cached_teacher_outputs(tiny_cnn, tiny_batches) -> None:
    with pytest.raises(ValueError, match="cache_teacher_outputs"):
        DistillationConfig(alpha=0.5, steps=1).apply_(tiny_cnn, ApplyContext((), train=tiny_batches))
    DistillationConfig(alpha=0.0, steps=2).apply_(tiny_cnn, ApplyContext((), train=tiny_batches))  # labels only


@pytest.mark.parametrize("kwargs", [{"temperature": 0.0}, {"alpha": 1.5}, {"steps": -1}, {"steps": 2.5}, {"lr": 0.0}])
def test_bad_values_are_rejected(kwargs) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        DistillationConfig(**kwargs)
