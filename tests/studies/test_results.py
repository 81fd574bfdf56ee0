from __future__ import annotations

import json
from typing import Any

import numpy as np
import optuna
import pytest

from tradeoff.objectives import OBJECTIVE_NAMES, Weights
from tradeoff.studies import (
    baseline_trial,
    export_bundle,
    feasibility,
    least_violating,
    pick,
    ranked_front,
    study_hypervolume,
    trials_frame,
)
from tradeoff.studies.results import ResultsError

from .fake_study import BASE, fake_study

CANDIDATES = [
    dict(accuracy=0.89, size_bytes=100.0, latency_ms=1.0, energy_mj=0.2),  # 1: balanced, small
    dict(accuracy=0.895, size_bytes=900.0, latency_ms=1.9, energy_mj=0.9),  # 2: barely compressed
    dict(accuracy=0.70, size_bytes=10.0, latency_ms=0.5, energy_mj=0.05),  # 3: infeasible (20-point drop)
    dict(accuracy=0.88, size_bytes=200.0, latency_ms=1.2, energy_mj=0.3),  # 4: dominated by 1
]


def test_front_is_feasible_nondominated_and_ranked_by_cost() -> None:
    study = fake_study(CANDIDATES)
    entries = ranked_front(study)
    numbers = [e.trial.number for e in entries]
    assert set(numbers) == {0, 1, 2}  # 3 violates max_accuracy_drop, 4 is dominated by 1
    assert numbers[0] == 1
    assert [e.cost for e in entries] == sorted(e.cost for e in entries)
    assert baseline_trial(study).number == 0


def test_pick_rules() -> None:
    study = fake_study(CANDIDATES)
    assert pick(study, "cost").trial.number == 1
    assert pick(study, "knee").trial.number == 1
    assert pick(study, "3").trial.number == 3  # any completed trial by number, even off the front
    with pytest.raises(ResultsError, match="not a completed trial"):
        pick(study, "99")
    with pytest.raises(ResultsError, match="unknown pick rule"):
        pick(study, "best")


def test_hypervolume_is_computed_in_the_normalised_space() -> None:
    study = fake_study(CANDIDATES[:1], max_drop=0.09)  # r = 0.09 / 0.9 = 0.1
    e = 1 - 0.89 / 0.9
    expected = (0.1 - e) * (1 - 0.1) * (1 - 0.5) * (1 - 0.2)
    assert study_hypervolume(study) == pytest.approx(expected)


def test_frame_has_a_row_per_trial_with_flags() -> None:
    df = trials_frame(fake_study(CANDIDATES))
    assert list(df["trial"]) == [0, 1, 2, 3, 4]
    assert list(df["pareto"]) == [True, True, True, False, False]
    assert df.loc[0, "role"] == "baseline" and np.isclose(df.loc[0, "accuracy"], 0.9)
    assert "figure.params" in df and "cost" in df


def test_export_writes_every_field_and_replaces_whole(tmp_path) -> None:
    study = fake_study(CANDIDATES)
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    path = export_bundle(study, out, rule="cost", with_model=False)
    cfg = json.loads(path.read_text())
    for field in (
        "format",
        "study",
        "trial",
        "task",
        "recipe",
        "values",
        "baseline",
        "cost",
        "weights",
        "provenance",
        "versions",
    ):
        assert field in cfg, field
    assert cfg["format"] == "tradeoff.config/2" and cfg["trial"] == 1
    assert cfg["baseline"] == BASE and cfg["recipe"]["format"] == "tradeoff.recipe/1"
    assert set(cfg["provenance"]) == {"accuracy", "size_bytes", "latency_ms", "energy_mj"}
    assert {"torch", "optuna", "tradeoff"} <= set(cfg["versions"])
    assert not (out / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no temporary folder left behind


def test_failed_export_leaves_nothing(tmp_path) -> None:
    study = fake_study(CANDIDATES)
    with pytest.raises(ResultsError):
        export_bundle(study, tmp_path / "b", rule="99", with_model=False)
    assert list(tmp_path.iterdir()) == []


# ----- no feasible trial: the least-violating ones

LIMITS = {"max_accuracy_drop": 0.01, "max_latency_ms": 0.5, "max_size_bytes": 500.0}  # the baseline misses too
MISSING = [
    dict(accuracy=0.895, size_bytes=505.0, latency_ms=0.40, energy_mj=0.3),  # 1: size +5 B of 500 -> 0.01
    dict(accuracy=0.895, size_bytes=400.0, latency_ms=0.55, energy_mj=0.3),  # 2: latency +0.05 ms of 0.5 -> 0.1
    dict(accuracy=0.818, size_bytes=400.0, latency_ms=0.40, energy_mj=0.3),  # 3: drop 0.082, +0.072 / 0.9 -> 0.08
    dict(accuracy=0.850, size_bytes=400.0, latency_ms=0.60, energy_mj=0.3),  # 4: 0.04 / 0.9 + 0.1 / 0.5 -> 0.244
]


def constrained_study(
    candidates: list[dict[str, float]], constraints: dict[str, float], *, storage: str | None = None
) -> optuna.Study:
    """:func:`fake_study` with any of the spec's constraints (not only the accuracy drop)."""
    return fake_study(candidates, constraints=constraints, storage=storage)


def _numbers(entries: list[Any]) -> list[int]:
    return [e.trial.number for e in entries]


def test_no_feasible_trial_leaves_an_empty_front_and_says_why_on_pick() -> None:
    study = constrained_study(MISSING, LIMITS)
    assert ranked_front(study) == []
    feas = feasibility(study)
    assert (feas.candidates, feas.feasible, feas.none_feasible) == (4, 0, True)
    assert feas.limits == LIMITS
    with pytest.raises(ResultsError, match="least-violating"):
        pick(study, "knee")


def test_least_violating_ranks_by_misses_relative_to_acc0_and_to_the_limits() -> None:
    # Raw misses (5 B, 0.05 ms, 0.072, 0.14) would give [2, 3, 4, 1]; accuracy scaled by the allowed drop
    # instead of acc0 would give [1, 2, 4, 3]. Only acc0 for the drop and the limit for the others give this.
    study = constrained_study(MISSING, LIMITS)
    entries = least_violating(study, n=None)
    assert _numbers(entries) == [1, 3, 2, 4]
    assert [e.violation for e in entries] == pytest.approx([0.01, 0.072 / 0.9, 0.1, 0.04 / 0.9 + 0.1 / 0.5])
    first, _, _, last = entries
    assert first.missed == ("max_size_bytes",) and first.constraints["max_size_bytes"] == pytest.approx(5.0)
    assert first.relative["max_accuracy_drop"] == 0.0 and first.constraints["max_accuracy_drop"] <= 0
    assert set(last.missed) == {"max_accuracy_drop", "max_latency_ms"}
    assert last.relative["max_latency_ms"] == pytest.approx(0.2)
    assert _numbers(least_violating(study, n=2)) == [1, 3] and len(least_violating(study)) == 4
    as_json = json.loads(json.dumps(first.as_json()))
    assert as_json["trial"] == 1 and as_json["missed"] == ["max_size_bytes"] and as_json["role"] == "candidate"


def test_least_violating_breaks_ties_by_cost_then_trial_number() -> None:
    sizes = (400.0, 300.0, 300.0)  # each misses the drop by 0.072 only
    candidates = [dict(accuracy=0.818, size_bytes=b, latency_ms=0.4, energy_mj=0.3) for b in sizes]
    study = constrained_study(candidates, LIMITS)
    entries = least_violating(study)
    assert len({e.violation for e in entries}) == 1
    assert _numbers(entries) == [2, 3, 1]  # 2 and 3 are smaller (cheaper) than 1; 2 before 3 by number
    # with all the weight on accuracy the costs tie too, and the trial number decides
    assert _numbers(least_violating(study, weights=Weights.parse("accuracy=1", OBJECTIVE_NAMES))) == [1, 2, 3]


def test_feasible_trials_rank_first_at_zero_and_the_front_is_unchanged() -> None:
    study = constrained_study([*MISSING, dict(accuracy=0.899, size_bytes=300.0, latency_ms=0.3, energy_mj=0.2)], LIMITS)
    assert _numbers(ranked_front(study)) == [5]
    feas = feasibility(study)
    assert (feas.candidates, feas.feasible, feas.none_feasible) == (5, 1, False)
    entries = least_violating(study)
    assert entries[0].trial.number == 5 and entries[0].violation == 0.0 and entries[0].missed == ()
