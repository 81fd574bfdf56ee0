"""Bring your own model, example 1: a small residual CNN on Fashion-MNIST.

The data is Zalando's Fashion-MNIST (28x28 grey images of clothes, 10 classes, 60,000 training and
10,000 test images) as Debian's ``dataset-fashion-mnist`` package installs it; nothing is
downloaded. Without it :func:`make_task` raises ``DataError``, whose message says how to install
the package or point ``data_dir`` at the four IDX files.

The model is the user's own: a stem convolution, three residual blocks (two of them strided, so
the image goes 28 -> 14 -> 7), BatchNorm after every convolution, global average pooling and a
Linear head: ~0.15 M parameters, ~9 M multiply-accumulates per image. That is enough work per
image for compression to change latency measurably, and little enough to train in minutes on two
CPU cores.

What compresses here: convolutions with residual connections. Structured pruning removes channels
for real, and the dependency graph keeps a block's input, its shortcut and its output the same
width; int8 runs for real on x86 CPUs through ``torch.compile``. See ``fashion_resnet.toml``.

Run it with ``tradeoff launch examples/fashion_resnet.toml`` from the repository root. tradeoff
never trains the model: :func:`make_task` plays the part of the user's own pretraining, done once
(seeded) and cached on disk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tradeoff.studies import Task, cached_teacher
from tradeoff.studies.architectures import BasicBlock  # two 3x3 conv-BN and a shortcut: the ResNet block
from tradeoff.studies.datasets import fashion_mnist_arrays

# --------------------------------------------------------------------------- the model


class FashionCNN(nn.Module):
    """Stem at 28x28, residual stages at 14x14, 7x7 and 7x7 with ``w, 2w, 4w, 4w`` channels.

    Args:
        width: Stem channels ``w``; stages widen it to ``2w`` and ``4w``.
        classes: Output classes.
    """

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.stage1 = BasicBlock(w, 2 * w, stride=2)  # 28 -> 14
        self.stage2 = BasicBlock(2 * w, 4 * w, stride=2)  # 14 -> 7
        self.stage3 = BasicBlock(4 * w, 4 * w)  # 7 -> 7: more depth where the image is small
        self.head = nn.Linear(4 * w, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.head(x.mean(dim=(2, 3)))  # global average pooling


# --------------------------------------------------------------------------- the user's own pretraining


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``, in batches of 1000."""
    model.eval()
    with torch.no_grad():
        hits = sum(int((model(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum()) for i in range(0, len(x), 1000))
    return hits / len(x)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: dict[str, Any]) -> None:
    """AdamW with a one-cycle schedule over ``settings["epochs"]`` seeded shuffles of ``(x, y)``."""
    torch.manual_seed(settings["seed"])
    batch, epochs = settings["batch_size"], settings["epochs"]
    steps = epochs * (len(x) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings["lr"], total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x) - batch + 1, batch):  # drop the last partial batch: every step the same size
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
    data_dir: str | None = None,  # None: $TRADEOFF_FASHION_MNIST_DIR, else Debian's /usr/share/datasets/fashion-mnist
    train_size: int | None = None,  # None: all 60,000 training images; fewer (a seeded subset) for quick looks
    val_size: int | None = None,  # None: all 10,000 test images; accuracy to within ~0.3 points
    epochs: int = 4,  # ~1,900 steps at batch 128: 92.0 % test accuracy here, a margin above 90 %
    width: int = 16,  # 16-32-64-64 channels, ~9 M MACs an image: trains in ~12 min on one (busy) core
    finetune_size: int = 12_800,  # images handed to tradeoff: 200 steps of 64 see each once; the teacher
    # runs once on each of them up front, so all 60k would cost ~5x that time for images no trial reaches
    seed: int = 0,  # seeds the subset, the initial weights and the training order
    batch_size: int = 64,  # batches tradeoff fine-tunes and calibrates on
) -> Task:
    """The residual CNN and Fashion-MNIST, teacher trained once and cached.

    Validation is the test split: tradeoff picks among compressed models by their accuracy on it,
    so a picked model's figure is slightly optimistic; hold out part of the training split
    instead where that matters.

    Args:
        data_dir: Folder of the four IDX files (gzipped or not).
        train_size: Training images to use (a seeded random subset); default all.
        val_size: Test images to measure accuracy on (the first ones); default all.
        epochs: Teacher training epochs.
        width: Stem channels of the CNN.
        finetune_size: Training images (the first of one seeded shuffle) handed to tradeoff for
            fine-tuning, BatchNorm recalibration and int8 calibration.
        seed: Seed of the subset and of the teacher's training.
        batch_size: Batch size of the training batches handed to tradeoff.

    Raises:
        DataError: Fashion-MNIST is not installed (the message says how to get it).
    """
    x_train, y_train, x_val, y_val = fashion_mnist_arrays(data_dir)  # uint8 (n, 28, 28) and (n,)
    if train_size is not None:
        keep = np.random.default_rng(seed).permutation(len(x_train))[:train_size]
        x_train, y_train = x_train[keep], y_train[keep]
    if val_size is not None:
        x_val, y_val = x_val[:val_size], y_val[:val_size]
    mean, std = x_train.mean() / 255.0, x_train.std() / 255.0  # the training pixels' statistics (~0.29, ~0.35)

    def tensor(images: np.ndarray) -> torch.Tensor:
        """uint8 (n, 28, 28) -> normalised float32 (n, 1, 28, 28)."""
        return ((torch.from_numpy(images).float() / 255.0 - mean) / std)[:, None]

    x_train_t, x_val_t = tensor(x_train), tensor(x_val)
    y_train_t, y_val_t = torch.from_numpy(y_train.astype(np.int64)), torch.from_numpy(y_val.astype(np.int64))
    torch.manual_seed(seed)
    model = FashionCNN(width=width)
    settings = {
        "arch": "FashionCNN/v1",  # bump when the class above changes: old cached weights no longer fit
        "train_size": len(x_train),
        "width": width,
        "epochs": epochs,
        "lr": 3e-3,  # peak of the one-cycle schedule: fast and stable with BatchNorm
        "weight_decay": 5e-4,  # the usual light decay for small CNNs
        "batch_size": 128,  # ~470 steps an epoch on 60k images
        "seed": seed,
    }
    info = cached_teacher(  # trained once (seeded, one thread), then loaded from the cache
        model,
        name="examples/fashion-resnet",  # in $TRADEOFF_CACHE_DIR/examples/, else ~/.cache/tradeoff/examples/
        recipe=settings,  # the file is named by a hash of these: changing any of them trains anew
        train=lambda m: train(m, x_train_t, y_train_t, settings),
        seed=seed,
    )
    info["teacher_val_accuracy"] = accuracy(model, x_val_t, y_val_t)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x_train_t), generator=g)[:finetune_size]  # tradeoff reshuffles batches per trial
    batches = [
        (x_train_t[order[i : i + batch_size]], y_train_t[order[i : i + batch_size]])
        for i in range(0, len(order), batch_size)
    ]
    val = [(x_val_t[i : i + 500], y_val_t[i : i + 500]) for i in range(0, len(x_val_t), 500)]
    return Task(
        name="fashion-resnet",
        model=model.eval(),
        train=batches,
        val=val,
        example_inputs=(x_val_t[:1],),  # one image: tradeoff repeats it to the target's batch size
        info=info,
    )
