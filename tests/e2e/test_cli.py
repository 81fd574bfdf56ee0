"""The `tradeoff` command end to end: through the installed console script and Typer's runner."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from tradeoff.search.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXE = shutil.which("tradeoff") or "tradeoff"
CONFIG_FIELDS = (
    "format", "study", "trial", "task", "recipe", "seed", "values", "baseline", "cost", "weights",
    "pick", "provenance", "spec", "versions",
)  # fmt: skip
USER_SPEC = (
    '[study]\nname = "{name}"\nn_trials = {n}\n[task]\nname = "tests.studies.user_task:make_task"\n'
    "[space.distillation]\nsteps = 5\n"
)


def env_for(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRADEOFF_STORAGE"}
    env.update({"PYTHONPATH": str(ROOT), **(extra or {})})
    return env


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [EXE, *args],
        cwd=cwd,
        env=env_for(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """A 6-trial demo search, run once through the console script, shared by the read tests."""
    cwd = tmp_path_factory.mktemp("demo")
    done = run("demo", "--trials", "6", cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert "Pareto front of digits-demo" in done.stdout
    assert "trial 5 complete (6/6)" in done.stderr  # one progress line per trial when not a terminal
    return cwd


def test_demo_writes_the_embedded_default_storage(demo_dir: Path) -> None:
    assert (demo_dir / "tradeoff.db").exists()
    study = optuna.load_study(study_name="digits-demo", storage=f"sqlite:///{demo_dir / 'tradeoff.db'}")
    assert len(study.trials) == 6


def test_pareto_json_holds_a_trial_smaller_than_the_baseline(demo_dir: Path) -> None:
    shown = run("pareto", "digits-demo", "--json", cwd=demo_dir)
    assert shown.returncode == 0, shown.stderr
    front = json.loads(shown.stdout)
    assert front, "the front is empty"
    for entry in front:
        assert {"trial", "params", "values", "cost"} <= set(entry)
        assert set(entry["values"]) == {"accuracy", "size_bytes", "latency_ms", "energy_mj"}
    study = optuna.load_study(study_name="digits-demo", storage=f"sqlite:///{demo_dir / 'tradeoff.db'}")
    baseline = study.trials[0]
    assert baseline.user_attrs["role"] == "baseline"
    assert any(e["values"]["size_bytes"] < baseline.values[1] for e in front)


def test_export_bundle_and_apply_round_trip(demo_dir: Path) -> None:
    exported = run("export", "digits-demo", "--pick", "knee", "--out", "best", cwd=demo_dir)
    assert exported.returncode == 0, exported.stderr
    cfg = json.loads((demo_dir / "best" / "config.json").read_text())
    for field in CONFIG_FIELDS:
        assert field in cfg, field
    assert cfg["format"] == "tradeoff.config/2" and cfg["study"] == "digits-demo" and cfg["pick"] == "knee"
    for name in ("accuracy", "size_bytes", "latency_ms", "energy_mj"):
        assert (
            cfg["provenance"][name]["source"]
            == {"accuracy": "measured", "size_bytes": "computed", "latency_ms": "measured", "energy_mj": "estimated"}[
                name
            ]
        )
    assert (demo_dir / "best" / "scored_model.pt2").exists() and (demo_dir / "best" / "report.html").exists()

    applied = run("apply", "best/config.json", "--task", "digits", "--out", "again.pt2", cwd=demo_dir)
    assert applied.returncode == 0, applied.stderr
    assert "accuracy" in applied.stdout and "NO" not in applied.stdout
    assert (demo_dir / "again.pt2").exists()


def test_export_by_cost_with_weights_from_the_command_line(demo_dir: Path) -> None:
    done = run("export", "digits-demo", "--pick", "cost", "--out", "small", "--weights", "size_bytes=1", cwd=demo_dir)
    assert done.returncode == 0, done.stderr
    cfg = json.loads((demo_dir / "small" / "config.json").read_text())
    front = json.loads(run("pareto", "digits-demo", "--json", cwd=demo_dir).stdout)
    assert cfg["weights"]["size_bytes"] == 1.0
    assert cfg["values"]["size_bytes"] == min(e["values"]["size_bytes"] for e in front)


def test_read_commands_through_typers_runner(demo_dir: Path, monkeypatch) -> None:
    monkeypatch.chdir(demo_dir)
    runner = CliRunner()
    listed = runner.invoke(app, ["ls", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert row["study"] == "digits-demo" and row["complete"] == 6 and row["budget"] == 30 and row["hypervolume"] >= 0
    shown = runner.invoke(app, ["show", "digits-demo", "--json"])
    data = json.loads(shown.stdout)
    assert data["trials"]["complete"] == 6 and data["knee"]["trial"] >= 0 and data["objectives"][1] == "size_bytes"
    assert data["feasible"] is True and data["least_violating"] == []
    chosen = data["int8_backend"]  # the demo's space has int8 activations: backend "auto" timed both builders
    assert chosen["backend"] in ("inductor", "fx") and set(chosen["ms"]) == {"inductor", "fx"}
    summary = runner.invoke(app, ["show", "digits-demo"], env={"COLUMNS": "300"})
    assert summary.exit_code == 0 and f"int8 programs built by {chosen['backend']}: the teacher" in summary.stdout
    assert "digits-demo" in runner.invoke(app, ["ls"]).stdout
    bad = runner.invoke(app, ["pareto", "digits-demo", "--weights", "speed=1"])
    assert bad.exit_code == 2 and "NAME one of accuracy, size_bytes" in bad.output


def test_pareto_and_show_list_the_least_violating_trials_when_none_is_feasible(tmp_path: Path) -> None:
    from tests.studies.test_results import LIMITS, MISSING, constrained_study

    url = f"sqlite:///{tmp_path / 'infeasible.db'}"
    constrained_study(MISSING, LIMITS, storage=url)  # a hand-made study: no search is run
    runner = CliRunner()
    shown = runner.invoke(app, ["pareto", "fake", "--storage", url], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())
    assert "no trial meets the constraints (accuracy drop <= 1.00 pt, latency <= 0.500 ms, size <= 500 B)" in text
    assert "all 4 completed candidates miss at least one" in text and "[constraints]" in text
    assert "the 4 least-violating trials of fake" in text and "drop+ pt +ms +B viol" in text
    rows = [line.split() for line in shown.stdout.splitlines() if line.split() and line.split()[0].isdigit()]
    rows = [r for r in rows if len(r) == 12]  # trial prune bits acc KiB ms mJ, the three misses, viol, cost
    assert [r[0] for r in rows] == ["1", "3", "2", "4"]
    misses = [["ok", "ok", "5"], ["7.20", "ok", "ok"], ["ok", "0.050", "ok"], ["4.00", "0.100", "ok"]]
    assert [r[7:10] for r in rows] == misses  # drop in points, latency in ms, size in bytes; ok when met
    narrow = runner.invoke(app, ["pareto", "fake", "--storage", url], env={"COLUMNS": "80"})
    assert "…" not in narrow.stdout  # the table fits an 80-column terminal

    as_json = json.loads(runner.invoke(app, ["pareto", "fake", "--storage", url, "--json"]).stdout)
    assert as_json["feasible"] is False and as_json["candidates"] == 4 and as_json["constraints"] == LIMITS
    assert [e["trial"] for e in as_json["least_violating"]] == [1, 3, 2, 4]
    assert as_json["least_violating"][0]["missed"] == ["max_size_bytes"]

    data = json.loads(runner.invoke(app, ["show", "fake", "--storage", url, "--json"]).stdout)
    assert data["feasible"] is False and data["front_size"] == 0 and data["knee"] is None
    assert [e["trial"] for e in data["least_violating"]] == [1, 3, 2, 4]
    summary = runner.invoke(app, ["show", "fake", "--storage", url], env={"COLUMNS": "200"})
    assert summary.exit_code == 0 and "no trial meets the constraints" in summary.stdout


def test_pareto_and_show_flag_trials_whose_deployable_form_scores_apart(tmp_path: Path) -> None:
    from tests.studies.fake_study import BASE, fake_study

    url = f"sqlite:///{tmp_path / 'gap.db'}"
    small = {**BASE, "size_bytes": 400.0}
    smaller = {**BASE, "accuracy": 0.88, "size_bytes": 300.0}
    two = {"scored_accuracy": 0.9, "deployable_accuracy": 0.9}
    fake_study(
        [small, smaller],
        storage=url,
        figures={1: {**two, "accuracy_gap": 0.002}, 2: {**two, "deployable_accuracy": 0.88, "accuracy_gap": -0.02}},
    )
    runner = CliRunner()
    shown = runner.invoke(app, ["pareto", "fake", "--storage", url], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    flagged = [line.split()[0] for line in shown.stdout.splitlines() if line.split() and "!" in line.split()[0]]
    assert [f.replace("*", "") for f in flagged] == [
        "2!"
    ]  # 2 points apart; trial 1's 0.2 points is within half a point
    assert "#2: accuracy 0.8800 on the deployable form (the front's), 0.9000 on the scored model" in shown.stdout
    summary = runner.invoke(app, ["show", "fake", "--storage", url], env={"COLUMNS": "200"})
    assert "differs from the scored model's by more than 0.5 point: #2 (-2.0 pt)" in " ".join(summary.stdout.split())
    data = json.loads(runner.invoke(app, ["show", "fake", "--storage", url, "--json"]).stdout)
    assert data["accuracy_gaps"] == [{"trial": 2, "gap": -0.02}]


def test_relaunching_the_demo_resumes_and_runs_nothing_more(demo_dir: Path) -> None:
    again = run("demo", "--trials", "6", cwd=demo_dir)
    assert again.returncode == 0 and "trial " not in again.stderr.replace("trials", "")


def test_init_writes_a_spec_that_launches(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "mine.toml"
    assert runner.invoke(app, ["init", str(path)]).exit_code == 0
    assert 'name = "mine"' in path.read_text() and "# " in path.read_text()  # commented
    again = runner.invoke(app, ["init", str(path)])
    assert again.exit_code == 2 and "--force" in again.output
    assert runner.invoke(app, ["init", str(path), "--force"]).exit_code == 0
    from tradeoff.studies import load_spec

    assert load_spec(path).study.name == "mine"


BAD_SPECS = {
    "unknown field": ('[study]\nname = "x"\ncolour = "red"\n[task]\nname = "digits"\n', "study.colour: unknown field"),
    "wrong type": ('[study]\nname = "x"\nn_trials = "many"\n[task]\nname = "digits"\n', "study.n_trials"),
    "ratio outside [0, 1)": (
        '[study]\nname = "x"\n[task]\nname = "digits"\n[space.pruning]\nratio = [0.0, 1.5]\n',
        "space.pruning.ratio[1]: Input should be less than 1; got 1.5",
    ),
    "unknown task": ('[study]\nname = "x"\n[task]\nname = "imagenet-22k"\n', "unknown task 'imagenet-22k'"),
    "not TOML": ("[study\n", "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_specs_exit_2_name_the_problem_and_leave_no_study(case: str, tmp_path: Path) -> None:
    text, message = BAD_SPECS[case]
    (tmp_path / "spec.toml").write_text(text)
    done = run("launch", "spec.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert message in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_usage_errors_exit_2_and_create_nothing(tmp_path: Path) -> None:
    assert run("launch", cwd=tmp_path).returncode == 2  # missing argument
    assert run("demo", "--trials", "0", cwd=tmp_path).returncode == 2
    bad_storage = run("demo", "--storage", "tradeoff.db", cwd=tmp_path)
    assert bad_storage.returncode == 2 and "not a database URL" in bad_storage.stderr
    for cmd in (["pareto", "nothing-here"], ["show", "nothing-here"], ["ls"], ["export", "nothing-here"]):
        missing = run(*cmd, cwd=tmp_path)
        assert missing.returncode == 2 and "tradeoff launch" in missing.stderr, cmd
    assert run("export", "x", "--pick", "best", cwd=tmp_path).returncode == 2
    not_config = tmp_path / "c.json"
    not_config.write_text("{}")
    assert run("apply", str(not_config), cwd=tmp_path).returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]


def test_a_runtime_failure_exits_1_with_a_message_and_a_traceback_only_with_debug(tmp_path: Path) -> None:
    (tmp_path / "spec.toml").write_text('[study]\nname = "x"\n[task]\nname = "tests.studies.user_task:broken"\n')
    done = run("launch", "spec.toml", cwd=tmp_path)
    assert done.returncode == 1
    assert "the user's data server is down" in done.stderr and "Traceback" not in done.stderr
    debug = run("--debug", "launch", "spec.toml", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_during_launch_leaves_a_resumable_study(tmp_path: Path, workers: str) -> None:
    (tmp_path / "spec.toml").write_text(USER_SPEC.format(name="stop", n=6))
    proc = subprocess.Popen(
        [EXE, "launch", "spec.toml", "--workers", workers], cwd=tmp_path, env=env_for(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    seen = []
    for line in proc.stderr:  # progress lines arrive as this process's trials finish; interrupt after a candidate
        seen.append(line)
        if line.startswith("trial ") and not line.startswith("trial 0 "):
            proc.send_signal(signal.SIGINT)
            break
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + rest
    assert "run the same command again to resume" in rest
    url = f"sqlite:///{tmp_path / 'tradeoff.db'}"
    trials = optuna.load_study(study_name="stop", storage=url).trials
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert all(t.user_attrs.get("error", "").startswith("interrupted") for t in trials if t.state.name == "FAIL")
    resumed = run("launch", "spec.toml", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    complete = [t for t in optuna.load_study(study_name="stop", storage=url).trials if t.state.name == "COMPLETE"]
    assert len(complete) == 6


def test_a_bad_worker_count_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / "spec.toml").write_text(USER_SPEC.format(name="w", n=2))
    done = run("launch", "spec.toml", "--workers", "0", cwd=tmp_path)
    assert done.returncode == 2
    assert "--workers: expected a positive number of workers or 'auto', got '0'" in " ".join(done.stderr.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]
    done = run("launch", "spec.toml", cwd=tmp_path, env={"TRADEOFF_WORKERS": "many"})
    assert done.returncode == 2 and "$TRADEOFF_WORKERS: expected a positive number" in done.stderr


def test_storage_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "spec.toml").write_text(USER_SPEC.format(name="env", n=2))
    done = run("launch", "spec.toml", cwd=tmp_path, env={"TRADEOFF_STORAGE": f"sqlite:///{tmp_path / 'env.db'}"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "env.db").exists() and not (tmp_path / "tradeoff.db").exists()


def test_help_of_every_command_has_an_example() -> None:
    runner = CliRunner()
    for cmd in ("demo", "launch", "init", "ls", "show", "pareto", "export", "apply"):
        done = runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "200"})
        assert done.exit_code == 0 and f"Example: tradeoff {cmd}" in " ".join(done.stdout.split()), cmd


def test_module_entry_point() -> None:
    done = subprocess.run([sys.executable, "-m", "tradeoff.search.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "demo" in done.stdout


def test_reading_a_study_needs_no_user_code(tmp_path: Path) -> None:
    """A study whose task module is not importable here: ls, show and pareto read it; export says plainly
    that rebuilding the model needs the task."""
    from tests.studies.fake_study import BASE, fake_study
    from tradeoff.studies import record

    url = f"sqlite:///{tmp_path / 'foreign.db'}"
    study = fake_study([{**BASE, "size_bytes": 400.0}], storage=url)
    spec = dict(study.user_attrs[record.STUDY_SPEC])
    spec["task"] = {"name": "no_such_module_here:make_task"}  # a colleague's task, not on this machine
    study.set_user_attr(record.STUDY_SPEC, spec)
    runner = CliRunner()
    for cmd in (["ls"], ["show", "fake"], ["pareto", "fake"], ["pareto", "fake", "--json"]):
        done = runner.invoke(app, [*cmd, "--storage", url], env={"COLUMNS": "200"})
        assert done.exit_code == 0, (cmd, done.output)
        assert "no_such_module_here" not in done.output or cmd[0] in ("ls", "show"), (cmd, done.output)
    exported = runner.invoke(app, ["export", "fake", "--storage", url, "--pick", "1", "--out", str(tmp_path / "b")])
    assert exported.exit_code == 1, exported.output
    text = " ".join(exported.output.split())
    assert "rebuilding the model needs the study's task" in text and "no_such_module_here" in text
    assert not (tmp_path / "b").exists()
