"""The deployable form: a compressed model as it really executes here, in the lowest precision with kernels.

A scored model (see :mod:`tradeoff.spaces.quantization`) holds its quantized layers' weights on the
integer grid of their chosen widths, stored in fp32, so that accuracy and size are those of the
chosen widths. Timing that model would time fp32 arithmetic; timing fake-quant would time fp32
arithmetic plus rounding. Neither is low-precision latency. :func:`deployable_form` builds what the
target can really run and names it (:attr:`Deployable.form`), following docs/DESIGN.md ("Deployable form and
honesty"):

* **int8** (static W8A8) for every conv/linear layer whose weights are at most 8 bits *and* whose
  activations are at most 8 bits: per-output-channel symmetric int8 weights, per-tensor affine
  uint8 activations calibrated on a few training batches. Widths 2-7 execute as int8, the nearest
  executable form; their integer codes are kept exactly (the weight observer finds the grid the
  weights sit on, so a 4-bit layer runs as int8 codes in ``-7..7`` with the 4-bit scale). Other
  layers stay fp32 inside the same graph (``form = "int8+fp32"``). Built in :mod:`tradeoff.spaces.int8`:

  - ``"inductor"`` (primary): torchao's PT2E flow: ``torch.export`` at a batch of at least 2 with a
    dynamic batch dimension (a dynamic dimension traced at batch 1 is specialised away, and a graph
    exported at batch 1 then fails a shape guard when calibrated with bigger batches),
    ``prepare_pt2e`` with ``X86InductorQuantizer``, calibration, ``convert_pt2e``, then
    ``torch.compile`` with inductor's ``freezing`` on: the converted graph is only q/dq ops around
    fp32 convs until inductor folds them into oneDNN int8 kernels, which needs frozen weights.
    Without compile PT2E gives no speed-up (measured, docs/DESIGN.md).
  - ``"fx"`` (no C++ compiler): ``torch.ao.quantization``'s FX graph mode, deprecated but
    running real quantized kernels (``torch.ops.quantized.*``), traced to TorchScript and frozen so
    that TorchScript, not Python, calls each op; one private module.
  - ``"auto"``: inductor, falling back to fx when inductor is unusable in this process (no C++
    compiler, compile raises, or the first compile blew :data:`~tradeoff.spaces.int8.COMPILE_BUDGET_S`) or cannot take
    this model. A study under ``auto`` first picks one of the two by timing both on the teacher
    (:mod:`tradeoff.search.backend_choice`) and builds every trial with that one.
  - ``"eager"``: no int8 at all; the model runs in fp32.

* **bf16 / fp16** for layers whose weights are 16 bits, only where the device has native kernels
  (:func:`tradeoff.spaces.cpu.supports_float16`); elsewhere they execute as fp32 and the note says why.
* **fp32** otherwise: weight-only low bits with fp32 activations (no eager CPU kernel computes
  int8 weights against fp32 activations faster than fp32), or nothing quantized. The weights are
  still on their grid, so the arithmetic is the scored model's.

On CPUs without VNNI (AVX2 only, like this machine) oneDNN multiplies u8 x s8 pairs into saturating
int16 sums: full-range uint8 activations times int8 weights overflow and the result is wrong (a
64-input dot product of ones came out 16 instead of 32 here). There the activations use 7 bits
(``reduce_range``), as torchao advises for such CPUs; the note says so.

Size is not read from the deployable module: a converted PT2E graph still holds fp32 weights. The
size of the chosen widths is :func:`tradeoff.objectives.size_bytes` of the scored model.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from .cpu import supports_float16
from .int8 import DeployError, auto_backend, build_int8, reset_auto_backend
from .widths import ACTIVATION_BITS, FLOAT16_KINDS, INT8_MAX_BITS, WEIGHT_BITS, WEIGHT_LAYERS

# how int8 executes: "auto" (inductor, else fx), "inductor", "fx", or "eager" (no int8); "auto" is the default
BACKENDS = ("auto", "inductor", "fx", "eager")

# DeployError, supports_float16 and the "auto" state functions live in .int8 / .cpu; re-exported
# here because callers of deployable_form meet them together
__all__ = [
    "BACKENDS",
    "DeployError",
    "Deployable",
    "FixedBatch",
    "auto_backend",
    "deployable_form",
    "reset_auto_backend",
    "supports_float16",
]


@dataclass(frozen=True)
class Deployable:
    """A model as it executes on the target, and what that form is.

    Args:
        module: Call it like the model (inputs as positional arguments); returns fp32 outputs.
        form: ``"int8"``, ``"int8+fp32"``, ``"bf16"``, ``"fp16"``, ``"bf16+fp32"``,
            ``"fp16+fp32"`` or ``"fp32"``: the arithmetic the conv/linear layers run in.
        backend: What runs it: ``"inductor"`` (torch.compile), ``"fx"`` (quantized kernels, frozen TorchScript)
            or ``"eager"`` (plain PyTorch).
        seconds: Time to build it, compile and warm-up included.
        note: Why this form, and anything that differs from the chosen widths.
        int8_layers: Conv/linear layers (module names) that execute in int8.
        program: The same form before compilation, which ``torch.export`` can save and plain torch
            loads (the export bundle's ``deployable.pt2``): the converted PT2E graph for int8 through
            inductor, the cast module for 16 bits, the model for fp32; ``None`` for fx int8.
    """

    module: nn.Module | Callable[..., Any]
    form: str
    backend: str
    seconds: float
    note: str
    int8_layers: tuple[str, ...] = ()
    program: nn.Module | None = None


class _Cast(nn.Module):
    """Runs ``module`` in a 16-bit float: floating inputs cast in, floating outputs cast back to fp32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module.to(dtype)
        self.dtype = dtype

    def forward(self, *args: Any) -> Any:
        return _cast_floats(self.module(*_cast_floats(args, self.dtype)), torch.float32)


def _cast_floats(tree: Any, dtype: torch.dtype) -> Any:
    """Every floating-point tensor in ``tree`` cast to ``dtype``; anything else (token ids) as it is."""
    return tree_map(lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t, tree)


def _check_arguments(
    model: nn.Module,
    weight_bits: Mapping[str, int],
    activation_bits: int,
    example_inputs: tuple[torch.Tensor, ...],
    threads: int,
    backend: str,
    float16: str,
) -> dict[str, nn.Module]:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}.")
    if float16 not in FLOAT16_KINDS:
        raise ValueError(f"float16 must be one of {list(FLOAT16_KINDS)}, got {float16!r}.")
    if isinstance(activation_bits, bool) or activation_bits not in ACTIVATION_BITS:
        raise ValueError(f"activation_bits must be one of {list(ACTIVATION_BITS)}, got {activation_bits!r}.")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}.")
    if not isinstance(example_inputs, tuple) or not example_inputs:
        raise ValueError(
            f"example_inputs must be a non-empty tuple of tensors (the positional arguments of one forward "
            f"pass at the target batch size), got {type(example_inputs).__name__}."
        )
    layers = {name: m for name, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)}
    for name, bits in weight_bits.items():
        if name not in layers:
            raise ValueError(
                f"weight_bits names {name!r}, which is not a conv/linear layer of {type(model).__name__}; "
                f"expected module names among {sorted(layers)[:8]}{' ...' if len(layers) > 8 else ''}."
            )
        if isinstance(bits, bool) or bits not in WEIGHT_BITS:
            raise ValueError(f"weight_bits[{name!r}] must be one of {list(WEIGHT_BITS)}, got {bits!r}.")
    return layers


class FixedBatch(nn.Module):
    """Runs ``module`` only at the batch size it was built for: inputs of any batch are cut into
    chunks of ``batch`` samples, the last one padded by repeating its first sample, and the outputs
    of the padding dropped.

    A compiled int8 form recompiles at a new batch size, and inductor's quantized-conv lowering can
    then fail (a channels-last stride mismatch, issue 27); scoring it at the batch it was timed at
    measures the program that was timed.

    Example:
        >>> run = FixedBatch(nn.Linear(3, 2), 4)
        >>> run(torch.randn(10, 3)).shape
        torch.Size([10, 2])
    """

    def __init__(self, module: nn.Module | Callable[..., Any], batch: int) -> None:
        super().__init__()
        self.__dict__["module"] = module  # not a submodule: a compiled or converted graph may refuse .eval()
        self.batch = batch

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        n = int(args[0].shape[0])
        outs = []
        for start in range(0, n, self.batch):
            chunk = [a[start : start + self.batch] for a in args]
            short = self.batch - int(chunk[0].shape[0])
            if short:
                chunk = [torch.cat([c, c[:1].expand(short, *c.shape[1:])]) for c in chunk]
            outs.append(self.module(*chunk)[: self.batch - short])
        return torch.cat(outs)


# --------------------------------------------------------------------------- the public entry point


def deployable_form(
    model: nn.Module,
    *,
    weight_bits: Mapping[str, int],
    activation_bits: int,
    example_inputs: tuple[torch.Tensor, ...],
    calibration: Sequence[tuple[torch.Tensor, ...]],
    threads: int = 1,
    backend: str = "auto",
    float16: str = "bf16",
) -> Deployable:
    """Build what ``model`` really executes as here, in the lowest precision the target has kernels for.

    Args:
        model: Eval-mode fp32 model whose quantized layers' weights are already on their integer
            grid (baked, stored in fp32), without fake-quant hooks. It is not modified.
        weight_bits: Chosen weight width of each conv/linear layer by module name; a layer missing
            here is 32 (not quantized).
        activation_bits: Chosen width of the quantized layers' input activations.
        example_inputs: Positional arguments of one forward pass at the target batch size (may be
            batch 1); the warm-up runs at this size so later timing does not include compiling.
        calibration: A few training input batches (each a tuple of positional arguments) from which
            the int8 activation ranges are observed; the example inputs stand in when empty.
        threads: Intra-op threads the form will be timed with (inductor bakes it into its code).
        backend: ``"auto"``, ``"inductor"``, ``"fx"`` or ``"eager"`` (see module docstring).
        float16: Which 16-bit float a 16-bit weight width executes as: ``"bf16"`` or ``"fp16"``.

    Returns:
        The :class:`Deployable`: module, ``deployable_form``, backend, build seconds and a note.

    Raises:
        DeployError: The model or one of its layers cannot be exported, quantized or compiled (with
            ``"auto"``: by inductor nor by fx); the message names the model, the layer where known,
            and the reason.

    Example:
        >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
        >>> x = (torch.randn(1, 4),)
        >>> d = deployable_form(m, weight_bits={"0": 8, "2": 8}, activation_bits=32, example_inputs=x, calibration=[x])
        >>> d.form, d.backend
        ('fp32', 'eager')
        >>> deployable_form(m, weight_bits={}, activation_bits=8, example_inputs=x, calibration=[], backend="eager").note
        'nothing to execute in int8: no conv/linear layer has weights <= 8 bits'
    """
    start = time.perf_counter()
    layers = _check_arguments(model, weight_bits, activation_bits, example_inputs, threads, backend, float16)
    bits = {name: int(weight_bits.get(name, 32)) for name in layers}
    device = next((x.device for x in example_inputs if isinstance(x, torch.Tensor)), torch.device("cpu"))
    low = sorted(n for n, b in bits.items() if b <= INT8_MAX_BITS)
    half = sorted(n for n, b in bits.items() if b == 16)

    if low and activation_bits <= INT8_MAX_BITS:
        reason = None
        if backend == "eager":
            reason = "int8 needs a quantized backend (inductor or fx); backend='eager' runs fp32"
        elif device.type != "cpu":
            reason = f"int8 kernels here are x86 CPU ones; inputs are on {device}"
        if reason is None:
            built = build_int8(model, low, half, layers, example_inputs, calibration, threads, backend)
            seconds = time.perf_counter() - start
            return Deployable(
                built.module, built.form, built.backend, seconds, built.note, built.int8_layers, built.program
            )
        return _fp32(model, start, f"{reason}; weights stay on their grid")

    return _without_int8(model, low, half, layers, activation_bits, float16, device, start)


def _without_int8(
    model: nn.Module,
    low: list[str],
    half: list[str],
    layers: dict[str, nn.Module],
    activation_bits: int,
    float16: str,
    device: torch.device,
    start: float,
) -> Deployable:
    """The 16-bit or fp32 form, with a note on why nothing runs in int8."""
    notes = []
    if low:
        notes.append(
            f"weights <= 8 bits with {activation_bits}-bit activations execute as fp32 "
            f"(weight-only int8 has no kernel faster than fp32 here; weights stay on their grid)"
        )
    if half:
        if supports_float16(float16, device):
            return _half(model, half, layers, float16, start, notes)
        notes.append(f"16-bit weights execute as fp32: {device.type} has no native {float16} kernels")
    if not low and not half:
        notes.append(
            "nothing quantized: fp32"
            if activation_bits > INT8_MAX_BITS
            else "nothing to execute in int8: no conv/linear layer has weights <= 8 bits"
        )
    return _fp32(model, start, "; ".join(notes))


def _fp32(model: nn.Module, start: float, note: str) -> Deployable:
    model = model.eval()
    return Deployable(model, "fp32", "eager", time.perf_counter() - start, note, program=model)


def _half(
    model: nn.Module, half: list[str], layers: dict[str, nn.Module], kind: str, start: float, notes: list[str]
) -> Deployable:
    dtype = FLOAT16_KINDS[kind]
    if len(half) == len(layers):  # every conv/linear at 16 bits: the whole model in that float
        module: nn.Module = _Cast(copy.deepcopy(model).eval(), dtype)
        form = kind
    else:  # only the 16-bit layers; the others keep the fp32 arithmetic they were scored in
        module = copy.deepcopy(model).eval()
        for name in half:
            parent_name, _, child = name.rpartition(".")
            parent = module.get_submodule(parent_name)
            setattr(parent, child, _Cast(getattr(parent, child), dtype))
        form = f"{kind}+fp32"
    notes.append(f"{len(half)} of {len(layers)} conv/linear layers in {kind}")
    return Deployable(module, form, "eager", time.perf_counter() - start, "; ".join(notes), program=module)
