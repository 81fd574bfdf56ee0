"""What both int8 backends of :mod:`tradeoff.spaces.int8` share: their error, the grid observer, the warm-up.

The weight observer keeps a baked weight's own integer codes: a 4-bit layer runs as int8 codes in
``-7..7`` with its 4-bit scale, so the int8 form computes what the scored model computed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ._base import torch_threads
from .widths import INT8_MAX_BITS

GRID_TOLERANCE = 1e-3  # codes within 1/1000 of an integer sit on the grid (fp32 rounding is ~1e-5 of a code)
WARMUP_CALLS = 2  # the first call compiles; the second shows the compiled path runs without recompiling
# inductor's oneDNN lowering copies a tensor with torch.tensor(t) and warns each compile; harmless
COPY_WARNING = r"(?s)To copy construct from a tensor"


class DeployError(ValueError):
    """The deployable form could not be built (the trial fails with this reason)."""


# --------------------------------------------------------------------------- weights on their grid


def grid_scale(w: torch.Tensor, ch_axis: int = 0) -> torch.Tensor | None:
    """Per-channel scale of the coarsest symmetric integer grid (at most 8 bits) ``w`` sits on, or None.

    Baked weights at ``b`` bits are ``code * amax / (2**(b-1) - 1)`` per output channel; BatchNorm
    folding multiplies a channel by a constant and keeps its codes. A zero channel gets scale 1.

    Example:
        >>> grid_scale(torch.tensor([[-3.0, 1.0, 3.0]])).tolist()  # a 3-bit grid: codes -3..3, step 1
        [1.0]
        >>> grid_scale(torch.tensor([[0.3, 1.0, 0.77]])) is None  # not on any grid of <= 8 bits
        True
    """
    flat = w.detach().float().movedim(ch_axis, 0).flatten(1)
    amax = flat.abs().amax(dim=1)
    safe = torch.where(amax > 0, amax, torch.ones_like(amax))
    for bits in range(2, INT8_MAX_BITS + 1):
        qmax = 2 ** (bits - 1) - 1
        scale = safe / qmax
        codes = flat / scale[:, None]
        if float((codes - codes.round()).abs().max()) <= GRID_TOLERANCE:
            return scale
    return None


class GridMixin:
    """Weight observer that keeps a baked weight's own integer codes (falls back to min/max if none)."""

    ch_axis: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._weight = x.detach()
        return super().forward(x)  # type: ignore[misc]

    def calculate_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        scale, zero = super().calculate_qparams()  # type: ignore[misc]
        w = getattr(self, "_weight", None)
        grid = grid_scale(w, self.ch_axis) if w is not None and w.dim() >= 2 else None
        if grid is None or grid.shape != scale.shape:
            return scale, zero
        return grid.to(scale.dtype), torch.zeros_like(zero)


# --------------------------------------------------------------------------- helpers


def shown(names: Sequence[str], limit: int = 6) -> str:
    """Up to ``limit`` names for a message, with how many more there are.

    Example:
        >>> shown(["a", "b", "c"], limit=2)
        'a, b (+1 more)'
    """
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def brief(exc: BaseException) -> str:
    """An exception's type and first line, for a message that names the cause.

    Example:
        >>> brief(RuntimeError("no C++ compiler"))
        'RuntimeError: no C++ compiler'
    """
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def none_quantized(name: str, what: str, low: Sequence[str]) -> DeployError:
    """The error when a backend quantized none of the chosen layers (the form would be fp32)."""
    return DeployError(
        f"{name}: {what} quantized none of the layers {shown(low)}; an int8 form without int8 "
        "layers would be fp32 under another name: choose activation_bits=32 for this model."
    )


def warm_up(module: Callable[..., Any], example_inputs: tuple[torch.Tensor, ...], threads: int) -> None:
    """Call ``module`` at the target's threads and batch so later timing never includes compiling."""
    with torch_threads(threads), torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=COPY_WARNING, category=UserWarning)
        for _ in range(WARMUP_CALLS):
            module(*example_inputs)
