"""Accuracy: the task's metric on held-out data (top-1 for classifiers)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from ._base import Batch, EvalContext, Measurement, Metric, Objective, as_args, top1


class NonFinite(ArithmeticError):
    """A model's outputs (or the metric on them) hold NaN or infinity: its accuracy would mean nothing."""


@torch.no_grad()
def evaluate(model: nn.Module, val: Iterable[Batch], metric: Metric = top1) -> float:
    """Run ``model`` over every validation batch and apply ``metric`` once to all outputs.

    Applying the metric to the concatenated outputs (not averaging per batch) keeps metrics
    that are not means (F1, AUC) correct and weighs uneven last batches properly.

    Raises:
        NonFinite: an output is NaN or infinite (top-1 of such logits is an arbitrary class, so a
            broken model would get a plausible-looking score), or the metric is.

    Example:
        >>> m = nn.Linear(2, 2)
        >>> 0.0 <= evaluate(m, [(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))]) <= 1.0
        True
    """
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    try:
        for i, (inputs, target) in enumerate(val):
            out = model(*as_args(inputs))
            if isinstance(out, torch.Tensor) and out.is_floating_point() and not torch.isfinite(out).all():
                raise NonFinite(f"the model's outputs hold NaN or inf on validation batch {i}")
            outputs.append(out)
            targets.append(target)
    finally:
        model.train(was_training)
    if not outputs:
        raise ValueError("Validation data is empty: the task's `val` yielded no batches.")
    value = metric(torch.cat(outputs), torch.cat(targets))
    if isinstance(value, torch.Tensor):
        raise TypeError(
            "The task's metric returned a tensor; it must return a Python float (call `.item()` on the result)."
        )
    if not math.isfinite(float(value)):
        raise NonFinite(f"the task's metric is {float(value)} on the model's outputs")
    return float(value)


class Accuracy(Objective):
    """The task metric on the validation data it is given (``ctx.val``), computed on the model as scored.

    The scored model carries the chosen weight and activation widths (fake-quantized), so the
    accuracy is that of the compressed model at those widths, whatever form later executes.
    """

    name = "accuracy"
    direction = "maximize"
    unit = "fraction"

    def measure(self, model: nn.Module, ctx: EvalContext) -> Measurement:
        value = evaluate(model, ctx.val, ctx.metric)
        n = sum(len(t) for _, t in ctx.val) if isinstance(ctx.val, (list, tuple)) else getattr(ctx.val, "samples", None)
        details = {"metric": getattr(ctx.metric, "__name__", type(ctx.metric).__name__)}
        if n is not None:
            details["samples"] = n
        if getattr(ctx.val, "skip", None):  # the validation set less its first samples (the selection slice)
            details["skipped_first"] = ctx.val.skip
        return Measurement(value, self.unit, "measured", "task metric on the validation set", details)
