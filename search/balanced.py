"""TPE whose random start-up trials balance the categorical knobs instead of drawing them independently.

Why: multivariate TPE never proposes a combination of categories it has not seen, and Optuna counts the
baseline and the enqueued warm starts among its ``n_startup_trials``. On the demo space that leaves 4
random trials for 6 (weight, activation) width pairs, and the warm starts are all 8-bit weights: in about
half the runs no trial ever tried ``w4a8``, which runs as fast as ``w8a8`` at half the size and holds the
small end of the front (docs/BENCHMARKS.md, issue 25). Drawing the start-up trials' categories as a
balanced design instead of independently puts every pair in the start-up whenever there are enough
trials, at no extra trial: the numeric knobs stay uniformly random and TPE itself is unchanged.

The rule, for a start-up trial: each categorical knob, in the order the objective asks for it, takes the
value seen least often among the earlier trials (any state, running ones included, so two workers do not
pick the same pair) that agree with this trial's categorical values so far; ties go to the value seen
least often overall, then to a seeded random draw. Asked weight bits then activation bits, this visits
every (weight, activation) pair before it repeats one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

__all__ = ["BalancedStartTPESampler"]

_STARTUP_STATES = (TrialState.COMPLETE, TrialState.PRUNED)  # what TPESampler counts towards its start-up


class BalancedStartTPESampler(optuna.samplers.TPESampler):
    """:class:`optuna.samplers.TPESampler` with a balanced design for the start-up trials' categorical knobs.

    Every argument is :class:`~optuna.samplers.TPESampler`'s; only the start-up trials' categorical values
    change (module docstring).

    Example:
        >>> sampler = BalancedStartTPESampler(seed=0, multivariate=True)
        >>> study = optuna.create_study(sampler=sampler)
        >>> study.optimize(lambda t: t.suggest_categorical("w", [2, 4, 8]) + t.suggest_float("x", 0, 1), n_trials=6)
        >>> sorted(t.params["w"] for t in study.trials)
        [2, 2, 4, 4, 8, 8]
    """

    def __init__(self, *, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(seed=seed, **kwargs)
        self._balance_rng = np.random.default_rng(seed)

    def reseed_rng(self) -> None:
        super().reseed_rng()
        self._balance_rng = np.random.default_rng()

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        if not isinstance(param_distribution, CategoricalDistribution) or len(param_distribution.choices) < 2:
            return super().sample_independent(study, trial, param_name, param_distribution)
        done = study._get_trials(deepcopy=False, states=_STARTUP_STATES, use_cache=True)
        if len(done) >= self._n_startup_trials:  # TPE's own phase: nothing changes
            return super().sample_independent(study, trial, param_name, param_distribution)
        others = [t for t in study._get_trials(deepcopy=False, use_cache=False) if t.number != trial.number]
        return self.balanced_choice(others, trial, param_name, param_distribution)

    def balanced_choice(
        self, others: list[FrozenTrial], trial: FrozenTrial, name: str, dist: CategoricalDistribution
    ) -> Any:
        """The value of ``name`` seen least among ``others`` that agree with ``trial``'s categories so far.

        Example:
            >>> d = CategoricalDistribution([4, 8])
            >>> seen = optuna.trial.create_trial(params={"w": 8}, distributions={"w": d}, value=0.0)
            >>> now = optuna.trial.create_trial(state=TrialState.RUNNING)
            >>> BalancedStartTPESampler(seed=0).balanced_choice([seen], now, "w", d)
            4
        """
        fixed = {
            n: v
            for n, v in trial.params.items()
            if n != name and isinstance(trial.distributions.get(n), CategoricalDistribution)
        }
        agree = [t for t in others if all(t.params.get(n, _MISSING) == v for n, v in fixed.items())]

        def count(pool: list[FrozenTrial], value: Any) -> int:
            return sum(1 for t in pool if name in t.params and t.params[name] == value)

        keys = [(count(agree, c), count(others, c)) for c in dist.choices]
        least = min(keys)
        tied = [c for c, k in zip(dist.choices, keys, strict=True) if k == least]
        return tied[int(self._balance_rng.integers(len(tied)))]


_MISSING = object()  # a knob an earlier trial did not have (conditional spaces): it never agrees
