"""The deployable form: a compressed model as it really executes here, in the lowest precision with kernels.

A scored model (see :mod:`tradeoff.spaces.quantization`) holds its quantized layers' weights on the
integer grid of their chosen widths, stored in fp32, so that accuracy and size are those of the
chosen widths. Timing that model would time fp32 arithmetic; timing fake-quant would time fp32
arithmetic plus rounding. Neither is low-precision latency. :func:`deployable_form` builds what the
target can really run and names it (:attr:`Deployable.form`), following DESIGN.md ("Deployable form and
honesty"):

* **int8** (static W8A8) for every conv/linear layer whose weights are at most 8 bits *and* whose
  activations are at most 8 bits: per-output-channel symmetric int8 weights, per-tensor affine
  uint8 activations calibrated on a few training batches. Widths 2-7 execute as int8, the nearest
  executable form; their integer codes are kept exactly (the weight observer finds the grid the
  weights sit on, so a 4-bit layer runs as int8 codes in ``-7..7`` with the 4-bit scale). Other
  layers stay fp32 inside the same graph (``form = "int8+fp32"``).

  - ``"inductor"`` (primary): torchao's PT2E flow: ``torch.export`` at a batch of at least 2 with a
    dynamic batch dimension (a dynamic dimension traced at batch 1 is specialised away, and a graph
    exported at batch 1 then fails a shape guard when calibrated with bigger batches),
    ``prepare_pt2e`` with ``X86InductorQuantizer``, calibration, ``convert_pt2e``, then
    ``torch.compile`` with inductor's ``freezing`` on: the converted graph is only q/dq ops around
    fp32 convs until inductor folds them into oneDNN int8 kernels, which needs frozen weights.
    Without compile PT2E gives no speed-up (measured, DESIGN.md).
  - ``"fx"`` (fallback, no compiler): ``torch.ao.quantization``'s FX graph mode, deprecated but
    running real quantized kernels (``torch.ops.quantized.*``) eagerly; one private function.
  - ``"auto"``: inductor, falling back to fx when inductor is unusable in this process (no C++
    compiler, compile raises, or the first compile blew :data:`COMPILE_BUDGET_S`) or cannot take
    this model.
  - ``"eager"``: no int8 at all; the model runs in fp32.

* **bf16 / fp16** for layers whose weights are 16 bits, only where the device has native kernels
  (:func:`supports_float16`); elsewhere they execute as fp32 and the note says why.
* **fp32** otherwise: weight-only low bits with fp32 activations (no eager CPU kernel computes
  int8 weights against fp32 activations faster than fp32), or nothing quantized. The weights are
  still on their grid, so the arithmetic is the scored model's.

On CPUs without VNNI (AVX2 only, like this machine) oneDNN multiplies u8 x s8 pairs into saturating
int16 sums: full-range uint8 activations times int8 weights overflow and the result is wrong (a
64-input dot product of ones came out 16 instead of 32 here). There the activations use 7 bits
(``reduce_range``), as torchao advises for such CPUs; the note says so.

Size is not read from the deployable module: a converted PT2E graph still holds fp32 weights. The
size of the chosen widths is :func:`tradeoff.objectives.complexity.size_bytes` of the scored model.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from ._base import torch_threads

BACKENDS = ("auto", "inductor", "fx", "eager")
FLOAT16_KINDS = {"bf16": torch.bfloat16, "fp16": torch.float16}
WEIGHT_BITS = (2, 3, 4, 5, 6, 7, 8, 16, 32)  # as in spaces/quantization.py; 32 = not quantized
ACTIVATION_BITS = (4, 5, 6, 7, 8, 16, 32)  # as in spaces/quantization.py
INT8_MAX_BITS = 8  # widths up to 8 execute as int8 (nearest executable form), wider ones do not
QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # the layers whose widths are chosen
COMPILE_BUDGET_S = 60.0  # first inductor compile here is ~20 s, later ones 3-13 s (DESIGN.md); 3x that is broken
EXPORT_MIN_BATCH = 2  # a dynamic batch dimension traced at batch 1 is specialised away: trace at >= 2
GRID_TOLERANCE = 1e-3  # codes within 1/1000 of an integer sit on the grid (fp32 rounding is ~1e-5 of a code)
WARMUP_CALLS = 2  # the first call compiles; the second shows the compiled path runs without recompiling

_CPU_FLAGS = {  # ISA features under which PyTorch's CPU kernels compute natively in that 16-bit float
    "bf16": ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"),  # x86 AVX-512/AMX; ARM BF16 extensions
    "fp16": ("avx512_fp16", "amx_fp16", "fp16_arith"),  # x86 AVX-512/AMX; ARM half-precision arithmetic
}
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # u8 x s8 dot products into int32 (no int16 saturation)

_inductor_unusable: str | None = None  # why "auto" stopped trying inductor in this process (None: it tries)


class DeployError(ValueError):
    """The deployable form could not be built (the trial fails with this reason)."""


@dataclass(frozen=True)
class Deployable:
    """A model as it executes on the target, and what that form is.

    Args:
        module: Call it like the model (inputs as positional arguments); returns fp32 outputs.
        form: ``"int8"``, ``"int8+fp32"``, ``"bf16"``, ``"fp16"``, ``"bf16+fp32"``,
            ``"fp16+fp32"`` or ``"fp32"``: the arithmetic the conv/linear layers run in.
        backend: What runs it: ``"inductor"`` (torch.compile), ``"fx"`` (eager quantized kernels)
            or ``"eager"`` (plain PyTorch).
        seconds: Time to build it, compile and warm-up included.
        note: Why this form, and anything that differs from the chosen widths.
        int8_layers: Conv/linear layers (module names) that execute in int8.
    """

    module: nn.Module | Callable[..., Any]
    form: str
    backend: str
    seconds: float
    note: str
    int8_layers: tuple[str, ...] = ()


def reset_auto_backend() -> None:
    """Let ``backend="auto"`` try inductor again (after a fallback to fx was remembered).

    Example:
        >>> reset_auto_backend()
        >>> auto_backend()
        'inductor'
    """
    global _inductor_unusable
    _inductor_unusable = None


def auto_backend() -> str:
    """The int8 backend ``backend="auto"`` tries first in this process: ``"inductor"`` or ``"fx"``.

    Example:
        >>> auto_backend() in ("inductor", "fx")
        True
    """
    return "fx" if _inductor_unusable is not None else "inductor"


def _cpu_capabilities() -> Mapping[str, Any]:
    """The CPU's ISA features as PyTorch's cpuinfo sees them (the probe tests replace)."""
    return torch.cpu.get_capabilities()


def supports_float16(kind: str, device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes natively in the 16-bit float ``kind`` (``"bf16"`` or ``"fp16"``).

    On CPU: the ISA features PyTorch's kernels use for that type (AVX-512 BF16/FP16 or AMX on x86,
    the BF16/FP16 arithmetic extensions on ARM). Without them a 16-bit model is emulated through
    fp32 conversions and runs slower than fp32. On CUDA: fp16 always, bf16 where the GPU has it.

    Example:
        >>> isinstance(supports_float16("bf16", "cpu"), bool)
        True
        >>> supports_float16("fp8")
        Traceback (most recent call last):
        ...
        ValueError: float16 kind must be one of ['bf16', 'fp16'], got 'fp8'.
    """
    if kind not in FLOAT16_KINDS:
        raise ValueError(f"float16 kind must be one of {list(FLOAT16_KINDS)}, got {kind!r}.")
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and (kind == "fp16" or torch.cuda.is_bf16_supported())
    if dev.type == "cpu":
        caps = _cpu_capabilities()
        return any(bool(caps.get(flag, False)) for flag in _CPU_FLAGS[kind])
    return False


def _has_vnni() -> bool:
    caps = _cpu_capabilities()
    return any(bool(caps.get(flag, False)) for flag in _VNNI_FLAGS)


# --------------------------------------------------------------------------- weights on their grid


def _grid_scale(w: torch.Tensor, ch_axis: int = 0) -> torch.Tensor | None:
    """Per-channel scale of the coarsest symmetric integer grid (at most 8 bits) ``w`` sits on, or None.

    Baked weights at ``b`` bits are ``code * amax / (2**(b-1) - 1)`` per output channel; BatchNorm
    folding multiplies a channel by a constant and keeps its codes. A zero channel gets scale 1.
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


class _GridMixin:
    """Weight observer that keeps a baked weight's own integer codes (falls back to min/max if none)."""

    ch_axis: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._weight = x.detach()
        return super().forward(x)  # type: ignore[misc]

    def calculate_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        scale, zero = super().calculate_qparams()  # type: ignore[misc]
        w = getattr(self, "_weight", None)
        grid = _grid_scale(w, self.ch_axis) if w is not None and w.dim() >= 2 else None
        if grid is None or grid.shape != scale.shape:
            return scale, zero
        return grid.to(scale.dtype), torch.zeros_like(zero)


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _quiet_torchao_import() -> Iterator[None]:
    """torchao logs a warning per optional CUDA extension it cannot load on a CPU build, and torch's
    pytree one for an enum torchao registers: neither is ours to show."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _at_least_batch(inputs: tuple[torch.Tensor, ...], n: int) -> tuple[torch.Tensor, ...]:
    """``inputs`` repeated along the batch dimension to at least ``n`` rows."""
    out = []
    for x in inputs:
        reps = max(1, math.ceil(n / x.shape[0]))
        out.append(x.repeat(reps, *([1] * (x.dim() - 1))).contiguous() if reps > 1 else x)
    return tuple(out)


def _describe(model: nn.Module) -> str:
    return type(model).__name__


def _shown(names: Sequence[str], limit: int = 6) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class _Compiled(nn.Module):
    """Calls an inductor-compiled module without autograd, compiling with ``freezing`` on.

    Inductor compiles at the first call and again at the first call with new input shapes or a new
    thread count (dynamo guards on both). Batch sizes fall in ranges that share a graph: a warm-up
    at batch 1 specialises to 1; then 2-15 and 16+ compile a dynamic-batch graph each, once. Those
    calls run under ``freezing=True``, set for the call and restored after: without it the int8 graph
    stays q/dq around fp32 ops and is no faster than fp32. Calls at shapes and thread counts already
    compiled pay only a lookup. ``.eval()``/``.train()`` do not reach the compiled graph.
    """

    def __init__(self, compiled: Callable[..., Any]) -> None:
        super().__init__()
        # Not a registered submodule: a converted PT2E graph raises on .eval()/.train(), which
        # latency harnesses call, and re-tracing it after compile would recompile without freezing.
        self.__dict__["compiled"] = compiled
        self._compiled_shapes: set[tuple[Any, ...]] = set()

    def forward(self, *args: Any) -> Any:
        key = (torch.get_num_threads(), *(tuple(a.shape) for a in args if isinstance(a, torch.Tensor)))
        with torch.no_grad():
            if key in self._compiled_shapes:
                return self.compiled(*args)
            import torch._inductor.config as inductor_config

            with inductor_config.patch(freezing=True), warnings.catch_warnings():
                # inductor's oneDNN lowering copies a tensor with torch.tensor(t) and warns each compile
                warnings.filterwarnings("ignore", message=r"(?s)To copy construct from a tensor", category=UserWarning)
                out = self.compiled(*args)
            self._compiled_shapes.add(key)
            return out


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
    layers = {name: m for name, m in model.named_modules() if isinstance(m, QUANTIZABLE)}
    for name, bits in weight_bits.items():
        if name not in layers:
            raise ValueError(
                f"weight_bits names {name!r}, which is not a conv/linear layer of {_describe(model)}; "
                f"expected module names among {sorted(layers)[:8]}{' ...' if len(layers) > 8 else ''}."
            )
        if isinstance(bits, bool) or bits not in WEIGHT_BITS:
            raise ValueError(f"weight_bits[{name!r}] must be one of {list(WEIGHT_BITS)}, got {bits!r}.")
    return layers


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
            return _int8(model, low, half, layers, example_inputs, calibration, threads, backend, start)
        return _fp32(model, start, f"{reason}; weights stay on their grid")

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
    return Deployable(model.eval(), "fp32", "eager", time.perf_counter() - start, note)


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
    return Deployable(module, form, "eager", time.perf_counter() - start, "; ".join(notes))


# --------------------------------------------------------------------------- int8


def _int8(
    model: nn.Module,
    low: list[str],
    half: list[str],
    layers: dict[str, nn.Module],
    example_inputs: tuple[torch.Tensor, ...],
    calibration: Sequence[tuple[torch.Tensor, ...]],
    threads: int,
    backend: str,
    start: float,
) -> Deployable:
    global _inductor_unusable
    batches = [tuple(b) for b in calibration] or [example_inputs]
    notes = [] if calibration else ["no calibration batches: activation ranges from the example inputs"]
    if half:
        notes.append(f"16-bit layers run fp32 inside the int8 graph: {', '.join(half)}")
    reduce_range = not _has_vnni()
    if reduce_range:
        notes.append("activations at 7 bits: this CPU has no VNNI (8-bit u8 x s8 sums saturate int16)")

    failure = None
    if backend == "inductor" or (backend == "auto" and _inductor_unusable is None):
        try:
            module, int8, compile_s = _inductor(model, low, example_inputs, batches, threads, reduce_range)
        except _CompileFailed as exc:
            if backend == "inductor":
                raise DeployError(
                    f"{_describe(model)}: inductor could not compile the int8 graph ({exc}); use backend='fx' "
                    "(no compiler) or 'auto' (falls back to fx)."
                ) from exc
            _inductor_unusable = str(exc)
            failure = f"inductor unusable in this process ({exc})"
        except DeployError as exc:
            if backend == "inductor":
                raise
            failure = f"inductor path rejected the model ({exc})"
        else:
            if backend == "auto" and compile_s > COMPILE_BUDGET_S:
                _inductor_unusable = f"compile took {compile_s:.0f} s > budget {COMPILE_BUDGET_S:.0f} s"
                notes.append(f"{_inductor_unusable}: later calls in this process use fx")
            return _int8_result(module, int8, layers, "inductor", start, notes)
    elif backend == "auto":
        failure = f"inductor unusable in this process ({_inductor_unusable})"

    try:
        module, int8 = _fx_int8(model, low, example_inputs, batches, threads)
    except DeployError as exc:
        if failure is None:
            raise
        raise DeployError(f"{exc}; before that, {failure}") from exc
    if failure is not None:
        notes.append(f"fx fallback: {failure}")
    return _int8_result(module, int8, layers, "fx", start, notes)


def _int8_result(
    module: nn.Module, int8: set[str], layers: dict[str, nn.Module], backend: str, start: float, notes: list[str]
) -> Deployable:
    int8_layers = tuple(n for n in layers if n in int8)
    fp32_layers = [n for n in layers if n not in int8]
    if fp32_layers:
        notes.insert(0, f"{len(int8_layers)} of {len(layers)} conv/linear layers in int8; fp32: {_shown(fp32_layers)}")
    else:
        notes.insert(0, f"all {len(layers)} conv/linear layers in int8")
    form = "int8" if not fp32_layers else "int8+fp32"
    return Deployable(module, form, backend, time.perf_counter() - start, "; ".join(notes), int8_layers)


class _CompileFailed(RuntimeError):
    """torch.compile / inductor raised: the compiler is unusable here (no C++ toolchain, ...)."""


def _warm_up(module: Callable[..., Any], example_inputs: tuple[torch.Tensor, ...], threads: int) -> None:
    with torch_threads(threads), torch.no_grad(), warnings.catch_warnings():
        # inductor's oneDNN lowering copies a tensor with torch.tensor(t) and warns each compile; harmless
        warnings.filterwarnings("ignore", message=r"(?s)To copy construct from a tensor", category=UserWarning)
        for _ in range(WARMUP_CALLS):
            module(*example_inputs)


def _inductor(
    model: nn.Module,
    low: list[str],
    example_inputs: tuple[torch.Tensor, ...],
    batches: list[tuple[torch.Tensor, ...]],
    threads: int,
    reduce_range: bool,
) -> tuple[nn.Module, set[str], float]:
    """PT2E static int8 with X86InductorQuantizer, compiled by inductor with freezing."""
    with _quiet_torchao_import():
        from torchao.quantization.pt2e.observer import PerChannelMinMaxObserver
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    name = _describe(model)

    class GridObserver(_GridMixin, PerChannelMinMaxObserver):
        pass

    default = xiq.get_default_x86_inductor_quantization_config(reduce_range=reduce_range)
    weight = dataclasses.replace(default.weight, observer_or_fake_quant_ctr=GridObserver.with_args(eps=2**-12))
    config = dataclasses.replace(default, weight=weight)  # eps above: the default weight observer's
    quantizer = xiq.X86InductorQuantizer().set_global(config)
    for layer, module in model.named_modules():
        if isinstance(module, QUANTIZABLE) and layer not in low:
            quantizer.set_module_name_qconfig(layer, None)  # stays fp32 inside the int8 graph

    traced_at = _at_least_batch(example_inputs, EXPORT_MIN_BATCH)
    batch = torch.export.Dim("batch", min=1)  # runs at batch 1 too; traced at >= 2 so it stays dynamic
    dynamic = tuple({0: batch} if isinstance(x, torch.Tensor) and x.dim() > 0 else None for x in traced_at)
    try:
        exported = torch.export.export(copy.deepcopy(model).eval(), traced_at, dynamic_shapes=dynamic).module()
    except Exception as exc:
        raise DeployError(
            f"{name}: torch.export could not trace the model ({_brief(exc)}); make forward traceable (no Python "
            "branching on tensor values) or choose activation_bits=32 (fp32 execution)."
        ) from exc
    try:
        prepared = prepare_pt2e(exported, quantizer)
    except Exception as exc:
        raise DeployError(
            f"{name}: X86InductorQuantizer rejected the model ({_brief(exc)}); leave the layer it names at 32 "
            "bits or choose activation_bits=32."
        ) from exc
    int8 = _observed_pt2e_layers(prepared, low)
    if not int8:
        raise DeployError(
            f"{name}: X86InductorQuantizer quantized none of the layers {_shown(low)}; an int8 form without int8 "
            "layers would be fp32 under another name: choose activation_bits=32 for this model."
        )
    try:
        with torch.no_grad():
            for args in batches:
                prepared(*args)
        converted = convert_pt2e(prepared)
    except Exception as exc:
        raise DeployError(
            f"{name}: int8 calibration failed ({_brief(exc)}); calibration batches must have the example "
            "inputs' shapes except for the batch dimension."
        ) from exc

    # Compiling happens at the first call, in the warm-up: at the target batch size (so timing never
    # includes it), with freezing on (see _Compiled; passing it as a torch.compile option is not
    # enough: the freezing passes then emit onednn prepack ops the rest of inductor cannot trace),
    # and with the thread count pinned, since inductor bakes it into the code it generates.
    compile_start = time.perf_counter()
    try:
        compiled = _Compiled(torch.compile(converted))
        _warm_up(compiled, example_inputs, threads)
    except Exception as exc:
        raise _CompileFailed(_brief(exc)) from exc
    return compiled, int8, time.perf_counter() - compile_start


def _observed_pt2e_layers(prepared: torch.fx.GraphModule, low: list[str]) -> set[str]:
    """Conv/linear layers whose weight the quantizer gave an observer (those run in int8)."""
    wanted = set(low)
    ops = {"conv1d", "conv2d", "conv3d", "linear"}
    out: set[str] = set()
    for node in prepared.graph.nodes:
        if node.op != "call_function" or getattr(node.target, "__name__", "").split(".")[0] not in ops:
            continue
        if len(node.args) < 2 or not isinstance(node.args[1], torch.fx.Node) or node.args[1].op != "call_module":
            continue
        src = node.args[1].args[0] if node.args[1].args else None
        if isinstance(src, torch.fx.Node) and src.op == "get_attr" and str(src.target).endswith(".weight"):
            layer = str(src.target)[: -len(".weight")]
            if layer in wanted:
                out.add(layer)
    return out


def _fx_int8(
    model: nn.Module,
    low: list[str],
    example_inputs: tuple[torch.Tensor, ...],
    batches: list[tuple[torch.Tensor, ...]],
    threads: int,
) -> tuple[nn.Module, set[str]]:
    """torch.ao FX graph mode static int8 (x86 backend): deprecated, kept behind this one function."""
    name = _describe(model)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"(?s).*Please use quant_min and quant_max")
        warnings.filterwarnings("ignore", message=r"(?s).*quantized tensor creation functions")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao\..*")
        from torch.ao.nn.quantized.modules.utils import WeightedQuantizedModule
        from torch.ao.quantization import QConfig, get_default_qconfig_mapping
        from torch.ao.quantization.observer import PerChannelMinMaxObserver
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        class GridObserver(_GridMixin, PerChannelMinMaxObserver):
            pass

        if torch.backends.quantized.engine != "x86" and "x86" in torch.backends.quantized.supported_engines:
            torch.backends.quantized.engine = "x86"
        mapping = get_default_qconfig_mapping("x86")
        default = mapping.global_qconfig
        weight = GridObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
        mapping.set_global(QConfig(activation=default.activation, weight=weight))
        for layer, module in model.named_modules():
            if isinstance(module, QUANTIZABLE) and layer not in low:
                mapping.set_module_name(layer, None)
        try:
            prepared = prepare_fx(copy.deepcopy(model).eval(), mapping, example_inputs)
        except Exception as exc:
            raise DeployError(
                f"{name}: FX graph mode could not trace or quantize the model ({_brief(exc)}); make forward "
                "symbolically traceable or choose activation_bits=32."
            ) from exc
        try:
            with torch.no_grad():
                for args in batches:
                    prepared(*args)
            converted = convert_fx(prepared).eval()
            _warm_up(converted, example_inputs, threads)
        except Exception as exc:
            raise DeployError(f"{name}: FX int8 conversion or its first run failed ({_brief(exc)}).") from exc
    int8 = {n for n, m in converted.named_modules() if isinstance(m, WeightedQuantizedModule) and n in low}
    if not int8:
        raise DeployError(
            f"{name}: FX graph mode quantized none of the layers {_shown(low)}; an int8 form without int8 "
            "layers would be fp32 under another name: choose activation_bits=32 for this model."
        )
    return converted, int8
