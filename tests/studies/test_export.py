"""The export bundle of a real (small) study: files, faithful rebuild, standalone loading."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import tradeoff.studies.export as export_module  # noqa: E402
from tradeoff.search import Runner
from tradeoff.studies import ExportError, apply_config, export_bundle, load_config, parse_spec

SPEC = {
    "study": {"name": "bundle", "n_trials": 3, "seed": 0},
    "task": {"name": "tests.studies.user_task:make_task"},
    "space": {"distillation": {"steps": 10}, "quantization": {"weight_bits": [4, 8], "activation_bits": [8]}},
    # the inductor program (deployable.pt2, ONNX); under "auto" this host's timing may choose fx (fx_bundle below)
    "target": {"backend": "inductor"},
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 's.db'}"
    return Runner(parse_spec(SPEC), url).run()


@pytest.fixture(scope="module")
def bundle(study, tmp_path_factory):
    # a quantized candidate (every candidate of SPEC is: 8-bit activations), so the bundle carries an int8 program
    first = next(
        t for t in study.get_trials() if t.state.name == "COMPLETE" and t.user_attrs.get("role") == "candidate"
    )
    return export_bundle(study, tmp_path_factory.mktemp("out") / "best", rule=str(first.number)).parent


def test_bundle_holds_every_file_and_field(bundle) -> None:
    cfg = load_config(bundle / "config.json")
    timed_on = cfg["provenance"]["latency_ms"]["deployable_backend"]
    # fx: eager quantized modules, which torch.export cannot take: the program goes as TorchScript instead
    deployable = ["deployable.pt2"] if timed_on != "fx" else ["deployable.ts"]
    assert sorted(p.name for p in bundle.iterdir()) == sorted([
        "README.md", "config.json", "scored_model.pt2", "packed_weights.pt", "report.html", "state_dict.pt",
        *deployable,
    ])  # fmt: skip
    for field in ("recipe", "seed", "values", "baseline", "cost", "weights", "pick", "provenance", "spec", "versions"):
        assert field in cfg, field
    assert len(cfg["task"]["teacher_sha256"]) == 64
    assert cfg["rebuilt"] and all(row["ok"] for row in cfg["rebuilt"])
    readme = (bundle / "README.md").read_text()
    assert "| `scored_model.pt2` | the simulation" in readme and "| latency_ms |" in readme
    if timed_on != "fx":
        assert (
            'torch.export.load("deployable.pt2")' in readme
            and "| `deployable.pt2` | the program that was timed" in readme
        )
        assert "freezing=True" in readme and "dynamic=False" in readme  # how to get the measured speed
    rebuilt = {row["figure"] for row in cfg["rebuilt"]}
    assert {"accuracy", "deployable_accuracy", "size_bytes"} <= rebuilt  # both programs rebuilt and checked


def test_report_is_a_self_contained_plotly_page_marking_the_trial(bundle) -> None:
    html = (bundle / "report.html").read_text()
    cfg = json.loads((bundle / "config.json").read_text())
    assert "plotly" in html.lower() and f"exported: trial {cfg['trial']}" in html
    assert '<script src="http' not in html  # plotly.js is inlined: opens offline


def _save_reported_val(cfg: dict, folder) -> torch.Tensor:
    """Write the validation samples the trial's accuracy was reported on to ``folder / "val.pt"``, for a fresh
    interpreter to load; return their labels. The selection slice (``skipped_first``) is not among them."""
    from tests.studies.user_task import make_task

    task = make_task()
    skip = cfg["provenance"]["accuracy"].get("skipped_first", 0)
    x, y = torch.cat([b[0] for b in task.val])[skip:], torch.cat([b[1] for b in task.val])[skip:]
    torch.save({"x": x, "y": y}, folder / "val.pt")
    return y


def test_exported_model_loads_without_tradeoff_and_scores_like_the_trial(bundle, tmp_path) -> None:
    cfg = json.loads((bundle / "config.json").read_text())
    y = _save_reported_val(cfg, tmp_path)
    assert len(y) == cfg["provenance"]["accuracy"]["samples"]
    code = (
        "import sys, torch\n"
        f"m = torch.export.load({str(bundle / 'scored_model.pt2')!r}).module()\n"
        f"d = torch.load({str(tmp_path / 'val.pt')!r})\n"
        "acc = (m(d['x']).argmax(-1) == d['y']).float().mean().item()\n"
        "assert not any(k.startswith('tradeoff') for k in sys.modules), 'tradeoff was imported'\n"
        "print(acc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(cfg["values"]["accuracy"], abs=1e-6)


def test_packed_weights_are_the_size_the_trial_counted(bundle) -> None:
    cfg = json.loads((bundle / "config.json").read_text())
    packed = torch.load(bundle / "packed_weights.pt")
    payload = sum(t.numel() * t.element_size() for k, t in packed.items() if not k.endswith(".shape"))
    assert payload == cfg["figures"]["size_bytes"]


def test_the_timed_program_loads_without_tradeoff_runs_any_batch_and_scores_like_the_trial(bundle, tmp_path) -> None:
    cfg = json.loads((bundle / "config.json").read_text())
    if not (bundle / "deployable.pt2").exists():
        pytest.skip(f"timed on {cfg['provenance']['latency_ms']['deployable_backend']}: no exportable program")
    y = _save_reported_val(cfg, tmp_path)
    code = (
        "import sys, json, torch\n"
        "import torch._inductor.config as inductor_config\n"
        "import torch.ao.quantization.fx._decomposed\n"  # plain torch: the quantize/dequantize ops
        f"m = torch.export.load({str(bundle / 'deployable.pt2')!r}).module()\n"
        f"d = torch.load({str(tmp_path / 'val.pt')!r})\n"
        "acc = lambda out: (out.argmax(-1) == d['y']).float().mean().item()\n"
        "with torch.no_grad():\n"
        "    eager_all = acc(m(d['x']))\n"
        "    eager_one = acc(torch.cat([m(d['x'][i : i + 1]) for i in range(len(d['y']))]))\n"
        "    with inductor_config.patch(freezing=True):\n"
        "        fast = torch.compile(m, dynamic=False)\n"
        "        one = acc(torch.cat([fast(d['x'][i : i + 1]) for i in range(len(d['y']))]))\n"
        "        all_ = acc(fast(d['x']))\n"
        "        big = fast(d['x'].repeat(8, 1))\n"  # a large batch (208 rows): runs, and agrees with the others
        "        assert torch.equal(big.argmax(-1), fast(d['x']).argmax(-1).repeat(8))\n"
        "assert not any(k.startswith('tradeoff') for k in sys.modules), 'tradeoff was imported'\n"
        "print(json.dumps([eager_all, eager_one, one, all_]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    eager_all, eager_one, compiled_one, compiled_all = json.loads(done.stdout.strip().splitlines()[-1])
    one_sample = 1 / len(y)
    # compiled at batch 1, as it was timed: the accuracy the front holds
    assert compiled_one == pytest.approx(cfg["figures"]["deployable_accuracy"], abs=1e-6)
    # at another batch, and uncompiled (quantize/dequantize in fp32), within a sample of it
    for other in (compiled_all, eager_all, eager_one):
        assert abs(other - compiled_one) <= one_sample + 1e-6


@pytest.fixture(scope="module")
def fx_bundle(tmp_path_factory):
    """A study whose int8 programs ran on the fx backend ([target] backend = "fx"), and its bundle."""
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'fx.db'}"
    study = Runner(parse_spec({**SPEC, "study": {**SPEC["study"], "name": "fx"}, "target": {"backend": "fx"}}), url).run()
    first = next(
        t for t in study.get_trials() if t.state.name == "COMPLETE" and t.user_attrs.get("role") == "candidate"
    )
    return export_bundle(study, tmp_path_factory.mktemp("out") / "fx", rule=str(first.number)).parent


def test_an_fx_program_is_exported_as_torchscript_that_runs_any_batch_and_scores_like_the_trial(
    fx_bundle, tmp_path
) -> None:
    cfg = load_config(fx_bundle / "config.json")
    assert cfg["provenance"]["latency_ms"]["deployable_backend"] == "fx" and cfg["deployable_form"] == "int8"
    assert cfg["files"]["deployable_torchscript"] == "deployable.ts" and "deployable" not in cfg["files"]
    assert not (fx_bundle / "deployable.pt2").exists()
    readme = (fx_bundle / "README.md").read_text()
    assert "| `deployable.ts` | the program that was timed" in readme and 'torch.jit.load("deployable.ts")' in readme
    y = _save_reported_val(cfg, tmp_path)
    code = (
        "import sys, json, torch\n"
        f"m = torch.jit.load({str(fx_bundle / 'deployable.ts')!r})\n"
        f"d = torch.load({str(tmp_path / 'val.pt')!r})\n"
        "names = {n.kind() for n in m.inlined_graph.nodes()}\n"
        "acc = lambda out: (out.argmax(-1) == d['y']).float().mean().item()\n"
        "with torch.no_grad():\n"
        "    one = acc(torch.cat([m(d['x'][i : i + 1]) for i in range(len(d['y']))]))\n"
        "    whole = acc(m(d['x']))\n"
        "assert not any(k.startswith('tradeoff') for k in sys.modules), 'tradeoff was imported'\n"
        "print(json.dumps([one, whole, sorted(k for k in names if k.startswith('quantized::'))]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one, whole, quantized_ops = json.loads(done.stdout.strip().splitlines()[-1])
    assert "quantized::linear" in quantized_ops  # the int8 kernels themselves, not an fp32 stand-in
    # one sample at a time, as the trial timed and scored it: the accuracy the front holds
    assert one == pytest.approx(cfg["figures"]["deployable_accuracy"], abs=1e-6)
    assert abs(whole - one) <= 1 / len(y) + 1e-6  # another batch size runs, within a sample of it


def test_apply_reproduces_the_exported_figures(bundle) -> None:
    rebuilt, rows = apply_config(load_config(bundle / "config.json"))
    figures = {r["figure"] for r in rows}
    assert figures >= {"accuracy", "deployable_accuracy", "size_bytes", "latency_ratio"}, rows
    assert all(r["ok"] for r in rows), rows


def test_a_changed_teacher_fails_the_export_and_leaves_nothing(study, tmp_path, monkeypatch) -> None:
    real = export_module.load_task

    def tampered(name, kwargs=None):
        task = real(name, kwargs)
        with torch.no_grad():
            for p in task.model.parameters():
                p.add_(0.5)
        return task

    monkeypatch.setattr(export_module, "load_task", tampered)
    with pytest.raises(ExportError, match="does not match the trial|weights hash differs"):
        export_bundle(study, tmp_path / "b", rule="cost")
    assert list(tmp_path.iterdir()) == []


def test_load_config_rejects_other_files(tmp_path) -> None:
    (tmp_path / "c.json").write_text('{"format": "other/1"}')
    with pytest.raises(ExportError, match="not a tradeoff config"):
        load_config(tmp_path / "c.json")
    with pytest.raises(ExportError, match="cannot read"):
        load_config(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def onnx_bundle(study, bundle, tmp_path_factory):
    trial = json.loads((bundle / "config.json").read_text())["trial"]
    out = tmp_path_factory.mktemp("onnx") / "best"
    return export_bundle(study, out, rule=str(trial), formats=("torch", "onnx")).parent


def test_onnx_export_is_verified_in_onnx_runtime_and_timed_beside_torch(onnx_bundle, tmp_path) -> None:
    cfg = json.loads((onnx_bundle / "config.json").read_text())
    onnx = cfg["onnx"]
    assert (onnx_bundle / "deployable.onnx").exists() and cfg["files"]["onnx"] == "deployable.onnx"
    assert onnx["ok"] and abs(onnx["accuracy"] - cfg["figures"]["deployable_accuracy"]) <= onnx["tolerance"]
    assert onnx["ort_ms"] > 0 and onnx["torch_ms"] > 0 and onnx["faster"] in ("onnxruntime", "torch")
    assert onnx["ratio"] == pytest.approx(onnx["ort_ms"] / onnx["torch_ms"], rel=0.5)  # median of ratios, near
    readme = (onnx_bundle / "README.md").read_text()
    assert "`deployable.onnx`" in readme and f"**{onnx['faster']} is faster here**" in readme
    # in a fresh interpreter with ONNX Runtime only: the file loads, runs the validation set, scores as stored
    _save_reported_val(cfg, tmp_path)
    code = (
        "import sys, torch, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(onnx_bundle / 'deployable.onnx')!r}, providers=['CPUExecutionProvider'])\n"
        f"d = torch.load({str(tmp_path / 'val.pt')!r})\n"
        "name = s.get_inputs()[0].name\n"
        "out = torch.from_numpy(s.run(None, {name: d['x'].numpy()})[0])\n"
        "one = torch.cat([torch.from_numpy(s.run(None, {name: d['x'][i : i + 1].numpy()})[0]) for i in range(len(d['y']))])\n"
        "assert not any(k.startswith('tradeoff') for k in sys.modules), 'tradeoff was imported'\n"
        "print((out.argmax(-1) == d['y']).float().mean().item(), (one.argmax(-1) == d['y']).float().mean().item())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    whole, one_by_one = map(float, done.stdout.split())
    assert whole == pytest.approx(onnx["accuracy"], abs=1e-6) and one_by_one == pytest.approx(whole, abs=1e-6)


def test_onnx_errors_say_what_to_do(monkeypatch, tmp_path) -> None:
    import importlib.util

    from tradeoff.studies.onnx_export import OnnxError, require_onnx, write_onnx

    with pytest.raises(OnnxError, match="fx int8 backend.*backend = 'inductor'"):
        write_onnx(None, (torch.zeros(1, 3),), tmp_path / "m.onnx", "int8")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else real(name))
    with pytest.raises(OnnxError, match=r"needs onnxruntime.*pip install 'tradeoff\[onnx\]'"):
        require_onnx()
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow  # builds and compiles an int8 ResNet twice (here and in the fresh interpreter): ~30-60 s
def test_the_exported_int8_program_runs_faster_than_fp32_where_int8_pays(tmp_path) -> None:
    """The compression benchmark's kind of network (a ResNet of BasicBlocks, ~41 M MACs an image, where
    int8 measured 3.2x faster at batch 1 here): its exported int8 program, loaded and compiled in a fresh
    interpreter without tradeoff as the bundle's README says, beats the fp32 model timed beside it."""
    from tradeoff.spaces import ApplyContext, QuantizationConfig, Recipe, compress
    from tradeoff.studies.architectures import FashionResNet
    from tradeoff.studies.export import export_program

    torch.manual_seed(0)
    model = FashionResNet(width=64).eval()
    x = torch.randn(1, 1, 28, 28)
    train = [(torch.randn(16, 1, 28, 28), torch.zeros(16, dtype=torch.long)) for _ in range(2)]
    recipe = Recipe(quantization=QuantizationConfig(weight_bits=8, activation_bits=8))
    built = compress(recipe, model, ApplyContext((x,), train=train, seed=0, threads=1, backend="inductor"))
    assert built.deployable.form == "int8" and built.deployable.program is not None
    torch.export.save(export_program(built.deployable.program, (x,)), tmp_path / "deployable.pt2")
    torch.export.save(export_program(model, (x,)), tmp_path / "fp32.pt2")
    code = (
        "import sys, json, torch, torch.utils.benchmark as tb\n"
        "import torch._inductor.config as inductor_config\n"
        "import torch.ao.quantization.fx._decomposed\n"
        "torch.set_num_threads(1)\n"
        "x = torch.randn(1, 1, 28, 28)\n"
        "fp32 = torch.export.load('fp32.pt2').module()\n"
        "int8 = torch.export.load('deployable.pt2').module()\n"
        "with inductor_config.patch(freezing=True), torch.no_grad():\n"
        "    fast = torch.compile(int8, dynamic=False)\n"
        "    fast(x); fast(x)\n"
        "    times = {'int8': [], 'fp32': []}\n"
        "    for _ in range(5):  # interleaved rounds: drift on a shared machine hits both alike\n"
        "        for name, m in (('int8', fast), ('fp32', fp32)):\n"
        "            times[name].append(tb.Timer('m(x)', globals={'m': m, 'x': x}).blocked_autorange(min_run_time=0.2).median)\n"
        "assert not any(k.startswith('tradeoff') for k in sys.modules), 'tradeoff was imported'\n"
        "print(json.dumps({k: sorted(v)[2] for k, v in times.items()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    medians = json.loads(done.stdout.strip().splitlines()[-1])
    assert medians["int8"] < medians["fp32"] / 1.3, medians  # 3.2x measured; 1.3x leaves room for a noisy neighbour


def test_a_16_bit_program_exports_as_the_cast_it_executes(tmp_path) -> None:
    """Where the CPU has native 16-bit kernels the deployable form is the model cast to bf16/fp16
    (this machine has none, so studies here deploy 16 bits as fp32); its program exports and loads."""
    import time as _time

    from tradeoff.spaces.deploy import _half
    from tradeoff.spaces.widths import WEIGHT_LAYERS
    from tradeoff.studies.export import export_program

    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    layers = {n: m for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)}
    built = _half(model, list(layers), layers, "bf16", _time.perf_counter(), [])
    assert built.form == "bf16" and built.program is built.module
    torch.export.save(export_program(built.program, (torch.randn(1, 6),)), tmp_path / "deployable.pt2")
    loaded = torch.export.load(tmp_path / "deployable.pt2").module()
    x = torch.randn(5, 6)
    with torch.no_grad():
        out = loaded(x)
        assert out.dtype == torch.float32 and torch.equal(out, built.module(x))  # bf16 inside, fp32 out
        assert not torch.equal(out, model(x))  # the arithmetic really is 16-bit
