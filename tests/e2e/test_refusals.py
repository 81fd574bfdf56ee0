"""Bad input refused through the command line before it runs anything: a task reference that is not a
task factory, a [target] this host cannot meet; and reading a study never resolves or calls its task."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.e2e.test_cli import run
from tests.studies.fake_study import BASE, fake_study, synthetic_study
from tradeoff.search.cli import app
from tradeoff.studies import record

USER_TASK = "tests.studies.user_task:make_task"


@pytest.mark.parametrize(
    "task,argument",
    [("os:system", "command"), ("subprocess:run", "args"), ("builtins:eval", "source")],
)
def test_launch_refuses_a_stdlib_task_reference_and_runs_nothing(task: str, argument: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    command = f"touch {marker}" if task != "builtins:eval" else f"open({str(marker)!r}, 'w')"
    (tmp_path / "spec.toml").write_text(f'[study]\nname = "x"\n[task]\nname = "{task}"\n{argument} = "{command}"\n')
    done = run("launch", "spec.toml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    text = " ".join(done.stderr.split())
    assert f"task: task '{task}' names" in text and "not a task factory" in text
    assert "name a function that returns tradeoff.studies.Task (README: 'Your own model')" in text
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


@pytest.mark.parametrize(
    "target,message",
    [
        ("threads = 100000\nbatch_size = 1000000000", "target.threads = 100000: this host has"),
        ("batch_size = 1000000000000", "target.batch_size = 1000000000000: the example inputs alone would take"),
    ],
)
def test_launch_refuses_a_target_this_host_cannot_meet(target: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "spec.toml").write_text(f'[study]\nname = "x"\n[task]\nname = "{USER_TASK}"\n[target]\n{target}\n')
    done = run("launch", "spec.toml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]  # no storage: nothing written


def _study_naming(task: dict, url: str) -> None:
    study = fake_study([{**BASE, "size_bytes": 400.0}], storage=url)
    study.set_user_attr(record.STUDY_SPEC, {**study.user_attrs[record.STUDY_SPEC], "task": task})


def forbid_task_resolution(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``resolve_task`` replaced by a spy that records its calls and fails (every way to a task goes through
    it: ``check_task_arguments``, ``load_task``, spec validation): installed once the study is written."""
    calls: list[str] = []

    def refuse(name: str, *args: object, **kwargs: object) -> None:
        calls.append(name)
        raise AssertionError(f"resolve_task({name!r}) called while reading a study")

    monkeypatch.setattr("tradeoff.studies.tasks.resolve_task", refuse)
    return calls


def test_reading_a_study_never_resolves_or_calls_its_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "ran"
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    _study_naming({"name": "os:system", "command": f"touch {marker}"}, url)
    calls = forbid_task_resolution(monkeypatch)
    runner = CliRunner()
    for cmd in (["ls"], ["ls", "--json"], ["show", "fake"], ["show", "fake", "--json"], ["pareto", "fake"],
                ["pareto", "fake", "--json"]):  # fmt: skip
        done = runner.invoke(app, [*cmd, "--storage", url], env={"COLUMNS": "200"})
        assert done.exit_code == 0, (cmd, done.output)
    assert calls == [] and not marker.exists()


def test_the_dashboard_reads_a_study_without_resolving_its_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tradeoff.search.dashboard import read_only_storage, study_view

    marker = tmp_path / "ran"
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    _study_naming({"name": "os:system", "command": f"touch {marker}"}, url)
    study = synthetic_study(url, 12, name="synthetic")
    study.set_user_attr(record.STUDY_SPEC, {**study.user_attrs[record.STUDY_SPEC], "task": {"name": "builtins:eval"}})
    calls = forbid_task_resolution(monkeypatch)
    storage = read_only_storage(url)
    fake, synthetic = study_view(storage, url, "fake"), study_view(storage, url, "synthetic")
    assert fake.task == "os:system" and len(fake.completed()) == 2
    assert synthetic.task == "builtins:eval" and len(synthetic.points) == 12
    assert calls == [] and not marker.exists()
