from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from tradeoff.search import SAMPLERS, choose_sampler, make_sampler
from tradeoff.search.samplers import GP_MAX_TRIALS, LARGE_BUDGET
from tradeoff.spaces import DistillationSpace, PruningSpace, QuantizationSpace, RecipeSpace

NUMERIC = {"pruning.ratio": FloatDistribution(0, 0.8), "distillation.alpha": FloatDistribution(0, 1)}
WITH_BITS = {**NUMERIC, "quantization.weight_bits": CategoricalDistribution([4, 8, 32])}


def test_numeric_knobs_and_a_small_budget_get_a_gaussian_process() -> None:
    assert choose_sampler(NUMERIC, 30).name == "gp"
    assert choose_sampler(NUMERIC, GP_MAX_TRIALS + 1).name == "tpe"  # a GP would cost more than a trial


def test_categorical_knobs_get_tpe_and_the_reason_names_them() -> None:
    choice = choose_sampler(WITH_BITS, 30)
    assert choice.name == "tpe" and "quantization.weight_bits" in choice.reason
    assert choose_sampler(NUMERIC, 30, conditional=True).name == "tpe"


def test_large_budgets_get_a_genetic_algorithm() -> None:
    assert choose_sampler(WITH_BITS, LARGE_BUDGET).name == "nsga3"
    assert choose_sampler(NUMERIC, LARGE_BUDGET - 1).name == "tpe"


def test_the_default_space_has_bit_width_categories_so_auto_is_tpe() -> None:
    assert choose_sampler(RecipeSpace().distributions(), 30).name == "tpe"
    numeric = RecipeSpace(
        PruningSpace(), QuantizationSpace(weight_bits=(8,), activation_bits=(8,)), DistillationSpace()
    )
    assert choose_sampler(numeric.distributions(), 30).name == "gp"


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_is_seeded(name: str) -> None:
    def suggestions(seed: int) -> list[float]:
        study = optuna.create_study(directions=["minimize"] * 2, sampler=make_sampler(name, seed=seed))
        xs = []
        for _ in range(4):
            t = study.ask()
            xs.append(t.suggest_float("x", 0, 1))
            study.tell(t, [xs[-1], (1 - xs[-1]) ** 2])
        return xs

    assert suggestions(1) == suggestions(1) != suggestions(2)


def test_an_unknown_sampler_is_an_error_that_lists_the_names() -> None:
    with pytest.raises(ValueError, match="tpe, gp, nsga2, nsga3, random"):
        make_sampler("cmaes")


def test_tpe_steers_away_from_trials_other_workers_are_running() -> None:
    # Workers share one study; without constant_liar a TPE sampler that sees the best region
    # already taken by running trials would suggest it again. With it, those running trials count
    # as bad results until they end, so the next suggestion lands elsewhere.
    def next_x(constant_liar: bool, seed: int) -> float:
        sampler = make_sampler("tpe", seed=seed)
        if not constant_liar:
            sampler._constant_liar = False  # the same sampler otherwise, for the comparison
        study = optuna.create_study(directions=["minimize"] * 2, sampler=sampler)
        for x in [i / 19 for i in range(20)]:  # good results near x = 0.1
            study.enqueue_trial({"x": x})
            t = study.ask()
            v = t.suggest_float("x", 0, 1)
            study.tell(t, [abs(v - 0.1), abs(v - 0.1) ** 2])
        for x in (0.08, 0.09, 0.1, 0.11, 0.12):  # other workers are running these
            study.enqueue_trial({"x": x})
            study.ask().suggest_float("x", 0, 1)
        return study.ask().suggest_float("x", 0, 1)

    lied = [abs(next_x(True, seed) - 0.1) for seed in range(12)]
    plain = [abs(next_x(False, seed) - 0.1) for seed in range(12)]
    assert all(a >= b for a, b in zip(lied, plain)), (lied, plain)  # never closer to the taken region
    assert sum(a > b for a, b in zip(lied, plain)) >= 4, (lied, plain)  # and often farther from it


def test_the_factory_builds_exactly_the_samplers_the_spec_names() -> None:
    from tradeoff.search.samplers import _FACTORIES
    from tradeoff.studies import SAMPLER_NAMES

    assert SAMPLERS == SAMPLER_NAMES and set(_FACTORIES) == set(SAMPLER_NAMES)
    for name in SAMPLER_NAMES:
        assert isinstance(make_sampler(name, seed=0), optuna.samplers.BaseSampler)


def test_balanced_start_makes_tpe_balance_its_start_up_and_leaves_other_samplers_alone() -> None:
    from tradeoff.search import sampler_for
    from tradeoff.search.balanced import BalancedStartTPESampler
    from tradeoff.studies import demo_spec

    spec = demo_spec()
    assert spec.search.balanced_start  # the default
    sampler, choice = sampler_for(spec, spec.recipe_space())
    assert isinstance(sampler, BalancedStartTPESampler) and choice.name == "tpe"
    assert "balance" in choice.reason
    plain = spec.model_copy(update={"search": spec.search.model_copy(update={"balanced_start": False})})
    sampler, choice = sampler_for(plain, plain.recipe_space())
    assert type(sampler) is optuna.samplers.TPESampler and "balance" not in choice.reason
    nsga = spec.model_copy(update={"study": spec.study.model_copy(update={"sampler": "nsga2"})})
    assert type(sampler_for(nsga, nsga.recipe_space())[0]) is optuna.samplers.NSGAIISampler
