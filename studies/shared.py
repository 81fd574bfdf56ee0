"""What every trial of a task shares: the training batches, the teacher's outputs on them, inputs.

The task's training batches are split once: the last few are *held back* from fine-tuning
(:func:`held_back`), so that a trial can tell whether fine-tuning made its model better or worse on
data that neither fine-tuning nor the reported accuracy (always the whole validation set) uses.

Built once per process and task (:func:`shared_inputs`); the teacher's outputs are also cached on
disk, so later studies and processes read them back instead of running the teacher.

Example:
    >>> at_batch_size((torch.zeros(1, 3),), 4)[0].shape
    torch.Size([4, 3])
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tradeoff.spaces import cache_teacher_outputs, materialise

from .tasks import Batch, Task
from .teachers import batches_sha256, cache_dir, weights_sha256

HELD_BACK_FRACTION = 0.1  # a tenth of the training samples: enough to judge a trial, little taken from tuning
HELD_BACK_MAX_SAMPLES = 1000  # more adds time to every trial, not certainty (1 sample in 1000 is 0.1 point)
MIN_TUNING_BATCHES = 3  # with fewer batches than this nothing is held back: tuning needs them all


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
    train: list[Batch]  # the batches fine-tuning and calibration use: one materialised pass, same order every trial
    teacher_logits: list[torch.Tensor]  # the teacher's outputs on each of those batches
    teacher_cache: str = "computed"  # "computed" (the teacher ran, result stored) or "disk" (read back)
    held_back: list[Batch] = field(default_factory=list)  # the last training batches, never tuned on (held_back())


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


def held_back(train: list[Batch]) -> int:
    """How many of the last training batches are held back from fine-tuning.

    The fewest last batches that hold :data:`HELD_BACK_FRACTION` of the samples, at most
    :data:`HELD_BACK_MAX_SAMPLES`'s worth; none with fewer than :data:`MIN_TUNING_BATCHES` batches.

    Example:
        >>> held_back([(torch.zeros(64, 1), torch.zeros(64))] * 23)  # a tenth is 147 samples: the last 3 batches
        3
        >>> held_back([(torch.zeros(8, 1), torch.zeros(8))] * 2)
        0
    """
    if len(train) < MIN_TUNING_BATCHES:
        return 0
    sizes = [len(targets) for _, targets in train]
    want = min(HELD_BACK_FRACTION * sum(sizes), HELD_BACK_MAX_SAMPLES)
    n, got = 0, 0
    while got < want and n < len(train) - MIN_TUNING_BATCHES + 1:
        n += 1
        got += sizes[-n]
    return n


def teacher_outputs_path(task: Task, train: list[Batch]) -> Path:
    """Where the teacher's outputs on ``train`` are cached: keyed by task, teacher weights and data.

    Example:
        >>> from torch import nn
        >>> batches = [(torch.zeros(4, 2), torch.arange(4) % 3)]
        >>> task = Task("doc task", nn.Linear(2, 3), batches, batches, (torch.zeros(1, 2),))
        >>> path = teacher_outputs_path(task, batches)
        >>> path.parent.name, path.name.startswith("doc_task-")
        ('teacher-outputs', True)
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in task.name)[:60]
    key = f"{weights_sha256(task.model)[:16]}-{batches_sha256(train)[:16]}"
    return cache_dir() / "teacher-outputs" / f"{safe}-{key}.pt"


def shared_inputs(task: Task, batch_size: int, *, hold_back: bool = True) -> SharedInputs:
    """Materialise the training batches and the teacher's outputs on them, cached on disk.

    The teacher runs once per task, teacher weights and training data: later studies and
    processes (``export``, ``apply``, other workers on the same host) read its outputs back from
    ``<cache dir>/teacher-outputs/``, so no trial runs the teacher.

    With ``hold_back`` the last batches (:func:`held_back`) are kept apart in ``held_back``: they
    are neither fine-tuned nor calibrated on.

    Example:
        >>> import tempfile
        >>> from unittest import mock
        >>> from torch import nn
        >>> batches = [(torch.zeros(4, 2), torch.arange(4) % 3)]
        >>> task = Task("doc", nn.Linear(2, 3).eval(), batches, batches, (torch.zeros(1, 2),))
        >>> with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, {"TRADEOFF_CACHE_DIR": tmp}):
        ...     first, again = shared_inputs(task, 8), shared_inputs(task, 8)
        >>> first.teacher_cache, again.teacher_cache, first.example_inputs[0].shape
        ('computed', 'disk', torch.Size([8, 2]))
    """
    full = materialise(task.train)
    shared = _with_teacher_outputs(task, full, at_batch_size(task.example_inputs, batch_size))
    n = held_back(full) if hold_back else 0
    if n:
        shared.held_back = shared.train[-n:]
        shared.train, shared.teacher_logits = shared.train[:-n], shared.teacher_logits[:-n]
    return shared


def _with_teacher_outputs(task: Task, train: list[Batch], example: tuple[torch.Tensor, ...]) -> SharedInputs:
    """The teacher's outputs on all of ``train``, read from the disk cache or computed and cached."""
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
