"""How repeatable is latency? Measure the same 20 configs twice in one run and compare the passes.

Usage:  python benchmarks/measurement.py [--configs 20] [--out benchmarks/results/measurement.json]

Configs: the digits teacher structurally pruned at 20 ratios from 0 to 0.9 (what latency sees;
fine-tuning does not change it). Each pass measures every config two ways, side by side:
  * tradeoff: ``measure_latency`` interleaved with the teacher (ABBA rounds until the 95 % CI of
    the median ratio is within 2 %, cap 3 s) — the figure trials store is baseline x this ratio;
  * naive: one ``blocked_autorange`` median of the config alone (what a hand-written script does).
Pass 2 visits the configs in reverse order, so slow drift cannot line up with config order.
Reported: Spearman rank correlation of the two passes (target >= 0.9 for tradeoff's figure on this
2-core machine), median relative difference between passes, median relative CI half-width.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch.utils import benchmark

from tradeoff.objectives import describe_device, measure_latency
from tradeoff.spaces import ApplyContext, PruningConfig, Recipe, compress
from tradeoff.studies.tasks import digits


def naive_ms(model: torch.nn.Module, inputs: tuple) -> float:
    timer = benchmark.Timer(
        "with torch.no_grad(): m(*x)", globals={"m": model, "x": inputs, "torch": torch}, num_threads=1
    )
    return timer.blocked_autorange(min_run_time=0.2).median * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/measurement.json"))
    args = parser.parse_args()

    task = digits()
    x = task.example_inputs
    ratios = np.linspace(0.0, 0.9, args.configs).round(3).tolist()
    models = [compress(Recipe(pruning=PruningConfig(ratio=r)), task.model, ApplyContext(x)).executable for r in ratios]

    passes: list[dict[str, list[float]]] = []
    start = time.perf_counter()
    for p in range(2):
        order = range(len(models)) if p == 0 else reversed(range(len(models)))
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
        passes.append(res)
    total = time.perf_counter() - start

    def rel_diff(key: str) -> float:
        a, b = np.array(passes[0][key]), np.array(passes[1][key])
        return float(np.median(np.abs(a - b) / ((a + b) / 2)))

    summary = {
        "machine": describe_device("cpu"),
        "torch": torch.__version__,
        "configs": len(models),
        "spearman_tradeoff_ratio": float(spearmanr(passes[0]["ratio"], passes[1]["ratio"]).statistic),
        "spearman_naive_ms": float(spearmanr(passes[0]["naive_ms"], passes[1]["naive_ms"]).statistic),
        "median_pass_difference_tradeoff": rel_diff("ratio"),
        "median_pass_difference_naive": rel_diff("naive_ms"),
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
