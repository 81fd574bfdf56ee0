"""Complexity: parameters, non-zero parameters, size in bytes at the chosen widths, MACs and BOPs.

All figures here are *computed* from the model's structure (exact counts, not timings).

Size model (``size_bytes``, what a file of the deployable weights would hold):
  * a quantized layer's weight tensor at ``b`` bits packs to ``ceil(numel * b / 8)`` bytes, plus
    one fp32 scale per output channel (per-channel symmetric quantization has no zero-point);
    at 16 bits it is a 16-bit float (2 bytes a weight, no scale);
  * a conv or linear weight with zeros (unstructured pruning) is stored in whichever encoding is
    smallest (:func:`weight_encoding`): dense; a *bitmask* (1 bit per weight, then the non-zero
    values packed at ``b`` bits); or *CSR* over the ``(out_channels, rest)`` matrix (non-zero
    values at ``b`` bits, a column index per value in 16 bits, or 32 when a row has more than
    65,536 columns, and ``out_channels + 1`` int32 row pointers). Dense wins for dense tensors,
    so zeros count only through an encoding a file really uses;
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


ENCODINGS = ("dense", "bitmask", "csr")
ROW_POINTER_BYTES = 4  # int32 row pointers of CSR
SMALL_INDEX_COLUMNS = 2**16  # up to this many columns a CSR column index fits in 16 bits


def _values_bytes(n: int, bits: int) -> int:
    return 4 * n if bits >= 32 else 2 * n if bits == 16 else math.ceil(n * bits / 8)


def weight_encoding(weight: torch.Tensor, bits: int = 32) -> tuple[str, int]:
    """The smallest encoding of a weight tensor's values at ``bits`` and its bytes (scales excluded).

    Example:
        >>> w = torch.zeros(4, 100); w[0, :3] = 1.0
        >>> weight_encoding(w, 8)  # 3 values + 3 two-byte column indices + 5 row pointers
        ('csr', 29)
        >>> weight_encoding(torch.ones(4, 100), 8)
        ('dense', 400)
    """
    numel = weight.numel()
    nnz = int(torch.count_nonzero(weight).item())
    rows = weight.shape[0] if weight.dim() > 1 else 1
    cols = numel // max(rows, 1)
    index_bytes = 2 if cols <= SMALL_INDEX_COLUMNS else 4
    options = {
        "dense": _values_bytes(numel, bits),
        "bitmask": math.ceil(numel / 8) + _values_bytes(nnz, bits),
        "csr": _values_bytes(nnz, bits) + index_bytes * nnz + ROW_POINTER_BYTES * (rows + 1),
    }
    best = min(ENCODINGS, key=lambda k: options[k])  # ties go to the simpler encoding (ENCODINGS order)
    return best, options[best]


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
            if pname == "weight" and isinstance(module, WEIGHT_LAYERS):
                total += weight_encoding(param.detach(), bits)[1]
                total += SCALE_BYTES * param.shape[0] if bits < 16 else 0
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
    codes), ``<name>.weight.scale`` (fp32 per output channel) and ``<name>.weight.shape``; a
    16-bit weight is stored as that float. A weight whose smallest encoding is sparse keeps only
    its non-zero values (packed, or as floats) plus ``<name>.weight.mask`` (bitmask, packed bits)
    or ``<name>.weight.crow`` / ``<name>.weight.col`` (CSR). Everything else stays fp32; integer
    bookkeeping buffers are left out.
    """
    weight_bits = dict(weight_bits or {})
    out: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        bits = weight_bits.get(name, 32)
        for pname, param in module.named_parameters(recurse=False):
            w = param.detach()
            if pname == "weight" and isinstance(module, WEIGHT_LAYERS):
                out.update(_packed_weight(f"{prefix}weight", w, bits))
            else:
                out[f"{prefix}{pname}"] = w.float()
        for bname, buf in module.named_buffers(recurse=False):
            if buf.is_floating_point():
                out[f"{prefix}{bname}"] = buf.detach().float()
    return out


def _packed_weight(key: str, w: torch.Tensor, bits: int) -> dict[str, torch.Tensor]:
    """One weight tensor as :func:`packed_state_dict` stores it (see there)."""
    encoding, _ = weight_encoding(w, bits)
    if encoding == "dense" and bits >= 32:
        return {key: w.float()}
    out: dict[str, torch.Tensor] = {f"{key}.shape": torch.tensor(w.shape, dtype=torch.int32)}
    rows = w.shape[0] if w.dim() > 1 else 1
    flat = w.reshape(rows, -1)
    nonzero = flat != 0
    if encoding == "bitmask":
        bits_flat = nonzero.flatten().to(torch.uint8)
        pad = (-len(bits_flat)) % 8
        planes = torch.cat([bits_flat, bits_flat.new_zeros(pad)]).view(-1, 8)
        out[f"{key}.mask"] = (planes << torch.arange(7, -1, -1, dtype=torch.uint8)).sum(dim=1, dtype=torch.uint8)
    elif encoding == "csr":
        small = flat.shape[1] <= SMALL_INDEX_COLUMNS
        counts = nonzero.sum(dim=1)
        out[f"{key}.crow"] = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(torch.int32)
        col = nonzero.nonzero()[:, 1]  # row-major, as the values
        out[f"{key}.col"] = (col - 2**15).to(torch.int16) if small else col.to(torch.int32)  # int16 holds 0..65535
    if bits < 16:
        qmax = 2 ** (bits - 1) - 1
        scale = w.abs().flatten(1).amax(dim=1).clamp_min(1e-12) / qmax if w.dim() > 1 else w.abs().amax().view(1) / qmax
        q = torch.round(flat / scale.clamp_min(1e-12).view(-1, 1)).clamp(-qmax, qmax)
        values = q if encoding == "dense" else q[nonzero]  # row-major: the order of mask bits and CSR
        out[f"{key}.packed"] = pack_bits(values, bits)
        out[f"{key}.scale"] = scale.float()
    else:
        dtype = torch.float32 if bits >= 32 else torch.bfloat16 if _is_bf16(w) else torch.float16
        values = flat if encoding == "dense" else flat[nonzero]
        out[f"{key}.values"] = values.to(dtype).flatten()
    return out


def unpacked_weight(packed: Mapping[str, torch.Tensor], key: str, bits: int) -> torch.Tensor:
    """Decode one weight written by :func:`packed_state_dict` (``key`` like ``"conv1.weight"``).

    Example:
        >>> w = torch.zeros(3, 40); w[1, 5] = 0.5
        >>> torch.equal(unpacked_weight(packed_state_dict(nn.Linear(40, 3, bias=False).requires_grad_(False)
        ...     .apply(lambda m: m.weight.copy_(w) if isinstance(m, nn.Linear) else None)), "weight", 32), w)
        True
    """
    if key in packed:
        return packed[key].float()
    shape = torch.Size(packed[f"{key}.shape"].tolist())
    rows = shape[0] if len(shape) > 1 else 1
    numel = shape.numel()
    if f"{key}.mask" in packed:
        planes = (packed[f"{key}.mask"][:, None] >> torch.arange(7, -1, -1, dtype=torch.uint8)) & 1
        nonzero = planes.flatten()[:numel].bool().view(rows, -1)
    elif f"{key}.crow" in packed:
        crow = packed[f"{key}.crow"].long()
        col = packed[f"{key}.col"].long() + (2**15 if packed[f"{key}.col"].dtype == torch.int16 else 0)
        nonzero = torch.zeros(rows, numel // rows, dtype=torch.bool)
        row_of = torch.repeat_interleave(torch.arange(rows), crow.diff())
        nonzero[row_of, col] = True
    else:
        nonzero = torch.ones(rows, numel // rows, dtype=torch.bool)
    n = int(nonzero.sum())
    if bits < 16:
        q = unpack_bits(packed[f"{key}.packed"], bits, n).float()
        scale = packed[f"{key}.scale"].float()
        full = torch.zeros(rows, numel // rows)
        full[nonzero] = q  # row-major order, as written
        return (full * scale.view(-1, 1)).view(shape)
    full = torch.zeros(rows, numel // rows)
    full[nonzero] = packed[f"{key}.values"].float()
    return full.view(shape)


def _is_bf16(w: torch.Tensor) -> bool:
    return bool(torch.equal(w.to(torch.bfloat16).float(), w.float()))


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
    "size_bytes": "computed: packed weights at their bit-widths (sparse encoding when smaller) + scales + fp32 rest",
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
