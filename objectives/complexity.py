"""Complexity: parameters, non-zero parameters, size in bytes at the chosen widths, MACs and BOPs.

All figures here are *computed* from the model's structure (exact counts, not timings).

Size model (``size_bytes``, what a file of the deployable weights would hold):
  * a quantized layer's weight tensor at ``b`` bits packs to ``ceil(numel * b / 8)`` bytes, plus
    one fp32 scale per output channel (per-channel symmetric quantization has no zero-point);
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

from ._base import EvalContext, Measurement, Objective, as_args

FP32_BYTES = 4  # bytes of an unquantized parameter or buffer
SCALE_BYTES = 4  # one fp32 scale per output channel of a quantized weight
WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


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
        return sum(layer.macs for layer in self.layers) + self.other_macs

    @property
    def bops(self) -> int:
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


def size_bytes(model: nn.Module, weight_bits: Mapping[str, int] | None = None) -> int:
    """Bytes of the model's weights at their bit-widths (see module docstring for the model).

    Example:
        >>> size_bytes(nn.Linear(10, 4))  # 44 fp32 numbers
        176
        >>> size_bytes(nn.Linear(10, 4), {"": 8})  # 40 int8 weights + 4 scales + 4 fp32 biases
        72
    """
    weight_bits = dict(weight_bits or {})
    total = 0
    for name, module in model.named_modules():
        bits = weight_bits.get(name, 32)
        for pname, param in module.named_parameters(recurse=False):
            if pname == "weight" and bits < 32 and isinstance(module, WEIGHT_LAYERS):
                total += math.ceil(param.numel() * bits / 8) + SCALE_BYTES * param.shape[0]
            else:
                total += FP32_BYTES * param.numel()
        for _, buf in module.named_buffers(recurse=False):
            if buf.is_floating_point():
                total += FP32_BYTES * buf.numel()
    return total


def pack_bits(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack signed integers of ``bits`` bits (``|q| < 2**(bits-1)``) densely into a uint8 tensor.

    Example:
        >>> pack_bits(torch.tensor([-1, 0, 1, 7]), 4).tolist()  # two 4-bit values per byte
        [120, 159]
    """
    offset = torch.as_tensor(q, dtype=torch.int64).flatten() + 2 ** (bits - 1)  # to unsigned
    shifts = torch.arange(bits - 1, -1, -1)
    bit_planes = ((offset[:, None] >> shifts) & 1).to(torch.uint8).flatten()
    pad = (-len(bit_planes)) % 8
    bit_planes = torch.cat([bit_planes, bit_planes.new_zeros(pad)]).view(-1, 8)
    return (bit_planes << torch.arange(7, -1, -1, dtype=torch.uint8)).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: the first ``numel`` signed integers.

    Example:
        >>> unpack_bits(pack_bits(torch.tensor([-3, 2, 0]), 3), 3, 3).tolist()
        [-3, 2, 0]
    """
    planes = ((packed[:, None] >> torch.arange(7, -1, -1, dtype=torch.uint8)) & 1).flatten()[: numel * bits]
    values = (planes.view(numel, bits).to(torch.int64) << torch.arange(bits - 1, -1, -1)).sum(dim=1)
    return values - 2 ** (bits - 1)


def packed_state_dict(model: nn.Module, weight_bits: Mapping[str, int] | None = None) -> dict[str, torch.Tensor]:
    """The weights as a deployable file holds them: what :func:`size_bytes` counts.

    A quantized weight becomes ``<name>.weight.packed`` (uint8, ``pack_bits`` of its integer
    codes), ``<name>.weight.scale`` (fp32 per output channel) and ``<name>.weight.shape``;
    everything else stays fp32; integer bookkeeping buffers are left out.
    """
    weight_bits = dict(weight_bits or {})
    out: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        bits = weight_bits.get(name, 32)
        for pname, param in module.named_parameters(recurse=False):
            w = param.detach()
            if pname == "weight" and bits < 32 and isinstance(module, WEIGHT_LAYERS):
                qmax = 2 ** (bits - 1) - 1
                scale = w.abs().flatten(1).amax(dim=1).clamp_min(1e-12) / qmax
                q = torch.round(w / scale.view(-1, *([1] * (w.dim() - 1)))).clamp(-qmax, qmax)
                out[f"{prefix}weight.packed"] = pack_bits(q, bits)
                out[f"{prefix}weight.scale"] = scale.float()
                out[f"{prefix}weight.shape"] = torch.tensor(w.shape, dtype=torch.int32)
            else:
                out[f"{prefix}{pname}"] = w.float()
        for bname, buf in module.named_buffers(recurse=False):
            if buf.is_floating_point():
                out[f"{prefix}{bname}"] = buf.detach().float()
    return out


def _macs_by_module(model: nn.Module, args: tuple[Any, ...]) -> tuple[dict[str, int], int]:
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
    args = as_args(example_inputs)
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


COMPLEXITY_FIGURES: tuple[str, ...] = ("size_bytes", "params", "nonzero_params", "macs", "bops")
_UNITS = {"size_bytes": "bytes", "params": "count", "nonzero_params": "count", "macs": "MACs", "bops": "BOPs"}
_METHODS = {
    "size_bytes": "computed: packed weights at their bit-widths + per-channel fp32 scales + fp32 rest",
    "params": "computed: parameters of the compressed model",
    "nonzero_params": "computed: non-zero parameters of the compressed model",
    "macs": "computed: multiply-accumulates of one forward pass (torch FlopCounterMode / 2)",
    "bops": "computed: MACs x weight bits x activation bits of one forward pass",
}


class Complexity(Objective):
    """One structural figure as the complexity objective (the spec picks which; default size).

    Computed from the model's structure, never timed: ``source`` is ``"estimated"`` with the
    method saying how (see module docstring for the size model).

    Example:
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
        if self.name == "size_bytes":  # needs no forward pass
            value = size_bytes(model, ctx.weight_bits)
        else:
            value = ctx.profile(model).figures()[self.name]
        return Measurement(float(value), self.unit, "estimated", _METHODS[self.name], {"model": "tradeoff.size/v1"})


class SizeBytes(Complexity):
    """Bytes the compressed weights need at their bit-widths (the default complexity objective)."""

    def __init__(self) -> None:
        super().__init__("size_bytes")
