"""The int8 forms of :func:`tradeoff.spaces.deploy.deployable_form`: PT2E + inductor, FX, and ``auto``.

Static W8A8: per-output-channel symmetric int8 weights, per-tensor affine uint8 activations
calibrated on a few training batches. Widths 2-7 execute as int8, the nearest executable form;
their integer codes are kept exactly (the weight observer finds the grid the weights sit on, see
:func:`tradeoff.spaces._int8_base.grid_scale`). Layers not chosen for int8 stay fp32 inside the same graph.

* ``"inductor"``: torchao's PT2E flow (``torch.export`` at a batch of at least 2 with a dynamic
  batch dimension, ``prepare_pt2e`` with ``X86InductorQuantizer``, calibration, ``convert_pt2e``),
  then ``torch.compile`` with inductor's ``freezing`` on (see :class:`_Compiled`).
* ``"fx"``: ``torch.ao.quantization``'s FX graph mode, deprecated but running real quantized
  kernels with no C++ compiler, frozen as TorchScript (:mod:`tradeoff.spaces._int8_fx`).
* ``"auto"``: inductor, falling back to fx for good in this process (:data:`AUTO`) when inductor
  is unusable (compile raises, or the first compile blew :data:`COMPILE_BUDGET_S`), and for this
  model when the inductor path rejects it.

On CPUs without VNNI (:func:`tradeoff.spaces.cpu.has_vnni`) the activations use 7 bits
(``reduce_range``): 8-bit u8 x s8 sums saturate int16 there.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._int8_base import COPY_WARNING, DeployError, GridMixin, brief, none_quantized, shown, warm_up
from ._int8_fx import fx_int8
from .cpu import has_vnni
from .widths import WEIGHT_LAYERS

__all__ = [  # DeployError is defined with what both backends share, and raised from here
    "AUTO",
    "COMPILE_BUDGET_S",
    "AutoFallback",
    "DeployError",
    "Int8Form",
    "auto_backend",
    "build_int8",
    "reset_auto_backend",
]

COMPILE_BUDGET_S = 60.0  # first inductor compile here is ~20 s, later ones 3-13 s (docs/DESIGN.md); 3x that is broken
EXPORT_MIN_BATCH = 2  # a dynamic batch dimension traced at batch 1 is specialised away: trace at >= 2


class _CompileFailed(RuntimeError):
    """torch.compile / inductor raised: the compiler is unusable here (no C++ toolchain, ...)."""


# --------------------------------------------------------------------------- the "auto" fallback


class AutoFallback:
    """Whether ``backend="auto"`` still tries inductor in this process, and if not, why.

    Example:
        >>> state = AutoFallback()
        >>> state.first_backend()
        'inductor'
        >>> state.give_up("no C++ compiler"); state.first_backend(), state.reason
        ('fx', 'no C++ compiler')
    """

    def __init__(self) -> None:
        self.reason: str | None = None  # None: inductor is tried first; else why it no longer is

    def give_up(self, reason: str) -> None:
        """Stop trying inductor in this process (its compiler failed or is too slow here)."""
        self.reason = reason

    def reset(self) -> None:
        """Try inductor again."""
        self.reason = None

    def first_backend(self) -> str:
        """``"inductor"`` while it is usable, else ``"fx"``."""
        return "fx" if self.reason is not None else "inductor"


AUTO = AutoFallback()  # one per process: a compiler that failed once fails for every trial of the study


def reset_auto_backend() -> None:
    """Let ``backend="auto"`` try inductor again (after a fallback to fx was remembered).

    Example:
        >>> reset_auto_backend()
        >>> auto_backend()
        'inductor'
    """
    AUTO.reset()


def auto_backend() -> str:
    """The int8 backend ``backend="auto"`` tries first in this process: ``"inductor"`` or ``"fx"``.

    Example:
        >>> auto_backend() in ("inductor", "fx")
        True
    """
    return AUTO.first_backend()


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


class _Compiled(nn.Module):
    """Calls an inductor-compiled module without autograd, compiling with ``freezing`` on.

    Inductor compiles at the first call and again at the first call with a new batch size or a new
    thread count (dynamo guards on both). Every batch size gets a static graph of its own
    (``dynamic=False``): a dynamic-batch graph, which dynamo makes by default at the second batch
    size, fails in inductor's quantized-conv lowering (a channels-last stride assertion, issue 27).
    Dynamo compiles at most ``torch._dynamo.config.recompile_limit`` (8) of them per graph, and runs
    the converted graph uncompiled after that. Compiling calls run under ``freezing=True``, set for
    the call and restored after: without it the int8 graph stays q/dq around fp32 ops and is no faster
    than fp32. Calls at shapes and thread counts already compiled pay only a lookup.
    ``.eval()``/``.train()`` do not reach the compiled graph. ``program`` is the converted PT2E graph
    it compiles, before compilation: what ``torch.export`` can save.
    """

    def __init__(self, compiled: Callable[..., Any], program: nn.Module | None = None) -> None:
        super().__init__()
        # Not registered submodules: a converted PT2E graph raises on .eval()/.train(), which
        # latency harnesses call, and re-tracing it after compile would recompile without freezing.
        self.__dict__["compiled"] = compiled
        self.__dict__["program"] = program
        self._compiled_shapes: set[tuple[Any, ...]] = set()

    def forward(self, *args: Any) -> Any:
        key = (torch.get_num_threads(), *(tuple(a.shape) for a in args if isinstance(a, torch.Tensor)))
        with torch.no_grad():
            if key in self._compiled_shapes:
                return self.compiled(*args)
            import torch._inductor.config as inductor_config

            with inductor_config.patch(freezing=True), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=COPY_WARNING, category=UserWarning)
                out = self.compiled(*args)
            self._compiled_shapes.add(key)
            return out


# --------------------------------------------------------------------------- the int8 form, either backend


@dataclass(frozen=True)
class Int8Form:
    """An int8 form as :func:`build_int8` made it (``deployable_form`` adds the build time).

    Args:
        module: Call it like the model; returns fp32 outputs.
        form: ``"int8"`` (every conv/linear layer in int8) or ``"int8+fp32"``.
        backend: ``"inductor"`` or ``"fx"``.
        note: Why this form, and anything that differs from the chosen widths.
        int8_layers: Conv/linear layers (module names) that execute in int8.
        program: The form before compilation, for ``torch.export`` (the converted PT2E graph);
            ``None`` for fx, whose eager quantized modules ``torch.export`` does not take.
    """

    module: nn.Module
    form: str
    backend: str
    note: str
    int8_layers: tuple[str, ...]
    program: nn.Module | None = None


def build_int8(
    model: nn.Module,
    low: list[str],
    half: list[str],
    layers: dict[str, nn.Module],
    example_inputs: tuple[torch.Tensor, ...],
    calibration: Sequence[tuple[torch.Tensor, ...]],
    threads: int,
    backend: str,
) -> Int8Form:
    """Static int8 of the ``low`` layers with ``backend`` (``"inductor"``, ``"fx"`` or ``"auto"``).

    ``half`` (16-bit layers) run fp32 inside the int8 graph; ``layers`` are all conv/linear layers.

    Raises:
        DeployError: The backend (with ``"auto"``: inductor nor fx) cannot build the form.

    Example:
        >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
        >>> layers = {n: l for n, l in m.named_modules() if isinstance(l, WEIGHT_LAYERS)}
        >>> x = (torch.randn(2, 4),)
        >>> built = build_int8(m, ["0"], [], layers, x, [x], threads=1, backend="fx")
        >>> built.form, built.backend, built.int8_layers
        ('int8+fp32', 'fx', ('0',))
    """
    batches = [tuple(b) for b in calibration] or [example_inputs]
    notes = [] if calibration else ["no calibration batches: activation ranges from the example inputs"]
    if half:
        notes.append(f"16-bit layers run fp32 inside the int8 graph: {', '.join(half)}")
    reduce_range = not has_vnni()
    if reduce_range:
        notes.append("activations at 7 bits: this CPU has no VNNI (8-bit u8 x s8 sums saturate int16)")

    failure = None
    if backend == "inductor" or (backend == "auto" and AUTO.reason is None):
        try:
            module, int8, compile_s = _inductor(model, low, example_inputs, batches, threads, reduce_range)
        except _CompileFailed as exc:
            if backend == "inductor":
                raise DeployError(
                    f"{type(model).__name__}: inductor could not compile the int8 graph ({exc}); use backend='fx' "
                    "(no compiler) or 'auto' (falls back to fx)."
                ) from exc
            AUTO.give_up(str(exc))
            failure = f"inductor unusable in this process ({exc})"
        except DeployError as exc:
            if backend == "inductor":
                raise
            failure = f"inductor path rejected the model ({exc})"
        else:
            if backend == "auto" and compile_s > COMPILE_BUDGET_S:
                AUTO.give_up(f"compile took {compile_s:.0f} s > budget {COMPILE_BUDGET_S:.0f} s")
                notes.append(f"{AUTO.reason}: later calls in this process use fx")
            return _int8_form(module, int8, layers, "inductor", notes)
    elif backend == "auto":
        failure = f"inductor unusable in this process ({AUTO.reason})"

    try:
        module, int8, eager_note = fx_int8(model, low, example_inputs, batches, threads)
    except DeployError as exc:
        if failure is None:
            raise
        raise DeployError(f"{exc}; before that, {failure}") from exc
    if failure is not None:
        notes.append(f"fx fallback: {failure}")
    notes.append(eager_note or "fx program frozen as TorchScript")
    return _int8_form(module, int8, layers, "fx", notes)


def _int8_form(
    module: nn.Module, int8: set[str], layers: dict[str, nn.Module], backend: str, notes: list[str]
) -> Int8Form:
    int8_layers = tuple(n for n in layers if n in int8)
    fp32_layers = [n for n in layers if n not in int8]
    if fp32_layers:
        notes.insert(0, f"{len(int8_layers)} of {len(layers)} conv/linear layers in int8; fp32: {shown(fp32_layers)}")
    else:
        notes.insert(0, f"all {len(layers)} conv/linear layers in int8")
    form = "int8" if not fp32_layers else "int8+fp32"
    return Int8Form(module, form, backend, "; ".join(notes), int8_layers, getattr(module, "program", None))


# --------------------------------------------------------------------------- PT2E + inductor


def _inductor_quantizer(model: nn.Module, low: list[str], reduce_range: bool) -> Any:
    """X86InductorQuantizer keeping baked weights' grids, for the ``low`` layers only."""
    with _quiet_torchao_import():
        from torchao.quantization.pt2e.observer import PerChannelMinMaxObserver
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    class GridObserver(GridMixin, PerChannelMinMaxObserver):
        pass

    default = xiq.get_default_x86_inductor_quantization_config(reduce_range=reduce_range)
    weight = dataclasses.replace(default.weight, observer_or_fake_quant_ctr=GridObserver.with_args(eps=2**-12))
    config = dataclasses.replace(default, weight=weight)  # eps above: the default weight observer's
    quantizer = xiq.X86InductorQuantizer().set_global(config)
    for layer, module in model.named_modules():
        if isinstance(module, WEIGHT_LAYERS) and layer not in low:
            quantizer.set_module_name_qconfig(layer, None)  # stays fp32 inside the int8 graph
    return quantizer


def _export(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> torch.fx.GraphModule:
    """``torch.export`` with a dynamic batch dimension, traced at a batch of at least 2."""
    traced_at = _at_least_batch(example_inputs, EXPORT_MIN_BATCH)
    batch = torch.export.Dim("batch", min=1)  # runs at batch 1 too; traced at >= 2 so it stays dynamic
    dynamic = tuple({0: batch} if isinstance(x, torch.Tensor) and x.dim() > 0 else None for x in traced_at)
    try:
        return torch.export.export(copy.deepcopy(model).eval(), traced_at, dynamic_shapes=dynamic).module()
    except Exception as exc:
        raise DeployError(
            f"{type(model).__name__}: torch.export could not trace the model ({brief(exc)}); make forward "
            "traceable (no Python branching on tensor values) or choose activation_bits=32 (fp32 execution)."
        ) from exc


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
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    name = type(model).__name__
    quantizer = _inductor_quantizer(model, low, reduce_range)
    exported = _export(model, example_inputs)
    try:
        prepared = prepare_pt2e(exported, quantizer)
    except Exception as exc:
        raise DeployError(
            f"{name}: X86InductorQuantizer rejected the model ({brief(exc)}); leave the layer it names at 32 "
            "bits or choose activation_bits=32."
        ) from exc
    int8 = _observed_pt2e_layers(prepared, low)
    if not int8:
        raise none_quantized(name, "X86InductorQuantizer", low)
    try:
        with torch.no_grad():
            for args in batches:
                prepared(*args)
        converted = convert_pt2e(prepared)
    except Exception as exc:
        raise DeployError(
            f"{name}: int8 calibration failed ({brief(exc)}); calibration batches must have the example "
            "inputs' shapes except for the batch dimension."
        ) from exc

    # Compiling happens at the first call, in the warm-up: at the target batch size (so timing never
    # includes it), with freezing on (see _Compiled; passing it as a torch.compile option is not
    # enough: the freezing passes then emit onednn prepack ops the rest of inductor cannot trace),
    # and with the thread count pinned, since inductor bakes it into the code it generates.
    compile_start = time.perf_counter()
    try:
        compiled = _Compiled(torch.compile(converted, dynamic=False), program=converted)
        warm_up(compiled, example_inputs, threads)
    except Exception as exc:
        raise _CompileFailed(brief(exc)) from exc
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
