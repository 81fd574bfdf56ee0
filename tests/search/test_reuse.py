from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from tests.studies.fake_study import fake_study
from tradeoff.search import DuplicateReuse, LatencyReuse, Reused
from tradeoff.search.workers import INTERRUPTED
from tradeoff.spaces import PruningConfig, Recipe
from tradeoff.studies import TrialRecord, record

CANDIDATE = {"accuracy": 0.88, "size_bytes": 500.0, "latency_ms": 1.0, "energy_mj": 0.5}


@pytest.fixture
def storage(tmp_path) -> str:
    """An SQLite file, as the runner uses: recipes come back as stored (JSON: tuples are lists)."""
    return f"sqlite:///{tmp_path / 'study.db'}"


def _stored(recipe: Recipe) -> dict:
    return json.loads(recipe.to_json())


def test_a_recipe_already_tried_copies_that_trials_outcome(storage: str) -> None:
    study = fake_study([], storage=storage)
    ran = study.ask()  # trial 1, as the runner records it
    recipe = Recipe(pruning=PruningConfig(ratio=0.1))
    TrialRecord(role="candidate", recipe=recipe.to_dict(), values=CANDIDATE).write(ran)
    ran.set_user_attr(record.WORKER, "elsewhere:1")
    ran.set_user_attr(record.HYPERVOLUME, 0.5)
    ran.set_constraint("max_accuracy_drop", -0.01)
    study.tell(ran, list(CANDIDATE.values()))
    first = study.trials[1]
    trial = study.ask()
    reused = DuplicateReuse(True).reuse(study, trial, Recipe(pruning=PruningConfig(ratio=0.1)))
    assert reused == Reused(1, CANDIDATE)
    t = study.trials[-1]
    assert t.state == TrialState.COMPLETE and t.values == first.values and t.constraints == first.constraints
    assert t.user_attrs[record.DUPLICATE_OF] == 1
    assert t.user_attrs[record.RECIPE] == first.user_attrs[record.RECIPE]
    assert record.WORKER not in t.user_attrs  # the copy ran nowhere
    assert t.user_attrs[record.HYPERVOLUME] != 0.5  # the study's, not the original's
    # a copy of the copy still names the trial that ran
    assert DuplicateReuse(True).reuse(study, study.ask(), Recipe(pruning=PruningConfig(ratio=0.1))).original == 1


def test_no_copy_when_off_new_or_only_interrupted(storage: str) -> None:
    study = fake_study([CANDIDATE], storage=storage)  # trial 1 applied pruning ratio 0.1
    recipe = Recipe(pruning=PruningConfig(ratio=0.1))
    assert DuplicateReuse(False).reuse(study, study.ask(), recipe) is None  # off: it runs
    assert DuplicateReuse(True).reuse(study, study.ask(), Recipe(pruning=PruningConfig(ratio=0.7))) is None
    assert DuplicateReuse(True).reuse(study, study.ask(), Recipe()) is None  # the baseline is no candidate
    for error, copied in ((INTERRUPTED, False), ("RuntimeError: cannot trace", True)):
        failed = fake_study([])
        t = failed.ask()
        t.set_user_attr(record.RECIPE, _stored(recipe))
        t.set_user_attr(record.ERROR, error)
        failed.tell(t, state=TrialState.FAIL)
        reused = DuplicateReuse(True).reuse(failed, failed.ask(), recipe)
        assert (reused == Reused(1, None)) is copied  # a real failure stays failed; an interrupted one runs again


def test_a_stopped_recipe_stays_stopped(storage: str) -> None:
    study = fake_study([], storage=storage)
    t = study.ask()
    t.set_user_attr(record.RECIPE, _stored(Recipe(pruning=PruningConfig(ratio=0.4))))
    t.set_user_attr(record.STOPPED, True)
    study.tell(t, state=TrialState.PRUNED)
    assert DuplicateReuse(True).reuse(study, study.ask(), Recipe(pruning=PruningConfig(ratio=0.4))) == Reused(1, None)
    assert study.trials[-1].state == TrialState.PRUNED


def _timed(study: optuna.Study, key: str, ms: float, **attrs) -> None:
    t = study.ask()
    t.set_user_attr(record.ROLE, "candidate")
    t.set_user_attr(record.DEPLOYABLE, {"key": key, "latency_ms": ms, "latency_from": attrs.pop("latency_from", None)})
    prov = {"source": "measured", "method": "ABBA", "unit": "ms", "ratio": 0.5}
    t.set_user_attr(record.PROVENANCE, {"latency_ms": prov})
    for name, value in attrs.items():
        t.set_user_attr(name, value)
    study.tell(t, [0.9, 1.0, ms, 1.0])


def test_a_deployable_form_already_timed_lends_its_latency() -> None:
    study = fake_study([])
    _timed(study, "k", 3.0, duplicate_of=0)  # a copy did not time it...
    _timed(study, "k", 4.0, latency_from=0)  # ...nor did a trial that reused it
    assert LatencyReuse.timed(study, "k") is None
    _timed(study, "k", 5.0)
    number, m = LatencyReuse(True).lookup(study)("k")
    assert number == 3 and m.value == 5.0 and m.unit == "ms" and m.source == "measured"
    assert m.details == {"ratio": 0.5}
    assert LatencyReuse(True).lookup(study)("other") is None
    assert LatencyReuse(False).lookup(study) is None  # off: every trial is timed
