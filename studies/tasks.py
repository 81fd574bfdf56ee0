"""Tasks: a trained model, its data and its metric.

A :class:`Task` is what a study compresses. Built-in tasks use data shipped inside installed
packages (nothing is downloaded) and train their own teacher once, caching it on disk. A user
task is ``"package.module:function"`` returning a :class:`Task`; the spec's ``[task]`` table
(minus ``name``) is passed to it as keyword arguments.

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
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tradeoff.objectives import evaluate, top1
from tradeoff.spaces import cache_teacher_outputs, materialise

Batch = tuple[Any, torch.Tensor]
TaskFactory = Callable[..., "Task"]


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


def cache_dir() -> Path:
    """Where built-in tasks keep trained teachers: ``$TRADEOFF_CACHE_DIR``, else the XDG cache."""
    env = os.environ.get("TRADEOFF_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tradeoff"


def validate_task(task: Any, source: str) -> Task:
    """Check that ``task`` follows the Task contract; raise :class:`TaskError` saying what is wrong."""
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


def at_batch_size(example_inputs: tuple[torch.Tensor, ...], batch_size: int) -> tuple[torch.Tensor, ...]:
    """``example_inputs`` resized along the batch dimension (repeated or cut) to ``batch_size``.

    Example:
        >>> at_batch_size((torch.zeros(2, 3),), 5)[0].shape
        torch.Size([5, 3])
    """
    out = []
    for x in example_inputs:
        reps = -(-batch_size // x.shape[0])
        out.append(x.repeat(reps, *([1] * (x.dim() - 1)))[:batch_size].contiguous())
    return tuple(out)


@dataclass
class SharedInputs:
    """What every compression of a task shares: built once per process, reused by every trial."""

    example_inputs: tuple[torch.Tensor, ...]  # at the target batch size
    train: list[Batch]  # one materialised pass over task.train, same order for every trial
    teacher_logits: list[torch.Tensor]  # the teacher's outputs on each of those batches
    teacher_cache: str = "computed"  # "computed" (the teacher ran, result stored) or "disk" (read back)


def _head(inputs: Any, n: int) -> Any:
    """The first ``n`` samples of a batch's inputs (a tensor, or a tuple/list of them)."""
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(x[:n] for x in inputs)
    return inputs[:n]


def val_subset(val: Iterable[Batch], samples: int) -> list[Batch]:
    """The first ``samples`` validation samples, as batches kept in memory (the fixed subset
    fidelity rungs score; final accuracy always uses all of ``val``).

    Example:
        >>> val = [(torch.zeros(4, 2), torch.arange(4)), (torch.ones(4, 2), torch.arange(4))]
        >>> [len(t) for _, t in val_subset(val, 6)]
        [4, 2]
    """
    out: list[Batch] = []
    left = samples
    for inputs, targets in val:
        if left <= 0:
            break
        take = min(left, len(targets))
        out.append((_head(inputs, take), targets[:take]))
        left -= take
    return out


def batches_sha256(batches: list[Batch]) -> str:
    """A hash of materialised ``(inputs, targets)`` batches: values, shapes, dtypes and order."""
    h = hashlib.sha256()
    for inputs, targets in batches:
        for t in (*(inputs if isinstance(inputs, (tuple, list)) else (inputs,)), targets):
            t = torch.as_tensor(t).detach().cpu().contiguous()
            h.update(f"{tuple(t.shape)}:{t.dtype};".encode())
            h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def teacher_outputs_path(task: Task, train: list[Batch]) -> Path:
    """Where the teacher's outputs on ``train`` are cached: keyed by task, teacher weights and data."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in task.name)[:60]
    key = f"{weights_sha256(task.model)[:16]}-{batches_sha256(train)[:16]}"
    return cache_dir() / "teacher-outputs" / f"{safe}-{key}.pt"


def shared_inputs(task: Task, batch_size: int) -> SharedInputs:
    """Materialise the training batches and the teacher's outputs on them, cached on disk.

    The teacher runs once per task, teacher weights and training data: later studies and
    processes (``export``, ``apply``, other workers on the same host) read its outputs back from
    ``<cache dir>/teacher-outputs/``, so no trial runs the teacher.
    """
    train = materialise(task.train)
    example = at_batch_size(task.example_inputs, batch_size)
    path = teacher_outputs_path(task, train)
    if path.exists():
        try:
            logits = torch.load(path, weights_only=True)
            if isinstance(logits, list) and len(logits) == len(train):
                return SharedInputs(example, train, logits, teacher_cache="disk")
        except Exception:  # noqa: BLE001, S110  # a torn or foreign file: recompute and overwrite it
            pass
    logits = cache_teacher_outputs(task.model, train)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(logits, tmp)
    os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the whole new one
    return SharedInputs(example, train, logits, teacher_cache="computed")


def weights_sha256(model: nn.Module) -> str:
    """A hash of a model's weights and buffers (names, shapes, dtypes and values), to recognise a teacher.

    Example:
        >>> weights_sha256(nn.Linear(2, 2)) == weights_sha256(nn.Linear(2, 2))
        False
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- built-in: digits


class DigitsCNN(nn.Module):
    """The digits teacher: three 3x3 conv blocks with BatchNorm, global pooling, a linear head.

    Wide enough (32-64-64 channels) that pruning has real channels to remove; ~56 k parameters.
    """

    def __init__(self, width: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.classifier = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


DIGITS_TRAINING = {  # why: converges to ~99 % val in ~5 s on 2 cores; fixed so the cache key is stable
    "arch": "DigitsCNN/v1",
    "epochs": 30,
    "lr": 2e-3,
    "batch_size": 64,
    "val_fraction": 0.2,
}


def _digits_arrays(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()  # 1797 8x8 images shipped inside scikit-learn
    x = (data.images / 16.0).astype(np.float32)[:, None]  # pixel values 0..16 -> [0, 1]
    return train_test_split(
        x, data.target, test_size=DIGITS_TRAINING["val_fraction"], random_state=seed, stratify=data.target
    )


def _train_teacher(model: nn.Module, train: DataLoader, epochs: int, lr: float, seed: int) -> nn.Module:
    """Adam with a cosine schedule to zero: the whole recipe, fixed so a teacher's cache key means one thing."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(train))
    model.train()
    for _ in range(epochs):
        for x, y in train:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def _cached_teacher(
    prefix: str, recipe: dict[str, Any], model: nn.Module, dataset: TensorDataset, seed: int
) -> dict[str, Any]:
    """Load ``model``'s weights from the cache, or train it by ``recipe`` and cache them.

    The cache file is keyed by the training recipe (architecture, data size, epochs, seed...), so a
    changed recipe trains a new teacher instead of loading a stale one. Returns what to record.
    """
    key = hashlib.sha256(json.dumps({**recipe, "seed": seed}, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"{prefix}-teacher-{key}.pt"
    info: dict[str, Any] = {"teacher_cache": str(path), "teacher_recipe": recipe}
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        info["teacher_trained_s"] = None
    else:
        start = time.perf_counter()
        loader = DataLoader(
            dataset, batch_size=recipe["batch_size"], shuffle=True, generator=torch.Generator().manual_seed(seed)
        )
        _train_teacher(model, loader, recipe["epochs"], recipe["lr"], seed)
        info["teacher_trained_s"] = round(time.perf_counter() - start, 2)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)  # atomic: a concurrent run never reads half a file
    model.eval()
    return info


def digits(*, seed: int = 0, batch_size: int = 64) -> Task:
    """scikit-learn's digits (8x8, 10 classes) with a small CNN teacher trained on first use.

    The teacher is trained seeded and cached under :func:`cache_dir`, keyed by its training
    recipe, so later trials and later runs load it instead of training again.

    Args:
        seed: Seed of the train/validation split and of the teacher's training.
        batch_size: Batch size of the training batches (fine-tuning and calibration).
    """
    x_tr, x_va, y_tr, y_va = _digits_arrays(seed)
    gen = torch.Generator().manual_seed(seed)
    train = DataLoader(
        TensorDataset(torch.from_numpy(x_tr), torch.from_numpy(y_tr).long()),
        batch_size=batch_size,
        shuffle=True,
        generator=gen,
    )
    val = DataLoader(TensorDataset(torch.from_numpy(x_va), torch.from_numpy(y_va).long()), batch_size=512)
    model = DigitsCNN()
    info = _cached_teacher("digits", DIGITS_TRAINING, model, train.dataset, seed)  # type: ignore[arg-type]
    info["teacher_val_accuracy"] = evaluate(model, val)
    return Task(
        name="digits",
        model=model,
        train=train,
        val=val,
        example_inputs=(torch.from_numpy(x_va[:1]),),
        info=info,
    )


# --------------------------------------------------------------------------- built-in: fashion-mnist


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 conv-BN, identity (or 1x1 conv-BN) shortcut, ReLU after the sum."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class FashionResNet(nn.Module):
    """The fashion-mnist teacher: a small ResNet. Stem conv at 28x28, max-pool, then three stages of
    one basic block each at 14x14, 7x7 and 4x4 with widths ``w, 2w, 4w``.

    w = 64 (the built-in default): ~1.2 M parameters, ~41 M MACs per image: enough work per forward
    pass that int8 kernels and pruning change batch-1 latency (int8 3.2x faster here; at w = 32,
    ~10 M MACs, per-operator overhead holds it to 1.4x), and small enough to train in ~17 min at one
    thread and to fine-tune for a few hundred steps a trial.
    """

    def __init__(self, width: int = 32, classes: int = 10) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2))
        self.layer1 = BasicBlock(w, w)
        self.layer2 = BasicBlock(w, 2 * w, 2)
        self.layer3 = BasicBlock(2 * w, 4 * w, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))


FASHION_MEAN, FASHION_STD = 0.2860, 0.3530  # of the 60k training pixels (scaled to [0, 1])
FASHION_TRAINING = {  # why: >= 90 % test accuracy in minutes on 2 cores; fixed so the cache key is stable
    "arch": "FashionResNet/v1",
    # 64: ~41 M MACs, enough work per operator that int8 kernels and pruning show at batch 1 (3.2x for
    # int8 here); at 32 (~10 M MACs) per-operator overhead hides them (1.4x), so trade-offs barely show
    "width": 64,
    "epochs": 3,
    "lr": 3e-3,
    "batch_size": 128,
}


def fashion_mnist(
    *,
    seed: int = 0,
    batch_size: int = 64,
    data_dir: str | None = None,
    train_size: int | None = None,
    val_size: int | None = None,
    epochs: int | None = None,
    width: int | None = None,
) -> Task:
    """Fashion-MNIST (28x28, 10 classes) from Debian's ``dataset-fashion-mnist``, ResNet teacher cached.

    Validation is the 10k test set; the teacher trains on the training images (all 60k by default)
    once, seeded, and is cached by its recipe. Reduced sizes are for tests and quick looks: a
    teacher trained on fewer images or epochs gets its own cache entry.

    Args:
        seed: Seed of the training subset and of the teacher's training.
        batch_size: Batch size of the training batches (fine-tuning and calibration).
        data_dir: Folder of the IDX files (default ``$TRADEOFF_FASHION_MNIST_DIR``, else
            ``/usr/share/datasets/fashion-mnist``).
        train_size: Use this many training images (a seeded random subset); default all 60,000.
        val_size: Use the first this many test images; default all 10,000.
        epochs: Teacher training epochs (default 3).
        width: Teacher width ``w`` (default 64).
    """
    from .datasets import DataError, fashion_mnist_arrays

    try:
        x_tr, y_tr, x_te, y_te = fashion_mnist_arrays(data_dir)
    except DataError as exc:
        raise TaskError(str(exc)) from None
    for name, value, limit in (("train_size", train_size, len(x_tr)), ("val_size", val_size, len(x_te))):
        if value is not None and not (isinstance(value, int) and 0 < value <= limit):
            raise TaskError(f"fashion-mnist: {name} must be an integer in 1..{limit}, got {value!r}.")
    if train_size is not None:
        keep = np.random.default_rng(seed).permutation(len(x_tr))[:train_size]
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if val_size is not None:
        x_te, y_te = x_te[:val_size], y_te[:val_size]

    def tensor(images: np.ndarray) -> torch.Tensor:
        return ((torch.from_numpy(images.astype(np.float32)) / 255.0 - FASHION_MEAN) / FASHION_STD)[:, None]

    train_set = TensorDataset(tensor(x_tr), torch.from_numpy(y_tr.astype(np.int64)))
    val_set = TensorDataset(tensor(x_te), torch.from_numpy(y_te.astype(np.int64)))
    recipe = {**FASHION_TRAINING, "train_size": len(x_tr)}
    recipe.update({k: v for k, v in (("epochs", epochs), ("width", width)) if v is not None})
    model = FashionResNet(width=recipe["width"])
    info = _cached_teacher("fashion-mnist", recipe, model, train_set, seed)
    val = DataLoader(val_set, batch_size=500)
    info["teacher_val_accuracy"] = evaluate(model, val)
    train = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    return Task(
        name="fashion-mnist",
        model=model,
        train=train,
        val=val,
        example_inputs=(val_set.tensors[0][:1],),
        info=info,
    )


BUILTIN_TASKS: dict[str, TaskFactory] = {"digits": digits, "fashion-mnist": fashion_mnist}


def resolve_task(name: str) -> TaskFactory:
    """The factory for a built-in task name or a ``"package.module:function"`` reference."""
    if name in BUILTIN_TASKS:
        return BUILTIN_TASKS[name]
    module_name, sep, func_name = name.rpartition(":")
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
    """Resolve ``name`` and check ``kwargs`` bind to its signature, without building the task."""
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
    """Build and validate the task ``name`` with keyword arguments ``kwargs``."""
    kwargs = dict(kwargs or {})
    factory = check_task_arguments(name, kwargs)
    return validate_task(factory(**kwargs), name)
