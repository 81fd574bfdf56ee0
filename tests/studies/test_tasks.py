from __future__ import annotations

import pytest
import torch

from tradeoff.objectives import evaluate
from tradeoff.studies import Task, TaskError, load_task, validate_task
from tradeoff.studies.builtin_tasks import digits
from tradeoff.studies.tasks import check_task_arguments, resolve_task


def test_digits_teacher_is_accurate_and_cached(digits_task) -> None:
    assert evaluate(digits_task.model, digits_task.val) >= 0.97
    assert digits_task.info["teacher_val_accuracy"] >= 0.97
    again = digits()  # second build in the same cache: loads, does not train
    assert again.info["teacher_trained_s"] is None
    for a, b in zip(digits_task.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)


def test_digits_data_shapes(digits_task) -> None:
    x, y = next(iter(digits_task.train))
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert digits_task.example_inputs[0].shape == (1, 1, 8, 8)
    assert sum(len(t) for _, t in digits_task.val) == 360  # 20 % of 1797, stratified


def test_user_task_by_module_and_function_with_keyword_arguments() -> None:
    task = load_task("tests.studies.user_task:make_task", {"classes": 4})
    assert task.name == "user-mlp" and task.model(task.example_inputs[0]).shape == (1, 4)


@pytest.mark.parametrize(
    "name,match",
    [
        ("cifar", "unknown task 'cifar'"),
        ("no_such_module_xyz:make", "cannot import module"),
        ("tests.studies.user_task:missing", "has no function 'missing'"),
    ],
)
def test_unresolvable_tasks_say_why(name: str, match: str) -> None:
    with pytest.raises(TaskError, match=match):
        resolve_task(name)


def test_task_arguments_are_checked_without_building() -> None:
    with pytest.raises(TaskError, match=r"does not accept arguments \['colour'\].*takes: classes, seed"):
        check_task_arguments("tests.studies.user_task:make_task", {"colour": "red"})


def test_a_factory_returning_something_else_is_named() -> None:
    with pytest.raises(TaskError, match="returned str, expected tradeoff.studies.Task"):
        load_task("tests.studies.user_task:not_a_task")


def test_validate_task_names_the_bad_part() -> None:
    good = load_task("tests.studies.user_task:make_task")
    with pytest.raises(TaskError, match="model is str"):
        validate_task(Task("t", "model", good.train, good.val, good.example_inputs), "t")  # type: ignore[arg-type]
    with pytest.raises(TaskError, match=r"wrap a single tensor as \(x,\)"):
        validate_task(Task("t", good.model, good.train, good.val, good.example_inputs[0]), "t")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "factory,match",
    [
        ("val_not_pairs", r"val must yield \(inputs, targets\) pairs; its first item is Tensor"),
        ("val_mismatched", "val batch has 29 targets but the model gave 32 outputs"),
        ("metric_tensor", r"metric returned a tensor; it must return a Python float \(call .item\(\) on it\)"),
        ("empty_val", "val yielded no batches"),
        ("inputs_on_meta", "example_inputs are on meta but the model's parameters are on cpu"),
        ("half_model", r"the model's parameters are torch.float16; .* return model.float\(\)"),
    ],
)
def test_each_broken_contract_is_named(factory: str, match: str) -> None:
    with pytest.raises(TaskError, match=match):
        load_task(f"tests.studies.user_task:{factory}")


def test_a_task_file_by_path(tmp_path, monkeypatch) -> None:
    source = (__import__("pathlib").Path(__file__).parent / "user_task.py").read_text()
    (tmp_path / "my_tasks.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    task = load_task("my_tasks.py:make_task", {"classes": 2})
    assert task.name == "user-mlp" and task.model(task.example_inputs[0]).shape == (1, 2)
    with pytest.raises(TaskError, match="no file 'missing.py'"):
        resolve_task("missing.py:make_task")
    (tmp_path / "broken.py").write_text("raise ValueError('bad file')\n")
    with pytest.raises(TaskError, match="importing 'broken.py' failed: ValueError: bad file"):
        resolve_task("broken.py:make_task")


def test_teacher_outputs_are_computed_once_and_read_back_from_disk(tmp_path, monkeypatch) -> None:
    from tests.studies.user_task import make_task
    from tradeoff.studies.shared import shared_inputs, teacher_outputs_path

    monkeypatch.setenv("TRADEOFF_CACHE_DIR", str(tmp_path))
    task = make_task()
    calls = []
    handle = task.model.register_forward_hook(lambda *a: calls.append(1))
    first = shared_inputs(task, 1, select_on="held_back")
    # the teacher ran once on every training batch, the one held back from fine-tuning included
    assert first.teacher_cache == "computed" and len(calls) == len(first.train) + len(first.selection) == 4
    assert len(first.selection) == 1 and len(first.teacher_logits) == len(first.train) == 3
    assert teacher_outputs_path(task, first.train + first.selection).is_file()

    again = shared_inputs(task, 1)  # e.g. the next study, or `tradeoff export` in another process
    assert again.teacher_cache == "disk" and len(calls) == 4  # the teacher did not run
    assert all(torch.equal(a, b) for a, b in zip(first.teacher_logits, again.teacher_logits))

    with torch.no_grad():  # other teacher weights: another key, the teacher runs again
        task.model[0].bias.add_(1.0)
    changed = shared_inputs(task, 1)
    assert changed.teacher_cache == "computed" and len(calls) == 8
    assert not torch.equal(changed.teacher_logits[0], first.teacher_logits[0])
    handle.remove()

    other_data = make_task(seed=1)  # same name, other data: another key
    assert teacher_outputs_path(other_data, shared_inputs(other_data, 1).train) != teacher_outputs_path(
        task, first.train
    )
