"""Bring your own model, example 2: an MLP on a table of measurements.

The data is one of the tables scikit-learn ships (nothing is downloaded): the Wisconsin breast
cancer table by default (569 tumours, 30 measurements each, benign or malignant), or the wine
table (178 wines, 13 measurements, 3 cultivars). Features are standardised with the training
split's mean and spread; the split is stratified and seeded.

What compresses here: an MLP is all Linear weights and, at batch 1, almost no arithmetic (~40 k
MACs), so latency is per-operator overhead that compression barely moves. What moves is size: the
hidden layers are far wider than 30 inputs need, and their weights tolerate few bits. That is why
the spec (``tabular_mlp.toml``) offers both pruning kinds (structured: rows and columns removed;
unstructured: single weights zeroed, stored sparsely) and widths down to 2 bits, and weights size
above latency.

Run it with ``tradeoff launch examples/tabular_mlp.toml`` from the repository root. tradeoff never
trains the model: :func:`make_task` plays the part of the user's own pretraining, done once
(seeded) and cached on disk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tradeoff.studies import Task, cached_teacher

# --------------------------------------------------------------------------- the data

DATASETS = ("breast_cancer", "wine")  # scikit-learn's bundled tables with enough rows for a held-out split


def load_table(dataset: str, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A stratified, seeded split of one of scikit-learn's bundled tables, standardised.

    Args:
        dataset: ``"breast_cancer"`` or ``"wine"``.
        val_fraction: Share of the rows held out for validation.
        seed: Seed of the split.

    Returns:
        ``(x_train, y_train, x_val, y_val)``: float32 features scaled by the training split's
        mean and standard deviation, int64 labels.
    """
    from sklearn.datasets import load_breast_cancer, load_wine
    from sklearn.model_selection import train_test_split

    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {dataset!r}.")
    x, y = (load_breast_cancer if dataset == "breast_cancer" else load_wine)(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=val_fraction, random_state=seed, stratify=y)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-8  # the training split's statistics only

    def scale(a: np.ndarray) -> np.ndarray:
        return ((a - mean) / std).astype(np.float32)

    return scale(x_train), y_train.astype(np.int64), scale(x_val), y_val.astype(np.int64)


# --------------------------------------------------------------------------- the model


class TabularMLP(nn.Module):
    """Linear-ReLU-Dropout blocks, then a Linear head.

    Args:
        features: Input columns.
        classes: Output classes.
        hidden: Widths of the hidden layers.
        dropout: Dropout after each hidden layer (training only).
    """

    def __init__(self, features: int, classes: int, hidden: tuple[int, ...] = (256, 128), dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# --------------------------------------------------------------------------- the user's own pretraining


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: dict[str, Any]) -> None:
    """Adam with a cosine schedule to zero over ``settings["epochs"]`` seeded shuffles of ``(x, y)``."""
    torch.manual_seed(settings["seed"])
    batch, epochs = settings["batch_size"], settings["epochs"]
    steps_per_epoch = -(-len(x) // batch)
    opt = torch.optim.Adam(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


# --------------------------------------------------------------------------- the task tradeoff compresses


def make_task(
    *,
    dataset: str = "breast_cancer",  # 569 rows: the bigger bundled table, so the held-out split means something
    val_fraction: float = 0.2,  # 114 held-out rows for breast_cancer: one row is ~0.9 accuracy points
    hidden: list[int] | None = None,  # default [256, 128]: wide enough that there is something to prune
    epochs: int = 60,  # ~900 steps at batch 32: validation accuracy has flattened by then (~2 s)
    seed: int = 0,  # seeds the split, the initial weights and the training order
    batch_size: int = 32,  # batches tradeoff fine-tunes and calibrates on: ~15 per pass over 455 rows
) -> Task:
    """The MLP and its table, teacher trained once and cached.

    Args:
        dataset: ``"breast_cancer"`` or ``"wine"`` (scikit-learn's bundled tables).
        val_fraction: Share of the rows held out for validation (stratified).
        hidden: Widths of the hidden layers (a TOML array); default ``[256, 128]``.
        epochs: Teacher training epochs.
        seed: Seed of the split and of the teacher's training.
        batch_size: Batch size of the training batches handed to tradeoff.
    """
    widths = tuple(hidden or (256, 128))
    x_train, y_train, x_val, y_val = map(torch.from_numpy, load_table(dataset, val_fraction, seed))
    classes = int(y_train.max()) + 1
    torch.manual_seed(seed)
    model = TabularMLP(x_train.shape[1], classes, widths)
    settings = {
        "arch": "TabularMLP/v1",  # bump when the class above changes: old cached weights no longer fit
        "dataset": dataset,
        "val_fraction": val_fraction,
        "hidden": list(widths),
        "epochs": epochs,
        "lr": 1e-3,  # Adam's default: a small table needs nothing bolder
        "weight_decay": 1e-4,  # a little: 30 features, ~40 k weights, a few hundred rows
        "batch_size": 32,  # ~15 steps an epoch on 455 rows
        "seed": seed,
    }
    info = cached_teacher(  # trained once (seeded, one thread), then loaded from the cache
        model,
        name="examples/tabular-mlp",  # in $TRADEOFF_CACHE_DIR/examples/, else ~/.cache/tradeoff/examples/
        recipe=settings,  # the file is named by a hash of these: changing any of them trains anew
        train=lambda m: train(m, x_train, y_train, settings),
        seed=seed,
    )
    info["teacher_val_accuracy"] = accuracy(model, x_val, y_val)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x_train), generator=g)  # one seeded shuffle; tradeoff reshuffles batches per trial
    batches = [
        (x_train[order[i : i + batch_size]], y_train[order[i : i + batch_size]])
        for i in range(0, len(x_train), batch_size)
    ]
    return Task(
        name=f"tabular-mlp-{dataset}",
        model=model.eval(),
        train=batches,
        val=[(x_val, y_val)],  # one batch: the whole held-out split
        example_inputs=(x_val[:1],),  # one row: tradeoff repeats it to the target's batch size
        info=info,
    )
