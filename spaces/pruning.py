"""Structured channel pruning that physically removes channels (Torch-Pruning).

Torch-Pruning traces the model's dependency graph, so coupled layers (a conv and its BatchNorm,
residual additions, concatenations, grouped convs) lose the same channels and the result is a
smaller dense model: fewer parameters, fewer MACs, no masks. The layer whose output is the
model's output (the classifier) is protected: its outputs are the task's classes.

Right after pruning, BatchNorm statistics are recalibrated on a few training batches; without
that a pruned net's accuracy can collapse before any fine-tuning (DESIGN.md, measured facts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import optuna
import torch
import torch_pruning as tp
from torch import nn

from ._base import ApplyContext, Config, Space, as_args

KINDS = ("structured",)
BN_RECALIBRATION_BATCHES = 10  # enough batches for stable running means on small nets, ~ms each


def _check_ratio(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1) (fraction of channels removed), got {value!r}.")


def output_layers(model: nn.Module, example_inputs: tuple[Any, ...]) -> list[nn.Module]:
    """Leaf modules whose output tensor is (part of) the model's output: they must keep their width."""
    produced: dict[int, nn.Module] = {}
    handles = [
        m.register_forward_hook(lambda mod, inp, out: produced.__setitem__(id(out), mod))
        for m in model.modules()
        if len(list(m.children())) == 0
    ]
    try:
        with torch.no_grad():
            out = model(*as_args(example_inputs))
    finally:
        for h in handles:
            h.remove()
    outs = out if isinstance(out, (tuple, list)) else (out,)
    found = [produced[id(o)] for o in outs if id(o) in produced]
    if not found:  # output made by a functional op: protect the last Linear, if any
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        found = linears[-1:]
    return found


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Any, n_batches: int = BN_RECALIBRATION_BATCHES) -> None:
    """Re-estimate BatchNorm running statistics from ``n_batches`` training batches."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or not batches:
        return
    was_training = model.training
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    model.train()
    for i, (inputs, _) in enumerate(batches):
        if i >= n_batches:
            break
        model(*as_args(inputs))
    for bn, m in zip(bns, saved):
        bn.momentum = m
    model.train(was_training)


@dataclass(frozen=True)
class PruningConfig(Config):
    """Chosen pruning values.

    Args:
        ratio: Fraction of each prunable layer's output channels to remove, in [0, 1).
        kind: ``"structured"`` (channels removed for real).

    Example:
        >>> m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> m = PruningConfig(ratio=0.5).apply_(m, ApplyContext(example_inputs=(torch.randn(2, 8),)))
        >>> m[0].out_features, m[2].out_features
        (8, 2)
    """

    technique = "pruning"

    ratio: float = 0.0
    kind: Literal["structured"] = "structured"

    def __post_init__(self) -> None:
        _check_ratio("pruning ratio", self.ratio)
        if self.kind not in KINDS:
            raise ValueError(f"pruning kind must be one of {KINDS}, got {self.kind!r}.")

    def apply_(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        if self.ratio == 0.0:
            return model
        inputs = as_args(ctx.example_inputs)
        model.eval()
        pruner = tp.pruner.BasePruner(
            model,
            inputs if len(inputs) > 1 else inputs[0],
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=self.ratio,
            ignored_layers=output_layers(model, inputs),
        )
        pruner.step()
        recalibrate_batchnorm(model, ctx.train)
        return model


@dataclass(frozen=True)
class PruningSpace(Space):
    """Ranges of the pruning knobs (from the spec's ``[space.pruning]``).

    Example:
        >>> PruningSpace(ratio=(0.0, 0.8)).sample(optuna.trial.FixedTrial({"pruning.ratio": 0.3}))
        PruningConfig(ratio=0.3, kind='structured')
    """

    ratio: tuple[float, float] = (0.0, 0.8)  # beyond ~80% small nets lose most accuracy
    kind: tuple[str, ...] = ("structured",)

    def __post_init__(self) -> None:
        lo, hi = self.ratio
        _check_ratio("pruning ratio low", lo)
        _check_ratio("pruning ratio high", hi)
        if lo > hi:
            raise ValueError(f"pruning ratio range must be [low, high] with low <= high, got {list(self.ratio)}.")
        for k in self.kind:
            if k not in KINDS:
                raise ValueError(f"pruning kind must be one of {KINDS}, got {k!r}.")

    def sample(self, trial: optuna.trial.BaseTrial) -> PruningConfig:
        lo, hi = self.ratio
        ratio = trial.suggest_float("pruning.ratio", lo, hi) if hi > lo else lo
        kind = trial.suggest_categorical("pruning.kind", list(self.kind)) if len(self.kind) > 1 else self.kind[0]
        return PruningConfig(ratio=ratio, kind=kind)

    def identity(self) -> PruningConfig:
        return PruningConfig(ratio=0.0)
