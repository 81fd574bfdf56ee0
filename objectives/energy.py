"""Energy of one forward pass: measured where the hardware has a counter, else estimated.

Sources (the spec's ``target.energy``: ``auto`` picks the first that applies):
  * ``rapl`` — CPU package energy from Linux powercap (``/sys/class/powercap/intel-rapl:N``,
    also used by AMD). Measured over a loop of forward passes of the deployable form, minus the
    idle power measured just before over a quiet window, divided by the passes. Counter wrap-around
    is handled with ``max_energy_range_uj``. Inside the device's measurement lock.
  * ``nvml`` — NVIDIA GPU total energy (``nvmlDeviceGetTotalEnergyConsumption``, mJ) through
    ``pynvml`` (package ``nvidia-ml-py``), the same loop and idle subtraction.
  * ``model`` — the estimate below, labelled ``estimated`` with the model's name and version.
A measured figure also carries the model's estimate in its details, for comparison.

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

import abc
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.benchmark.utils.common import set_torch_threads

from ._base import EvalContext, Measurement, Objective, as_args, describe_device, inference_mode_of, on_device
from ._lock import measurement_lock
from .profile import ModelProfile

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


POWERCAP_ROOT = Path("/sys/class/powercap")
ENERGY_SOURCES: tuple[str, ...] = ("auto", "model", "rapl", "nvml")
IDLE_S = 0.25  # quiet window for idle power: long enough for several RAPL updates (~1 ms each)
LOOP_S = 0.5  # timed loop: long enough that counter granularity is < 1 % of the reading


class EnergyCounter(abc.ABC):
    """A cumulative hardware energy counter."""

    name: str

    @abc.abstractmethod
    def read_mj(self) -> float:
        """Energy consumed since an arbitrary origin, in mJ (monotonic across wrap-arounds)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """What is counted, for provenance."""


class RaplCounter(EnergyCounter):
    """CPU package energy from Linux powercap (top-level ``intel-rapl:N`` zones, summed)."""

    name = "rapl"

    def __init__(self, root: Path = POWERCAP_ROOT) -> None:
        self.zones = [z for z in sorted(Path(root).glob("intel-rapl:*")) if re.fullmatch(r"intel-rapl:\d+", z.name)]
        self.zones = [z for z in self.zones if _readable_int(z / "energy_uj") is not None]
        if not self.zones:
            raise OSError(f"no readable RAPL counter under {root} (intel-rapl:N/energy_uj).")
        self._last = [_readable_int(z / "energy_uj") or 0 for z in self.zones]
        self._range = [_readable_int(z / "max_energy_range_uj") or 0 for z in self.zones]
        self._total_uj = 0

    def read_mj(self) -> float:
        for i, zone in enumerate(self.zones):
            now = _readable_int(zone / "energy_uj") or 0
            delta = now - self._last[i]
            if delta < 0:  # the counter wrapped
                delta += self._range[i]
            self._total_uj += delta
            self._last[i] = now
        return self._total_uj / 1e3

    def describe(self) -> str:
        names = [(_read_text(z / "name") or z.name) for z in self.zones]
        return f"RAPL powercap: {', '.join(names)}"


class NvmlCounter(EnergyCounter):
    """Total energy of one NVIDIA GPU through NVML (``pynvml``)."""

    name = "nvml"

    def __init__(self, index: int = 0) -> None:
        import pynvml  # optional: nvidia-ml-py

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)  # raises where unsupported
        self._name = pynvml.nvmlDeviceGetName(self._handle)

    def read_mj(self) -> float:
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    def describe(self) -> str:
        return f"NVML total energy: {self._name}"


def _readable_int(path: Path) -> int | None:
    text = _read_text(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def open_counter(source: str, device: str = "cpu", *, powercap_root: Path = POWERCAP_ROOT) -> EnergyCounter | None:
    """The counter for ``source`` on ``device``; ``None`` for ``model``, or ``auto`` with none available.

    A forced source that is not available raises ``ValueError`` saying what is missing.

    Example:
        >>> open_counter("model") is None
        True
    """
    if source not in ENERGY_SOURCES:
        raise ValueError(f"energy source must be one of {ENERGY_SOURCES}, got {source!r}.")
    if source == "model":
        return None
    cuda = device.startswith("cuda")
    wanted = source if source != "auto" else ("nvml" if cuda else "rapl")
    try:
        if wanted == "nvml":
            index = int(device.split(":")[1]) if ":" in device else 0
            return NvmlCounter(index)
        return RaplCounter(powercap_root)
    except Exception as exc:  # noqa: BLE001 - any failure to open means: not available here
        if source == "auto":
            return None
        raise ValueError(
            f"energy source {source!r} is not available here ({exc}); use 'auto' or 'model' "
            "(estimated from the documented energy model)."
        ) from None


@torch.no_grad()
def measure_energy(
    model: nn.Module,
    inputs: tuple[Any, ...],
    counter: EnergyCounter,
    *,
    threads: int = 1,
    device: str = "cpu",
    idle_s: float = IDLE_S,
    loop_s: float = LOOP_S,
) -> dict[str, Any]:
    """Energy of one forward pass read off ``counter``: (loop energy - idle power x loop time) / passes.

    Returns ``energy_mj`` (per pass, idle subtracted, never below 0), ``gross_mj`` (per pass,
    idle included), ``idle_w``, ``loop_s``, ``passes`` and ``lock_wait_s``.
    """
    args = as_args(inputs)
    cuda = device.startswith("cuda")
    with measurement_lock(device) as waited, set_torch_threads(threads):
        inference_mode_of(model)
        for _ in range(3):  # warm-up: lazy init and caches are not counted
            model(*args)
        if cuda:
            torch.cuda.synchronize()
        e0, t0 = counter.read_mj(), time.perf_counter()
        time.sleep(idle_s)
        e1, t1 = counter.read_mj(), time.perf_counter()
        idle_mj_per_s = (e1 - e0) / (t1 - t0)
        passes = 0
        e2, t2 = counter.read_mj(), time.perf_counter()
        while passes == 0 or time.perf_counter() - t2 < loop_s:
            model(*args)
            passes += 1
        if cuda:
            torch.cuda.synchronize()
        e3, t3 = counter.read_mj(), time.perf_counter()
    gross = e3 - e2
    return {
        "energy_mj": max(gross - idle_mj_per_s * (t3 - t2), 0.0) / passes,
        "gross_mj": gross / passes,
        "idle_w": idle_mj_per_s / 1e3,
        "loop_s": t3 - t2,
        "passes": passes,
        "lock_wait_s": round(waited, 4),
    }


class EnergyMj(Objective):
    """Energy of one forward pass at the target batch size, in mJ: measured where a counter exists.

    Args:
        source: ``auto`` (a counter if the device has one, else the model), ``rapl``, ``nvml``
            or ``model`` (see module docstring).
        model: The energy model for estimates (and the comparison figure of measurements).
        powercap_root: Where RAPL zones live (tests point it at a fake tree).
    """

    name = "energy_mj"
    direction = "minimize"
    unit = "mJ"

    def __init__(
        self, *, source: str = "auto", model: EnergyModel | None = None, powercap_root: Path = POWERCAP_ROOT
    ) -> None:
        if source not in ENERGY_SOURCES:
            raise ValueError(f"energy source must be one of {ENERGY_SOURCES}, got {source!r}.")
        self.source = source
        self.model = model or EnergyModel()
        self.powercap_root = powercap_root

    def estimate(self, model: nn.Module, ctx: EvalContext) -> dict[str, float]:
        return self.model.energy_pj(ctx.profile(model))

    def measure(self, model: nn.Module, ctx: EvalContext) -> Measurement:
        parts = self.estimate(model, ctx)
        estimated = sum(parts.values()) / PJ_PER_MJ
        counter = open_counter(self.source, ctx.device, powercap_root=self.powercap_root)
        if counter is None:
            return Measurement(
                estimated,
                self.unit,
                "estimated",
                "per-operation energy model applied to MACs and bytes moved",
                {"energy_model": self.model.label, **parts},
            )
        executable, inputs = on_device(
            ctx.deployable if ctx.deployable is not None else model, ctx.example_inputs, ctx.device
        )
        r = measure_energy(executable, inputs, counter, threads=ctx.threads, device=ctx.device)
        return Measurement(
            r["energy_mj"],
            self.unit,
            "measured",
            f"{counter.name}: energy over a loop of forward passes minus idle power, per pass",
            {
                **r,
                "counter": counter.describe(),
                "deployable_form": ctx.deployable_form,
                "device": describe_device(ctx.device),
                "threads": ctx.threads,
                "repeats": r["passes"],
                "torch": torch.__version__,
                "estimated_mj": estimated,
                "energy_model": self.model.label,
            },
        )
