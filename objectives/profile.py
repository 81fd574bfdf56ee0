"""Structural counting: parameters, non-zero parameters, size in bytes at the chosen widths, MACs and BOPs.

All figures here are *computed* from the model's structure (exact counts, not timings). The
:class:`~tradeoff.objectives.complexity.Complexity` objective reports one of them; the energy model
builds on the per-layer :class:`ModelProfile`; :mod:`tradeoff.objectives.packing` writes the file
that :func:`size_bytes` counts.

Size model (``size_bytes``, what a file of the deployable weights would hold):
  * a quantized layer's weight tensor at ``b`` bits packs to ``ceil(numel * b / 8)`` bytes, plus
    one fp32 scale per output channel (per-channel symmetric quantization has no zero-point);
    at 16 bits it is a 16-bit float (2 bytes a weight, no scale);
  * a conv or linear weight with zeros (unstructured pruning) is stored in whichever encoding is
    smallest (:func:`weight_encoding`): dense; a *bitmask* (1 bit per weight, then the non-zero
    values packed at ``b`` bits); or *CSR* over the ``(out_channels, rest)`` matrix (non-zero
    values at ``b`` bits, a column index per value in 16 bits, or 32 when a row has more than
    65,536 columns, and ``out_channels + 1`` int32 row pointers). Dense wins for dense tensors,
    so zeros count only through an encoding a file really uses. Fine-tuning moves quantized weights
    onto other codes (at low widths many onto 0), so screening before it compares
    :func:`size_bytes_floor`: the least size any values of the quantized weights could pack to;
  * every other parameter and every floating-point buffer (BatchNorm statistics) at 4 bytes;
  * integer bookkeeping buffers (``num_batches_tracked``) are not needed at inference: 0 bytes.

MACs are multiply-accumulates of one forward pass of ``example_inputs`` (the target batch),
counted by PyTorch's own ``FlopCounterMode`` (``MACs = FLOPs / 2`` for convolutions and matrix
products). BOPs (bit operations) weigh each MAC by the widths of its operands:
``MACs x weight_bits x activation_bits``; matrix products between two activations (attention)
count ``activation_bits**2``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FP32_BYTES = 4  # bytes of an unquantized parameter or buffer
SCALE_BYTES = 4  # one fp32 scale per output channel of a quantized weight
WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # the layers whose weights get quantized and pruned


@dataclass(frozen=True)
class LayerProfile:
    """One weight layer's share of the work of a forward pass."""

    name: str
    macs: int
    weight_numel: int
    in_numel: int
    out_numel: int
    weight_bits: int
    activation_bits: int


@dataclass(frozen=True)
class ModelProfile:
    """Structural figures of one model at its chosen widths (see module docstring)."""

    layers: tuple[LayerProfile, ...]
    other_macs: int  # matrix products outside weight layers (e.g. attention scores)
    activation_bits: int
    params: int
    nonzero_params: int
    size_bytes: int

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one forward pass: weight layers plus other matrix products."""
        return sum(layer.macs for layer in self.layers) + self.other_macs

    @property
    def bops(self) -> int:
        """Bit operations: each MAC weighted by the widths of its operands (see module docstring)."""
        a = self.activation_bits
        return sum(l.macs * l.weight_bits * l.activation_bits for l in self.layers) + (self.other_macs * a * a)

    def figures(self) -> dict[str, int]:
        """The flat figures every trial stores."""
        return {
            "params": self.params,
            "nonzero_params": self.nonzero_params,
            "size_bytes": self.size_bytes,
            "macs": self.macs,
            "bops": self.bops,
        }


ENCODINGS = ("dense", "bitmask", "csr")  # simplest first: ties go to the earlier one
ROW_POINTER_BYTES = 4  # int32 row pointers of CSR
SMALL_INDEX_COLUMNS = 2**16  # up to this many columns a CSR column index fits in 16 bits


def _values_bytes(n: int, bits: int) -> int:
    return 4 * n if bits >= 32 else 2 * n if bits == 16 else math.ceil(n * bits / 8)


def _encodings(shape: torch.Size, nnz: int, bits: int) -> dict[str, int]:
    """Bytes of each encoding of a weight of ``shape`` with ``nnz`` non-zero values at ``bits`` (scales excluded)."""
    numel = math.prod(shape)
    rows = shape[0] if len(shape) > 1 else 1
    cols = numel // max(rows, 1)
    index_bytes = 2 if cols <= SMALL_INDEX_COLUMNS else 4
    return {
        "dense": _values_bytes(numel, bits),
        "bitmask": math.ceil(numel / 8) + _values_bytes(nnz, bits),
        "csr": _values_bytes(nnz, bits) + index_bytes * nnz + ROW_POINTER_BYTES * (rows + 1),
    }


def weight_encoding(weight: torch.Tensor, bits: int = 32) -> tuple[str, int]:
    """The smallest encoding of a weight tensor's values at ``bits`` and its bytes (scales excluded).

    Example:
        >>> w = torch.zeros(4, 100); w[0, :3] = 1.0
        >>> weight_encoding(w, 8)  # 3 values + 3 two-byte column indices + 5 row pointers
        ('csr', 29)
        >>> weight_encoding(torch.ones(4, 100), 8)
        ('dense', 400)
    """
    options = _encodings(weight.shape, int(torch.count_nonzero(weight).item()), bits)
    best = min(ENCODINGS, key=lambda k: options[k])  # ties go to the simpler encoding (ENCODINGS order)
    return best, options[best]


def _size(model: nn.Module, weight_bits: Mapping[str, int] | None, *, floor: bool) -> int:
    """:func:`size_bytes` of ``model``; with ``floor``, every quantized weight's codes taken as 0."""
    weight_bits = dict(weight_bits or {})
    total = 0
    for name, module in model.named_modules():
        bits = weight_bits.get(name, 32)
        for pname, param in module.named_parameters(recurse=False):
            if pname == "weight" and isinstance(module, WEIGHT_LAYERS):
                if floor and bits < 16:  # no encoding grows with fewer non-zero codes: all zero is the least
                    total += min(_encodings(param.shape, 0, bits).values())
                else:
                    total += weight_encoding(param.detach(), bits)[1]
                total += SCALE_BYTES * param.shape[0] if bits < 16 else 0
            else:
                total += FP32_BYTES * param.numel()
        for _, buf in module.named_buffers(recurse=False):
            if buf.is_floating_point():
                total += FP32_BYTES * buf.numel()
    return total


def size_bytes(model: nn.Module, weight_bits: Mapping[str, int] | None = None) -> int:
    """Bytes of the model's weights at their bit-widths (see module docstring for the model).

    Example:
        >>> size_bytes(nn.Linear(10, 4))  # 44 fp32 numbers
        176
        >>> size_bytes(nn.Linear(10, 4), {"": 8})  # 40 int8 weights + 4 scales + 4 fp32 biases
        72
    """
    return _size(model, weight_bits, floor=False)


def size_bytes_floor(model: nn.Module, weight_bits: Mapping[str, int] | None = None) -> int:
    """The least :func:`size_bytes` the model can reach by changing its weights' values: same shapes, same widths.

    A quantized weight (under 16 bits) is counted in its smallest encoding with no non-zero code
    (``dense``, or an empty ``bitmask`` or ``csr``), plus its scales; every encoding only grows with
    non-zero codes, so no values of the weights pack smaller. Fine-tuning moves the weights, and at
    2-4 bits many round to code 0, where a sparser encoding wins: the size before fine-tuning is no
    bound on the size after, this is. A weight at 16 or 32 bits (a float) keeps the packing of its
    current values: its zeros come only from pruning masks, which fine-tuning keeps, and a float
    weight moved by gradient descent lands exactly on 0.0 with probability ~0. Every other
    parameter and buffer counts as in :func:`size_bytes`.

    Args:
        model: The model, at the shapes it will keep.
        weight_bits: Bit-width of each quantized layer's weights by module name; absent = 32.

    Returns:
        Bytes, never more than ``size_bytes(model, weight_bits)``.

    Example:
        >>> m = nn.Linear(10, 4)
        >>> size_bytes(m, {"": 2}), size_bytes_floor(m, {"": 2})  # 40 two-bit weights: 10 bytes, or a 5-byte bitmask
        (42, 37)
        >>> size_bytes_floor(m) == size_bytes(m)  # fp32 weights keep their packing
        True
    """
    return _size(model, weight_bits, floor=True)


def _macs_by_module(model: nn.Module, args: tuple[Any, ...]) -> tuple[dict[str, int], int]:
    """MACs of one forward pass per module name (``""`` for the root) and in total."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*args)
    counts = counter.get_flop_counts()
    total = sum(counts.get("Global", {}).values()) // 2
    prefix = type(model).__name__
    per_module: dict[str, int] = {}
    for key, ops in counts.items():
        if key == "Global":
            continue
        name = key[len(prefix) + 1 :] if key.startswith(prefix + ".") else ""
        per_module[name] = sum(ops.values()) // 2
    return per_module, total


def profile(
    model: nn.Module,
    example_inputs: tuple[Any, ...],
    weight_bits: Mapping[str, int] | None = None,
    activation_bits: int = 32,
) -> ModelProfile:
    """Count params, size, MACs and BOPs of ``model`` for one forward pass of ``example_inputs``.

    Example:
        >>> p = profile(nn.Linear(10, 4), (torch.randn(2, 10),), {"": 8}, 8)
        >>> p.macs, p.bops
        (80, 5120)
    """
    weight_bits = dict(weight_bits or {})
    args = tuple(example_inputs)  # always a tuple of forward arguments (EvalContext.example_inputs)
    shapes: dict[str, tuple[int, int]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, WEIGHT_LAYERS):

            def hook(mod: nn.Module, inp: tuple[Any, ...], out: torch.Tensor, name: str = name) -> None:
                shapes[name] = (inp[0].numel(), out.numel())

            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        per_module, total_macs = _macs_by_module(model, args)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    layers = []
    for name, module in model.named_modules():
        if isinstance(module, WEIGHT_LAYERS) and name in shapes:
            layers.append(
                LayerProfile(
                    name=name,
                    macs=per_module.get(name, 0),
                    weight_numel=module.weight.numel(),
                    in_numel=shapes[name][0],
                    out_numel=shapes[name][1],
                    weight_bits=weight_bits.get(name, 32),
                    activation_bits=activation_bits if name in weight_bits else 32,
                )
            )
    params = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p).item()) for p in model.parameters())
    return ModelProfile(
        layers=tuple(layers),
        other_macs=max(0, total_macs - sum(l.macs for l in layers)),
        activation_bits=activation_bits,
        params=params,
        nonzero_params=nonzero,
        size_bytes=size_bytes(model, weight_bits),
    )
