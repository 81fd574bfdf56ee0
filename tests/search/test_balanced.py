from __future__ import annotations

import itertools
import warnings

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from tradeoff.search.balanced import BalancedStartTPESampler

W, A = (4, 8, 32), (8, 32)


def _sampler(**kwargs: object) -> BalancedStartTPESampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return BalancedStartTPESampler(multivariate=True, **kwargs)  # type: ignore[arg-type]


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    w = trial.suggest_categorical("quantization.weight_bits", W)
    a = trial.suggest_categorical("quantization.activation_bits", A)
    r = trial.suggest_float("pruning.ratio", 0.0, 0.8)
    return -(r + w / 32), w * a * (1 - r)


def _pairs(study: optuna.Study) -> list[tuple[int, int]]:
    return [(t.params["quantization.weight_bits"], t.params["quantization.activation_bits"]) for t in study.trials]


@pytest.mark.parametrize("seed", range(5))
def test_the_start_up_visits_every_width_pair_before_repeating_one(seed: int) -> None:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=_sampler(seed=seed))
    study.optimize(_objective, n_trials=6)
    assert sorted(_pairs(study)) == sorted(itertools.product(W, A))


@pytest.mark.parametrize("seed", range(5))
def test_enqueued_trials_count_so_the_start_up_fills_the_pairs_they_miss(seed: int) -> None:
    """The tradeoff case: warm starts (8-bit weights) take start-up places; the rest must cover the others."""
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=_sampler(seed=seed))
    for a in A:
        study.enqueue_trial({"quantization.weight_bits": 8, "quantization.activation_bits": a, "pruning.ratio": 0.4})
    study.optimize(_objective, n_trials=6)
    assert sorted(_pairs(study)) == sorted(itertools.product(W, A))


def test_independent_draws_miss_pairs_that_the_balanced_start_covers() -> None:
    """What the change is for: plain TPE's independent start-up misses a pair for some seed (checked, not assumed)."""
    missed = 0
    for seed in range(10):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            plain = optuna.samplers.TPESampler(seed=seed, multivariate=True)
        study = optuna.create_study(directions=["minimize", "minimize"], sampler=plain)
        study.optimize(_objective, n_trials=6)
        missed += len(set(itertools.product(W, A)) - set(_pairs(study))) > 0
    assert missed > 0


def test_after_the_start_up_tpe_decides_and_the_seed_reproduces_the_run() -> None:
    runs = []
    for _ in range(2):
        study = optuna.create_study(directions=["minimize", "minimize"], sampler=_sampler(seed=3, n_startup_trials=6))
        study.optimize(_objective, n_trials=14)
        runs.append([t.params for t in study.trials])
    assert runs[0] == runs[1]
    later = [tuple(p[k] for k in ("quantization.weight_bits", "quantization.activation_bits")) for p in runs[0][6:]]
    assert len(set(later)) < len(later)  # TPE repeats the pairs it models as good: no longer a balanced design


def test_a_running_trial_counts_so_two_workers_do_not_take_the_same_pair() -> None:
    sampler = _sampler(seed=0)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    first = study.ask()
    taken = (
        first.suggest_categorical("quantization.weight_bits", W),
        first.suggest_categorical("quantization.activation_bits", A),
    )
    second = study.ask()  # the first is still running
    other = (
        second.suggest_categorical("quantization.weight_bits", W),
        second.suggest_categorical("quantization.activation_bits", A),
    )
    assert other != taken and other[0] != taken[0]  # the weight seen least overall is taken first


def test_a_trial_without_the_knob_never_counts_as_agreeing() -> None:
    d = CategoricalDistribution(A)
    w = CategoricalDistribution(W)
    without = optuna.trial.create_trial(
        params={"quantization.activation_bits": 8}, distributions={"quantization.activation_bits": d}, value=0.0
    )
    now = optuna.trial.create_trial(
        state=TrialState.RUNNING, params={"quantization.weight_bits": 4}, distributions={"quantization.weight_bits": w}
    )
    # the earlier trial had no weight knob: it does not agree with w=4, so a=8 is still unseen for w=4,
    # and the tie between 8 and 32 is broken by the overall count, where 8 was seen once
    assert _sampler(seed=0).balanced_choice([without], now, "quantization.activation_bits", d) == 32
