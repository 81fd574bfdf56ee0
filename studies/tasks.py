"""Tasks: a trained model, its data and its metric, and how a spec's task name finds one.

A :class:`Task` is what a study compresses. A task is named by a built-in name (``"digits"``,
``"fashion-mnist"``: :mod:`tradeoff.studies.builtin_tasks`), by ``"package.module:function"`` or by
``"path/to/file.py:function"``; the function returns a :class:`Task`, and the spec's ``[task]``
table (minus ``name``) is passed to it as keyword arguments. Built-in names are references
resolved like a user's, so this module imports no built-in task.

A reference is code the spec runs, so what is clearly no task factory is refused when it is
resolved, before it could be called (:func:`refuse_non_factory`): Python's built-ins, functions of
its standard library (``os:system``, ``subprocess:run``) and compiled functions without Python source.

Example:
    >>> from tradeoff.studies.tasks import resolve_task
    >>> resolve_task("digits").__name__
    'digits'
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import site
import sys
import sysconfig
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
    refuse_non_factory(name, factory)
    return factory


TASK_HELP = "name a function that returns tradeoff.studies.Task (README: 'Your own model')"


def refuse_non_factory(name: str, factory: Any) -> None:
    """Refuse, without calling it, a callable that is clearly not a task factory.

    Refused: Python's built-ins (``builtins:eval``), functions and classes of the standard library
    (``os:system``, ``subprocess:run``, ``shutil:rmtree``, also when a user module re-exports them),
    and compiled functions without Python source. Any Python callable defined outside the standard
    library passes (a function, a class, an object with ``__call__``; through decorators and
    ``functools.partial``), as do the installed packages' (site-packages).

    Raises:
        TaskError: saying what ``name`` names and what to name instead.

    Example:
        >>> import os
        >>> refuse_non_factory("os:system", os.system)
        Traceback (most recent call last):
        ...
        tradeoff.studies.tasks.TaskError: task 'os:system' names a function of Python's standard library, not a task factory; ...
        >>> refuse_non_factory("mine:make", lambda: None)  # any Python function of yours passes
    """
    callee = _callee(factory)
    module = str(getattr(callee, "__module__", None) or "")
    top = module.partition(".")[0]
    source = _python_source(callee)
    stdlib = f"a {'class' if inspect.isclass(callee) else 'function'} of Python's standard library"
    if top == "builtins":
        what = "a Python built-in"
    elif source is not None:  # Python code: where it lives decides, not a module name a user's package may share
        what = stdlib if _in_stdlib(source) else None
    elif top in sys.stdlib_module_names or top in sys.builtin_module_names:
        what = stdlib
    else:
        what = f"a compiled callable without Python source ({module or '?'}.{getattr(callee, '__name__', '?')})"
    if what is not None:
        raise TaskError(f"task {name!r} names {what}, not a task factory; {TASK_HELP}.")


def _callee(obj: Any) -> Any:
    """What calling ``obj`` runs: through ``functools.partial``, bound methods, and the wrappers of
    decorators that are not the user's code (``functools.cache``'s, ``functools.singledispatch``'s)."""
    for _ in range(100):  # a cycle of wrappers is not followed forever
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif inspect.ismethod(obj):
            obj = obj.__func__
        elif inspect.isclass(obj) or inspect.isbuiltin(obj) or not hasattr(obj, "__wrapped__"):
            return obj
        elif inspect.isfunction(obj) and not _in_stdlib(obj.__code__.co_filename):
            return obj  # a wrapper the user wrote is the user's code, whatever it wraps
        else:  # a compiled wrapper or one of the standard library's: what it wraps decides
            obj = obj.__wrapped__
    return obj


def _python_source(obj: Any) -> str | None:
    """The file of the Python code a call of ``obj`` runs, or None when it runs none (compiled code)."""
    if inspect.isbuiltin(obj):
        return None
    if inspect.isfunction(obj):
        return obj.__code__.co_filename
    if inspect.isclass(obj):  # a Python class: its own methods' file, its module's, else its bases' methods'
        own = (f.__code__.co_filename for f in vars(obj).values() if inspect.isfunction(f))
        file = next(own, None) or getattr(sys.modules.get(obj.__module__), "__file__", None)
        if file:
            return None if file.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)) else file
        inherited = (
            f.__code__.co_filename for k in obj.__mro__[1:-1] for f in vars(k).values() if inspect.isfunction(f)
        )
        return next(inherited, None)
    call = type(obj).__call__  # an instance: its class's __call__ runs
    return call.__code__.co_filename if inspect.isfunction(call) else None


@functools.cache
def _stdlib_roots() -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """(the standard library's folders, the installed packages' folders, which may lie inside them)."""
    paths = sysconfig.get_paths()
    stdlib = {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib") if paths.get(k)}
    packages = {Path(paths[k]).resolve() for k in ("purelib", "platlib") if paths.get(k)}
    packages |= {Path(p).resolve() for p in getattr(site, "getsitepackages", list)()}  # absent in old virtualenvs
    if site.ENABLE_USER_SITE and site.getusersitepackages():
        packages.add(Path(site.getusersitepackages()).resolve())
    return tuple(stdlib), tuple(packages)


def _in_stdlib(file: str) -> bool:
    """Whether ``file`` is in the standard library's folders and not among the installed packages."""
    path = Path(file).resolve()
    stdlib, packages = _stdlib_roots()
    if {"site-packages", "dist-packages"} & set(path.parts) or any(path.is_relative_to(p) for p in packages):
        return False
    return any(path.is_relative_to(p) for p in stdlib)


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
