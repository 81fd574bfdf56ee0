from __future__ import annotations

import types

import optuna
import pytest
from optuna.trial import TrialState

from tradeoff.search import Runner
from tradeoff.search.exact import MIN_TRIALS, RATIO_GRID, CheapFigures, ExactSampler
from tradeoff.studies import load_task, parse_spec, record

USER_TASK = "tests.studies.user_task:make_task"
ANY_TRIAL = types.SimpleNamespace(number=-1)  # _choose leaves out the trial it is asked for; none here


@pytest.fixture(scope="module")
def exact_study(tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    """A study run with sampler "exact": sampled trials until MIN_TRIALS complete, then the model's picks."""
    url = f"sqlite:///{tmp_path_factory.mktemp('exact') / 'study.db'}"
    spec = parse_spec(
        {
            "study": {"name": "exact", "n_trials": MIN_TRIALS + 5, "seed": 0, "sampler": "exact"},
            "task": {"name": USER_TASK},
            "space": {"distillation": {"steps": 10}},
            "search": {"warm_start": []},
        }
    )
    return Runner(spec, url).run()


def _done(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if not record.is_baseline(t)]


def test_the_model_decides_once_enough_trials_have_completed(exact_study: optuna.Study) -> None:
    sampler = exact_study.sampler
    assert isinstance(sampler, ExactSampler)
    assert sampler.decided["fallback"] >= MIN_TRIALS  # TPE until MIN_TRIALS trials have completed
    assert sampler.decided["model"] >= 1
    done = sorted(_done(exact_study), key=lambda t: t.number)
    assert {t.user_attrs[record.SUGGESTED_BY] for t in done[:MIN_TRIALS]} == {"tpe"}  # too few to fit on
    # later trials are the model's, except where no candidate added any hypervolume (then TPE chose)
    asked = [t for t in exact_study.get_trials() if not record.is_baseline(t)]  # stopped and failed ones too
    picks = [t for t in asked if t.user_attrs[record.SUGGESTED_BY] == "model"]
    assert len(picks) == sampler.decided["model"]
    for t in picks:  # the model's picks lie on its ratio grid (TPE's almost never do)
        ratio = t.params["pruning.ratio"]
        assert abs(ratio / RATIO_GRID - round(ratio / RATIO_GRID)) < 1e-6, ratio


def test_cheap_figures_are_the_ones_the_trials_recorded(exact_study: optuna.Study) -> None:
    spec = parse_spec(exact_study.user_attrs[record.STUDY_SPEC])
    task = load_task(spec.task.name, spec.task.kwargs)
    cheap = CheapFigures(spec.recipe_space(task.model), task.model, task.example_inputs)
    trials = _done(exact_study)
    assert len(trials) >= MIN_TRIALS
    for t in trials:
        figures = cheap(t.params)
        recorded = t.user_attrs[record.FIGURES]
        assert figures["macs"] == recorded["macs"] and figures["params"] == recorded["params"]
        assert figures["energy_mj"] == pytest.approx(t.values[3], rel=1e-9)  # modelled: no counter here
        # size: the dense packing, which fine-tuned low-bit weights can only undercut (zero codes)
        assert figures["size_bytes"] >= t.values[1]
        if t.params["quantization.weight_bits"] >= 8:
            assert figures["size_bytes"] == t.values[1]


def test_a_candidate_another_worker_is_running_is_not_picked_again(exact_study: optuna.Study) -> None:
    first = ExactSampler(seed=3)._choose(exact_study, ANY_TRIAL)
    assert first and ExactSampler(seed=3)._choose(exact_study, ANY_TRIAL) == first  # seeded: the same pick
    copy = optuna.create_study(directions=exact_study.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    copy.set_user_attr(record.STUDY_SPEC, exact_study.user_attrs[record.STUDY_SPEC])
    copy.add_trials(exact_study.get_trials(states=(TrialState.COMPLETE,)))
    assert ExactSampler(seed=3)._choose(copy, ANY_TRIAL) == first  # the copy holds the same evidence
    copy.enqueue_trial(first)
    running = copy.ask(fixed_distributions=ExactSampler(seed=3).context(copy).dists)
    assert running.params == first  # another worker is running the first pick
    second = ExactSampler(seed=3)._choose(copy, ANY_TRIAL)
    assert second and second != first  # believed at the GP's mean, it no longer adds the most


def test_candidates_that_break_a_size_limit_are_not_picked(exact_study: optuna.Study) -> None:
    stored = exact_study.user_attrs[record.STUDY_SPEC]
    unlimited = ExactSampler(seed=1)._choose(exact_study, ANY_TRIAL)
    assert unlimited
    cheap = ExactSampler(seed=1).context(exact_study).cheap
    size = cheap(unlimited)["size_bytes"]

    def pick_under(limit: float) -> dict:
        limited = {**stored, "constraints": {**stored["constraints"], "max_size_bytes": limit}}
        copy = optuna.create_study(directions=exact_study.directions)
        copy.set_user_attr(record.STUDY_SPEC, limited)
        copy.add_trials(exact_study.get_trials(states=(TrialState.COMPLETE,)))
        return ExactSampler(seed=1)._choose(copy, ANY_TRIAL)

    assert pick_under(size) == unlimited  # a limit the pick meets (at its edge) changes nothing
    picked = pick_under(size - 1)  # the pick without a limit breaks this one
    assert picked != unlimited
    # another candidate within the limit, or none when nothing smaller adds hypervolume (TPE decides then)
    assert not picked or cheap(picked)["size_bytes"] <= size - 1


def test_outside_a_tradeoff_study_it_is_the_seeded_tpe() -> None:
    def xs(seed: int) -> list[float]:
        sampler = ExactSampler(seed=seed)
        study = optuna.create_study(sampler=sampler)
        study.optimize(lambda t: (t.suggest_float("x", 0, 1) - 0.3) ** 2, n_trials=12)
        assert sampler.decided == {"model": 0, "fallback": 12}
        return [t.params["x"] for t in study.trials]

    assert xs(0) == xs(0) != xs(1)
