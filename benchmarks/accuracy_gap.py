"""How far the accuracy of the program that runs is from the scored model's (issue 27).

Usage:  python benchmarks/accuracy_gap.py [--out benchmarks/results/accuracy_gap.json]
        python benchmarks/accuracy_gap.py --runs demo:12 examples/pretrained_cnn.toml:10

Each run is a short search with the spec's defaults (its trial budget cut to the number given, one
worker, a fresh SQLite study in a temporary folder). Every completed trial with a quantized recipe
stores both accuracies on the same validation samples: the scored model's (weights on their grid,
activations fake-quantized in fp32) and its deployable form's (int8 through PT2E + inductor where
the widths allow, a 16-bit cast, or fp32 without activation fake-quant), scored at the batch it was
built and timed at. The table gives, per run, how many trials have both, the gap (deployable less
scored) in points: mean, smallest and largest, and how many differ by more than half a point (the
ones ``show`` and ``pareto`` flag).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import torch
from optuna.trial import TrialState

from tradeoff.objectives import describe_device
from tradeoff.search import Runner
from tradeoff.studies import demo_spec, parse_spec, record
from tradeoff.studies.spec import demo_spec_text

ROOT = Path(__file__).resolve().parents[1]
RUNS = (  # spec (``demo`` or a TOML path from the repository root) : trials, baseline included
    "demo:16",  # digits, the README's demo
    "examples/pretrained_cnn.toml:12",  # a depthwise-separable network trained elsewhere
    "examples/tabular_mlp.toml:10",  # an MLP on tabular data
    "examples/fashion_resnet.toml:8",  # Fashion-MNIST, a residual CNN: 18-47 s a trial
)


def spec_data(name: str) -> dict[str, Any]:
    if name == "demo":
        return tomllib.loads(demo_spec_text())
    return tomllib.loads((ROOT / name).read_text(encoding="utf-8"))


def run(name: str, trials: int, folder: Path) -> dict[str, Any]:
    data = spec_data(name)
    data["study"] = {**data["study"], "n_trials": trials, "name": f"gap-{Path(name).stem}"}
    data["search"] = {**data.get("search", {}), "workers": 1}
    spec = parse_spec(data, name)
    start = time.perf_counter()
    study = Runner(spec, f"sqlite:///{folder / (Path(name).stem + '.db')}").run()
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        f = record.attrs(t).get(record.FIGURES, {})
        if "accuracy_gap" in f:
            rows.append(
                {
                    "trial": t.number,
                    "form": record.attrs(t).get(record.DEPLOYABLE_FORM),
                    "scored": f["scored_accuracy"],
                    "deployable": f["deployable_accuracy"],
                    "gap": f["accuracy_gap"],
                    "samples": record.provenance_of(t, "accuracy").get("samples"),
                }
            )
    gaps = [100 * r["gap"] for r in rows]
    return {
        "run": name,
        "trials": trials,
        "with_both": len(rows),
        "int8": sum(1 for r in rows if str(r["form"]).startswith("int8")),
        "mean_pt": statistics.fmean(gaps) if gaps else None,
        "min_pt": min(gaps) if gaps else None,
        "max_pt": max(gaps) if gaps else None,
        "flagged": sum(1 for g in gaps if abs(g) > 100 * record.ACCURACY_GAP_FLAG),
        "samples": rows[0]["samples"] if rows else None,
        "seconds": round(time.perf_counter() - start, 1),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), help="SPEC:TRIALS, SPEC = demo or a TOML path")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy_gap.json"))
    args = parser.parse_args()
    demo_spec()  # the demo spec parses (fails early otherwise)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.runs:
            name, _, trials = item.rpartition(":")
            print(f"{name}: {trials} trials ...", file=sys.stderr, flush=True)
            results.append(run(name, int(trials), Path(tmp)))

    def pt(v: float | None) -> str:
        return "-" if v is None else f"{v:+.2f}"

    print("| run | trials | with both accuracies (int8) | samples | gap mean | gap min | gap max | > 0.5 pt |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['run']} | {r['trials']} | {r['with_both']} ({r['int8']}) | {r['samples']} | {pt(r['mean_pt'])} | "
            f"{pt(r['min_pt'])} | {pt(r['max_pt'])} | {r['flagged']} |"
        )
    meta = {
        "machine": describe_device("cpu"),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }
    print(json.dumps(meta))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
