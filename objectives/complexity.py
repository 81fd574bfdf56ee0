"""Complexity objective: one structural figure of the compressed model (size, params, MACs, BOPs).

The figures are *computed* by :func:`~tradeoff.objectives.profile.profile` and
:func:`~tradeoff.objectives.profile.size_bytes` (exact counts, not timings); the size model and
the MAC/BOP counting are documented in :mod:`tradeoff.objectives.profile`.
"""

from __future__ import annotations

from torch import nn

from ._base import EvalContext, Measurement, Objective
from .profile import size_bytes

# The figures a spec may name as its complexity objective: every flat figure of ModelProfile.figures().
COMPLEXITY_FIGURES: tuple[str, ...] = ("size_bytes", "params", "nonzero_params", "macs", "bops")
_UNITS = {  # the unit each figure is stored in
    "size_bytes": "bytes",
    "params": "count",
    "nonzero_params": "count",
    "macs": "MACs",
    "bops": "BOPs",
}
_METHODS = {  # the provenance "method" of each figure: how it was computed
    "size_bytes": "computed: packed weights at their bit-widths (sparse encoding when smaller) + scales + fp32 rest",
    "params": "computed: parameters of the compressed model",
    "nonzero_params": "computed: non-zero parameters of the compressed model",
    "macs": "computed: multiply-accumulates of one forward pass (torch FlopCounterMode / 2)",
    "bops": "computed: MACs x weight bits x activation bits of one forward pass",
}


class Complexity(Objective):
    """One structural figure as the complexity objective (the spec picks which; default size).

    Computed from the model's structure, never timed: ``source`` is ``"computed"`` with the
    method saying how (see :mod:`tradeoff.objectives.profile` for the size model).

    Example:
        >>> import torch
        >>> Complexity("macs").measure(nn.Linear(3, 2), EvalContext(example_inputs=(torch.ones(1, 3),))).value
        6.0
    """

    direction = "minimize"

    def __init__(self, figure: str = "size_bytes") -> None:
        if figure not in COMPLEXITY_FIGURES:
            raise ValueError(f"complexity objective must be one of {COMPLEXITY_FIGURES}, got {figure!r}.")
        self.name = figure
        self.unit = _UNITS[figure]

    def measure(self, model: nn.Module, ctx: EvalContext) -> Measurement:
        """The chosen figure of ``model`` at ``ctx``'s widths, labelled ``computed``."""
        if self.name == "size_bytes":  # needs no forward pass
            value = size_bytes(model, ctx.weight_bits)
        else:
            value = ctx.profile(model).figures()[self.name]
        return Measurement(float(value), self.unit, "computed", _METHODS[self.name], {"model": "tradeoff.size/v1"})


class SizeBytes(Complexity):
    """Bytes the compressed weights need at their bit-widths (the default complexity objective)."""

    def __init__(self) -> None:
        super().__init__("size_bytes")
