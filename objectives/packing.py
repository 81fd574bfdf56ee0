"""The deployable weight file: the bytes :func:`~tradeoff.objectives.profile.size_bytes` counts.

:func:`packed_state_dict` writes each weight in the encoding
:func:`~tradeoff.objectives.profile.weight_encoding` picks (dense, bitmask or CSR) with its
quantized values packed at their bit-width (:func:`pack_bits`); :func:`unpacked_weight` reads one
back. The size model itself is documented in :mod:`tradeoff.objectives.profile`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .profile import SMALL_INDEX_COLUMNS, WEIGHT_LAYERS, weight_encoding


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
    """Whether ``w`` survives a round trip through bfloat16 unchanged (then stored as bfloat16)."""
    return bool(torch.equal(w.to(torch.bfloat16).float(), w.float()))
