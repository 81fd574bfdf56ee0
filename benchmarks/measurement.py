"""How repeatable is latency? Measure the same 20 configs twice in one run and compare the passes.

Usage:  python benchmarks/measurement.py [--configs 20] [--load] [--out benchmarks/results/measurement.json]

Configs: the digits teacher structurally pruned at 20 ratios from 0 to 0.9 (what latency sees;
fine-tuning does not change it). Each pass measures every config two ways, side by side:
  * tradeoff: ``measure_latency`` interleaved with the teacher (ABBA rounds until the 95 % CI of
    the median ratio is within 2 %, cap 3 s) — the figure trials store is baseline x this ratio;
  * naive: one ``blocked_autorange`` median of the config alone (what a hand-written script does).
Pass 2 visits the configs in reverse order, so slow drift cannot line up with config order.
Reported: Spearman rank correlation of the two passes (target >= 0.9 for tradeoff's figure on this
2-core machine), median relative difference between passes, median relative CI half-width.

``--load``: pass 2 runs while a neighbour process does what a second tradeoff worker does on the
other core ([search] workers): fine-tune a copy of the teacher at one thread, non-stop. Also
reported then: the median signed difference loaded - quiet of each figure (a bias the load puts
on it) beside the median absolute one, so the ratio trials store can be checked under that load.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch.utils import benchmark

from tradeoff.objectives import describe_device, measure_latency
from tradeoff.spaces import ApplyContext, PruningConfig, Recipe, compress
from tradeoff.studies import load_task, shared_inputs


def neighbour(stop: multiprocessing.synchronize.Event, ready: multiprocessing.synchronize.Event) -> None:
    """What a second worker does meanwhile: fine-tune a copy of the digits teacher at one thread."""
    torch.set_num_threads(1)
    task = load_task("digits")
    batches = shared_inputs(task, 1).train
    model = copy.deepcopy(task.model).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ready.set()
    while not stop.is_set():
        for inputs, targets in batches:
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if stop.is_set():
                break


def naive_ms(model: torch.nn.Module, inputs: tuple) -> float:
    timer = benchmark.Timer(
        "with torch.no_grad(): m(*x)", globals={"m": model, "x": inputs, "torch": torch}, num_threads=1
    )
    return timer.blocked_autorange(min_run_time=0.2).median * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=20)
    parser.add_argument("--load", action="store_true", help="pass 2 beside a neighbour fine-tuning on the other core")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/measurement.json"))
    args = parser.parse_args()

    task = load_task("digits")
    x = task.example_inputs
    ratios = np.linspace(0.0, 0.9, args.configs).round(3).tolist()
    models = [compress(Recipe(pruning=PruningConfig(ratio=r)), task.model, ApplyContext(x)).deployable.module for r in ratios]

    passes: list[dict[str, list[float]]] = []
    start = time.perf_counter()
    ctx = multiprocessing.get_context("fork")
    stop, ready = ctx.Event(), ctx.Event()
    for p in range(2):
        order = range(len(models)) if p == 0 else reversed(range(len(models)))
        load = None
        if p == 1 and args.load:
            load = ctx.Process(target=neighbour, args=(stop, ready), daemon=True)
            load.start()
            ready.wait(120)
        res: dict[str, list[float]] = {
            "ratio": [0.0] * len(models),
            "naive_ms": [0.0] * len(models),
            "ci": [0.0] * len(models),
            "seconds": [0.0] * len(models),
        }
        for i in order:
            t0 = time.perf_counter()
            r = measure_latency(models[i], x, reference=task.model)
            res["seconds"][i] = time.perf_counter() - t0
            res["ratio"][i] = r["ratio"]
            res["ci"][i] = r["ci_halfwidth"]
            res["naive_ms"][i] = naive_ms(models[i], x)
        if load is not None:
            stop.set()
            load.join()
        passes.append(res)
    total = time.perf_counter() - start

    def rel_diff(key: str) -> float:
        a, b = np.array(passes[0][key]), np.array(passes[1][key])
        return float(np.median(np.abs(a - b) / ((a + b) / 2)))

    def bias(key: str) -> float:
        a, b = np.array(passes[0][key]), np.array(passes[1][key])
        return float(np.median((b - a) / a))

    summary = {
        "machine": describe_device("cpu"),
        "torch": torch.__version__,
        "configs": len(models),
        "pass_2_loaded": args.load,
        "spearman_tradeoff_ratio": float(spearmanr(passes[0]["ratio"], passes[1]["ratio"]).statistic),
        "spearman_naive_ms": float(spearmanr(passes[0]["naive_ms"], passes[1]["naive_ms"]).statistic),
        "median_pass_difference_tradeoff": rel_diff("ratio"),
        "median_pass_difference_naive": rel_diff("naive_ms"),
        "median_signed_difference_tradeoff": bias("ratio"),  # pass 2 - pass 1, relative
        "median_signed_difference_naive": bias("naive_ms"),
        "median_ci_halfwidth": float(np.median(passes[0]["ci"] + passes[1]["ci"])),
        "median_seconds_per_measurement": statistics.median(passes[0]["seconds"] + passes[1]["seconds"]),
        "total_s": round(total, 1),
    }
    print("| pruning ratio | ratio pass 1 | ratio pass 2 | naive ms pass 1 | naive ms pass 2 |")
    print("|---:|---:|---:|---:|---:|")
    for i, r in enumerate(ratios):
        print(
            f"| {r:.3f} | {passes[0]['ratio'][i]:.3f} | {passes[1]['ratio'][i]:.3f} | "
            f"{passes[0]['naive_ms'][i]:.3f} | {passes[1]['naive_ms'][i]:.3f} |"
        )
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "ratios": ratios, "passes": passes}, indent=2))


if __name__ == "__main__":
    main()
