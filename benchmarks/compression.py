"""What pruning and int8 buy on this machine: size and latency as ratios to fp32 eager, side by side in one run.

Usage:  python benchmarks/compression.py [--quick] [--out benchmarks/results/compression.json]

Models: the digits demo CNN (``DigitsCNN``, 1x8x8 inputs) and a CIFAR-style ResNet-18 defined here
(BasicBlocks [2, 2, 2, 2], widths 64-128-256-512, 3x32x32 inputs, 11.2 M parameters). Weights are
seeded random: size and latency do not depend on their values (activation ranges for int8 come
from random calibration batches of the input's distribution).

Configs of each model:
  * fp32 eager — the baseline every ratio is taken against;
  * fp32 compiled — inductor with freezing, no quantization: shows how much of int8's gain is the
    compiler's (context, not a target);
  * prune 50 % — structured (Torch-Pruning removes channels), runs eager fp32;
  * int8 — weights baked on the 8-bit grid, activations 8-bit, ``deployable_form`` (backend auto:
    PT2E + X86InductorQuantizer + torch.compile with freezing);
  * prune 50 % + int8 — both.
Each compiled candidate is built for the batch size it is timed at, as a trial with that target
batch size builds it; build (export, calibration, compile, warm-up) is never timed.

Size: ``size_bytes`` of the scored model at its weight widths (packed weights + per-channel
scales + fp32 rest), never the converted PT2E module's state dict, which still holds fp32 weights.
Latency: one thread, batch 1 and batch 32. ``measure_latency(candidate, x, reference=fp32 eager)``
times ABBA rounds of the candidate against the baseline until the 95 % CI of the median ratio is
within 2 % (or a time cap); that is repeated ``--repeats`` times, candidates in rotating order.
Reported: the median over repeats of the ratio (speed-up = 1 / ratio) with its min-max over
repeats; latency ms = the baseline's median ms x that ratio.

Targets (issue 3), checked at the end: ResNet-18 int8 >= 3.5x smaller and >= 1.5x faster at batch
1; ResNet-18 pruned 50 % + int8 >= 4x faster at batch 1.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tradeoff.objectives import describe_device, measure_latency, size_bytes
from tradeoff.spaces import ApplyContext, PruningConfig, QuantizationConfig, deployable_form, strip_activation_quant
from tradeoff.studies.architectures import BasicBlock, DigitsCNN  # the same block as the fashion-mnist teacher

BATCHES = (1, 32)  # latency at the interactive batch and at a throughput batch
THREADS = 1  # one thread: on this 2-vCPU machine the quietest and the fastest (docs/DESIGN.md)
CALIBRATION_BATCHES = 4  # of 16 inputs: a trial calibrates on a few training batches
PRUNE_RATIO = 0.5  # the "pruning 50 %"
TARGETS = (  # (model, config, figure, threshold, description) from issue 3
    ("resnet18", "int8", "smaller", 3.5, "ResNet-18 int8 >= 3.5x smaller"),
    ("resnet18", "int8", "speedup_b1", 1.5, "ResNet-18 int8 >= 1.5x faster at batch 1"),
    ("resnet18", "prune 50% + int8", "speedup_b1", 4.0, "ResNet-18 pruned 50% + int8 >= 4x faster at batch 1"),
)


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18: 3x3 stem without max-pool, stages of 2 blocks at 64-128-256-512 channels."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        stages, c_in = [], 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out)))
            c_in = c_out
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def compiled_fp32(model: nn.Module, x: torch.Tensor) -> tuple[Callable[..., Any], float]:
    """fp32 ``model`` compiled by inductor with freezing, warmed up at ``x``'s shape on THREADS threads."""
    import torch._inductor.config as inductor_config

    start = time.perf_counter()
    fn = torch.compile(copy.deepcopy(model).eval())
    with torch.no_grad(), inductor_config.patch(freezing=True):
        for _ in range(2):
            fn(x)

    def run(*args: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return fn(*args)

    return run, time.perf_counter() - start


class Callable_(nn.Module):
    """A plain callable as a module (``measure_latency`` calls ``.eval()`` on what it times)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


def build(name: str, model: nn.Module, sample: Callable[[int, int], torch.Tensor]) -> list[dict[str, Any]]:
    """Every config of one model: modules per batch size, size, and how each executes."""
    calib = [(sample(16, 100 + i), None) for i in range(CALIBRATION_BATCHES)]
    ctx = ApplyContext(example_inputs=(sample(2, 0),), train=calib)
    pruned = PruningConfig(ratio=PRUNE_RATIO).apply_(copy.deepcopy(model), ctx).eval()
    configs: list[dict[str, Any]] = [
        {"config": "fp32 eager", "deployable_form": "fp32", "backend": "eager", "size_bytes": size_bytes(model)},
        {"config": "fp32 compiled", "deployable_form": "fp32", "backend": "inductor", "size_bytes": size_bytes(model)},
        {"config": "prune 50%", "deployable_form": "fp32", "backend": "eager", "size_bytes": size_bytes(pruned)},
    ]
    configs[0]["modules"] = {b: model for b in BATCHES}
    configs[2]["modules"] = {b: pruned for b in BATCHES}
    configs[1]["modules"], configs[1]["build_s"] = {}, {}
    for b in BATCHES:
        fn, seconds = compiled_fp32(model, sample(b, 0))
        configs[1]["modules"][b], configs[1]["build_s"][b] = Callable_(fn), round(seconds, 1)
        log(f"{name}: fp32 compiled at batch {b} in {seconds:.1f} s")

    for label, base in (("int8", model), ("prune 50% + int8", pruned)):
        cfg = QuantizationConfig(weight_bits=8, activation_bits=8)
        scored = cfg.bake_(cfg.apply_(copy.deepcopy(base), ctx))
        fp32_form = strip_activation_quant(scored)
        bits = cfg.weight_bits_by_layer(fp32_form)
        entry: dict[str, Any] = {"config": label, "size_bytes": size_bytes(fp32_form, bits), "modules": {}}
        entry["build_s"] = {}
        for b in BATCHES:
            form = deployable_form(
                fp32_form,
                weight_bits=bits,
                activation_bits=8,
                example_inputs=(sample(b, 0),),
                calibration=[(x,) for x, _ in calib],
                threads=THREADS,
            )
            entry["modules"][b], entry["build_s"][b] = form.module, round(form.seconds, 1)
            entry.update(deployable_form=form.form, backend=form.backend, note=form.note)
            log(f"{name}: {label} at batch {b}: {form.form} via {form.backend}, built in {form.seconds:.1f} s")
        configs.append(entry)
    params = {"fp32": sum(p.numel() for p in model.parameters()), "pruned": sum(p.numel() for p in pruned.parameters())}
    for c in configs:
        c["model"], c["params"] = name, params["pruned" if c["config"].startswith("prune") else "fp32"]
    return configs


def time_model(
    configs: list[dict[str, Any]], sample: Callable[[int, int], torch.Tensor], repeats: int, max_time: float
) -> None:
    """Interleaved ratios to fp32 eager for every config and batch size, ``repeats`` times, rotating order."""
    base = configs[0]
    candidates = configs[1:]
    for b in BATCHES:
        x = (sample(b, 1),)
        ref = base["modules"][b]
        for c in configs:
            c.setdefault("runs", {})[b] = []
        base_ms: list[float] = []
        for r in range(repeats):
            order = candidates[r % len(candidates) :] + candidates[: r % len(candidates)]
            for c in order:
                m = measure_latency(c["modules"][b], x, threads=THREADS, reference=ref, max_time=max_time)
                c["runs"][b].append(
                    {k: m[k] for k in ("ratio", "ratio_ci_low", "ratio_ci_high", "median_ms", "reference_ms", "rounds")}
                )
                base_ms.append(m["reference_ms"])
                log(f"{c['model']} b{b} repeat {r}: {c['config']}: ratio {m['ratio']:.3f} ({m['rounds']} rounds)")
        ref_ms = statistics.median(base_ms)
        base["runs"][b] = [{"ratio": 1.0, "median_ms": ms} for ms in base_ms]
        for c in configs:
            ratios = [run["ratio"] for run in c["runs"][b]]
            ratio = statistics.median(ratios)
            c[f"ms_b{b}"] = ref_ms * ratio
            c[f"speedup_b{b}"] = 1 / ratio
            c[f"speedup_b{b}_range"] = (1 / max(ratios), 1 / min(ratios))


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | config | deployable_form | backend | size bytes | size ratio | latency ms b1 | speed-up b1 | "
        + "latency ms b32 | speed-up b32 |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in rows:
        lo1, hi1 = c["speedup_b1_range"]
        lo32, hi32 = c["speedup_b32_range"]
        lines.append(
            f"| {c['model']} | {c['config']} | {c['deployable_form']} | {c['backend']} | {c['size_bytes']:,} "
            f"| {c['size_ratio']:.3f} ({1 / c['size_ratio']:.2f}x smaller) | {c['ms_b1']:.3f} "
            f"| {c['speedup_b1']:.2f}x ({lo1:.2f}-{hi1:.2f}) | {c['ms_b32']:.2f} "
            f"| {c['speedup_b32']:.2f}x ({lo32:.2f}-{hi32:.2f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, short caps (a smoke run, ~noisy)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of every measurement (default 3; quick 1)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compression.json"))
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    max_time = 1.0 if args.quick else 6.0  # seconds per measurement before the CI stops it (min 6 rounds)

    torch.set_num_threads(THREADS)  # every first call (and any compile) at the thread count timed
    torch.manual_seed(0)
    models = {
        "digits-cnn": (
            DigitsCNN().eval(),
            lambda n, s: torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(s)),
        ),
        "resnet18": (
            ResNet18().eval(),
            lambda n, s: torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(s)),
        ),
    }
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for name, (model, sample) in models.items():
        configs = build(name, model, sample)
        time_model(configs, sample, repeats, max_time)
        for c in configs:
            c["size_ratio"] = c["size_bytes"] / configs[0]["size_bytes"]
            c["smaller"] = 1 / c["size_ratio"]
        rows.extend(configs)
    total = time.perf_counter() - start

    print(table(rows))
    results = []
    for model, config, figure, threshold, text in TARGETS:
        row = next(r for r in rows if r["model"] == model and r["config"] == config)
        ok = row[figure] >= threshold
        results.append({"target": text, "value": round(row[figure], 3), "threshold": threshold, "pass": ok})
        print(f"{'PASS' if ok else 'FAIL'}: {text}: {row[figure]:.2f}x")
    meta = {
        "machine": describe_device("cpu"),
        "torch": torch.__version__,
        "threads": THREADS,
        "repeats": repeats,
        "max_time_s": max_time,
        "date": datetime.date.today().isoformat(),
        "total_s": round(total, 1),
    }
    print(json.dumps(meta))
    out = [{k: v for k, v in r.items() if k != "modules"} for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "targets": results, "rows": out}, indent=2))


if __name__ == "__main__":
    main()
