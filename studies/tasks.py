"""Tasks: a trained model, its data and its metric, and how a spec's task name finds one.

A :class:`Task` is what a study compresses. A task is named by a built-in name (``"digits"``,
``"fashion-mnist"``: :mod:`tradeoff.studies.builtin_tasks`), by ``"package.module:function"`` or by
``"path/to/file.py:function"``; the function returns a :class:`Task`, and the spec's ``[task]``
table (minus ``name``) is passed to it as keyword arguments. Built-in names are references
resolved like a user's, so this module imports no built-in task.

Example:
    >>> from tradeoff.studies.tasks import resolve_task
    >>> resolve_task("digits").__name__
    'digits'
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tradeoff.objectives import top1

Batch = tuple[Any, torch.Tensor]
TaskFactory = Callable[..., "Task"]

BUILTIN_TASKS: dict[str, str] = {  # short names a spec may use, resolved like any "module:function"
    "digits": "tradeoff.studies.builtin_tasks:digits",
    "fashion-mnist": "tradeoff.studies.builtin_tasks:fashion_mnist",
}


class TaskError(ValueError):
    """A task cannot be found, built, or does not follow the Task contract."""


@dataclass
class Task:
    """A model to compress with its data.

    Args:
        name: Short name, recorded on the study.
        model: The trained fp32 teacher, used as given (eval mode) and never modified.
        train: Re-iterable ``(inputs, targets)`` batches for fine-tuning and calibration.
        val: Re-iterable held-out ``(inputs, targets)`` batches for accuracy.
        example_inputs: A tuple of tensors: the inputs of one forward pass.
        metric: ``(outputs, targets) -> float``, higher is better; default top-1 accuracy.
        info: Anything worth recording about how the task was built (e.g. teacher training time).
    """

    name: str
    model: nn.Module
    train: Iterable[Batch]
    val: Iterable[Batch]
    example_inputs: tuple[torch.Tensor, ...]
    metric: Callable[[torch.Tensor, torch.Tensor], float] = top1
    info: dict[str, Any] = field(default_factory=dict)


def validate_task(task: Any, source: str) -> Task:
    """Check that ``task`` follows the Task contract; raise :class:`TaskError` saying what is wrong.

    Example:
        >>> validate_task("a model", "doc")
        Traceback (most recent call last):
        ...
        tradeoff.studies.tasks.TaskError: task 'doc' returned str, expected tradeoff.studies.Task.
    """
    if not isinstance(task, Task):
        raise TaskError(f"task {source!r} returned {type(task).__name__}, expected tradeoff.studies.Task.")
    if not isinstance(task.model, nn.Module):
        raise TaskError(f"task {source!r}: model is {type(task.model).__name__}, expected a torch.nn.Module.")
    if not isinstance(task.example_inputs, tuple) or not all(isinstance(t, torch.Tensor) for t in task.example_inputs):
        raise TaskError(
            f"task {source!r}: example_inputs must be a tuple of tensors, "
            f"got {type(task.example_inputs).__name__}; wrap a single tensor as (x,)."
        )
    if not callable(task.metric):
        raise TaskError(f"task {source!r}: metric must be callable (outputs, targets) -> float.")
    for name in ("train", "val"):
        if not isinstance(getattr(task, name), Iterable):
            raise TaskError(f"task {source!r}: {name} must be an iterable of (inputs, targets) batches.")
    not_fp32 = sorted(
        {str(p.dtype) for p in task.model.parameters() if p.is_floating_point() and p.dtype != torch.float32}
    )
    if not_fp32:
        raise TaskError(
            f"task {source!r}: the model's parameters are {', '.join(not_fp32)}; tradeoff compresses an fp32 "
            "teacher (16-bit floats are one of the forms it searches): return model.float()."
        )
    task.model.eval()  # used as given, for inference: never trained by tradeoff
    _check_devices(task, source)
    _check_first_val_batch(task, source)
    return task


def _check_devices(task: Task, source: str) -> None:
    model_device = next((p.device for p in task.model.parameters()), None)
    for x in task.example_inputs:
        if model_device is not None and x.device != model_device:
            raise TaskError(
                f"task {source!r}: example_inputs are on {x.device} but the model's parameters are on "
                f"{model_device}; return both on the same device (tradeoff moves copies to target.device itself)."
            )


def _check_first_val_batch(task: Task, source: str) -> None:
    """Run the model and the metric on the first validation batch, naming what does not fit."""
    batch = next(iter(task.val), None)
    if batch is None:
        raise TaskError(f"task {source!r}: val yielded no batches; accuracy needs held-out data.")
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TaskError(
            f"task {source!r}: val must yield (inputs, targets) pairs; its first item is {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            + "."
        )
    inputs, targets = batch
    if not isinstance(targets, torch.Tensor):
        raise TaskError(f"task {source!r}: val targets must be a tensor, got {type(targets).__name__}.")
    try:
        with torch.no_grad():
            outputs = task.model(*(tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)))
    except Exception as exc:  # noqa: BLE001 - any failure here is the task's contract being broken
        raise TaskError(
            f"task {source!r}: the model fails on the first val batch: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(outputs, torch.Tensor):
        raise TaskError(
            f"task {source!r}: the model returned {type(outputs).__name__}; a tensor of outputs is expected."
        )
    if outputs.shape[0] != targets.shape[0]:
        raise TaskError(
            f"task {source!r}: val batch has {targets.shape[0]} targets but the model gave {outputs.shape[0]} outputs; "
            "inputs and targets of a batch must have the same batch size."
        )
    value = task.metric(outputs, targets)
    if isinstance(value, torch.Tensor):
        raise TaskError(
            f"task {source!r}: metric returned a tensor; it must return a Python float (call .item() on it)."
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskError(f"task {source!r}: metric returned {type(value).__name__}; it must return a float.")


def resolve_task(name: str) -> TaskFactory:
    """The factory for a built-in task name, ``"package.module:function"`` or ``"path/to/file.py:function"``.

    Raises:
        TaskError: The name is none of those, or its module or function cannot be found.

    Example:
        >>> resolve_task("tradeoff.studies.builtin_tasks:fashion_mnist").__name__
        'fashion_mnist'
        >>> resolve_task("cifar")
        Traceback (most recent call last):
        ...
        tradeoff.studies.tasks.TaskError: unknown task 'cifar': expected a built-in task (digits, fashion-mnist), ...
    """
    module_name, sep, func_name = BUILTIN_TASKS.get(name, name).rpartition(":")
    if not sep or not module_name or not func_name:
        raise TaskError(
            f"unknown task {name!r}: expected a built-in task ({', '.join(sorted(BUILTIN_TASKS))}), "
            "'package.module:function' or 'path/to/file.py:function'"
        )
    if module_name.endswith(".py"):
        module = _module_from_file(name, Path(module_name))
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise TaskError(f"task {name!r}: cannot import module {module_name!r} ({exc})") from None
    factory = getattr(module, func_name, None)
    if not callable(factory):
        raise TaskError(f"task {name!r}: module {module_name!r} has no function {func_name!r}")
    return factory


def _module_from_file(name: str, path: Path) -> Any:
    """Import a task file given by path (relative paths are to the working directory)."""
    if not path.is_file():
        raise TaskError(f"task {name!r}: no file {str(path)!r} (relative paths start at {Path.cwd()}).")
    module_name = f"tradeoff_user_task_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise TaskError(f"task {name!r}: {str(path)!r} cannot be imported as Python.")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - report any error in the user's file as a task error
        raise TaskError(f"task {name!r}: importing {str(path)!r} failed: {type(exc).__name__}: {exc}") from None
    return module


def check_task_arguments(name: str, kwargs: dict[str, Any]) -> TaskFactory:
    """Resolve ``name`` and check ``kwargs`` bind to its signature, without building the task.

    Example:
        >>> check_task_arguments("digits", {"colour": "red"})
        Traceback (most recent call last):
        ...
        tradeoff.studies.tasks.TaskError: task 'digits' does not accept arguments ['colour'] (...); it takes: seed, batch_size
    """
    factory = resolve_task(name)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        params = ", ".join(inspect.signature(factory).parameters) or "none"
        raise TaskError(
            f"task {name!r} does not accept arguments {sorted(kwargs)} ({exc}); it takes: {params}"
        ) from None
    return factory


def load_task(name: str, kwargs: dict[str, Any] | None = None) -> Task:
    """Build and validate the task ``name`` with keyword arguments ``kwargs``.

    Example:
        >>> load_task("digits", {"seed": 0}).name  # the first time, trains its teacher (seconds)
        'digits'
    """
    kwargs = dict(kwargs or {})
    factory = check_task_arguments(name, kwargs)
    return validate_task(factory(**kwargs), name)
