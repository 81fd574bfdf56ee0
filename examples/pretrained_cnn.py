"""Bring your own model, example 4: a network someone else trained, by a recipe unlike tradeoff's.

Most users bring a network trained elsewhere (an ImageNet MobileNet, say): trained with SGD at a
high rate, in big batches, with strong augmentation, and its BatchNorm statistics are those of that
augmented data. What they can fine-tune on is little: a few hundred images of their own, augmented.
tradeoff's fine-tuning defaults were first tuned on teachers it trained itself (Adam at 1e-3,
BatchNorm in train mode); on a pretrained depthwise-separable network they took 25-30 points off
int8 models within five steps (issue 26). This example plays that situation in miniature, so the
defaults can be checked against it (``benchmarks/pretrained.py``).

:func:`make_task` trains the "pretrained" network ONCE (seeded, one thread, cached by
:func:`tradeoff.studies.cached_teacher`) with a recipe far from tradeoff's fine-tuning:

* SGD, momentum 0.9 (Nesterov), a one-cycle schedule peaking at 0.1, batches of 256, weight decay
  5e-4 on conv and linear weights (none on BatchNorm and biases), label smoothing 0.1;
* strong augmentation on every batch: random shifts of up to 2 px, Gaussian noise, random erasing.

Networks (``arch``):

* ``"mobilenet"``: :class:`~tradeoff.studies.architectures.TinyMobileNet`, a depthwise-separable
  CNN with ReLU6: width 32 on digits (~31 k parameters); on Fashion-MNIST width 24 with a strided
  stem, 28 -> 14 -> 7 (~19 k parameters; at stride 1 and width 16 its receptive field covered a
  third of the image and it reached 75 %; depthwise convolutions at 28x28 are also slow on a CPU);
* ``"resnet"``: the built-in teachers' full-convolution networks, trained by this recipe:
  :class:`~tradeoff.studies.architectures.DigitsCNN` (width 32, ~57 k parameters: a plain 3-block
  CNN, the built-in digits network) on digits, and
  :class:`~tradeoff.studies.architectures.FashionResNet` at width 16 (~78 k parameters, residual)
  on Fashion-MNIST.

What tradeoff gets (the :class:`~tradeoff.studies.Task`), as a user with such a network would build
it: ``train`` holds ``views`` strongly augmented views of training images (each image once, one
seeded augmentation) in batches of 32, the few augmented images a user has to fine-tune on;
``val`` holds clean held-out images (digits: the built-in task's validation split, 360 images;
Fashion-MNIST: the first ``val_size`` test images, 2,000 by default). ``metric = "top1"`` scores
labels; ``"agreement"`` scores top-1 agreement with the network's own fp32 predictions (the val
targets are then the teacher's argmax on those images), which asks "does the compressed model still
decide as the original does", the question issue 26 is about.

Measured here (2-core machine shared with other jobs, one thread, torch 2.13 CPU); Fashion-MNIST
pretrains on a seeded 20k subset for 10 epochs (~790 SGD steps; at 6 the resnet reached 83.9 %), so
that it takes ~3 min, and is scored here on all 10,000 test images (the task's default: 2,000):

============== ============ ========== ================= ===================
network        data         parameters clean val top-1   pretraining (once)
============== ============ ========== ================= ===================
mobilenet w32  digits       31,370     98.9 % (360)      60 epochs, 29-52 s
resnet (CNN)   digits       56,714     98.9 % (360)      60 epochs, 22 s
mobilenet w24  fashion 20k  18,538     83.5 % (10,000)   10 epochs, 188 s
resnet w16     fashion 20k  77,754     85.0 % (10,000)   10 epochs, 164 s
============== ============ ========== ================= ===================

Run it with ``tradeoff launch examples/pretrained_cnn.toml`` from the repository root.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tradeoff.studies import Task, cached_teacher
from tradeoff.studies.architectures import DigitsCNN, FashionResNet, TinyMobileNet
from tradeoff.studies.builtin_tasks import DIGITS_TRAINING, FASHION_MEAN, FASHION_STD
from tradeoff.studies.datasets import fashion_mnist_arrays

ARCHS = ("mobilenet", "resnet")  # depthwise-separable, and full convolutions: they fine-tune differently
DATA = ("digits", "fashion-mnist")  # both ship in installed packages: nothing is downloaded
METRICS = ("top1", "agreement")
FINETUNE_BATCH = 32  # the batch a user fine-tunes a few hundred images in: ~11 steps a pass over 350

# --------------------------------------------------------------------------- the data


def load_images(
    data: str, *, seed: int, train_size: int | None, val_size: int | None, data_dir: str | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training and held-out images as float32 ``(n, 1, H, W)`` with int64 labels.

    Args:
        data: ``"digits"`` (8x8, scikit-learn) or ``"fashion-mnist"`` (28x28, Debian's package).
        seed: Seed of the digits split and of the Fashion-MNIST training subset.
        train_size: Fashion-MNIST: training images kept (a seeded subset); digits: ignored.
        val_size: Fashion-MNIST: the first this many test images; digits: ignored.
        data_dir: Fashion-MNIST's IDX folder (default Debian's).

    Returns:
        ``(x_train, y_train, x_val, y_val)``. Digits are scaled to [0, 1] and split exactly as the
        built-in ``digits`` task splits them; Fashion-MNIST is normalised with the built-in task's
        mean and standard deviation.
    """
    if data == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)[:, None]
        x_tr, x_va, y_tr, y_va = train_test_split(  # the built-in task's split: same call, same seed
            x, digits.target, test_size=DIGITS_TRAINING["val_fraction"], random_state=seed, stratify=digits.target
        )
        return (
            torch.from_numpy(x_tr),
            torch.from_numpy(y_tr).long(),
            torch.from_numpy(x_va),
            torch.from_numpy(y_va).long(),
        )
    x_tr, y_tr, x_te, y_te = fashion_mnist_arrays(data_dir)  # uint8 (n, 28, 28); DataError says how to install
    if train_size is not None:
        keep = np.random.default_rng(seed).permutation(len(x_tr))[:train_size]
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if val_size is not None:
        x_te, y_te = x_te[:val_size], y_te[:val_size]

    def tensor(images: np.ndarray) -> torch.Tensor:
        return ((torch.from_numpy(images.astype(np.float32)) / 255.0 - FASHION_MEAN) / FASHION_STD)[:, None]

    return tensor(x_tr), torch.from_numpy(y_tr.astype(np.int64)), tensor(x_te), torch.from_numpy(y_te.astype(np.int64))


def augment(x: torch.Tensor, gen: torch.Generator, *, background: float, settings: dict[str, Any]) -> torch.Tensor:
    """Strongly augmented copies of a batch: random shifts, Gaussian noise, random erasing.

    Every image gets its own shift of up to ``settings["shift"]`` pixels each way (the border
    filled with ``background``), noise of standard deviation ``settings["noise"]`` and, with
    probability ``settings["erase_p"]``, a rectangle of ``background`` whose sides are a quarter to
    a half of the image's.

    Args:
        x: Images ``(n, c, h, w)``.
        gen: The generator every random draw comes from (seeded by the caller).
        background: The value of an empty pixel in ``x``'s scale.
        settings: ``shift``, ``noise`` and ``erase_p``.

    Returns:
        A new tensor of ``x``'s shape.

    Example:
        >>> x = torch.zeros(4, 1, 8, 8)
        >>> augment(x, torch.Generator().manual_seed(0), background=0.0,
        ...         settings={"shift": 2, "noise": 0.0, "erase_p": 1.0}).shape
        torch.Size([4, 1, 8, 8])
    """
    n, _, h, w = x.shape
    s = settings["shift"]
    padded = F.pad(x, (s, s, s, s), value=background)
    dy = torch.randint(0, 2 * s + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * s + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (n, h, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (n, 1, w)
    out = padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # (n, h, w, c) -> (n, c, h, w)
    out = out + settings["noise"] * torch.randn(out.shape, generator=gen)
    eh = torch.randint(h // 4, h // 2 + 1, (n,), generator=gen)
    ew = torch.randint(w // 4, w // 2 + 1, (n,), generator=gen)
    top = (torch.rand(n, generator=gen) * (h - eh + 1)).long()
    left = (torch.rand(n, generator=gen) * (w - ew + 1)).long()
    on = torch.rand(n, generator=gen) < settings["erase_p"]
    r, c = torch.arange(h)[None, :, None], torch.arange(w)[None, None, :]
    box = (
        (r >= top[:, None, None])
        & (r < (top + eh)[:, None, None])
        & (c >= left[:, None, None])
        & (c < (left + ew)[:, None, None])
    )
    return torch.where((box & on[:, None, None])[:, None], torch.full_like(out, background), out).contiguous()


# --------------------------------------------------------------------------- somebody else's pretraining


def stem_stride(data: str) -> int:
    """TinyMobileNet's stem stride: 2 at 28x28 (as MobileNet's own), 1 on 8x8 digits (nothing to spare)."""
    return 1 if data == "digits" else 2


def build_model(arch: str, data: str, width: int) -> nn.Module:
    """The untrained network: TinyMobileNet (its stem strided at 28x28), or DigitsCNN (digits) /
    FashionResNet (Fashion-MNIST)."""
    if arch == "mobilenet":
        return TinyMobileNet(width=width, stem_stride=stem_stride(data))
    return DigitsCNN(width=width) if data == "digits" else FashionResNet(width=width)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model``'s top-1 class for each image, in batches of 1000 (eval mode)."""
    model.eval()
    return torch.cat([model(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)])


def pretrain(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: dict[str, Any], background: float) -> None:
    """The other party's recipe: SGD + Nesterov, one-cycle to ``settings["lr"]``, big batches, label
    smoothing, strong augmentation (:func:`augment`) drawn afresh for every batch; all seeded."""
    gen = torch.Generator().manual_seed(settings["seed"])
    batch, epochs = settings["batch_size"], settings["epochs"]
    steps_per_epoch = -(-len(x) // batch)
    decay = [p for p in model.parameters() if p.dim() > 1]  # conv and linear weights
    no_decay = [p for p in model.parameters() if p.dim() <= 1]  # BatchNorm and biases: decaying them only hurts
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": settings["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings["lr"],
        momentum=settings["momentum"],
        nesterov=True,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=settings["lr"], total_steps=epochs * steps_per_epoch, cycle_momentum=False
    )
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)  # one shuffle an epoch: images and labels indexed together
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            inputs = augment(x[idx], gen, background=background, settings=settings)
            loss = F.cross_entropy(model(inputs), y[idx], label_smoothing=settings["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


# --------------------------------------------------------------------------- the task tradeoff compresses


def make_task(
    *,
    arch: str = "mobilenet",  # the depthwise-separable network issue 26 is about
    data: str = "digits",  # digits trains in seconds; "fashion-mnist" (28x28) in a few minutes
    views: int = 350,  # a user's few hundred images: 11 fine-tuning batches of 32
    val_size: int | None = None,  # fashion-mnist: None = the first 2,000 test images (~0.7 points of noise)
    metric: str = "top1",  # "agreement": top-1 agreement with the network's own fp32 predictions
    seed: int = 0,  # seeds the split or subset, the weights, the pretraining and the fine-tuning views
    width: int
    | None = None,  # None: 32 on digits; fashion-mnist: 24 (mobilenet), 16 (resnet): see the module docstring
    epochs: int | None = None,  # None: 60 on digits (~340 steps), 10 on fashion-mnist (~790 steps): SGD needs the steps
    train_size: int | None = 20_000,  # fashion-mnist: a seeded subset, so pretraining takes ~2 min
    data_dir: str | None = None,  # fashion-mnist: None = $TRADEOFF_FASHION_MNIST_DIR, else Debian's folder
) -> Task:
    """A network "trained elsewhere" by a recipe unlike tradeoff's, and the little data a user has.

    Args:
        arch: ``"mobilenet"`` (TinyMobileNet) or ``"resnet"`` (DigitsCNN on digits, FashionResNet
            on Fashion-MNIST).
        data: ``"digits"`` or ``"fashion-mnist"``.
        views: Augmented training images handed to tradeoff for fine-tuning and calibration.
        val_size: Fashion-MNIST test images to score on (the first ones); digits: must be None.
        metric: ``"top1"`` (labels) or ``"agreement"`` (the teacher's own fp32 argmax as targets).
        seed: Seed of everything random here.
        width: Network width (stem channels).
        epochs: Pretraining epochs.
        train_size: Fashion-MNIST training images to pretrain on; None = all 60,000. Digits: ignored.
        data_dir: Folder of Fashion-MNIST's IDX files.

    Returns:
        The task; its ``info`` holds the teacher's cache entry and recipe, ``teacher_val_accuracy``
        (the task's metric for the teacher: 1.0 under ``"agreement"``) and ``teacher_val_top1``
        (top-1 on the labels, either way).

    Raises:
        ValueError: An unknown ``arch``, ``data`` or ``metric``, or a bad size.
        DataError: Fashion-MNIST is not installed (the message says how to get it).
    """
    for name, value, allowed in (("arch", arch, ARCHS), ("data", data, DATA), ("metric", metric, METRICS)):
        if value not in allowed:
            raise ValueError(f"pretrained_cnn: {name} must be one of {list(allowed)}, got {value!r}.")
    if not isinstance(views, int) or views < 1:
        raise ValueError(f"pretrained_cnn: views must be a positive integer, got {views!r}.")
    if data == "digits" and val_size is not None:
        raise ValueError("pretrained_cnn: val_size applies to fashion-mnist; digits uses the built-in split (360).")
    fashion = data == "fashion-mnist"
    x_train, y_train, x_val, y_val = load_images(
        data,
        seed=seed,
        train_size=train_size if fashion else None,
        val_size=(val_size or 2000) if fashion else None,
        data_dir=data_dir,
    )
    background = -FASHION_MEAN / FASHION_STD if fashion else 0.0  # a black pixel, in the data's scale
    width = width or (24 if fashion and arch == "mobilenet" else 16 if fashion else 32)
    torch.manual_seed(seed)
    model = build_model(arch, data, width)
    settings = {
        "arch": f"{type(model).__name__}/v1",  # bump when the class changes: old cached weights no longer fit
        "data": data,
        "train_size": len(x_train),
        "width": width,
        **({"stem_stride": stem_stride(data)} if arch == "mobilenet" else {}),  # part of the network's shape
        "epochs": epochs or (10 if fashion else 60),
        "optimizer": "sgd-nesterov",  # not Adam: what ImageNet networks are trained with
        "lr": 0.1,  # peak of the one-cycle schedule: 100x tradeoff's old fine-tuning rate
        "momentum": 0.9,  # the usual SGD momentum
        "weight_decay": 5e-4,  # the usual small-CNN decay, on conv and linear weights only
        "batch_size": 256,  # big batches, as pretraining on many cores uses
        "label_smoothing": 0.1,  # as ImageNet recipes do: softer logits than plain cross-entropy gives
        "shift": 2,  # pixels each way: a quarter of an 8x8 digit, a fourteenth of a 28x28 image
        "noise": 0.1,  # Gaussian, in the data's scale (digits 0..1; fashion: standardised)
        "erase_p": 0.5,  # half of the images lose a rectangle of 1/16 to 1/4 of their area
        "seed": seed,
    }
    info = cached_teacher(  # trained once (seeded, one thread), then loaded from the cache
        model,
        name=f"examples/pretrained-{arch}-{data}",  # in $TRADEOFF_CACHE_DIR/examples/
        recipe=settings,  # the file is named by a hash of these: changing any of them trains anew
        train=lambda m: pretrain(m, x_train, y_train, settings, background),
        seed=seed,
    )
    teacher_val = predict(model, x_val)
    info["teacher_val_top1"] = float((teacher_val == y_val).float().mean())
    info["teacher_val_accuracy"] = 1.0 if metric == "agreement" else info["teacher_val_top1"]
    targets = teacher_val if metric == "agreement" else y_val  # "agreement": the network's own decisions

    gen = torch.Generator().manual_seed(seed + 1)  # not the pretraining's stream: other draws, same seed
    pick = torch.randperm(len(x_train), generator=gen)[
        torch.arange(views) % len(x_train)
    ]  # each image once, then again
    x_views = augment(x_train[pick], gen, background=background, settings=settings)
    y_views = y_train[pick]  # indexed by the same pick as the images: labels stay aligned
    train = [
        (x_views[i : i + FINETUNE_BATCH], y_views[i : i + FINETUNE_BATCH]) for i in range(0, views, FINETUNE_BATCH)
    ]
    val = [(x_val[i : i + 500], targets[i : i + 500]) for i in range(0, len(x_val), 500)]
    return Task(
        name=f"pretrained-{arch}-{data}" + ("-agreement" if metric == "agreement" else ""),
        model=model.eval(),
        train=train,
        val=val,
        example_inputs=(x_val[:1],),  # one image: tradeoff repeats it to the target's batch size
        info=info,
    )
