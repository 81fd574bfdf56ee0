from __future__ import annotations

import json

import numpy as np
import pytest

from tradeoff.studies import baseline_trial, export_bundle, pick, ranked_front, study_hypervolume, trials_frame
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
    assert cfg["format"] == "tradeoff.config/1" and cfg["trial"] == 1
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
