"""Pruning: structured channel pruning that physically removes channels, and unstructured magnitude pruning.

Structured (``kind="structured"``): Torch-Pruning traces the model's dependency graph, so coupled
layers (a conv and its BatchNorm, residual additions, concatenations, depthwise and grouped convs,
squeeze-and-excitation gates, attention projections) lose the same channels and the result is a
smaller dense model: fewer parameters, fewer MACs, no masks. Channels are ranked by an importance
criterion, the strategy object Torch-Pruning passes into its engine: the L1 or L2 norm of each
channel group's weights, or the first-order Taylor estimate ``|w * dL/dw|`` (Molchanov et al.,
CVPR 2019) from gradients of the cross-entropy on a few training batches.

Unstructured (``kind="unstructured"``): the smallest-magnitude (or least Taylor-important) weights
of each conv and linear layer are set to zero, per layer or with one global threshold; a mask
keeps them at zero during fine-tuning. The model stays dense: zeros only shrink ``size_bytes``
through an explicit sparse encoding (see :mod:`tradeoff.objectives.profile`) and never make it
faster here, since no sparse kernel runs on the target.

Per-group ratios: ``groups`` maps layer patterns (see :mod:`tradeoff.spaces.groups`) to ratios,
e.g. ``{"layer1": 0.2, "layer4": 0.6}``; other layers take ``ratio``. Layers the user protects
(``protect`` patterns, e.g. the stem) are never pruned, and neither is the layer whose output is
the model's output (the classifier): its outputs are the task's classes.

Right after pruning, BatchNorm statistics are recalibrated on a few training batches; without
that a pruned net's accuracy can collapse before any fine-tuning (docs/DESIGN.md, "Facts measured on this kind of machine").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.nn.utils import parametrize

from ._base import ApplyContext, Config, Space, as_args, suggest_rounded
from .groups import GROUP_SEP, check_groups, selects, value_for
from .widths import WEIGHT_LAYERS

KINDS = ("structured", "unstructured")  # channels removed for real (faster), or weights zeroed (sparser only)
IMPORTANCES = ("l2", "l1", "taylor")  # Torch-Pruning's magnitude criteria, and first-order Taylor (needs gradients)
SCOPES = ("layer", "global")  # the same share from every layer, or ranked across the whole model
BN_RECALIBRATION_BATCHES = 10  # enough batches for stable running means on small nets, ~ms each
TAYLOR_BATCHES = 4  # gradients of a few batches rank channels as well as many (Molchanov et al. use ~10 minibatches)


def _check_ratio(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1) (fraction removed), got {value!r}.")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}.")


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


def accumulate_gradients(model: nn.Module, batches: Any, n_batches: int = TAYLOR_BATCHES) -> None:
    """Leave in ``.grad`` the gradients of the cross-entropy summed over ``n_batches`` training batches.

    BatchNorm runs on its running statistics (eval mode), so ranking does not disturb them.
    """
    if not batches:
        raise ValueError(
            "taylor importance needs training batches for its gradients (ApplyContext.train is empty); "
            "use importance 'l1' or 'l2', or give the task training data."
        )
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        for i, (inputs, targets) in enumerate(batches):
            if i >= n_batches:
                break
            F.cross_entropy(model(*as_args(inputs)), targets).backward()
    model.train(was_training)


class WeightMask(nn.Module):
    """Parametrization: the weight times a fixed 0/1 mask, so pruned weights stay zero while tuning."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def _head_multiple(model: nn.Module) -> int | None:
    """Channel counts a model with attention must keep multiples of (embed_dim divides by the heads).

    Torch-Pruning's per-head mode (``num_heads``) left the embedding width unpruned on the
    transformer tested here; rounding every kept width to a multiple of the head counts prunes it
    and keeps attention valid. Models without attention get no rounding.
    """
    heads = [m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    return math.lcm(*heads) if heads else None


@dataclass(frozen=True)
class PruningConfig(Config):
    """Chosen pruning values.

    Args:
        ratio: Fraction removed from each layer no group selects, in [0, 1): output channels
            (structured) or weights (unstructured).
        kind: ``"structured"`` (channels removed for real) or ``"unstructured"`` (weights zeroed).
        importance: How channels or weights are ranked: ``"l2"``, ``"l1"`` (magnitude) or
            ``"taylor"`` (first-order Taylor, from gradients on training batches).
        scope: ``"layer"``: each layer loses its own ratio; ``"global"``: one threshold across
            the layers that take ``ratio``, so layers lose different shares.
        groups: Layer patterns to ratios for those layers (first match wins).
        protect: Layer patterns never pruned (besides the output layer, always kept).

    Example:
        >>> m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> m = PruningConfig(ratio=0.5).apply_(m, ApplyContext(example_inputs=(torch.randn(2, 8),)))
        >>> m[0].out_features, m[2].out_features
        (8, 2)
    """

    technique = "pruning"

    ratio: float = 0.0
    kind: Literal["structured", "unstructured"] = "structured"
    importance: Literal["l2", "l1", "taylor"] = "l2"
    scope: Literal["layer", "global"] = "layer"
    groups: dict[str, float] = field(default_factory=dict)
    protect: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_ratio("pruning ratio", self.ratio)
        _check_choice("pruning kind", self.kind, KINDS)
        _check_choice("pruning importance", self.importance, IMPORTANCES)
        _check_choice("pruning scope", self.scope, SCOPES)
        check_groups(self.groups, "pruning")
        for key, value in self.groups.items():
            _check_ratio(f"pruning ratio of group {key!r}", value)
        if isinstance(self.protect, str) or not all(isinstance(p, str) and p for p in self.protect):
            raise ValueError(f"pruning protect must be a list of layer patterns, got {self.protect!r}.")
        object.__setattr__(self, "protect", tuple(self.protect))  # JSON gives a list

    @property
    def is_identity(self) -> bool:
        return self.ratio == 0.0 and all(v == 0.0 for v in self.groups.values())

    def ratio_of(self, name: str) -> float:
        """The ratio layer ``name`` takes."""
        return value_for(name, self.groups, self.ratio)

    def _prunable(self, model: nn.Module, inputs: tuple[Any, ...]) -> tuple[dict[str, nn.Module], list[nn.Module]]:
        """Weight layers that may be pruned, by name, and the protected ones."""
        keep = {id(m) for m in output_layers(model, inputs)}
        prunable, protected = {}, []
        for name, module in model.named_modules():
            if not isinstance(module, WEIGHT_LAYERS):
                continue
            if id(module) in keep or any(selects(p, name) for p in self.protect):
                protected.append(module)
            else:
                prunable[name] = module
        return prunable, protected

    def apply_(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        if self.is_identity:
            return model
        inputs = as_args(ctx.example_inputs)
        model.eval()
        prunable, protected = self._prunable(model, inputs)
        if self.importance == "taylor":
            accumulate_gradients(model, ctx.train)
        if self.kind == "structured":
            self._structured(model, inputs, prunable, protected)
        else:
            self._unstructured(prunable)
        model.zero_grad(set_to_none=True)
        recalibrate_batchnorm(model, ctx.train)
        return model

    def _structured(
        self, model: nn.Module, inputs: tuple[Any, ...], prunable: dict[str, nn.Module], protected: list[nn.Module]
    ) -> None:
        if self.importance == "taylor":
            importance: Any = tp.importance.GroupTaylorImportance()
        else:
            importance = tp.importance.GroupMagnitudeImportance(p=1 if self.importance == "l1" else 2)
        per_layer = {m: self.ratio_of(n) for n, m in prunable.items() if self.groups and self.ratio_of(n) != self.ratio}
        pruner = tp.pruner.BasePruner(
            model,
            inputs if len(inputs) > 1 else inputs[0],
            importance=importance,
            global_pruning=self.scope == "global",
            pruning_ratio=self.ratio,
            pruning_ratio_dict=per_layer or None,
            ignored_layers=protected,
            round_to=_head_multiple(model),
        )
        with torch.enable_grad():  # Torch-Pruning's graph tracing needs autograd
            pruner.step()
        try:
            with torch.no_grad():
                model(*inputs)
        except Exception as exc:
            raise ValueError(
                f"structured pruning left {type(model).__name__} unable to run ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}); its forward likely assumes a layer's width. Protect that "
                "layer (space.pruning.protect) or use kind 'unstructured'."
            ) from exc

    @torch.no_grad()
    def _unstructured(self, prunable: dict[str, nn.Module]) -> None:
        def score(m: nn.Module) -> torch.Tensor:
            w = m.weight.detach()
            if self.importance == "taylor":
                if m.weight.grad is None:
                    raise ValueError(f"taylor importance: layer {type(m).__name__} got no gradient; use 'l1' or 'l2'.")
                return (w * m.weight.grad).abs()
            return w.abs()

        masks: dict[str, torch.Tensor] = {}
        pooled = [n for n in prunable if self.scope == "global" and self.ratio_of(n) == self.ratio]
        if pooled and self.ratio > 0:  # one threshold across the layers that take the default ratio
            scores = torch.cat([score(prunable[n]).flatten() for n in pooled])
            k = round(self.ratio * scores.numel())
            threshold = scores.kthvalue(k).values if k > 0 else scores.new_tensor(-1.0)
            for n in pooled:
                masks[n] = (score(prunable[n]) > threshold).float()
        for n, m in prunable.items():
            if n in masks:
                continue
            ratio = self.ratio_of(n)
            s = score(m).flatten()
            k = round(ratio * s.numel())
            if k == 0:
                continue
            mask = torch.ones_like(s)
            mask[s.argsort()[:k]] = 0.0  # ties broken by position: exactly k zeros
            masks[n] = mask.view_as(m.weight)
        for n, mask in masks.items():
            parametrize.register_parametrization(prunable[n], "weight", WeightMask(mask))


@dataclass(frozen=True)
class PruningSpace(Space):
    """Ranges of the pruning knobs (from the spec's ``[space.pruning]``).

    Args:
        ratio: Range of the default ratio (``pruning.ratio``).
        kind: Kinds to choose from (``pruning.kind`` when more than one).
        importance: Criteria to choose from (``pruning.importance`` when more than one).
        scope: ``"layer"`` or ``"global"`` (fixed for the study).
        groups: Group name to layer patterns; each group gets its own ratio knob
            ``pruning.ratio@<name>`` over the same range.
        protect: Layer patterns never pruned.

    Example:
        >>> PruningSpace(ratio=(0.0, 0.8)).sample(optuna.trial.FixedTrial({"pruning.ratio": 0.3})).ratio
        0.3
    """

    ratio: tuple[float, float] = (0.0, 0.8)  # beyond ~80% small nets lose most accuracy
    kind: tuple[str, ...] = ("structured",)  # the only kind that makes a model faster here
    importance: tuple[str, ...] = ("l2",)  # Torch-Pruning's default; robust without gradients
    scope: str = "layer"  # every layer keeps the same share: predictable, and safe for thin layers
    groups: dict[str, str] = field(default_factory=dict)
    protect: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        lo, hi = self.ratio
        _check_ratio("pruning ratio low", lo)
        _check_ratio("pruning ratio high", hi)
        if lo > hi:
            raise ValueError(f"pruning ratio range must be [low, high] with low <= high, got {list(self.ratio)}.")
        if not self.kind or not self.importance:
            raise ValueError("pruning kind and importance need at least one choice each.")
        for k in self.kind:
            _check_choice("pruning kind", k, KINDS)
        for i in self.importance:
            _check_choice("pruning importance", i, IMPORTANCES)
        _check_choice("pruning scope", self.scope, SCOPES)
        check_groups({p: 0 for p in self.groups.values()}, "pruning")
        PruningConfig(protect=tuple(self.protect))  # validates the patterns

    def sample(self, trial: optuna.trial.BaseTrial) -> PruningConfig:
        lo, hi = self.ratio

        def ratio(name: str) -> float:
            # 0.01 of a layer's channels is less than one channel in all but the widest layers, so
            # rounding merges suggestions that would build the same model (duplicates reuse it)
            return suggest_rounded(trial, name, (lo, hi), decimals=2)

        def choice(name: str, options: tuple[str, ...]) -> str:
            return trial.suggest_categorical(name, list(options)) if len(options) > 1 else options[0]

        default = ratio("pruning.ratio")
        groups = {pattern: ratio(f"pruning.ratio{GROUP_SEP}{name}") for name, pattern in self.groups.items()}
        return PruningConfig(
            ratio=default,
            kind=choice("pruning.kind", self.kind),  # type: ignore[arg-type]
            importance=choice("pruning.importance", self.importance),  # type: ignore[arg-type]
            scope=self.scope,  # type: ignore[arg-type]
            groups=groups,
            protect=tuple(self.protect),
        )

    def identity(self) -> PruningConfig:
        return PruningConfig(
            ratio=0.0,
            kind=self.kind[0],  # type: ignore[arg-type]
            importance=self.importance[0],  # type: ignore[arg-type]
            scope=self.scope,  # type: ignore[arg-type]
            groups={pattern: 0.0 for pattern in self.groups.values()},
            protect=tuple(self.protect),
        )
