"""The ``"fx"`` int8 backend: ``torch.ao.quantization``'s FX graph mode, deprecated, kept behind one function.

It runs real quantized kernels (``torch.ops.quantized.*``) with no C++ compiler: one of the two int8
builders of :func:`tradeoff.spaces.int8.build_int8`. The converted program is traced to TorchScript and
frozen (:func:`script`): the same quantized ops, called from TorchScript's interpreter instead of
Python. At batch 1 most of an eager fx forward pass is Python calling each op, not the int8 kernels;
on a 2-core Xeon (AVX-512 VNNI) the frozen program ran the fashion-mnist network 1.9-2.6x faster than
the eager one, with outputs equal bit for bit (docs/BENCHMARKS.md, issue 25). Where tracing fails or
its outputs differ, the eager program runs and the note says why.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from ._base import torch_threads
from ._int8_base import DeployError, GridMixin, brief, none_quantized, warm_up
from .widths import WEIGHT_LAYERS


def fx_int8(
    model: nn.Module,
    low: list[str],
    example_inputs: tuple[torch.Tensor, ...],
    batches: list[tuple[torch.Tensor, ...]],
    threads: int,
    *,
    scripted: bool = True,
) -> tuple[nn.Module, set[str], str | None]:
    """torch.ao FX graph mode static int8 (x86 backend): deprecated, kept behind this one function.

    Returns the program (frozen TorchScript when ``scripted`` and :func:`script` can make it, else the
    eager converted module), its int8 layers, and a note when it runs eagerly though asked to script.

    Everything runs at ``threads``, the count the program will be timed at. The frozen program keeps
    what it was traced and first run at: traced in a 2-thread process and run at one thread, the digits
    program took 0.137-0.153 ms instead of 0.055-0.060 (the eager one takes 0.16 ms either way; issue 25).
    """
    with torch_threads(threads):
        return _fx_int8(model, low, example_inputs, batches, threads, scripted=scripted)


def _fx_int8(
    model: nn.Module,
    low: list[str],
    example_inputs: tuple[torch.Tensor, ...],
    batches: list[tuple[torch.Tensor, ...]],
    threads: int,
    *,
    scripted: bool,
) -> tuple[nn.Module, set[str], str | None]:
    name = type(model).__name__
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"(?s).*Please use quant_min and quant_max")
        warnings.filterwarnings("ignore", message=r"(?s).*quantized tensor creation functions")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao\..*")
        from torch.ao.nn.quantized.modules.utils import WeightedQuantizedModule
        from torch.ao.quantization import QConfig, get_default_qconfig_mapping
        from torch.ao.quantization.observer import PerChannelMinMaxObserver
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        class GridObserver(GridMixin, PerChannelMinMaxObserver):
            pass

        if torch.backends.quantized.engine != "x86" and "x86" in torch.backends.quantized.supported_engines:
            torch.backends.quantized.engine = "x86"
        mapping = get_default_qconfig_mapping("x86")
        default = mapping.global_qconfig
        weight = GridObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
        mapping.set_global(QConfig(activation=default.activation, weight=weight))
        for layer, module in model.named_modules():
            if isinstance(module, WEIGHT_LAYERS) and layer not in low:
                mapping.set_module_name(layer, None)
        try:
            prepared = prepare_fx(copy.deepcopy(model).eval(), mapping, example_inputs)
        except Exception as exc:
            raise DeployError(
                f"{name}: FX graph mode could not trace or quantize the model ({brief(exc)}); make forward "
                "symbolically traceable or choose activation_bits=32."
            ) from exc
        try:
            with torch.no_grad():
                for args in batches:
                    prepared(*args)
            converted = convert_fx(prepared).eval()
            warm_up(converted, example_inputs, threads)
        except Exception as exc:
            raise DeployError(f"{name}: FX int8 conversion or its first run failed ({brief(exc)}).") from exc
    int8 = {n for n, m in converted.named_modules() if isinstance(m, WeightedQuantizedModule) and n in low}
    if not int8:
        raise none_quantized(name, "FX graph mode", low)
    if not scripted:
        return converted, int8, None
    program, why_not = script(converted, example_inputs, batches[:1])
    if why_not is None:
        warm_up(program, example_inputs, threads)  # TorchScript optimises its graph over the first calls
        return program, int8, None
    return converted, int8, f"fx program runs eagerly: {why_not}"


def script(
    program: nn.Module, example_inputs: tuple[torch.Tensor, ...], checks: list[tuple[torch.Tensor, ...]]
) -> tuple[nn.Module, str | None]:
    """``program`` traced to TorchScript and frozen, or ``program`` itself and why not.

    Tracing records the quantized ops the example inputs run through; freezing inlines the packed
    weights as constants. The batch size is read at run time, so the result runs at any batch. It is
    kept only if its outputs equal ``program``'s exactly on the example inputs and on ``checks``
    (a path taken by other inputs, which tracing cannot see, would show there).

    Example:
        >>> m = nn.Sequential(nn.Linear(4, 2)).eval()
        >>> ts, why_not = script(m, (torch.randn(1, 4),), [(torch.randn(8, 4),)])
        >>> why_not is None, isinstance(ts, torch.jit.ScriptModule), ts(torch.randn(3, 4)).shape
        (True, True, torch.Size([3, 2]))
    """
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.jit is deprecated, not gone
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            traced = torch.jit.trace(program, example_inputs).eval()
            frozen = torch.jit.freeze(traced, preserved_attrs=["training"])  # read by eval() and harnesses
            for args in [example_inputs, *checks]:
                want, got = tree_flatten(program(*args)), tree_flatten(frozen(*args))
                if want[1] != got[1] or not all(torch.equal(w, g) for w, g in zip(want[0], got[0], strict=True)):
                    return program, "its TorchScript trace gave other outputs than the fx program"
    except Exception as exc:
        return program, f"TorchScript could not trace it ({brief(exc)})"
    return frozen, None
