"""The worked examples in ``examples/`` run end to end, reduced in size.

Each example's own spec is loaded and shrunk (3 trials, a few distillation steps, a smaller
teacher on less data) and run by the real runner against SQLite in a temporary folder. What must
hold: every trial completes, the user's teacher learned its task (baseline accuracy well above
chance) and some candidate is smaller than the baseline. One test runs the tabular example through
the ``tradeoff`` console script, as the examples' README tells users to.

The int8 deployable form (``torch.compile``, ~20 s for its first build) is left out here
(``target.backend = "eager"``): tests/spaces and tests/search cover it; these tests are about the
examples' models, data and specs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

from tradeoff.objectives import evaluate
from tradeoff.search import Runner
from tradeoff.studies import load_task, parse_spec, validate_task
from tradeoff.studies.datasets import DataError, fashion_mnist_arrays
from tradeoff.studies.shared import split_val

ROOT = Path(__file__).resolve().parents[2]
EXE = shutil.which("tradeoff") or "tradeoff"
REQUIRE_DATA = os.environ.get("TRADEOFF_REQUIRE_DATA") == "1"  # .ci/run installs Fashion-MNIST and sets it

# Reduced sizes: task keyword arguments that shrink each teacher and its data, and the lowest
# baseline accuracy that still shows the teacher learned its task (each comment gives chance).
REDUCED: dict[str, dict[str, Any]] = {
    "tabular_mlp": {
        "task": {"epochs": 30},  # 455 rows, ~450 steps: ~1-2 s
        "min_accuracy": 0.9,  # majority class 0.63; full size reaches 0.96
    },
    "transformer_seq": {
        # ~310 steps: 5 of 5 seeds tried reach > 0.99 (at 8 epochs 2 of 5 had not yet found the rule)
        "task": {"train_size": 4000, "val_size": 1000, "epochs": 10},
        "min_accuracy": 0.9,  # chance 0.125, token counts alone ~0.44: above 0.9 the model uses attention
    },
    "fashion_resnet": {
        "task": {"train_size": 3000, "val_size": 1000, "epochs": 2, "width": 8, "finetune_size": 640},
        "min_accuracy": 0.6,  # chance 0.1; 2 epochs on 3k images at width 8 reach ~0.7, full size >= 0.9
    },
}


def load_example(example: str) -> ModuleType:
    """Import ``examples/<example>.py`` by path (``examples/`` is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"tradeoff_example_{example}", ROOT / "examples" / f"{example}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reduced_spec_data(example: str, name: str | None = None) -> dict[str, Any]:
    """The example's spec as a dict, shrunk for a test run."""
    data = tomllib.loads((ROOT / "examples" / f"{example}.toml").read_text(encoding="utf-8"))
    data["study"]["n_trials"] = 3  # the baseline and two candidates
    if name:
        data["study"]["name"] = name
    data["task"].update(REDUCED[example]["task"])
    data["target"]["backend"] = "eager"  # no int8 compile (see the module docstring)
    data["space"]["distillation"]["steps"] = 10
    return data


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run with one intra-op thread, restoring the count after.

    This 2-core machine is shared with other processes; with two threads each, small models ran
    10-40x slower here (20 distillation steps of the transformer: 8-27 s vs 0.6-0.8 s).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def needs_fashion_mnist() -> None:
    """Skip when Debian's Fashion-MNIST is absent, unless CI requires the data (then the test fails)."""
    try:
        fashion_mnist_arrays()
    except DataError as exc:
        if REQUIRE_DATA:
            raise
        pytest.skip(f"Fashion-MNIST is not installed here: {exc}")


@pytest.mark.parametrize("example", sorted(REDUCED))
def test_example_spec_is_valid_as_shipped(example: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    data = tomllib.loads((ROOT / "examples" / f"{example}.toml").read_text(encoding="utf-8"))
    spec = parse_spec(data, f"examples/{example}.toml")  # also checks [task]'s arguments against make_task
    assert spec.task.name == f"examples/{example}.py:make_task"
    assert spec.study.name == "example-" + example.replace("_", "-")


@pytest.mark.slow
@pytest.mark.parametrize("example", sorted(REDUCED))
def test_example_runs_reduced(example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread) -> None:
    if example == "fashion_resnet":
        needs_fashion_mnist()
    monkeypatch.chdir(ROOT)  # [task] name is "examples/<file>.py:make_task", relative to the working directory
    spec = parse_spec(reduced_spec_data(example), f"examples/{example}.toml (reduced)")
    study = Runner(spec, f"sqlite:///{tmp_path / 'study.db'}").run()

    trials = study.get_trials()
    errors = [t.user_attrs.get("error") for t in trials if t.state != TrialState.COMPLETE]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3, errors
    baseline, candidates = trials[0], trials[1:]
    assert baseline.user_attrs["role"] == "baseline"
    accuracy, size = baseline.values[0], baseline.values[1]
    assert accuracy >= REDUCED[example]["min_accuracy"], f"the teacher did not learn: accuracy {accuracy}"
    # tradeoff measures what the user did, on the validation samples it reports on (less the selection slice)
    task = load_task(spec.task.name, spec.task.kwargs)  # the teacher from the cache
    _, reported = split_val(task.val, spec.search.rung_val_size)
    assert accuracy == pytest.approx(evaluate(task.model, reported, task.metric), abs=1e-6)
    assert any(t.values[1] < size for t in candidates), [t.values for t in trials]


def test_the_tabular_teacher_is_trained_once_then_loaded(one_thread) -> None:
    make_task = load_example("tabular_mlp").make_task
    first = make_task(dataset="wine", epochs=20)  # 142 rows, ~100 steps: under a second
    again = make_task(dataset="wine", epochs=20)
    assert again.info["teacher_cache"] == first.info["teacher_cache"]
    assert Path(first.info["teacher_cache"]).parent == Path(os.environ["TRADEOFF_CACHE_DIR"]) / "examples"
    assert again.info["teacher_trained_s"] is None  # loaded, not trained
    assert again.info["teacher_val_accuracy"] == first.info["teacher_val_accuracy"]
    assert make_task(dataset="wine", epochs=21).info["teacher_cache"] != first.info["teacher_cache"]


@pytest.mark.slow  # pretrains the network once in the session's cache: ~15-30 s here
def test_the_pretrained_example_builds_a_valid_task_whose_network_learned(
    one_thread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the spec names its task by a path relative to the repository root
    shipped = parse_spec(tomllib.loads((ROOT / "examples" / "pretrained_cnn.toml").read_text(encoding="utf-8")))
    assert shipped.task.name == "examples/pretrained_cnn.py:make_task"
    tuning = shipped.space.distillation  # the settings issue 26 asks for a network trained elsewhere
    assert (tuning.lr, tuning.batchnorm, tuning.schedule, shipped.search.keep_better, shipped.search.select_on) == (
        "auto",
        "auto",
        "auto",
        True,
        "validation",
    )
    example = load_example("pretrained_cnn")
    task = validate_task(example.make_task(data="digits"), "pretrained_cnn")  # pretrains once (~15-30 s), cached
    batches = list(task.train)
    assert [len(y) for _, y in batches] == [32] * 10 + [30]  # 350 augmented views in batches of 32
    assert sum(len(y) for _, y in task.val) == 360  # the built-in digits task's held-out split
    assert task.info["teacher_val_accuracy"] > 0.9  # chance is 0.1
    x, y = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    assert float((example.predict(task.model, x) == y).float().mean()) > 0.6  # views and labels aligned
    agreement = example.make_task(data="digits", metric="agreement")  # loaded from the cache
    assert agreement.info["teacher_trained_s"] is None and agreement.info["teacher_val_accuracy"] == 1.0
    with torch.no_grad():  # "agreement" scores the network's own predictions: the teacher agrees with itself
        assert all(agreement.metric(agreement.model(xv), yv) == 1.0 for xv, yv in agreement.val)


def test_the_sequence_task_is_deterministic_and_its_answer_follows_the_query() -> None:
    example = load_example("transformer_seq")
    query, make_sequences = example.QUERY, example.make_sequences
    tokens, labels = make_sequences(200, 16, 8, seed=3)
    again, _ = make_sequences(200, 16, 8, seed=3)
    assert torch.equal(tokens, again)
    for row, label in zip(tokens.tolist(), labels.tolist()):
        assert row.count(query) == 1
        assert row[row.index(query) + 1] == 1 + label


def test_the_fashion_example_without_data_says_how_to_install_it(tmp_path: Path) -> None:
    make_task = load_example("fashion_resnet").make_task
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        make_task(data_dir=str(tmp_path))


@pytest.mark.slow
def test_tabular_example_through_the_console_script(tmp_path: Path) -> None:
    spec = tmp_path / "tabular.toml"
    spec.write_text(reduced_spec_text("tabular_mlp", name="example-tabular-cli"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "TRADEOFF_STORAGE"}
    env["OMP_NUM_THREADS"] = "1"  # see one_thread
    url = f"sqlite:///{tmp_path / 'study.db'}"
    done = subprocess.run(
        [EXE, "launch", str(spec), "--storage", url],
        check=False,
        cwd=ROOT,  # as the examples' README says: run from the repository root
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert "example-tabular-cli" in done.stdout
    study = optuna.load_study(study_name="example-tabular-cli", storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3


def set_key(text: str, table: str, key: str, literal: str) -> str:
    """``text`` (TOML) with ``key = literal`` in ``[table]``: the key's line replaced, or added under the header."""
    lines = text.splitlines()
    start = lines.index(f"[{table}]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    for i in range(start + 1, end):
        if re.match(rf"{re.escape(key)}\s*=", lines[i]):
            lines[i] = f"{key} = {literal}"
            break
    else:
        lines.insert(start + 1, f"{key} = {literal}")
    return "\n".join(lines) + "\n"


def reduced_spec_text(example: str, name: str) -> str:
    """The example's TOML file, comments kept, edited to the reduced spec of :func:`reduced_spec_data`."""
    text = (ROOT / "examples" / f"{example}.toml").read_text(encoding="utf-8")
    text = set_key(text, "study", "name", f'"{name}"')
    text = set_key(text, "study", "n_trials", "3")
    for key, value in REDUCED[example]["task"].items():
        text = set_key(text, "task", key, str(value))
    text = set_key(text, "target", "backend", '"eager"')
    text = set_key(text, "space.distillation", "steps", "10")
    assert tomllib.loads(text) == reduced_spec_data(example, name)  # the edit is exactly the reduction
    return text
