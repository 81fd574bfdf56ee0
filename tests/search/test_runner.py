from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tradeoff.search import Runner, StudyMismatch
from tradeoff.search import runner as runner_module
from tradeoff.search.runner import INTERRUPTED
from tradeoff.studies import parse_spec, record

USER_TASK = "tests.studies.user_task:make_task"


def _spec(name: str = "s", **study) -> object:
    return parse_spec(
        {
            "study": {"name": name, "n_trials": 3, "seed": 0, **study},
            "task": {"name": USER_TASK},
            "space": {"distillation": {"steps": 10}},
        }
    )


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


def test_trial_zero_is_the_baseline_and_every_figure_is_stored(url: str) -> None:
    events = []
    study = Runner(_spec(), url, on_event=events.append).run()
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert trials[0].user_attrs[record.ROLE] == "baseline" and trials[0].params["pruning.ratio"] == 0.0
    assert all(t.user_attrs[record.ROLE] == "candidate" for t in trials[1:])
    assert set(trials[1].params) >= {"pruning.ratio", "quantization.weight_bits", "distillation.alpha"}
    assert study.metric_names == ["accuracy", "size_bytes", "latency_ms", "energy_mj"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE", "MINIMIZE"]
    for t in trials:
        assert set(record.TRIAL_KEYS) - {record.ERROR} <= set(t.user_attrs)
    assert study.user_attrs[record.STUDY_FORMAT_KEY] == "tradeoff.study/1"
    assert [e.done for e in events] == [1, 2, 3]


def test_relaunch_resumes_the_same_study(url: str) -> None:
    Runner(_spec(), url).run()
    first = optuna.load_study(study_name="s", storage=url).get_trials()
    study = Runner(_spec(), url, n_trials=5).run()
    trials = study.get_trials()
    assert len(trials) == 5
    assert [t.values for t in trials[:3]] == [t.values for t in first]
    assert sum(t.user_attrs[record.ROLE] == "baseline" for t in trials) == 1
    assert len(Runner(_spec(), url, n_trials=5).run().get_trials()) == 5  # nothing left to do


def test_a_different_spec_under_the_same_name_is_refused(url: str) -> None:
    Runner(_spec(), url, n_trials=1).run()
    with pytest.raises(StudyMismatch, match="different spec"):
        Runner(_spec(seed=5), url).run()


def _raise_on_second_trial(monkeypatch, exc: BaseException) -> None:
    """Make the second evaluated recipe raise ``exc``; every other one runs for real."""
    real = runner_module.evaluate_recipe
    calls = {"n": 0}

    def evaluate(recipe, env, *, seed=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise exc
        return real(recipe, env, seed=seed)

    monkeypatch.setattr(runner_module, "evaluate_recipe", evaluate)


def test_a_failing_recipe_fails_its_trial_and_the_study_goes_on(url: str, monkeypatch) -> None:
    _raise_on_second_trial(monkeypatch, RuntimeError("torch-pruning cannot trace this op"))
    study = Runner(_spec(), url, n_trials=4).run()
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.trials[1].user_attrs[record.ERROR] == "RuntimeError: torch-pruning cannot trace this op"


def test_a_model_pruning_cannot_handle_fails_its_trials_with_the_reason(url: str) -> None:
    spec = parse_spec(
        {
            "study": {"name": "fixed", "n_trials": 3, "seed": 0, "sampler": "random"},
            "task": {"name": "tests.studies.user_task:make_fixed_width_task"},
            "space": {"pruning": {"ratio": [0.3, 0.5]}, "distillation": {"steps": 5}},
        }
    )
    study = Runner(spec, url).run()
    states = [t.state for t in study.get_trials()]
    assert states[0] == TrialState.COMPLETE  # the baseline prunes nothing
    assert states[1:] == [TrialState.FAIL, TrialState.FAIL]
    error = study.trials[1].user_attrs[record.ERROR]
    assert error.startswith("ValueError: structured pruning left _FixedWidthNet unable to run")
    assert "space.pruning.protect" in error


def test_interrupted_trials_are_failed_and_redone(url: str, monkeypatch) -> None:
    real = runner_module.evaluate_recipe
    _raise_on_second_trial(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        Runner(_spec(), url).run()
    study = optuna.load_study(study_name="s", storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert study.trials[1].user_attrs[record.ERROR] == INTERRUPTED
    monkeypatch.setattr(runner_module, "evaluate_recipe", real)
    study = Runner(_spec(), url).run()
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 3  # the interrupted one did not count


def test_a_trial_left_running_by_a_dead_process_is_failed_on_resume(url: str) -> None:
    Runner(_spec(), url, n_trials=1).run()
    study = optuna.load_study(study_name="s", storage=url)
    study.ask()  # a trial that a killed process never told
    Runner(_spec(), url, n_trials=2).run()
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs[record.ERROR] == INTERRUPTED
    assert trials[2].state == TrialState.COMPLETE


@pytest.mark.parametrize("sampler", ["auto", "tpe", "gp", "nsga2", "random"])
def test_every_named_sampler_runs_seeded(sampler: str, url: str) -> None:
    spec = _spec(sampler=sampler)
    assert isinstance(runner_module.make_sampler(spec), optuna.samplers.BaseSampler)
    a = Runner(_spec("a", sampler=sampler), url, n_trials=2).run().trials[1].params
    b = Runner(_spec("b", sampler=sampler), url, n_trials=2).run().trials[1].params
    assert a == b


def test_the_spec_chooses_the_complexity_objective(url: str) -> None:
    spec = parse_spec(
        {
            "study": {"name": "b", "n_trials": 2},
            "task": {"name": USER_TASK},
            "space": {"distillation": {"steps": 5}},
            "objectives": {"complexity": "bops"},
        }
    )
    study = Runner(spec, url).run()
    assert study.metric_names == ["accuracy", "bops", "latency_ms", "energy_mj"]
    base = study.trials[0]
    assert base.values[1] == base.user_attrs[record.FIGURES]["bops"]
    assert "size_bytes" in base.user_attrs[record.FIGURES]  # the others are stored on every trial
    from tradeoff.studies import ranked_front

    assert all("bops" in e.values for e in ranked_front(study))


def test_the_baseline_describes_itself_in_the_samplers_space(url: str) -> None:
    study = Runner(_spec(), url).run()
    base = study.trials[0]
    assert base.params == {
        "pruning.ratio": 0.0,
        "quantization.weight_bits": 32,
        "quantization.activation_bits": 32,
        "distillation.temperature": 1.0,
        "distillation.alpha": 0.0,
    }
    recipe = base.user_attrs[record.RECIPE]
    assert recipe["distillation"]["steps"] == 0 and recipe["pruning"]["ratio"] == 0.0  # nothing was tuned
    # GP models the parameters every trial shares: the baseline must not empty that set
    shared = optuna.search_space.intersection_search_space(study.get_trials(states=(TrialState.COMPLETE,)))
    assert {"pruning.ratio", "quantization.weight_bits", "distillation.alpha"} <= set(shared)


def test_a_space_without_the_identity_leaves_those_knobs_off_the_baseline(url: str) -> None:
    spec = parse_spec(
        {
            "study": {"name": "narrow", "n_trials": 2},
            "task": {"name": USER_TASK},
            "space": {
                "pruning": {"ratio": [0.2, 0.6]},
                "quantization": {"weight_bits": [4, 8]},
                "distillation": {"steps": 5},
            },
        }
    )
    base = Runner(spec, url).run().trials[0]
    assert "pruning.ratio" not in base.params and "quantization.weight_bits" not in base.params
    assert base.user_attrs[record.RECIPE]["quantization"]["weight_bits"] == 32  # still the uncompressed model
