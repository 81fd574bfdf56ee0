"""What every trial of a task shares: the training batches, the teacher's outputs on them, inputs.

A trial judges whether fine-tuning made its model better or worse on *selection* data that neither
fine-tuning nor the reported accuracy uses (``[search] select_on``, :func:`shared_inputs`):

* ``"validation"`` (the default): the first samples of the validation set (the rung subset, at most
  :data:`SELECT_MAX_FRACTION` of it, :func:`split_val`) are kept apart; the reported accuracy is
  scored on the rest, and fine-tuning uses every training batch. The selection data then looks
  like what the reported accuracy measures, which held-back training batches need not (augmented
  views of a network trained elsewhere: docs/BENCHMARKS.md, issue 26).
* ``"held_back"``: the last training batches are held back from fine-tuning (:func:`held_back`) and
  the reported accuracy is scored on the whole validation set.

Built once per process and task (:func:`shared_inputs`); the teacher's outputs are also cached on
disk, so later studies and processes read them back instead of running the teacher.

Example:
    >>> at_batch_size((torch.zeros(1, 3),), 4)[0].shape
    torch.Size([4, 3])
"""

from __future__ import annotations

import hashlib
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
SELECT_ON = ("validation", "held_back")  # where a trial judges its fine-tuning ([search] select_on)
# the selection slice takes at most a fifth of the validation samples: the reported accuracy keeps four
# fifths (288 of digits' 360), and a slice of 72 still tells a fine-tune that lost points from one that did not
SELECT_MAX_FRACTION = 0.2


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
    # what judges fine-tuning: the validation slice, or the last training batches held back from tuning
    selection: list[Batch] = field(default_factory=list)
    select_on: str = "validation"  # which of the two (SELECT_ON)
    val: Iterable[Batch] = ()  # what the reported accuracy is scored on: validation without the selection slice
    rung_val: list[Batch] = field(default_factory=list)  # what a trial is scored on at a rung
    data_sha256: str = ""  # the task's training and validation data (values, shapes, order): the study's data identity


def _head(inputs: Any, n: int) -> Any:
    """The first ``n`` samples of a batch's inputs (a tensor, or a tuple/list of them)."""
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(x[:n] for x in inputs)
    return inputs[:n]


def _tail(inputs: Any, n: int) -> Any:
    """A batch's inputs without their first ``n`` samples."""
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(x[n:] for x in inputs)
    return inputs[n:]


class ValRest:
    """The validation batches without their first ``skip`` samples: re-iterable, never materialised.

    The task's ``val`` must yield the same samples in the same order on every pass (tasks.Task), so
    the samples skipped are the ones :func:`val_subset` took.

    Example:
        >>> val = [(torch.zeros(4, 2), torch.arange(4)), (torch.ones(4, 2), torch.arange(4))]
        >>> [t.tolist() for _, t in ValRest(val, 6)]
        [[2, 3]]
    """

    def __init__(self, val: Iterable[Batch], skip: int, samples: int | None = None) -> None:
        self.val, self.skip = val, skip
        self.samples = samples  # how many samples are left, when the caller counted them (split_val does)

    def __iter__(self) -> Any:
        left = self.skip
        for inputs, targets in self.val:
            if left >= len(targets):
                left -= len(targets)
                continue
            yield (_tail(inputs, left), targets[left:]) if left else (inputs, targets)
            left = 0


def split_val(val: Iterable[Batch], samples: int) -> tuple[list[Batch], Iterable[Batch]]:
    """The validation set split into a selection slice (its first samples, kept in memory) and the rest.

    The slice holds ``samples`` samples, at most :data:`SELECT_MAX_FRACTION` of the validation set;
    a set too small to spare one sample is not split (``([], val)``).

    Example:
        >>> val = [(torch.zeros(10, 2), torch.arange(10))] * 3
        >>> select, rest = split_val(val, 1000)  # capped at a fifth: 6 of 30
        >>> sum(len(t) for _, t in select), sum(len(t) for _, t in rest)
        (6, 24)
    """
    total = sum(len(targets) for _, targets in val)
    n = min(samples, int(total * SELECT_MAX_FRACTION))
    if n <= 0:
        return [], val
    return val_subset(val, n), ValRest(val, n, total - n)


def val_subset(val: Iterable[Batch], samples: int) -> list[Batch]:
    """The first ``samples`` validation samples, as batches kept in memory (the fixed subset
    fidelity rungs score and, with ``select_on = "validation"``, the selection slice).

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


def teacher_outputs_path(task: Task, train: list[Batch], train_sha256: str | None = None) -> Path:
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
    key = f"{weights_sha256(task.model)[:16]}-{(train_sha256 or batches_sha256(train))[:16]}"
    return cache_dir() / "teacher-outputs" / f"{safe}-{key}.pt"


def shared_inputs(
    task: Task,
    batch_size: int,
    *,
    select_on: str | None = "validation",  # the spec's default; None: no selection data (v1 recipes' export)
    select_size: int = 1000,  # [search] rung_val_size's default
) -> SharedInputs:
    """Materialise the training batches and the teacher's outputs on them, cached on disk.

    The teacher runs once per task, teacher weights and training data: later studies and
    processes (``export``, ``apply``, other workers on the same host) read its outputs back from
    ``<cache dir>/teacher-outputs/``, so no trial runs the teacher.

    ``select_on`` says what judges fine-tuning (module docstring): ``"validation"`` keeps the first
    ``select_size`` validation samples apart (:func:`split_val`; they are also the rung subset) and
    reports on the rest; ``"held_back"`` keeps the last training batches apart (:func:`held_back`:
    neither fine-tuned nor calibrated on), scores rungs on the first ``select_size`` validation
    samples and reports on all of them; ``None`` keeps nothing apart.

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
    train_sha256 = batches_sha256(full)
    shared = _with_teacher_outputs(task, full, at_batch_size(task.example_inputs, batch_size), train_sha256)
    shared.data_sha256 = hashlib.sha256(f"{train_sha256}:{batches_sha256(list(task.val))}".encode()).hexdigest()
    if select_on is not None and select_on not in SELECT_ON:
        raise ValueError(f"select_on must be one of {SELECT_ON} or None, got {select_on!r}.")
    shared.select_on, shared.val = select_on or "", task.val
    if select_on == "validation":
        shared.selection, shared.val = split_val(task.val, select_size)
        shared.rung_val = shared.selection
    else:
        shared.rung_val = val_subset(task.val, select_size)
    n = held_back(full) if select_on == "held_back" else 0
    if n:
        shared.selection = shared.train[-n:]
        shared.train, shared.teacher_logits = shared.train[:-n], shared.teacher_logits[:-n]
    return shared


def _with_teacher_outputs(
    task: Task, train: list[Batch], example: tuple[torch.Tensor, ...], train_sha256: str
) -> SharedInputs:
    """The teacher's outputs on all of ``train``, read from the disk cache or computed and cached."""
    path = teacher_outputs_path(task, train, train_sha256)
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
