"""Trials that fail end FAIL with their reason on the trial, and the study goes on (issue 24, fault 6)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from tradeoff.search import Runner
from tradeoff.search.cli import app
from tradeoff.search.failures import wait_for_running
from tradeoff.studies import parse_spec, record


def _faulty_spec(name: str, mode: str) -> object:
    """Trial 1 prunes the hidden layer by half (the faulty model breaks), trial 2 leaves it whole."""
    return parse_spec(
        {
            "study": {"name": name, "n_trials": 3, "seed": 0, "sampler": "random"},
            "task": {"name": "tests.studies.user_task:faulty", "mode": mode},
            "target": {"backend": "eager"},
            "space": {
                "pruning": {"ratio": [0.0, 0.5]},
                "quantization": {"weight_bits": [32], "activation_bits": [32]},
                "distillation": {"steps": 4},
            },
            "search": {"warm_start": [{"pruning.ratio": 0.5}, {"pruning.ratio": 0.0}], "rungs": []},
        }
    )


@pytest.mark.parametrize(
    ("mode", "reason", "message"),
    [
        ("raise", "error", "ValueError: this model cannot take pruning"),
        ("nan", "non-finite", "NaN or inf"),
        ("oom", "out of memory", "can't allocate memory"),
    ],
)
def test_a_failing_trial_ends_fail_with_its_reason_and_the_study_goes_on(
    tmp_path: Path, mode: str, reason: str, message: str
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = Runner(_faulty_spec(f"faulty-{mode}", mode), url, workers=1).run()
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    failed = trials[1]
    assert failed.params["pruning.ratio"] == 0.5
    assert failed.user_attrs[record.FAIL_REASON] == reason
    assert message in failed.user_attrs[record.ERROR]
    assert record.failures_by_reason(trials) == {reason: 1}
    assert trials[2].params["pruning.ratio"] == 0.0  # the study went on past the failure

    shown = CliRunner().invoke(app, ["show", f"faulty-{mode}", "--storage", url, "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["failures"] == {reason: 1}
    text = CliRunner().invoke(app, ["show", f"faulty-{mode}", "--storage", url])
    assert f"failed by reason: {reason} 1" in text.output


def test_a_missing_artifact_store_is_refused_before_the_study_is_created(tmp_path: Path) -> None:
    from tradeoff.studies import StorageError, parse_spec

    spec = parse_spec(
        {
            "study": {"name": "art", "n_trials": 2, "artifacts": str(tmp_path / "not-mounted")},
            "task": {"name": "tests.studies.user_task:make_task"},
            "space": {"quantization": {"weight_bits": [32], "activation_bits": [32]}, "distillation": {"steps": 2}},
        }
    )
    with pytest.raises(StorageError, match="not a directory this host can read"):
        Runner(spec, f"sqlite:///{tmp_path / 's.db'}", workers=1).run()
    assert not (tmp_path / "s.db").exists()  # nothing written


def test_a_worker_with_no_budget_left_waits_for_running_trials_only_with_heartbeats_and_only_so_long(
    tmp_path: Path,
) -> None:
    def study_with_running_trial(heartbeat: int | None) -> optuna.Study:
        url = f"sqlite:///{tmp_path / f'hb{heartbeat}.db'}"
        storage = optuna.storages.RDBStorage(
            url, heartbeat_interval=heartbeat, grace_period=heartbeat and 2 * heartbeat
        )
        study = optuna.create_study(storage=storage)
        study.ask()  # another worker's trial, still running
        return study

    beating = study_with_running_trial(60)
    trials = beating.get_trials()
    now = time.monotonic()
    started = wait_for_running(beating, trials, None, grace_s=120, heartbeat_s=60)
    assert started is not None and started >= now  # it starts waiting now
    assert wait_for_running(beating, trials, started, grace_s=120, heartbeat_s=60) == started  # and goes on
    assert wait_for_running(beating, trials, now - 241, grace_s=120, heartbeat_s=60) is None  # grace + 2 beats
    assert wait_for_running(beating, trials, now - 200, grace_s=120, heartbeat_s=60) == now - 200
    beating.tell(trials[0].number, 1.0)
    assert wait_for_running(beating, beating.get_trials(), started, grace_s=120, heartbeat_s=60) is None  # none run
    silent = study_with_running_trial(None)  # no heartbeats: a dead worker's trial would never be failed
    assert wait_for_running(silent, silent.get_trials(), None, grace_s=120, heartbeat_s=60) is None
