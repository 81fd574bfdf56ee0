"""The built-in tasks: ``digits`` and ``fashion-mnist``, each with a fixed teacher training recipe.

Both use data shipped inside installed packages (nothing is downloaded) and train their teacher
once, seeded, caching it with :func:`~tradeoff.studies.teachers.cached_teacher`. A spec names them
by their short names (``[task] name = "digits"``); :mod:`tradeoff.studies.tasks` resolves those to
the functions here.

Example:
    >>> DIGITS_TRAINING["arch"], FASHION_TRAINING["arch"]
    ('DigitsCNN/v1', 'FashionResNet/v1')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tradeoff.objectives import evaluate

from .architectures import DigitsCNN, FashionResNet
from .tasks import Task, TaskError
from .teachers import cached_teacher, train_teacher

DIGITS_TRAINING = {  # why: converges to ~99 % val in ~5 s on 2 cores; fixed so the cache key is stable
    "arch": "DigitsCNN/v1",
    "epochs": 30,
    "lr": 2e-3,
    "batch_size": 64,
    "val_fraction": 0.2,
}

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


def _digits_arrays(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()  # 1797 8x8 images shipped inside scikit-learn
    x = (data.images / 16.0).astype(np.float32)[:, None]  # pixel values 0..16 -> [0, 1]
    return train_test_split(
        x, data.target, test_size=DIGITS_TRAINING["val_fraction"], random_state=seed, stratify=data.target
    )


def _train_by(recipe: dict[str, Any], data: TensorDataset, seed: int) -> Callable[[nn.Module], nn.Module]:
    """``cached_teacher``'s ``train``: :func:`train_teacher` with the recipe's epochs, lr and batch size."""
    return lambda model: train_teacher(
        model, data, epochs=recipe["epochs"], lr=recipe["lr"], batch_size=recipe["batch_size"], seed=seed
    )


def digits(*, seed: int = 0, batch_size: int = 64) -> Task:
    """scikit-learn's digits (8x8, 10 classes) with a small CNN teacher trained on first use.

    The teacher is trained seeded and cached under :func:`~tradeoff.studies.teachers.cache_dir`,
    keyed by its training recipe, so later trials and later runs load it instead of training again.

    Args:
        seed: Seed of the train/validation split and of the teacher's training.
        batch_size: Batch size of the training batches (fine-tuning and calibration).

    Example:
        >>> task = digits()  # trains the teacher the first time (seconds), then loads it from the cache
        >>> task.name, task.example_inputs[0].shape
        ('digits', torch.Size([1, 1, 8, 8]))
    """
    x_tr, x_va, y_tr, y_va = _digits_arrays(seed)
    gen = torch.Generator().manual_seed(seed)
    train_set = TensorDataset(torch.from_numpy(x_tr), torch.from_numpy(y_tr).long())
    train = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=gen)
    val = DataLoader(TensorDataset(torch.from_numpy(x_va), torch.from_numpy(y_va).long()), batch_size=512)
    model = DigitsCNN()
    info = cached_teacher(
        model,
        name="digits-teacher",
        recipe=DIGITS_TRAINING,
        train=_train_by(DIGITS_TRAINING, train_set, seed),
        seed=seed,
    )
    info["teacher_val_accuracy"] = evaluate(model, val)
    return Task(
        name="digits",
        model=model,
        train=train,
        val=val,
        example_inputs=(torch.from_numpy(x_va[:1]),),
        info=info,
    )


def _fashion_arrays(
    data_dir: str | None, seed: int, train_size: int | None, val_size: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST's training and test arrays, cut to ``train_size`` (a seeded subset) and ``val_size``."""
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
    return x_tr, y_tr, x_te, y_te


def _fashion_dataset(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
    """uint8 ``(n, 28, 28)`` images, normalised to float32 ``(n, 1, 28, 28)``, with int64 labels."""
    x = ((torch.from_numpy(images.astype(np.float32)) / 255.0 - FASHION_MEAN) / FASHION_STD)[:, None]
    return TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))


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

    Example:
        Without the data, the error says how to get it:

        >>> fashion_mnist(data_dir="/no/such/folder")
        Traceback (most recent call last):
        ...
        tradeoff.studies.tasks.TaskError: ...apt-get install dataset-fashion-mnist...
    """
    x_tr, y_tr, x_te, y_te = _fashion_arrays(data_dir, seed, train_size, val_size)
    train_set, val_set = _fashion_dataset(x_tr, y_tr), _fashion_dataset(x_te, y_te)
    recipe = {**FASHION_TRAINING, "train_size": len(x_tr)}
    recipe.update({k: v for k, v in (("epochs", epochs), ("width", width)) if v is not None})
    model = FashionResNet(width=recipe["width"])
    info = cached_teacher(
        model, name="fashion-mnist-teacher", recipe=recipe, train=_train_by(recipe, train_set, seed), seed=seed
    )
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
