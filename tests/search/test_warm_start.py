from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tradeoff.search import WarmStarts, warm_start_params
from tradeoff.studies import SpecError, parse_spec

USER_TASK = "tests.studies.user_task:make_task"


def _spec(warm_start, **space) -> object:
    return parse_spec(
        {
            "study": {"name": "w", "n_trials": 4, "seed": 0},
            "task": {"name": USER_TASK},
            "space": {"distillation": {"steps": 8}, **space},
            "search": {"warm_start": warm_start},
        }
    )


def test_auto_warm_starts_are_int8_configs_the_space_holds() -> None:
    spec = _spec("auto")
    params = warm_start_params(spec, spec.recipe_space())
    assert [(p["pruning.ratio"], p["quantization.activation_bits"]) for p in params] == [
        (0.5, 32),
        (0.75, 32),
        (0.25, 32),
        (0.0, 8),
        (0.5, 8),
    ]  # fmt: skip  (weight-only int8 first: no compile, and it wins where int8 kernels do not)
    assert all(p["quantization.weight_bits"] == 8 for p in params)
    no_int8 = _spec(
        "auto", quantization={"weight_bits": [4, 32], "activation_bits": [32]}, pruning={"ratio": [0.0, 0.3]}
    )
    params = warm_start_params(no_int8, no_int8.recipe_space())
    assert [p["pruning.ratio"] for p in params] == [0.25, 0.0]  # 0.5, 0.75 are outside the range, 8 bits not offered
    assert all("quantization.weight_bits" not in p for p in params)


def test_a_listed_warm_start_is_checked_knob_by_knob() -> None:
    bad = _spec([{"pruning.ratio": 0.95}, {"pruning.ratoi": 0.1}])
    with pytest.raises(SpecError) as err:
        WarmStarts.from_spec(bad, bad.recipe_space())
    assert "search.warm_start[0].pruning.ratio: 0.95 is outside" in str(err.value)
    assert "search.warm_start[1].pruning.ratoi: not a knob of this space" in str(err.value)
    good = _spec([{"pruning.ratio": 0.4}])
    assert WarmStarts.from_spec(good, good.recipe_space()).params == ({"pruning.ratio": 0.4},)


def test_warm_starts_are_queued_within_the_budget_the_baseline_leaves() -> None:
    warm = WarmStarts(({"pruning.ratio": 0.1}, {"pruning.ratio": 0.2}, {"pruning.ratio": 0.3}))
    study = optuna.create_study()
    warm.enqueue(study, n_trials=3)  # the baseline and two more
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in queued] == [{"pruning.ratio": 0.1}, {"pruning.ratio": 0.2}]
    warm.enqueue(study, n_trials=3)  # queued once
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 2
