"""The `tradeoff` command end to end, through the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXE = shutil.which("tradeoff") or "tradeoff"
CONFIG_FIELDS = (
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
)


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "TRADEOFF_STORAGE"}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(
        [EXE, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


@pytest.mark.slow
def test_demo_search_then_pareto_and_export(tmp_path: Path) -> None:
    done = run("demo", "--trials", "6", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tradeoff.db").exists()  # the embedded default, in the working directory
    assert "Pareto front of digits-demo" in done.stdout

    shown = run("pareto", "digits-demo", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    front = json.loads(shown.stdout)
    assert front, "the front is empty"
    for entry in front:
        assert {"trial", "params", "values", "cost"} <= set(entry)
        assert set(entry["values"]) == {"accuracy", "size_bytes", "latency_ms", "energy_mj"}
    baseline_size = next((e["values"]["size_bytes"] for e in front if e["role"] == "baseline"), None)
    if baseline_size is None:  # the baseline may be dominated; read it from the export instead
        baseline_size = json.loads(
            (run("export", "digits-demo", "--out", "b", cwd=tmp_path), (tmp_path / "b" / "config.json").read_text())[1]
        )["baseline"]["size_bytes"]
    assert any(e["values"]["size_bytes"] < baseline_size for e in front)

    exported = run("export", "digits-demo", "--pick", "knee", "--out", "best", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    cfg = json.loads((tmp_path / "best" / "config.json").read_text())
    for field in CONFIG_FIELDS:
        assert field in cfg, field
    assert cfg["format"] == "tradeoff.config/1" and cfg["study"] == "digits-demo"
    assert cfg["trial"] in {e["trial"] for e in front}
    for name in ("accuracy", "size_bytes", "latency_ms", "energy_mj"):
        assert cfg["provenance"][name]["source"] in ("measured", "estimated")
    assert cfg["provenance"]["energy_mj"]["source"] == "estimated"

    by_cost = run(
        "export", "digits-demo", "--pick", "cost", "--out", "cheap", "--weights", "size_bytes=1", cwd=tmp_path
    )
    assert by_cost.returncode == 0, by_cost.stderr
    cheap = json.loads((tmp_path / "cheap" / "config.json").read_text())
    assert cheap["weights"]["size_bytes"] == 1.0
    assert cheap["values"]["size_bytes"] == min(e["values"]["size_bytes"] for e in front)

    again = run("demo", "--trials", "6", cwd=tmp_path)  # resumes: nothing left to run
    assert again.returncode == 0
    assert len(json.loads(run("pareto", "digits-demo", "--json", cwd=tmp_path).stdout)) == len(front)


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


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("launch", cwd=tmp_path).returncode == 2  # missing argument
    assert run("demo", "--trials", "0", cwd=tmp_path).returncode == 2
    bad_storage = run("demo", "--storage", "tradeoff.db", cwd=tmp_path)
    assert bad_storage.returncode == 2 and "not a database URL" in bad_storage.stderr
    missing = run("pareto", "nothing-here", cwd=tmp_path)
    assert missing.returncode == 2 and "tradeoff launch" in missing.stderr
    assert not (tmp_path / "tradeoff.db").exists()


def test_a_runtime_failure_exits_1_with_a_message_and_a_traceback_only_with_debug(tmp_path: Path) -> None:
    (tmp_path / "spec.toml").write_text('[study]\nname = "x"\n[task]\nname = "tests.studies.user_task:broken"\n')
    done = run("launch", "spec.toml", cwd=tmp_path)
    assert done.returncode == 1
    assert "the user's data server is down" in done.stderr and "Traceback" not in done.stderr
    debug = run("--debug", "launch", "spec.toml", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_storage_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "spec.toml").write_text(
        '[study]\nname = "env"\nn_trials = 2\n[task]\nname = "tests.studies.user_task:make_task"\n'
        "[space.distillation]\nsteps = 5\n"
    )
    done = run("launch", "spec.toml", cwd=tmp_path, env={"TRADEOFF_STORAGE": f"sqlite:///{tmp_path / 'env.db'}"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "env.db").exists() and not (tmp_path / "tradeoff.db").exists()


def test_help_of_every_command_has_an_example(tmp_path: Path) -> None:
    for cmd in ("demo", "launch", "pareto", "export"):
        done = run(cmd, "--help", cwd=tmp_path)
        assert done.returncode == 0 and "Example: tradeoff " + cmd in " ".join(done.stdout.split())


def test_module_entry_point(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tradeoff.search.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "demo" in done.stdout
