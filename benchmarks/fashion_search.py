"""A fashion-mnist search with default settings: the front, and what the knee-point config costs and gains.

Usage:  python benchmarks/fashion_search.py [--trials 40] [--backend auto] [--out benchmarks/results/fashion_search.json]

Runs ``tradeoff``'s defaults (sampler ``auto``, the default space, 200 distillation steps, batch 1 on
one thread) on the built-in ``fashion-mnist`` task, with one constraint: at most 1 point of accuracy
lost (``max_accuracy_drop = 0.01``), so the front holds only configs a user would accept. Then
reports, for every front member and for the knee point: accuracy drop (points), size ratio
(teacher / config, computed) and latency speed-up (teacher / config, measured: the trial's
interleaved ABBA ratio against the teacher, batch 1, one thread), and the form it executed as.

Targets, this 2-core CPU: (issue 7) a config with <= 1 point drop that is >= 4x smaller and >= 2x
faster; (issue 25) the **knee point** itself within 1 point, >= 8x smaller and >= 4x faster. Also
reported: the fastest front member within 1 point, and whether the CPU has VNNI (u8 x s8 dot products
into int32; without it the int8 activations use 7 bits, see ``tradeoff.spaces.int8``), since the int8
gain over fp32 differs between CPUs with and without it. The teacher is trained on first use
(cached); its training time is reported when it trains. ``--backend`` sets the spec's ``[target] backend``
(how int8 executes; ``auto``, the default, times both builders on the teacher once and keeps the faster):
a run with another backend is not the default search.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import optuna
import torch

from tradeoff.objectives import describe_device
from tradeoff.search import Runner
from tradeoff.spaces.cpu import has_vnni
from tradeoff.studies import load_task, parse_spec, record
from tradeoff.studies.record import DEPLOYABLE_FORM, FIGURES
from tradeoff.studies.results import baseline_trial, pick, ranked_front, study_hypervolume

MAX_DROP = 0.01  # the bar: at most 1 accuracy point below the teacher
KNEE_SMALLER, KNEE_FASTER = 8.0, 4.0  # issue 25's bar for the knee point (within MAX_DROP too)


def _row(trial: optuna.trial.FrozenTrial, base: dict[str, float]) -> dict[str, object]:
    figures = trial.user_attrs.get(FIGURES, {})
    acc, size, lat = trial.values[0], trial.values[1], trial.values[2]
    return {
        "trial": trial.number,
        "accuracy": round(acc, 4),
        "drop_points": round(100 * (base["accuracy"] - acc), 2),
        "size_bytes": int(size),
        "smaller": round(base["size_bytes"] / size, 2),
        "latency_ms": round(lat, 4),
        "faster": round(1 / figures["latency_ratio"], 2) if figures.get("latency_ratio") else None,
        "deployable_form": record.attrs(trial).get(DEPLOYABLE_FORM),
        "params": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in trial.params.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fashion_search.json"))
    parser.add_argument(
        "--backend", default="auto", choices=["auto", "inductor", "fx"], help="[target] backend (auto: the default)"
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    start = time.perf_counter()
    task = load_task("fashion-mnist")  # trains and caches the teacher on first use
    task_s = time.perf_counter() - start
    spec = parse_spec(
        {
            "study": {"name": "fashion-bench", "n_trials": args.trials, "seed": 0},
            "task": {"name": "fashion-mnist"},
            "constraints": {"max_accuracy_drop": MAX_DROP},
            "target": {"backend": args.backend},
        },
        "fashion_search.py",
    )

    def progress(event) -> None:  # one line per trial, as the CLI prints when not on a terminal
        values = event.values or {}
        print(
            f"trial {event.number:>3} {event.state:<8} done {event.done}/{event.total} front {event.front_size} "
            f"hv {event.hypervolume:.4f} acc {values.get('accuracy', float('nan')):.4f} "
            f"size {values.get('size_bytes', float('nan')):.0f} lat {values.get('latency_ms', float('nan')):.3f}",
            flush=True,
        )

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'fashion.db'}"
        search_start = time.perf_counter()
        study = Runner(spec, url, on_event=progress).run()
        search_s = time.perf_counter() - search_start
        base_trial = baseline_trial(study)
        base = {"accuracy": base_trial.values[0], "size_bytes": base_trial.values[1]}
        front = [_row(e.trial, base) for e in ranked_front(study)]
        knee = _row(pick(study, "knee").trial, base)
        hv = study_hypervolume(study)
        backend_choice = study.user_attrs.get(record.STUDY_BACKEND)  # what backend "auto" timed and kept

    meets = [r for r in front if r["drop_points"] <= 100 * MAX_DROP and r["smaller"] >= 4 and (r["faster"] or 0) >= 2]
    knee_met = (
        knee["drop_points"] <= 100 * MAX_DROP
        and knee["smaller"] >= KNEE_SMALLER
        and (knee["faster"] or 0) >= KNEE_FASTER
    )
    within = [r for r in front if r["drop_points"] <= 100 * MAX_DROP and r["faster"]]
    fastest = max(within, key=lambda r: r["faster"]) if within else None
    summary = {
        "machine": describe_device("cpu"),
        "vnni": has_vnni(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "teacher": {k: task.info.get(k) for k in ("teacher_val_accuracy", "teacher_trained_s", "teacher_recipe")},
        "task_load_s": round(task_s, 1),
        "search_s": round(search_s, 1),
        "trials": args.trials,
        "backend": args.backend,
        "backend_choice": backend_choice,
        "hypervolume": round(hv, 4),
        "knee": knee,
        "front": front,
        "target_met_by": [r["trial"] for r in meets],
        "knee_target_met": knee_met,
        "fastest_within_1pt": fastest,
    }
    print()
    print("| trial | accuracy | drop (pts) | size bytes | smaller | faster (b1) | deployable_form | knobs |")
    print("|---:|---:|---:|---:|---:|---:|---|---|")
    for r in front:
        mark = " (knee)" if r["trial"] == knee["trial"] else ""
        print(
            f"| {r['trial']}{mark} | {r['accuracy']:.4f} | {r['drop_points']:.2f} | {r['size_bytes']:,} | "
            f"{r['smaller']:.2f}x | {r['faster']}x | {r['deployable_form']} | {r['params']} |"
        )
    print()
    print(json.dumps({k: v for k, v in summary.items() if k != "front"}, indent=2))
    print(
        f"target (<= 1 pt drop, >= 4x smaller, >= 2x faster): {'PASS' if meets else 'FAIL'} {summary['target_met_by']}"
    )
    print(
        f"knee target (<= 1 pt drop, >= {KNEE_SMALLER:.0f}x smaller, >= {KNEE_FASTER:.0f}x faster): "
        f"{'PASS' if knee_met else 'FAIL'} (trial {knee['trial']}: {knee['drop_points']} pts, {knee['smaller']}x "
        f"smaller, {knee['faster']}x faster; CPU {'with' if summary['vnni'] else 'without'} VNNI)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
