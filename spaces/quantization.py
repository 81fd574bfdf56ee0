"""Weight and activation bit-widths: fake-quantization for quantization-aware tuning, and the deployable form.

Weights: per-output-channel symmetric quantization (scale = max|w| / (2^(b-1) - 1), no
zero-point), through a ``torch.nn.utils.parametrize`` parametrization so gradients reach the fp32
master weights by the straight-through estimator of ``torch.fake_quantize_per_channel_affine``.
16 bits means a 16-bit float (``float16 = "bf16"`` or ``"fp16"``): weights are rounded to it.
Activations: per-tensor affine quantization of every weight layer's input, with the range
calibrated on a few training batches and then frozen (16 bits: rounded to the 16-bit float).

Per-group widths: ``groups`` maps layer patterns (see :mod:`tradeoff.spaces.groups`) to weight
widths, e.g. ``{"conv1,fc": 8, "layer3": 4}``; other layers take ``weight_bits``.

After tuning, :meth:`QuantizationConfig.bake_` writes the quantized weights into the layers
(values on the grid, stored in fp32), giving the *scored* model: accuracy and size are those of
the chosen widths. :meth:`QuantizationConfig.deploy` turns it into its *deployable form*, what really
runs on the target (int8 kernels where widths allow and the target has them; see
:mod:`tradeoff.spaces.deploy`), and names that form (:attr:`~tradeoff.spaces.deploy.Deployable.form`): no fake-quant is ever timed under a low-bit name.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
import torch
from torch import nn
from torch.nn.utils import parametrize

from ._base import ApplyContext, Config, Space, as_args
from .deploy import Deployable, deployable_form
from .groups import GROUP_SEP, check_groups, value_for
from .widths import ACTIVATION_BITS, FLOAT16_KINDS, WEIGHT_BITS, WEIGHT_LAYERS

CALIBRATION_BATCHES = 8  # activation ranges settle within a few batches of min/max


def round_to_float16(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` rounded to a 16-bit float and back, with a straight-through gradient.

    Example:
        >>> round_to_float16(torch.tensor([1.0 + 2**-10]), torch.bfloat16).item()
        1.0
    """
    return x + (x.to(dtype).to(x.dtype) - x).detach()


class WeightFakeQuant(nn.Module):
    """Parametrization: per-output-channel symmetric fake-quantization of a weight at ``bits``.

    At 16 bits the weight is rounded to ``float16`` (a 16-bit float) instead.
    """

    def __init__(self, bits: int, float16: str = "bf16") -> None:
        super().__init__()
        self.bits = bits
        self.qmax = 2 ** (bits - 1) - 1
        self.float16 = float16

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.bits == 16:
            return round_to_float16(w, FLOAT16_KINDS[self.float16])
        amax = w.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-12)
        scale = (amax / self.qmax).float()
        zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -self.qmax, self.qmax)


def fake_quantize_plain(x: torch.Tensor, scale: float, zero: int, levels: int) -> torch.Tensor:
    """``torch.fake_quantize_per_tensor_affine`` (unsigned, ``0..levels``) in exportable plain ops.

    Same arithmetic as the ATen kernel: multiply by the reciprocal scale, round half to even,
    add the zero-point, clamp, then dequantize.

    Example:
        >>> x = torch.linspace(-1, 2, 101)
        >>> torch.equal(fake_quantize_plain(x, 0.02, 50, 255), torch.fake_quantize_per_tensor_affine(x, 0.02, 50, 0, 255))
        True
    """
    inv = 1.0 / scale
    q = torch.clamp(torch.round(x * inv) + zero, 0, levels)
    return (q - zero) * scale


class ActivationFakeQuant:
    """Forward pre-hook: per-tensor affine fake-quantization of a layer's input at ``bits``.

    A plain object (not a submodule) so the quantized layers stay leaves of the module tree; it is
    deep-copied with its module, range included.
    """

    def __init__(self, bits: int, float16: str = "bf16") -> None:
        self.bits = bits
        self.float16 = float16
        self.lo = 0.0
        self.hi = 0.0
        self.calibrating = True

    def qparams(self) -> tuple[float, int]:
        levels = 2**self.bits - 1
        lo, hi = min(self.lo, 0.0), max(self.hi, 0.0)
        scale = max((hi - lo) / levels, 1e-12)
        return scale, int(min(max(round(-lo / scale), 0), levels))

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        if self.bits == 16:  # a 16-bit float: no range to calibrate
            return (round_to_float16(x, FLOAT16_KINDS[self.float16]), *args[1:])
        if self.calibrating:
            self.lo = min(self.lo, float(x.detach().min()))
            self.hi = max(self.hi, float(x.detach().max()))
        scale, zero = self.qparams()
        if x.requires_grad:  # training: PyTorch's op, straight-through gradient masked to the range
            q = torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 2**self.bits - 1)
        else:  # inference: the same arithmetic in plain ops, so torch.export can trace it
            q = fake_quantize_plain(x, scale, zero, 2**self.bits - 1)
        return (q, *args[1:])


def _activation_hooks(module: nn.Module) -> list[tuple[int, ActivationFakeQuant]]:
    return [(k, h) for k, h in module._forward_pre_hooks.items() if isinstance(h, ActivationFakeQuant)]


def strip_activation_quant(model: nn.Module) -> nn.Module:
    """A copy of a baked model without its activation fake-quant: the fp32 form, weights on their grid.

    This is what :func:`tradeoff.spaces.deploy.deployable_form` starts from (see
    :meth:`QuantizationConfig.deploy`), and the form that runs where no lower precision can.
    """
    exe = copy.deepcopy(model)
    for module in exe.modules():
        for key, _ in _activation_hooks(module):
            del module._forward_pre_hooks[key]
    return exe.eval()


def _check_bits(name: str, bits: int, allowed: tuple[int, ...]) -> None:
    if isinstance(bits, bool) or bits not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {bits!r}.")


@dataclass(frozen=True)
class QuantizationConfig(Config):
    """Chosen bit-widths for the weights and inputs of every conv and linear layer.

    Args:
        weight_bits: Width of the weights of layers no group selects (16 = a 16-bit float,
            32 = unquantized).
        activation_bits: Width of each quantized layer's input activations (32 = unquantized).
        groups: Layer patterns to weight widths for those layers (first match wins).
        float16: Which 16-bit float "16 bits" means: ``"bf16"`` or ``"fp16"``.

    Example:
        >>> m = nn.Sequential(nn.Linear(4, 3))
        >>> cfg = QuantizationConfig(weight_bits=2)
        >>> m = cfg.bake_(cfg.apply_(m, ApplyContext(example_inputs=(torch.randn(1, 4),))))
        >>> m[0].weight.abs().div(m[0].weight.abs().amax(1, keepdim=True)).unique().tolist()
        [0.0, 1.0]
    """

    technique = "quantization"

    weight_bits: int = 32
    activation_bits: int = 32
    groups: dict[str, int] = field(default_factory=dict)
    float16: Literal["bf16", "fp16"] = "bf16"

    def __post_init__(self) -> None:
        _check_bits("weight_bits", self.weight_bits, WEIGHT_BITS)
        _check_bits("activation_bits", self.activation_bits, ACTIVATION_BITS)
        check_groups(self.groups, "quantization")
        for key, bits in self.groups.items():
            _check_bits(f"weight_bits of group {key!r}", bits, WEIGHT_BITS)
        if self.float16 not in FLOAT16_KINDS:
            raise ValueError(f"quantization float16 must be one of {sorted(FLOAT16_KINDS)}, got {self.float16!r}.")

    @property
    def is_identity(self) -> bool:
        return self.weight_bits == 32 and self.activation_bits == 32 and all(b == 32 for b in self.groups.values())

    def bits_of(self, name: str) -> int:
        """The weight width of layer ``name``."""
        return value_for(name, self.groups, self.weight_bits)

    def apply_(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        """Attach fake-quant to every conv/linear layer and calibrate activation ranges.

        Activations are quantized at the input of every layer whose weights are (a layer left
        at 32 bits keeps fp32 inputs too, as it would run in fp32), or of every layer when no
        weights are quantized.
        """
        if self.is_identity:
            return model
        hooks = []
        layers = {n: m for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)}
        any_weights = any(self.bits_of(n) < 32 for n in layers)
        for name, module in layers.items():
            bits = self.bits_of(name)
            if bits < 32:
                parametrize.register_parametrization(module, "weight", WeightFakeQuant(bits, self.float16))
            if self.activation_bits < 32 and (bits < 32 or not any_weights):
                hook = ActivationFakeQuant(self.activation_bits, self.float16)
                module.register_forward_pre_hook(hook)
                hooks.append(hook)
        if hooks:
            batches = list(ctx.train)[:CALIBRATION_BATCHES] or [(ctx.example_inputs, None)]
            was_training = model.training
            model.eval()
            with torch.no_grad():
                for inputs, _ in batches:
                    model(*as_args(inputs))
            model.train(was_training)
            for hook in hooks:
                hook.calibrating = False
        return model

    def bake_(self, model: nn.Module) -> nn.Module:
        """Write the quantized (and masked) weights into the layers and drop the parametrizations."""
        for module in model.modules():
            if parametrize.is_parametrized(module, "weight"):
                # a deep copy shares its original's injected Parametrized* class, and removing the
                # parametrization deletes the property from that class: give this module a class of
                # its own first, so baking a copy leaves the original working
                cls = type(module)
                module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        return model

    def deploy(self, model: nn.Module, ctx: ApplyContext) -> Deployable:
        """What the baked ``model`` executes as on the target (int8, a 16-bit float or fp32).

        Activation ranges of the int8 form are calibrated on the first training batches of
        ``ctx``; it is compiled for ``ctx.threads`` with ``ctx.backend`` (see :mod:`.deploy`).
        """
        exe = strip_activation_quant(model)
        calibration = [as_args(inputs) for inputs, _ in list(ctx.train)[:CALIBRATION_BATCHES]]
        return deployable_form(
            exe,
            weight_bits=self.weight_bits_by_layer(model),
            activation_bits=self.activation_bits,
            example_inputs=as_args(ctx.example_inputs),
            calibration=calibration,
            threads=ctx.threads,
            backend=ctx.backend,
            float16=self.float16,
        )

    def weight_bits_by_layer(self, model: nn.Module) -> dict[str, int]:
        """Weight width of each quantized layer by module name (layers left at 32 bits are omitted)."""
        if self.is_identity:
            return {}
        out = {n: self.bits_of(n) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)}
        return {n: b for n, b in out.items() if b < 32}


@dataclass(frozen=True)
class QuantizationSpace(Space):
    """Choices of bit-widths (from the spec's ``[space.quantization]``).

    Args:
        weight_bits: Widths to choose from for layers no group selects.
        activation_bits: Activation widths to choose from.
        groups: Group name to layer patterns; each group gets its own knob
            ``quantization.weight_bits@<name>`` over ``weight_bits``.
        float16: What 16 bits means (fixed for the study).

    Example:
        >>> s = QuantizationSpace(weight_bits=(4, 8, 32), activation_bits=(32,))
        >>> s.sample(optuna.trial.FixedTrial({"quantization.weight_bits": 4})).weight_bits
        4
    """

    weight_bits: tuple[int, ...] = (4, 8, 32)  # the skeleton's default choices
    activation_bits: tuple[int, ...] = (8, 32)  # 8: int8 kernels can execute it; 32: fp32 activations
    groups: dict[str, str] = field(default_factory=dict)
    float16: str = "bf16"  # bf16 keeps fp32's range: no overflow in activations of unnormalised nets

    def __post_init__(self) -> None:
        for name, choices, allowed in (
            ("weight_bits", self.weight_bits, WEIGHT_BITS),
            ("activation_bits", self.activation_bits, ACTIVATION_BITS),
        ):
            if not choices:
                raise ValueError(f"{name} needs at least one choice from {list(allowed)}.")
            for b in choices:
                _check_bits(name, b, allowed)
        check_groups({p: 0 for p in self.groups.values()}, "quantization")
        QuantizationConfig(float16=self.float16)  # type: ignore[arg-type]  # validates

    def sample(self, trial: optuna.trial.BaseTrial) -> QuantizationConfig:
        def pick(name: str, choices: tuple[int, ...]) -> int:
            return int(trial.suggest_categorical(name, list(choices))) if len(choices) > 1 else choices[0]

        return QuantizationConfig(
            weight_bits=pick("quantization.weight_bits", self.weight_bits),
            activation_bits=pick("quantization.activation_bits", self.activation_bits),
            groups={
                p: pick(f"quantization.weight_bits{GROUP_SEP}{n}", self.weight_bits) for n, p in self.groups.items()
            },
            float16=self.float16,  # type: ignore[arg-type]
        )

    def identity(self) -> QuantizationConfig:
        return QuantizationConfig(groups={p: 32 for p in self.groups.values()}, float16=self.float16)  # type: ignore[arg-type]
