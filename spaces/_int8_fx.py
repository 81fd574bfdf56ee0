"""The ``"fx"`` int8 backend: ``torch.ao.quantization``'s FX graph mode, deprecated, kept behind one function.

It runs real quantized kernels (``torch.ops.quantized.*``) eagerly, with no compiler: the fallback
of :func:`tradeoff.spaces.int8.build_int8` where inductor cannot compile.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ._int8_base import DeployError, GridMixin, brief, none_quantized, warm_up
from .widths import WEIGHT_LAYERS


def fx_int8(
    model: nn.Module,
    low: list[str],
    example_inputs: tuple[torch.Tensor, ...],
    batches: list[tuple[torch.Tensor, ...]],
    threads: int,
) -> tuple[nn.Module, set[str]]:
    """torch.ao FX graph mode static int8 (x86 backend): deprecated, kept behind this one function."""
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
    return converted, int8
