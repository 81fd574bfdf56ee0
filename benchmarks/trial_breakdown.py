"""Where a trial's time goes: run the demo spec and split each trial's wall time by phase.

Usage:  python benchmarks/trial_breakdown.py [--trials 30] [--out benchmarks/results/trial_breakdown.json]

Runs the shipped demo spec (digits) into a fresh SQLite file in a temporary folder, then reads the
per-phase seconds every trial stores (prune, quantize, distil, deploy, measure) and each trial's wall
time from Optuna's start/complete stamps. The teacher's forward passes inside distillation are timed
by hooks on the teacher itself (students are copies and are not counted): with the teacher-output
cache that time is zero. Targets (issue 2, this 2-core CPU): median trial < 10 s and a
30-trial demo < 6 minutes. The figures are wall-clock on this machine and noisy (1-20 % between runs).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch

from tradeoff.objectives import describe_device
from tradeoff.search import Runner
from tradeoff.search import runner as runner_module
from tradeoff.spaces import DistillationConfig
from tradeoff.studies import demo_spec
from tradeoff.studies.record import ROLE, SECONDS

PHASES = ("prune", "quantize", "distil", "deploy", "measure")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/trial_breakdown.json"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    teacher_s = {"distil": 0.0, "calls": 0}
    in_distillation = {"on": False}
    real_load, real_distil = runner_module.load_task, DistillationConfig.apply_

    def load_task(*a, **k):  # hook the teacher the runner builds
        task = real_load(*a, **k)
        teacher = task.model
        started: list[float] = []

        def pre(module, _inputs):
            if module is teacher and in_distillation["on"]:
                started.append(time.perf_counter())

        def post(module, _inputs, _out):
            if module is teacher and in_distillation["on"] and started:
                teacher_s["distil"] += time.perf_counter() - started.pop()
                teacher_s["calls"] += 1

        teacher.register_forward_pre_hook(pre)
        teacher.register_forward_hook(post)
        return task

    def distil(self, model, ctx):
        in_distillation["on"] = True
        try:
            return real_distil(self, model, ctx)
        finally:
            in_distillation["on"] = False

    runner_module.load_task = load_task
    DistillationConfig.apply_ = distil
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        start = time.perf_counter()
        study = Runner(demo_spec(), url, n_trials=args.trials).run()
        total_s = time.perf_counter() - start
        rows = []
        for t in study.get_trials(deepcopy=False):
            if t.datetime_complete is None:
                continue
            sec = t.user_attrs.get(SECONDS, {})
            rows.append(
                {
                    "trial": t.number,
                    "role": t.user_attrs.get(ROLE),
                    "state": t.state.name,
                    "wall_s": (t.datetime_complete - t.datetime_start).total_seconds(),
                    **{p: sec.get(p, 0.0) for p in PHASES},
                }
            )

    candidates = [r for r in rows if r["role"] == "candidate" and r["state"] == "COMPLETE"]
    summary = {
        "machine": describe_device("cpu"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "trials": len(rows),
        "total_s": round(total_s, 1),
        "median_trial_s": round(statistics.median(r["wall_s"] for r in candidates), 2),
        **{f"median_{p}_s": round(statistics.median(r[p] for r in candidates), 3) for p in PHASES},
        "teacher_forward_in_distillation_s": round(teacher_s["distil"], 4),  # measured by hooks on the teacher
        "teacher_forward_in_distillation_calls": teacher_s["calls"],
    }
    print("| trial | wall s | " + " | ".join(PHASES) + " |")
    print("|---:|---:|" + "---:|" * len(PHASES))
    for r in rows:
        print(
            f"| {r['trial']}{' (baseline)' if r['role'] == 'baseline' else ''} | {r['wall_s']:.2f} | "
            + " | ".join(f"{r[p]:.3f}" for p in PHASES)
            + " |"
        )
    print()
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "trials": rows}, indent=2))


if __name__ == "__main__":
    main()
