from __future__ import annotations

import contextlib
import json
import os
import socket

import optuna
import pytest
from optuna.trial import TrialState

from tradeoff.search import RungStopping, Runner, StudyMismatch, sampler_for
from tradeoff.search import runner as runner_module
from tradeoff.search.runner import INTERRUPTED
from tradeoff.studies import parse_spec, record

USER_TASK = "tests.studies.user_task:make_task"


def _spec(name: str = "s", *, search: dict | None = None, **study) -> object:
    return parse_spec(
        {
            "study": {"name": name, "n_trials": 3, "seed": 0, **study},
            "task": {"name": USER_TASK},
            "space": {"distillation": {"steps": 10}},
            "search": {"warm_start": [], **(search or {})},  # sampled trials, unless a test asks
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
        assert set(record.TRIAL_KEYS) - set(record.OPTIONAL_TRIAL_KEYS) <= set(t.user_attrs)
    assert study.user_attrs[record.STUDY_FORMAT_KEY] == "tradeoff.study/2"
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

    def evaluate(recipe, env, *, seed=None, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise exc
        return real(recipe, env, seed=seed, **kwargs)

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
    sampler_obj, choice = sampler_for(spec, spec.recipe_space())
    assert isinstance(sampler_obj, optuna.samplers.BaseSampler) and choice.name in ("tpe", "gp", "nsga2", "random")
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


def _fp32_spec(name: str, *, search: dict | None = None, constraints: dict | None = None, **space) -> object:
    """A space with no int8 choice (nothing to compile): quick trials for the search-side tests."""
    return parse_spec(
        {
            "study": {"name": name, "n_trials": 4, "seed": 0, "sampler": "random"},
            "task": {"name": USER_TASK},
            "space": {
                "quantization": {"weight_bits": [4, 32], "activation_bits": [32]},
                "distillation": {"steps": 8},
                **space,
            },
            "search": {"warm_start": [], **(search or {})},
            "constraints": constraints or {},
        }
    )


def test_a_trial_failing_a_cheap_constraint_is_screened_before_fine_tuning(url: str) -> None:
    study = Runner(_fp32_spec("screen", constraints={"max_size_bytes": 10.0}), url).run()
    candidates = study.trials[1:]
    assert [t.state for t in candidates] == [TrialState.COMPLETE] * 3  # the sampler learns from them
    for t in candidates:
        assert t.user_attrs[record.SCREENED] is True
        assert t.constraints["max_size_bytes"] > 0
        assert "distil" not in t.user_attrs[record.SECONDS]  # no fine-tuning was run
        assert 0.0 <= t.values[0] <= 1.0  # its zero-shot accuracy
    assert study.best_trials == [] or all(t.number == 0 for t in study.best_trials)
    # without screening the same trials are fine-tuned
    study = Runner(_fp32_spec("full", search={"screen": False}, constraints={"max_size_bytes": 10.0}), url).run()
    assert not any(t.user_attrs[record.SCREENED] for t in study.trials)
    assert all("distil" in t.user_attrs[record.SECONDS] for t in study.trials[1:])


def test_a_trial_stopped_at_a_rung_is_pruned_with_no_values_and_its_rung_kept(url: str, monkeypatch) -> None:
    asked = []

    def stop_at_second_rung(self, study, trial, env, fraction, values):
        asked.append((trial.number, fraction, values["accuracy"]))
        return fraction == 0.5

    monkeypatch.setattr(RungStopping, "at_rung", stop_at_second_rung)
    study = Runner(_fp32_spec("rungs", search={"rungs": [0.25, 0.5]}), url, n_trials=3).run()
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED]
    assert [(n, f) for n, f, _ in asked] == [(1, 0.25), (1, 0.5), (2, 0.25), (2, 0.5)]
    t = study.trials[1]
    assert t.values is None and t.user_attrs[record.STOPPED] is True
    assert [r["steps"] for r in t.user_attrs[record.RUNGS]] == [2, 4]  # of 8 steps
    assert t.user_attrs[record.RUNGS][1]["accuracy"] == asked[1][2]
    assert t.user_attrs[record.SECONDS]["distil"] > 0


def test_a_stopped_trial_gives_the_sampler_no_constraint_computed_from_its_rung_accuracy(url: str, monkeypatch) -> None:
    monkeypatch.setattr(RungStopping, "at_rung", lambda self, study, trial, env, fraction, values: True)
    limits = {"max_accuracy_drop": 0.0, "max_size_bytes": 1e9}  # any rung accuracy below the teacher's breaks it
    study = Runner(_fp32_spec("rung-limits", search={"rungs": [0.5]}, constraints=limits), url, n_trials=2).run()
    stopped = study.trials[1]
    assert stopped.state == TrialState.PRUNED
    assert set(stopped.constraints) == {"max_size_bytes"}  # exact before tuning; accuracy was a rung's guess
    assert set(study.trials[0].constraints) == {"max_accuracy_drop", "max_size_bytes"}


def test_workers_share_one_study_and_never_overshoot_its_budget(url: str, monkeypatch, tmp_path) -> None:
    from tradeoff.studies import export_bundle

    monkeypatch.delenv("TRADEOFF_WORKERS", raising=False)
    warm = [{"pruning.ratio": 0.5}, {"pruning.ratio": 0.25}]
    spec = _fp32_spec("par", search={"workers": 2, "warm_start": warm})
    runner = Runner(spec, url, n_trials=7)
    assert runner.workers == 2 and runner.workers_reason == "named: 2"
    study = runner.run()
    trials = study.get_trials()
    assert len(trials) == 7 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    workers = [t.user_attrs[record.WORKER] for t in trials]
    here = f"{socket.gethostname()}:{os.getpid()}"
    assert workers[0] == here  # the baseline is measured before the other worker starts
    assert len(set(workers)) == 2  # the forked worker ran trials of the same study
    for params in warm:  # each warm start ran once, whichever worker took it
        assert sum(t.params["pruning.ratio"] == params["pruning.ratio"] for t in trials[1:]) == 1
    seeds = [t.user_attrs[record.SEED] for t in trials]
    assert len(set(seeds)) == len(seeds)  # no two trials applied with the same seed
    theirs = next(
        t for t in trials if t.user_attrs[record.WORKER] != here and t.state == TrialState.COMPLETE
        and not t.user_attrs[record.SCREENED]
    )  # fmt: skip
    config = json.loads(export_bundle(study, tmp_path / "out", rule=str(theirs.number)).read_text())
    assert all(r["ok"] for r in config["rebuilt"])  # the forked worker's model rebuilds like any other trial


def test_one_worker_when_asked_and_in_memory_storage_cannot_be_shared(monkeypatch) -> None:
    from tradeoff.search.workers import MAX_AUTO, resolve_workers
    from tradeoff.studies import SpecError

    monkeypatch.delenv("TRADEOFF_WORKERS", raising=False)
    file = "sqlite:///s.db"
    cores = os.cpu_count() or 1
    assert resolve_workers("auto", threads=1, device="cpu", storage_url=file)[0] == max(1, min(cores, MAX_AUTO))
    assert resolve_workers("auto", threads=cores, device="cpu", storage_url=file)[0] == 1
    assert resolve_workers("auto", threads=1, device="cuda:0", storage_url=file)[0] == 1
    assert resolve_workers(3, threads=1, device="cpu", storage_url="sqlite:///:memory:")[0] == 1
    monkeypatch.setenv("TRADEOFF_WORKERS", "3")
    assert resolve_workers("auto", threads=1, device="cpu", storage_url=file) == (3, "$TRADEOFF_WORKERS: 3")
    assert resolve_workers(1, threads=1, device="cpu", storage_url=file, override="2") == (2, "--workers: 2")
    with pytest.raises(SpecError, match=r"--workers: expected a positive number of workers or 'auto', got 'x'"):
        resolve_workers(1, threads=1, device="cpu", storage_url=file, override="x")


def test_a_recipe_already_tried_reuses_its_result(url: str) -> None:
    spec = _fp32_spec(
        "dup",
        pruning={"ratio": [0.3, 0.3]},
        quantization={"weight_bits": [4], "activation_bits": [32]},
        distillation={"steps": 8, "temperature": [2.0, 2.0], "alpha": [0.5, 0.5]},
    )
    events = []
    study = Runner(spec, url, on_event=events.append).run()
    first, *copies = study.trials[1:]
    assert record.DUPLICATE_OF not in first.user_attrs
    for t in copies:
        assert t.state == TrialState.COMPLETE and t.values == first.values
        assert t.user_attrs[record.DUPLICATE_OF] == first.number
        assert t.user_attrs[record.SEED] == first.user_attrs[record.SEED]  # an export rebuilds the same model
        assert t.constraints == first.constraints
    assert [e.state for e in events] == ["COMPLETE", "COMPLETE", "DUPLICATE", "DUPLICATE"]
    study = Runner(_spec_like(spec, search={"warm_start": [], "reuse_duplicates": False}), url).run()
    assert not any(record.DUPLICATE_OF in t.user_attrs for t in study.trials)


def _spec_like(spec, **changes):
    data = spec.to_dict()
    data["study"]["name"] += "-b"
    data.update(changes)
    return parse_spec(data)


def test_warm_starts_run_right_after_the_baseline_and_the_rest_is_sampled(url: str) -> None:
    warm = [{"pruning": {"ratio": 0.4}, "quantization": {"weight_bits": 4}}, {"pruning.ratio": 0.1}]
    study = Runner(_fp32_spec("warm", search={"warm_start": warm}), url).run()
    t1, t2, t3 = study.trials[1:]
    assert t1.params["pruning.ratio"] == 0.4 and t1.params["quantization.weight_bits"] == 4
    assert t2.params["pruning.ratio"] == 0.1 and "distillation.alpha" in t2.params  # the rest is sampled
    assert t3.params["pruning.ratio"] not in (0.4, 0.1)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_a_warm_start_outside_the_space_is_refused_before_anything_is_written(url: str) -> None:
    from tradeoff.studies import SpecError

    bad = _fp32_spec("bad", search={"warm_start": [{"pruning.ratio": 0.95}, {"pruning.ratoi": 0.1}]})
    with pytest.raises(SpecError) as err:
        Runner(bad, url).run()
    assert "search.warm_start[0].pruning.ratio: 0.95 is outside" in str(err.value)
    assert "search.warm_start[1].pruning.ratoi: not a knob of this space" in str(err.value)
    assert optuna.get_all_study_names(url) == []


def test_the_hypervolume_after_every_trial_is_stored_and_never_shrinks(url: str) -> None:
    from tradeoff.studies.results import hypervolume_history, study_hypervolume

    study = Runner(_fp32_spec("hv", constraints={"max_accuracy_drop": 0.5}), url, n_trials=5).run()
    history = hypervolume_history(study)
    assert [h["trial"] for h in history] == [0, 1, 2, 3, 4]
    hvs = [h["hypervolume"] for h in history]
    assert hvs[0] == 0.0 and hvs == sorted(hvs)
    assert hvs[-1] == pytest.approx(study_hypervolume(study))
    assert all(b["elapsed_s"] >= a["elapsed_s"] for a, b in zip(history, history[1:], strict=False))


def test_auto_records_which_sampler_it_chose_and_why(url: str) -> None:
    study = Runner(_spec("auto", sampler="auto"), url, n_trials=1).run()
    assert study.user_attrs[record.STUDY_SAMPLER]["name"] == "tpe"
    assert "categorical" in study.user_attrs[record.STUDY_SAMPLER]["reason"]


def test_an_executable_already_timed_reuses_its_latency(url: str) -> None:
    # one pruning ratio, weights 4 or 32 bits with fp32 activations: every candidate executes the same
    # fp32 program (weight-only widths run as fp32), while T differs, so no recipe repeats
    spec = _fp32_spec(
        "lat",
        pruning={"ratio": [0.3, 0.3]},
        distillation={"steps": 8, "temperature": [1.0, 8.0], "alpha": [0.5, 0.5]},
    )
    study = Runner(spec, url).run()
    first, *later = study.trials[1:]
    assert first.user_attrs[record.DEPLOYABLE]["latency_from"] is None  # timed on itself
    key, latency = first.user_attrs[record.DEPLOYABLE]["key"], first.values[2]
    for t in later:
        assert record.DUPLICATE_OF not in t.user_attrs
        exe = t.user_attrs[record.DEPLOYABLE]
        assert exe == {"key": key, "latency_ms": latency, "latency_from": first.number}
        assert t.values[2] == latency
        prov = t.user_attrs[record.PROVENANCE]["latency_ms"]
        assert prov["source"] == "measured" and prov["reused_from_trial"] == first.number
        assert f"on trial {first.number}" in prov["method"]
    # the baseline runs the unpruned program: another key, and it is never a source
    assert study.trials[0].user_attrs[record.DEPLOYABLE]["key"] != key
    study = Runner(_spec_like(spec, search={"warm_start": [], "reuse_latency": False}), url).run()
    assert all(t.user_attrs[record.DEPLOYABLE]["latency_from"] is None for t in study.trials)
    assert len({t.values[2] for t in study.trials[1:]}) > 1  # timed anew each time: the noise shows


def _sigint_then(exc: BaseException | None):
    """A stand-in for ``Runner._run``: Ctrl-C lands inside it (optionally swallowed, as SQLite does when
    it turns the signal into ``OperationalError: interrupted``), then ``exc`` is raised."""
    import signal

    def fake_run(self, task, space, warm, existing):
        if exc is None:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.")
        try:
            # the Python-level handler runs as soon as raise_signal returns: no wait needed; if it
            # never ran, sigint_seen() stays False and the test fails on the storage error below
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass  # what the storage layer does with it
        raise exc

    return fake_run


def test_ctrl_c_that_the_storage_turned_into_an_error_still_stops_the_run_as_an_interruption(
    url: str, monkeypatch
) -> None:
    import signal

    before = signal.getsignal(signal.SIGINT)
    commit = optuna.exceptions.StorageInternalError("An exception is raised during the commit.")
    monkeypatch.setattr(Runner, "_run", _sigint_then(commit))
    with pytest.raises(KeyboardInterrupt) as info:
        Runner(_fp32_spec("sigint"), url, n_trials=2).run()
    assert info.value.__cause__ is commit  # the storage error is kept as the cause
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    # without a Ctrl-C the same storage error is a real failure and stays one
    monkeypatch.setattr(Runner, "_run", _sigint_then(None))
    with pytest.raises(optuna.exceptions.StorageInternalError):
        Runner(_fp32_spec("sigint"), url, n_trials=2).run()


def test_a_ctrl_c_python_swallowed_still_stops_the_loop_before_the_next_trial(monkeypatch) -> None:
    """SIGINT raised inside a GC callback is printed and ignored by Python; the flag the handler set is
    still seen, so the loop stops (exit 130 in the CLI) instead of running the budget out."""
    import tradeoff.search.runner as runner_module

    spec = parse_spec({"study": {"name": "swallowed", "n_trials": 5}, "task": {"name": "digits"}})
    runner = runner_module.Runner(spec, "sqlite:///:memory:")
    asked = []
    monkeypatch.setattr(runner_module, "sigint_seen", lambda: bool(asked))
    study = optuna.create_study()

    def run_one(study, trial, env, space, seed):
        asked.append(trial.number)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)

    monkeypatch.setattr(runner, "_run_one", run_one)
    with pytest.raises(KeyboardInterrupt):
        runner._loop(study, None, None, 0, contextlib.nullcontext())
    assert asked == [0]  # one trial ran; the seen Ctrl-C stopped the next one from being asked


def test_a_study_stored_before_balanced_start_resumes_with_plain_tpe(url: str) -> None:
    """A study created before ``[search] balanced_start`` existed keeps the start-up it ran with."""
    from tradeoff.search.balanced import BalancedStartTPESampler

    Runner(_spec(), url, n_trials=2).run()
    study = optuna.load_study(study_name="s", storage=url)
    stored = study.user_attrs[record.STUDY_SPEC]
    assert stored["search"]["balanced_start"] is True
    runner = Runner(_spec(), url, n_trials=3)
    assert isinstance(runner._stored_sampler(study, _spec().recipe_space()), BalancedStartTPESampler)
    del stored["search"]["balanced_start"]  # as an older tradeoff wrote it
    study.set_user_attr(record.STUDY_SPEC, stored)
    sampler = runner._stored_sampler(study, _spec().recipe_space())
    assert type(sampler) is optuna.samplers.TPESampler  # plain, as it ran
    assert len(Runner(_spec(), url, n_trials=3).run().trials) == 3  # the same spec file still resumes it
    with pytest.raises(StudyMismatch, match="different spec"):
        Runner(_spec(seed=5), url, n_trials=4).run()  # and another is still refused
