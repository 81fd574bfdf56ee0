"""Energy of one forward pass: estimated from a documented per-operation energy model.

This machine exposes no energy counter (no RAPL/powercap, no NVML), so every figure here is an
*estimate* and says so. Measured energy (RAPL, NVML) will plug in beside this model.

Model ``horowitz-isscc2014-45nm/v1`` — M. Horowitz, "Computing's energy problem (and what we
can do about it)", ISSCC 2014, 45 nm figures:

  ======================  ==========
  operation               energy
  ======================  ==========
  fp32 multiply           3.7 pJ
  fp32 add                0.9 pJ
  int8 multiply           0.2 pJ
  int8 add                0.03 pJ
  DRAM read, 32 bits      640 pJ     (160 pJ per byte)
  SRAM 32 KB read, 64 b   20 pJ      (2.5 pJ per byte)
  ======================  ==========

How other widths scale (explicit, so it can be checked):
  * integer multiply: an array multiplier's partial products grow with the product of the operand
    widths, so ``E_mul(w, a) = 0.2 pJ * (w * a) / (8 * 8)``;
  * integer add: a ripple adder grows linearly with width, ``E_add(w, a) = 0.03 pJ * max(w, a) / 8``;
  * an operand wider than 16 bits means the MAC runs in fp32 (weights are dequantized when the
    activations are fp32): ``E_mac = 3.7 + 0.9 = 4.6 pJ``.
Data movement: each weight byte (at its packed width) is read once from DRAM per forward pass;
each weight layer's input and output activations go through a 32 KB SRAM at the activation width.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ._base import EvalContext, Measurement, Objective
from .complexity import ModelProfile, profile

PJ_PER_MJ = 1e9


@dataclass(frozen=True)
class EnergyModel:
    """Per-operation energies (pJ); defaults are Horowitz, ISSCC 2014, 45 nm (module docstring)."""

    name: str = "horowitz-isscc2014-45nm"
    version: int = 1
    fp32_mul_pj: float = 3.7
    fp32_add_pj: float = 0.9
    int8_mul_pj: float = 0.2
    int8_add_pj: float = 0.03
    dram_pj_per_byte: float = 640.0 / 4
    sram_pj_per_byte: float = 20.0 / 8

    @property
    def label(self) -> str:
        return f"{self.name}/v{self.version}"

    def mac_pj(self, weight_bits: int, activation_bits: int) -> float:
        """Energy of one multiply-accumulate with operands of the given widths.

        Example:
            >>> EnergyModel().mac_pj(8, 8)
            0.23
            >>> EnergyModel().mac_pj(4, 32)  # fp32 activations: runs as an fp32 MAC
            4.6
        """
        if max(weight_bits, activation_bits) > 16:
            return round(self.fp32_mul_pj + self.fp32_add_pj, 12)
        mul = self.int8_mul_pj * weight_bits * activation_bits / 64
        add = self.int8_add_pj * max(weight_bits, activation_bits) / 8
        return round(mul + add, 12)

    def energy_pj(self, prof: ModelProfile) -> dict[str, float]:
        """Energy of one forward pass split into compute, weight traffic and activation traffic."""
        compute = sum(l.macs * self.mac_pj(l.weight_bits, l.activation_bits) for l in prof.layers)
        a = prof.activation_bits
        compute += prof.other_macs * self.mac_pj(a, a)
        weights = prof.size_bytes * self.dram_pj_per_byte
        acts = sum((l.in_numel + l.out_numel) * l.activation_bits / 8 for l in prof.layers)
        acts *= self.sram_pj_per_byte
        return {"compute_pj": compute, "weights_pj": weights, "activations_pj": acts}


class EnergyMj(Objective):
    """Energy of one forward pass at the target batch size, in mJ (estimated; see module)."""

    name = "energy_mj"
    direction = "minimize"
    unit = "mJ"

    def __init__(self, *, model: EnergyModel | None = None) -> None:
        self.model = model or EnergyModel()

    def measure(self, model: nn.Module, ctx: EvalContext) -> Measurement:
        prof = profile(model, ctx.example_inputs, ctx.weight_bits, ctx.activation_bits)
        parts = self.model.energy_pj(prof)
        value = sum(parts.values()) / PJ_PER_MJ
        return Measurement(
            value,
            self.unit,
            "estimated",
            "per-operation energy model applied to MACs and bytes moved",
            {"energy_model": self.model.label, **parts},
        )
