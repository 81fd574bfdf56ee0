"""Teachers: trained once by a fixed recipe, cached on disk, loaded on every later call.

tradeoff never trains the model it compresses; but a task that ships no checkpoint (the built-in
tasks, the examples) trains its teacher itself. :func:`cached_teacher` does that once per recipe:
the weights are saved under :func:`cache_dir` in a file named by a hash of the recipe, and later
calls (later trials, studies, processes) load them instead of training again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .tasks import Batch

TRAIN_THREADS = 1  # two threads trained 10-40x slower on a busy small machine; one gives the same weights anywhere


def cache_dir() -> Path:
    """Where trained teachers and teacher outputs are kept: ``$TRADEOFF_CACHE_DIR``, else the XDG cache.

    Example:
        >>> isinstance(cache_dir(), Path)
        True
    """
    env = os.environ.get("TRADEOFF_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tradeoff"


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


def batches_sha256(batches: list[Batch]) -> str:
    """A hash of materialised ``(inputs, targets)`` batches: values, shapes, dtypes and order.

    Example:
        >>> batch = (torch.zeros(2, 3), torch.arange(2))
        >>> batches_sha256([batch]) == batches_sha256([batch]) != batches_sha256([batch, batch])
        True
    """
    h = hashlib.sha256()
    for inputs, targets in batches:
        for t in (*(inputs if isinstance(inputs, (tuple, list)) else (inputs,)), targets):
            t = torch.as_tensor(t).detach().cpu().contiguous()
            h.update(f"{tuple(t.shape)}:{t.dtype};".encode())
            h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def train_teacher(model: nn.Module, data: Dataset, *, epochs: int, lr: float, batch_size: int, seed: int) -> nn.Module:
    """The built-in tasks' training loop: Adam with a cosine schedule to zero, seeded shuffles of ``data``.

    The whole recipe is fixed, so a teacher's cache key (its recipe) means one set of weights.

    Args:
        model: The model to train, in place.
        data: ``(inputs, targets)`` samples, cross-entropy targets.
        epochs: Passes over ``data``.
        lr: Adam's initial learning rate.
        batch_size: Samples per step (the last batch of an epoch may be smaller).
        seed: Seeds the shuffles and torch's global generator (dropout and the like).

    Returns:
        ``model``, trained and in eval mode.

    Example:
        >>> data = torch.utils.data.TensorDataset(torch.randn(8, 2), torch.arange(8) % 2)
        >>> train_teacher(nn.Linear(2, 2), data, epochs=1, lr=1e-2, batch_size=4, seed=0).training
        False
    """
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(loader))
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def teacher_path(name: str, recipe: dict[str, Any], seed: int = 0) -> Path:
    """The cache file of the teacher ``name`` trained by ``recipe`` with ``seed``.

    Example:
        >>> teacher_path("digits-teacher", {"epochs": 30}).name
        'digits-teacher-f3726b775caae041.pt'
    """
    key = hashlib.sha256(json.dumps({**recipe, "seed": seed}, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"{name}-{key}.pt"


def cached_teacher(
    model: nn.Module,
    *,
    name: str,
    recipe: dict[str, Any],
    train: Callable[[nn.Module], object],
    seed: int = 0,
) -> dict[str, Any]:
    """Load ``model``'s weights from the cache, or train it once with ``train`` and cache them.

    The cache file is ``<cache dir>/<name>-<key>.pt``, the key a hash of ``recipe`` and ``seed``: a
    changed recipe trains a new teacher instead of loading a stale one, so put in ``recipe``
    everything that changes the trained weights (architecture version, data size, epochs, ...).
    Training runs seeded at :data:`TRAIN_THREADS` thread(s); the file is written atomically, so a
    concurrent process sees no file or the whole file. The model is left in eval mode.

    Args:
        model: The freshly built model; its weights are loaded or trained in place.
        name: Start of the cache file's name; a ``/`` puts it in a subfolder (``"examples/tabular-mlp"``).
        recipe: JSON-serialisable settings that fix the trained weights (the cache key).
        train: Trains ``model`` in place (its return value is ignored); called only on a cache miss.
        seed: Part of the key; torch's global seed is set to it before ``train`` runs. If ``recipe``
            also holds a ``"seed"``, the two must agree.

    Returns:
        What to record about the teacher (e.g. as ``Task.info``): ``teacher_cache`` (the file),
        ``teacher_recipe`` and ``teacher_trained_s`` (seconds spent training, None when loaded).

    Raises:
        ValueError: ``recipe["seed"]`` differs from ``seed``, or ``name`` leaves the cache folder.

    Example:
        >>> import tempfile
        >>> from unittest import mock
        >>> calls = []
        >>> with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, {"TRADEOFF_CACHE_DIR": tmp}):
        ...     first = cached_teacher(nn.Linear(2, 2), name="doc", recipe={"epochs": 1}, train=calls.append)
        ...     again = cached_teacher(nn.Linear(2, 2), name="doc", recipe={"epochs": 1}, train=calls.append)
        >>> len(calls), first["teacher_cache"] == again["teacher_cache"], again["teacher_trained_s"]
        (1, True, None)
    """
    if "seed" in recipe and recipe["seed"] != seed:
        raise ValueError(
            f"cached_teacher({name!r}): recipe['seed'] is {recipe['seed']!r} but seed is {seed!r}; "
            "pass the same value (or leave 'seed' out of the recipe)."
        )
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ValueError(f"cached_teacher: name must be a relative file-name stem such as 'my-model', got {name!r}.")
    path = teacher_path(name, recipe, seed)
    info: dict[str, Any] = {"teacher_cache": str(path), "teacher_recipe": recipe, "teacher_trained_s": None}
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        model.eval()
        return info
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    start = time.perf_counter()
    try:
        torch.manual_seed(seed)
        train(model)
    finally:
        torch.set_num_threads(threads)
    info["teacher_trained_s"] = round(time.perf_counter() - start, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)  # atomic: a concurrent process sees no file or the whole file
    model.eval()
    return info
