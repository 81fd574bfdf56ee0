"""Which Optuna sampler a study uses: by name, or ``auto`` from the space and the budget.

``auto`` weighs what each sampler is good at against what it costs here (docs/DESIGN.md, measured on
a 2-core CPU with 4 objectives and ~30 trials: GPSampler ~2.4 s a suggestion, TPE ~9 ms,
NSGA-II ~1 ms; a ``digits`` trial takes 2-5 s):

* numeric knobs only and a small budget -> ``gp``: a Gaussian process makes the most of few
  trials, and its suggestion cost stays below a trial's up to ~60 trials;
* categorical (bit-widths, pruning kind) or conditional knobs -> ``tpe``: it models categories
  directly, where a GP relaxes them to numbers; multivariate, so knobs are modelled jointly;
* a large budget -> ``nsga3``: a genetic algorithm costs nothing per suggestion, and with its
  population of 50 a few hundred trials are many generations; NSGA-III's reference directions
  keep a 4-objective front spread out where NSGA-II's crowding distance does not.

``exact`` (:mod:`tradeoff.search.exact`) is chosen by name only: it computes size and energy for each
candidate and models accuracy, and with one worker it needed fewer trials than TPE on two tasks
(docs/BENCHMARKS.md, issue 25); its two-worker behaviour is not measured yet, so ``auto`` does not pick it.

Every sampler is seeded, and every one honours the trials' constraints (``trial.set_constraint``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution

from tradeoff.spaces import RecipeSpace
from tradeoff.studies import SAMPLER_NAMES, Spec

from .balanced import BalancedStartTPESampler
from .exact import ExactSampler

SAMPLERS: tuple[str, ...] = SAMPLER_NAMES  # the spec is the home of the names (studies cannot import search)
GP_MAX_TRIALS = 60  # beyond this a GP suggestion (cubic in trials) costs more than a small trial
LARGE_BUDGET = 300  # from here a genetic algorithm has 6+ generations of 50 and costs nothing to ask


@dataclass(frozen=True)
class SamplerChoice:
    """The sampler a study runs with and why (stored on the study).

    Example:
        >>> choose_sampler({"x": optuna.distributions.FloatDistribution(0, 1)}, n_trials=30).name
        'gp'
    """

    name: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason}


def choose_sampler(
    distributions: Mapping[str, BaseDistribution], n_trials: int, *, conditional: bool = False
) -> SamplerChoice:
    """The sampler ``auto`` picks for a space (its knobs' distributions) and a budget.

    Example:
        >>> cat = {"bits": optuna.distributions.CategoricalDistribution([4, 8])}
        >>> choose_sampler(cat, n_trials=40).name, choose_sampler(cat, n_trials=500).name
        ('tpe', 'nsga3')
    """
    categorical = sorted(n for n, d in distributions.items() if isinstance(d, CategoricalDistribution))
    if n_trials >= LARGE_BUDGET:
        return SamplerChoice("nsga3", f"{n_trials} trials >= {LARGE_BUDGET}: a genetic algorithm costs ~1 ms to ask")
    if categorical or conditional:
        what = f"categorical knobs ({', '.join(categorical)})" if categorical else "conditional knobs"
        return SamplerChoice("tpe", f"{what}: TPE models them directly")
    if n_trials <= GP_MAX_TRIALS:
        return SamplerChoice("gp", f"numeric knobs only and {n_trials} trials <= {GP_MAX_TRIALS}")
    return SamplerChoice("tpe", f"numeric knobs, {n_trials} trials: too many for a GP to stay cheap")


# how each named sampler is built, seeded; keyed by exactly the spec's SAMPLER_NAMES (a test checks)
_FACTORIES: dict[str, Callable[[int | None], optuna.samplers.BaseSampler]] = {
    # constant_liar: a trial another worker is running counts as a bad result until it ends, so
    # parallel workers do not ask for the same region (no effect with one worker)
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed),
    "nsga3": lambda seed: optuna.samplers.NSGAIIISampler(seed=seed),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    # size and energy computed for each candidate, accuracy from a GP (search/exact.py); opt-in for now
    "exact": lambda seed: ExactSampler(seed=seed),
}


def make_sampler(name: str, *, seed: int | None = None, balanced_start: bool = False) -> optuna.samplers.BaseSampler:
    """The named sampler, seeded (``name`` is one of :data:`SAMPLERS`).

    Args:
        name: One of :data:`SAMPLERS`.
        seed: Seeds the sampler.
        balanced_start: With ``tpe``, :class:`BalancedStartTPESampler` (``[search] balanced_start``): the
            same TPE, its start-up trials' categorical knobs drawn as a balanced design. Others ignore it.

    Example:
        >>> type(make_sampler("nsga2", seed=0)).__name__
        'NSGAIISampler'
        >>> type(make_sampler("tpe", seed=0, balanced_start=True)).__name__
        'BalancedStartTPESampler'
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)} (or 'auto').")
    with warnings.catch_warnings():  # multivariate TPE is experimental in name only; it is Optuna's advice
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe" and balanced_start:  # the "tpe" factory's arguments: only the start-up's categories differ
            return BalancedStartTPESampler(seed=seed, multivariate=True, constant_liar=True)
        return factory(seed)


def sampler_for(spec: Spec, space: RecipeSpace) -> tuple[optuna.samplers.BaseSampler, SamplerChoice]:
    """The spec's sampler, seeded; ``auto`` chooses from the space's knobs and the budget.

    With ``[search] balanced_start`` (the default), ``tpe`` is :class:`BalancedStartTPESampler`: the same
    TPE, with the start-up trials' categorical knobs drawn as a balanced design (search/balanced.py).

    Example:
        >>> from tradeoff.studies import demo_spec
        >>> spec = demo_spec()
        >>> sampler, choice = sampler_for(spec, spec.recipe_space())
        >>> type(sampler).__name__, choice.name
        ('BalancedStartTPESampler', 'tpe')
    """
    name = spec.study.sampler
    if name == "auto":
        choice = choose_sampler(space.distributions(), spec.study.n_trials)
    else:
        choice = SamplerChoice(name, "named in the spec")
    balanced = spec.search.balanced_start
    if choice.name == "tpe" and balanced:
        choice = SamplerChoice("tpe", f"{choice.reason}; start-up trials balance the categorical knobs")
    return make_sampler(choice.name, seed=spec.study.seed, balanced_start=balanced), choice
