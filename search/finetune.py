"""Fine-tuning that respects a trained network: keep the better weights, and say why accuracy fell.

A trial measures its compressed model before fine-tuning (*zero-shot*) on the validation set, and on
training batches held back from fine-tuning (:func:`tradeoff.studies.shared.held_back`). After
fine-tuning it compares the two on the held-back batches only: the reported accuracy (the whole
validation set) plays no part in the choice, so it stays an unbiased figure of the model chosen.

* ``[search] keep_better`` (:class:`KeepBetter`): when fine-tuning ends *below* the zero-shot
  accuracy on the held-back batches, the trial keeps its weights from before fine-tuning, reports
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
    return f"{head}; the training loss did not fall ({first:.3g} -> {last:.3g}): learning rate {lr:.2g} too low to recover"


@dataclass(frozen=True)
class KeepBetter:
    """``[search] keep_better``: keep the weights from before fine-tuning when fine-tuning made them worse.

    Example:
        >>> KeepBetter(enabled=True).keeps_zero_shot(zero_shot=0.90, tuned=0.85)
        True
        >>> KeepBetter(enabled=True).keeps_zero_shot(zero_shot=0.90, tuned=0.90)  # a tie keeps the tuned weights
        False
    """

    enabled: bool = True  # the spec's default: fine-tuning must never make a trial worse

    def keeps_zero_shot(self, *, zero_shot: float | None, tuned: float | None) -> bool:
        """Whether to keep the zero-shot weights, given both accuracies on the held-back batches."""
        return self.enabled and zero_shot is not None and tuned is not None and tuned < zero_shot
