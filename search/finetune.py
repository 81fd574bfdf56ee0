"""Fine-tuning that respects a trained network: keep the better weights, and say why accuracy fell.

A trial measures its compressed model before fine-tuning (*zero-shot*) on the reported validation
data, and on *selection* data that neither fine-tuning nor the reported accuracy uses (``[search]
select_on``, :mod:`tradeoff.studies.shared`): by default a slice of the validation set kept apart
from the reported figure, or else training batches held back from fine-tuning. After fine-tuning
it compares the two on the selection data only, so the reported accuracy stays an unbiased figure
of the model chosen.

* ``[search] keep_better`` (:class:`KeepBetter`): when fine-tuning ends no higher than the zero-shot
  accuracy on the selection data, the trial keeps its weights from before fine-tuning, reports
  their accuracy, and says so (``finetune.kept = "zero_shot"``). No trial leaves worse than the
  compression alone left it.
* When a trial's accuracy falls sharply below its zero-shot accuracy (at a rung, or at the end),
  :func:`explain_drop` reads the training loss of its steps and records why, in words the CLI and the
  dashboard show: a loss that rose after the first steps means the learning rate is too high for
  this network; a loss that fell while held-out accuracy fell means fine-tuning fits the few
  training batches at the cost of what the network knew.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tradeoff.spaces import as_args

SELECTION_WORDS = {  # how a record's why_kept names its selection data ([search] select_on)
    "validation": "validation samples kept apart from the reported accuracy",
    "held_back": "training samples held back from fine-tuning",
}
SHARP_DROP = 0.02  # accuracy points below zero-shot that call for an explanation: beyond noise on ~1000 samples
EARLY_STEPS = 5  # "the first steps": Adam's moments settle and warm-up ends around here on short schedules
LOSS_ROSE = 1.05  # the early loss above the first step's by 5 %: rising, not noise between batches


def explain_drop(losses: Sequence[float], lr: float, *, before: float, after: float, where: str) -> str:
    """Why accuracy fell from ``before`` (zero-shot) to ``after`` at ``where``, from the steps' losses.

    Example:
        >>> explain_drop([0.30, 0.45, 0.60, 0.70, 0.72, 0.75], 1e-3, before=0.88, after=0.55, where="rung 0.25")
        'accuracy fell from 0.8800 before fine-tuning to 0.5500 at rung 0.25; loss rose after the first steps (0.3 -> 0.644): learning rate 0.001 too high for this model'
    """
    head = f"accuracy fell from {before:.4f} before fine-tuning to {after:.4f} at {where}"
    if len(losses) < 2:
        return f"{head}; too few steps to read the loss"
    first = losses[0]
    early = statistics.fmean(losses[1 : 1 + EARLY_STEPS])
    if early > first * LOSS_ROSE:
        return (
            f"{head}; loss rose after the first steps ({first:.3g} -> {early:.3g}): learning rate {lr:.2g} too high "
            "for this model"
        )
    last = statistics.fmean(losses[-EARLY_STEPS:])
    if last < first:
        return (
            f"{head}; training loss fell ({first:.3g} -> {last:.3g}) while held-out accuracy fell: fine-tuning fits "
            "the training batches at the cost of what the network knew (too few, or unlike the validation data)"
        )
    return (
        f"{head}; the training loss did not fall ({first:.3g} -> {last:.3g}): learning rate {lr:.2g} too low to recover"
    )


@dataclass(frozen=True)
class KeepBetter:
    """``[search] keep_better``: keep the weights from before fine-tuning unless fine-tuning made them better.

    Example:
        >>> KeepBetter(enabled=True).keeps_zero_shot(zero_shot=0.90, tuned=0.85)
        True
        >>> KeepBetter(enabled=True).keeps_zero_shot(zero_shot=0.90, tuned=0.90)  # a tie: no evidence it helped
        True
    """

    enabled: bool = True  # the spec's default: fine-tuning must never make a trial worse

    def keeps_zero_shot(
        self,
        *,
        zero_shot: float | None,
        tuned: float | None,
        zero_shot_kl: float | None = None,  # without divergences a tie keeps the weights from before
        tuned_kl: float | None = None,
    ) -> bool:
        """Whether to keep the zero-shot weights, given both accuracies on the selection data: unless
        fine-tuning did better there, the weights that moved least from the trained network stay. A tie
        in accuracy (common on a small slice, or one the compressed model already gets right) is broken
        by the divergence from the teacher's outputs there: fine-tuning that brought the model nearer
        the teacher on data it did not tune on is kept.

        Example:
            >>> KeepBetter().keeps_zero_shot(zero_shot=1.0, tuned=1.0, zero_shot_kl=0.05, tuned_kl=0.02)
            False
        """
        if not self.enabled or zero_shot is None or tuned is None:
            return False
        if tuned != zero_shot:
            return tuned < zero_shot
        return zero_shot_kl is None or tuned_kl is None or tuned_kl >= zero_shot_kl


@torch.no_grad()
def selection_divergence(model: nn.Module, batches: Sequence[Any], teacher_logits: Sequence[torch.Tensor]) -> float:
    """KL(teacher || ``model``) at ``T = 1`` over ``batches``, in nats per sample (eval mode).

    Example:
        >>> net = nn.Linear(2, 3); data = [(torch.randn(4, 2), torch.zeros(4))]
        >>> selection_divergence(net, data, [net(data[0][0])])
        0.0
    """
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for (inputs, _), teacher in zip(batches, teacher_logits, strict=True):
        out = F.log_softmax(model(*as_args(inputs)).float(), dim=-1)
        total += float(F.kl_div(out, F.log_softmax(teacher.float(), dim=-1), reduction="sum", log_target=True))
        n += int(teacher.shape[0])
    model.train(was_training)
    return round(total / n, 6) if n else 0.0
