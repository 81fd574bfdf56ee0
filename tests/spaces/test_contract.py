"""The contract every space and config keeps: sample from any trial, round-trip, apply, identity."""

from __future__ import annotations

import json

import optuna
import pytest
import torch

from tradeoff.spaces import (
    ApplyContext,
    Config,
    DistillationSpace,
    PruningSpace,
    QuantizationSpace,
    RecipeSpace,
    Space,
    cache_teacher_outputs,
)

SPACES: dict[str, Space] = {
    "pruning": PruningSpace(ratio=(0.1, 0.6)),
    "quantization": QuantizationSpace(weight_bits=(2, 4, 8), activation_bits=(8, 32)),
    "distillation": DistillationSpace(temperature=(1.0, 8.0), alpha=(0.0, 1.0), steps=5, lr=1e-3),  # a rate fixed
}


@pytest.fixture(params=sorted(SPACES))
def space(request: pytest.FixtureRequest) -> Space:
    return SPACES[request.param]


def _sampled(space: Space, seed: int = 0) -> Config:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return space.sample(study.ask())


def test_sample_stays_in_ranges_and_names_params_by_technique(space: Space) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        config = space.sample(trial)
        assert all(name.startswith(config.technique + ".") for name in trial.params)
        for name, value in trial.params.items():
            assert trial.distributions[name]._contains(trial.distributions[name].to_internal_repr(value))
        study.tell(trial, 0.0)


def test_fixed_trial_reproduces_a_sampled_config(space: Space) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    trial = study.ask()
    config = space.sample(trial)
    assert space.sample(optuna.trial.FixedTrial(trial.params)) == config


def test_config_json_round_trip_is_exact(space: Space) -> None:
    config = _sampled(space)
    text = json.dumps(config.to_dict())
    assert type(config).from_dict(json.loads(text)) == config
    assert json.loads(text)["version"] == type(config).version


def test_from_dict_rejects_other_versions_and_unknown_fields(space: Space) -> None:
    config = _sampled(space)
    with pytest.raises(ValueError, match="version"):
        type(config).from_dict({**config.to_dict(), "version": 99})
    with pytest.raises(ValueError, match="unknown field"):
        type(config).from_dict({**config.to_dict(), "bogus": 1})


def test_configs_are_frozen(space: Space) -> None:
    config = _sampled(space)
    with pytest.raises(AttributeError):
        config.version_note = 1  # type: ignore[attr-defined]
    field = next(iter(config.to_dict().keys() - {"version"}))
    with pytest.raises(AttributeError):
        setattr(config, field, None)


def test_identity_leaves_the_model_unchanged(space: Space, tiny_cnn, tiny_batches) -> None:
    x = tiny_batches[0][0]
    before = tiny_cnn(x)
    ctx = ApplyContext(example_inputs=(x,), train=tiny_batches, seed=0)
    after = space.identity().apply_(tiny_cnn, ctx)(x)
    assert torch.equal(before, after)


def test_apply_keeps_the_output_shape(space: Space, tiny_cnn, tiny_batches) -> None:
    x = tiny_batches[0][0]
    ctx = ApplyContext(
        example_inputs=(x,), train=tiny_batches, teacher_logits=cache_teacher_outputs(tiny_cnn, tiny_batches), seed=0
    )
    model = _sampled(space, seed=5).apply_(tiny_cnn, ctx)
    assert model(x).shape == (16, 3)


def test_recipe_space_samples_every_technique() -> None:
    space = RecipeSpace(**SPACES)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    recipe = space.sample(trial)
    techniques = {name.split(".")[0] for name in trial.params}
    assert techniques == {"pruning", "quantization", "distillation"}
    assert recipe.pruning.ratio == round(trial.params["pruning.ratio"], 2)  # rounded: duplicates are one recipe
