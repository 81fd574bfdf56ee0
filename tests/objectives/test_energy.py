from __future__ import annotations

import pytest
import torch
from torch import nn

from tradeoff.objectives import EnergyMj, EnergyModel, EvalContext, profile


def test_per_mac_energy_follows_the_documented_table() -> None:
    e = EnergyModel()
    assert e.mac_pj(32, 32) == pytest.approx(3.7 + 0.9)
    assert e.mac_pj(8, 8) == pytest.approx(0.2 + 0.03)
    assert e.mac_pj(4, 8) == pytest.approx(0.2 * 32 / 64 + 0.03)
    assert e.mac_pj(16, 16) == pytest.approx(0.2 * 4 + 0.03 * 2)
    assert e.mac_pj(4, 32) == pytest.approx(4.6)  # fp32 activations: fp32 MAC


def test_energy_of_a_known_layer() -> None:
    m = nn.Linear(10, 4, bias=False)
    x = (torch.randn(1, 10),)
    e = EnergyModel()
    parts = e.energy_pj(profile(m, x, {"": 8}, 8))
    assert parts["compute_pj"] == pytest.approx(40 * 0.23)
    assert parts["weights_pj"] == pytest.approx((40 + 4 * 4) * 160)  # int8 weights + fp32 scales from DRAM
    assert parts["activations_pj"] == pytest.approx((10 + 4) * 1 * 2.5)  # 8-bit in/out through SRAM
    measured = EnergyMj().measure(m, EvalContext(example_inputs=x, weight_bits={"": 8}, activation_bits=8))
    assert measured.value == pytest.approx(sum(parts.values()) * 1e-9)


def test_lower_widths_cost_less_energy() -> None:
    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    x = (torch.randn(1, 64),)
    bits = lambda b: {"0": b, "2": b}  # noqa: E731
    fp32 = EnergyMj().measure(m, EvalContext(example_inputs=x)).value
    int8 = EnergyMj().measure(m, EvalContext(example_inputs=x, weight_bits=bits(8), activation_bits=8)).value
    int4 = EnergyMj().measure(m, EvalContext(example_inputs=x, weight_bits=bits(4), activation_bits=8)).value
    assert fp32 > int8 > int4


# ---------------------------------------------------------------- measured energy (fake powercap)

UJ_PER_PASS = 1000  # the fake counter advances 1 mJ per forward pass, nothing while idle


def fake_powercap(root, start: int = 5_000, max_range: int = 10**12):
    """A powercap tree like Linux's: one package zone, one sub-zone that must not be double counted."""
    pkg = root / "intel-rapl:0"
    (pkg / "intel-rapl:0:0").mkdir(parents=True)
    (pkg / "name").write_text("package-0\n")
    (pkg / "energy_uj").write_text(f"{start}\n")
    (pkg / "max_energy_range_uj").write_text(f"{max_range}\n")
    (pkg / "intel-rapl:0:0" / "energy_uj").write_text("0\n")
    return pkg / "energy_uj"


class CountingModel(nn.Module):
    """Each forward pass adds UJ_PER_PASS to the fake counter, wrapping like hardware does."""

    def __init__(self, counter_file, max_range: int = 10**12) -> None:
        super().__init__()
        self.counter_file, self.max_range = counter_file, max_range
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        now = int(self.counter_file.read_text())
        self.counter_file.write_text(str((now + UJ_PER_PASS) % self.max_range))
        return self.lin(x)


def test_rapl_energy_is_the_counter_delta_per_pass(tmp_path, monkeypatch) -> None:
    from tradeoff.objectives.energy import RaplCounter, measure_energy

    monkeypatch.setenv("TRADEOFF_LOCK_DIR", str(tmp_path))
    counter_file = fake_powercap(tmp_path)
    counter = RaplCounter(tmp_path)
    assert [z.name for z in counter.zones] == ["intel-rapl:0"]
    r = measure_energy(CountingModel(counter_file), (torch.randn(1, 4),), counter, idle_s=0.01, loop_s=0.02)
    assert r["energy_mj"] == pytest.approx(1.0) and r["idle_w"] == 0.0 and r["passes"] >= 1


def test_rapl_counter_survives_a_wrap_around(tmp_path) -> None:
    from tradeoff.objectives.energy import RaplCounter

    counter_file = fake_powercap(tmp_path, start=9_500, max_range=10_000)
    counter = RaplCounter(tmp_path)
    before = counter.read_mj()
    model = CountingModel(counter_file, max_range=10_000)
    model(torch.randn(1, 4))  # 9500 -> 500 (wrapped)
    assert counter.read_mj() - before == pytest.approx(1.0)


def test_energy_objective_measures_when_a_counter_exists(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TRADEOFF_LOCK_DIR", str(tmp_path))
    counter_file = fake_powercap(tmp_path)
    scored = nn.Linear(4, 2)
    exe = CountingModel(counter_file)
    ctx = EvalContext(example_inputs=(torch.randn(1, 4),), deployable=exe, deployable_form="fp32")
    m = EnergyMj(source="auto", powercap_root=tmp_path).measure(scored, ctx)
    assert m.source == "measured" and m.value == pytest.approx(1.0, rel=0.05)
    assert m.details["counter"] == "RAPL powercap: package-0" and m.details["deployable_form"] == "fp32"
    assert m.details["estimated_mj"] > 0 and m.details["energy_model"] == "horowitz-isscc2014-45nm/v1"
    forced_model = EnergyMj(source="model", powercap_root=tmp_path).measure(scored, ctx)
    assert forced_model.source == "estimated"


def test_auto_falls_back_to_the_model_and_forcing_a_missing_counter_says_what_is_missing(tmp_path) -> None:
    from tradeoff.objectives import open_counter

    assert open_counter("auto", "cpu", powercap_root=tmp_path) is None
    ctx = EvalContext(example_inputs=(torch.randn(1, 4),))
    assert EnergyMj(powercap_root=tmp_path).measure(nn.Linear(4, 2), ctx).source == "estimated"
    with pytest.raises(ValueError, match="energy source 'rapl' is not available here.*use 'auto' or 'model'"):
        open_counter("rapl", "cpu", powercap_root=tmp_path)
    with pytest.raises(ValueError, match="must be one of"):
        EnergyMj(source="wattmeter")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_nvml_counter_reads_gpu_energy() -> None:
    from tradeoff.objectives import open_counter

    counter = open_counter("auto", "cuda:0")
    if counter is None:
        pytest.skip("NVML energy is not available on this GPU (install nvidia-ml-py)")
    assert counter.read_mj() >= 0
