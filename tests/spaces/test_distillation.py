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


# ----- fine-tuning options for networks trained elsewhere (issue 26)


def test_warmup_cosine_rises_then_decays_to_zero_and_constant_stays() -> None:
    cfg = DistillationConfig(steps=200, lr=1e-3, schedule="warmup_cosine")
    rates = [cfg.lr_at(s) for s in range(200)]
    assert rates[0] == pytest.approx(1e-3 / 20) and max(rates) == pytest.approx(1e-3)
    assert rates.index(max(rates)) == 19  # warm-up: the first 10 % of the steps
    assert all(b <= a for a, b in zip(rates[19:], rates[20:], strict=False)) and rates[-1] < 1e-6
    assert {DistillationConfig(steps=200, lr=1e-3, schedule="constant").lr_at(s) for s in range(200)} == {1e-3}


def test_older_recipes_read_back_with_the_behaviour_they_had() -> None:
    old = {"version": 1, "temperature": 4.0, "alpha": 0.5, "steps": 200, "lr": 0.001}
    cfg = DistillationConfig.from_dict(old)
    assert (cfg.batchnorm, cfg.schedule, cfg.adaptive) == ("train", "constant", False)
    v2 = {**old, "version": 2, "batchnorm": "frozen", "schedule": "warmup_cosine"}
    assert DistillationConfig.from_dict(v2) == DistillationConfig(batchnorm="frozen", schedule="warmup_cosine")
    new = DistillationConfig(lr=3e-4, recovery_lr=2e-3)
    assert DistillationConfig.from_dict(new.to_dict()) == new and new.to_dict()["version"] == 3


def test_auto_settles_protection_near_the_teacher_and_recovery_far_from_it() -> None:
    cfg = DistillationConfig(lr=3e-4, recovery_lr=2e-3)
    near, far = cfg.settled(near=True), cfg.settled(near=False)
    assert (near.batchnorm, near.schedule, near.lr) == ("frozen", "warmup_cosine", 3e-4)
    assert (far.batchnorm, far.schedule, far.lr) == ("train", "constant", 2e-3)
    fixed = DistillationConfig(lr=3e-4, batchnorm="train", schedule="constant")  # nothing left to decide
    assert fixed.settled(near=True) is fixed and fixed.settled(near=False) is fixed
    half = DistillationConfig(lr=3e-4, batchnorm="frozen")  # a fixed part stays as given
    assert (half.settled(near=False).batchnorm, half.settled(near=False).schedule) == ("frozen", "constant")


def test_the_distiller_decides_the_regime_from_the_students_agreement_with_the_teacher(tiny_cnn, tiny_batches) -> None:
    import copy

    from tradeoff.spaces import NEAR_TEACHER, Distiller, teacher_agreement

    logits = cache_teacher_outputs(tiny_cnn, tiny_batches)
    ctx = ApplyContext((), train=tiny_batches, teacher_logits=logits, seed=0)
    cfg = DistillationConfig(steps=3, lr=3e-4)
    same = Distiller(cfg, copy.deepcopy(tiny_cnn), ctx)  # the teacher itself: as near as can be
    assert same.agreement == 1.0 and same.near and same.config.batchnorm == "frozen" and same.config.lr == 3e-4
    wrecked = copy.deepcopy(tiny_cnn)
    with torch.no_grad():
        wrecked.head.weight.copy_(wrecked.head.weight.roll(1, 0))  # every answer moved to the next class
        wrecked.head.bias.copy_(wrecked.head.bias.roll(1, 0))
    agreement = teacher_agreement(wrecked, ctx)
    assert agreement is not None and agreement < NEAR_TEACHER
    far = Distiller(cfg, wrecked, ctx)
    assert far.agreement == agreement and not far.near
    assert (far.config.batchnorm, far.config.schedule, far.config.lr) == ("train", "constant", cfg.recovery_lr)
    assert (
        Distiller(DistillationConfig(alpha=0.0, steps=3), tiny_cnn, ApplyContext((), train=tiny_batches)).near is None
    )


@pytest.mark.parametrize("batchnorm", ["frozen", "train"])
def test_frozen_batchnorm_keeps_its_statistics_while_the_weights_tune(tiny_cnn, tiny_batches, batchnorm) -> None:
    from tradeoff.spaces import Distiller

    bn = tiny_cnn.features[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), tiny_cnn.head.weight.detach().clone())
    cfg = DistillationConfig(alpha=0.0, steps=5, batchnorm=batchnorm)
    ctx = ApplyContext((tiny_batches[0][0][:1],), train=[(x + 3.0, y) for x, y in tiny_batches], seed=0)
    Distiller(cfg, tiny_cnn, ctx).run_to(5)
    kept = torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert kept == (batchnorm == "frozen")
    assert not torch.equal(tiny_cnn.head.weight, before[2])  # the weights tuned either way


def test_the_distiller_records_the_loss_of_every_step(tiny_cnn, tiny_batches) -> None:
    from tradeoff.spaces import Distiller

    d = Distiller(DistillationConfig(alpha=0.0, steps=7), tiny_cnn, ApplyContext((), train=tiny_batches, seed=0))
    d.run_to(3)
    d.run_to(7)
    assert len(d.losses) == 7 and all(v > 0 for v in d.losses)


def test_find_lr_stops_where_steps_start_to_damage_the_network_and_leaves_it_untouched(tiny_batches) -> None:
    from tradeoff.spaces import find_lr
    from tradeoff.spaces.lr_range import RANGE_HIGH, RANGE_KL_LIMIT, RANGE_LOW, RANGE_SAFETY

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    logits = cache_teacher_outputs(net, tiny_batches)
    before = [p.detach().clone() for p in net.parameters()]
    found = find_lr(net, tiny_batches, logits)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))  # a copy took the steps
    assert found.divergence_lr is not None and found.divergence[-1] > RANGE_KL_LIMIT  # it found where damage begins
    assert all(d <= RANGE_KL_LIMIT for d in found.divergence[:-1])  # and stopped there
    assert found.lr == pytest.approx(found.divergence_lr / RANGE_SAFETY) and RANGE_LOW <= found.lr <= RANGE_HIGH
    assert found.as_json()["curve"][0][0] == pytest.approx(RANGE_LOW)


def test_a_space_with_lr_auto_must_be_resolved_before_sampling_and_a_range_is_a_knob() -> None:
    import optuna

    from tradeoff.spaces import DistillationSpace

    fixed = {"distillation.temperature": 2.0, "distillation.alpha": 0.5}
    with pytest.raises(ValueError, match="derived once per study"):
        DistillationSpace(lr="auto").sample(optuna.trial.FixedTrial(fixed))
    assert DistillationSpace(lr="auto").resolved(2e-4).sample(optuna.trial.FixedTrial(fixed)).lr == 2e-4
    assert "distillation.lr" not in DistillationSpace(lr="auto").distributions()
    knob = DistillationSpace(lr=(1e-5, 1e-2))
    dist = knob.distributions()["distillation.lr"]
    assert dist.log and (dist.low, dist.high) == (1e-5, 1e-2)
    assert knob.sample(optuna.trial.FixedTrial({**fixed, "distillation.lr": 0.000123456})).lr == 0.00012
