"""Fine-tuning networks trained elsewhere: tradeoff's old fine-tuning defaults against the new (issue 26).

Usage:  python benchmarks/pretrained.py [--quick] [--out benchmarks/results/pretrained.json]

Networks ("trained elsewhere" are built by ``examples/pretrained_cnn.py``: SGD + Nesterov at a
one-cycle peak of 0.1, batches of 256, label smoothing, strong augmentation; tradeoff gets 350
augmented views in batches of 32 to fine-tune on, and scores top-1 *agreement* with the network's
own fp32 predictions on clean held-out images):

* ``mobilenet-fashion``: TinyMobileNet (width 24, strided stem, depthwise-separable, ReLU6) on Fashion-MNIST
  (pretrained on a 20k subset; scored on the first 2,000 test images);
* ``resnet-fashion``: FashionResNet (width 16) by the same recipe and data;
* ``mobilenet-digits``: TinyMobileNet (width 32) on digits (360 held-out images);
* ``digits``: the built-in task as it is (its own Adam-trained teacher, 23 batches of 64, labels);
* ``fashion-mnist-reduced``: the built-in task reduced to ``train_size = 20000, val_size = 2000,
  width = 32, epochs = 2`` (its teacher trained once, ~2 min; all 20k images are its fine-tuning
  data, labels).

Recipes: int8 weights with fp32 activations; int8 weights and activations; 10 % of the channels
pruned (fp32); 50 % pruned with int8 weights; 75 % pruned (fp32). Each runs through the real trial pipeline
(``evaluate_recipe``: compress, measure, fine-tune, finish), seeded, at T = 4, alpha = 0.5, with

* the OLD defaults: ``[space.distillation] lr = 0.001, batchnorm = "train", schedule = "constant"``
  and ``[search] keep_better = false``;
* the NEW defaults: ``lr = "auto"`` (derived once per network by the range test),
  ``batchnorm = "auto"``, ``schedule = "auto"`` (each student near the teacher gets frozen
  BatchNorm, the derived rate and warm-up + cosine; a student far from it gets BatchNorm updated,
  ``recovery_lr`` = 0.001 and one rate), ``keep_better = true``; spelled out, so that the comparison
  stays what it says whatever the spec's defaults are at the time (the footer prints them),

for 20 and 200 steps. Reported: the teacher's score, the compressed model's zero-shot score (no
fine-tuning), the final score under each, the NEW run's regime (``near``/``far``) and whether it
kept its fine-tuned weights (``ft``) or its weights from before fine-tuning (``zs``: fine-tuning made
them worse on the selection slice). Both split the data alike (``select_on = "validation"``, the
default): every training batch is tuned on, the first fifth of the validation samples (at most
``rung_val_size``) judges fine-tuning, and every score here is on the rest.

The deployable form is built eagerly by default (``--backend eager``: no ``torch.compile``), since
accuracy is the scored (fake-quantized) model's whatever form it executes as; latency is still
timed, as in every trial, but not reported here.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from tradeoff.objectives import describe_device
from tradeoff.search import TrialEnv, evaluate_recipe
from tradeoff.search.trial import with_baseline
from tradeoff.spaces import DistillationConfig, PruningConfig, QuantizationConfig, Recipe
from tradeoff.studies import load_task, parse_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = f"{ROOT / 'examples' / 'pretrained_cnn.py'}:make_task"  # absolute: runs from any directory
THREADS = 1  # one thread: the quietest on this shared 2-core machine, and what trials run at by default
SEED = 0  # every trial and the range test seeded alike, so old and new differ only in their defaults
TEMPERATURE, ALPHA = 4.0, 0.5  # the distillation config's own defaults: neither is what issue 26 is about

NETWORKS: dict[str, tuple[str, dict[str, Any]]] = {  # name -> (task reference, task keyword arguments)
    "mobilenet-fashion": (EXAMPLE, {"arch": "mobilenet", "data": "fashion-mnist", "metric": "agreement"}),
    "resnet-fashion": (EXAMPLE, {"arch": "resnet", "data": "fashion-mnist", "metric": "agreement"}),
    "mobilenet-digits": (EXAMPLE, {"arch": "mobilenet", "data": "digits", "metric": "agreement"}),
    "digits": ("digits", {}),
    # reduced so that its teacher trains in ~2 min and its 20k fine-tuning images fit a quick look
    "fashion-mnist-reduced": ("fashion-mnist", {"train_size": 20000, "val_size": 2000, "width": 32, "epochs": 2}),
}
QUICK_NETWORKS = ("mobilenet-digits", "digits")  # seconds to pretrain, seconds a trial
RECIPES: dict[str, tuple[PruningConfig, QuantizationConfig]] = {
    "int8 w, fp32 a": (PruningConfig(ratio=0.0), QuantizationConfig(weight_bits=8, activation_bits=32)),
    "int8 w+a": (PruningConfig(ratio=0.0), QuantizationConfig(weight_bits=8, activation_bits=8)),
    "prune 10%": (PruningConfig(ratio=0.1), QuantizationConfig()),
    "prune 50% + int8 w": (PruningConfig(ratio=0.5), QuantizationConfig(weight_bits=8, activation_bits=32)),
    "prune 75%": (PruningConfig(ratio=0.75), QuantizationConfig()),
}
DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {  # each set of defaults, spelled out in the spec's sections
    "old": {
        "distillation": {"lr": 0.001, "batchnorm": "train", "schedule": "constant"},
        "search": {"keep_better": False, "select_on": "validation"},
    },
    # spelled out too, not left to the spec: the comparison must not move when the spec's defaults do
    "new": {
        "distillation": {"lr": "auto", "batchnorm": "auto", "schedule": "auto", "recovery_lr": 0.001},
        "search": {"keep_better": True, "select_on": "validation"},
    },
}
STEPS = (20, 200)  # a short fine-tune (where the damage of issue 26 showed) and the default length


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def spec_for(task_ref: str, task_kwargs: dict[str, Any], defaults: str, backend: str) -> Any:
    """The spec of one network under one set of defaults (old or new)."""
    over = DEFAULTS[defaults]
    return parse_spec(
        {
            "study": {"name": f"pretrained-{defaults}"},
            "task": {"name": task_ref, **task_kwargs},
            "target": {"backend": backend, "threads": THREADS},
            "space": {"distillation": {**over["distillation"]}},
            "search": {**over["search"]},
        },
        f"benchmarks/pretrained.py ({defaults} defaults)",
    )


def run_network(name: str, steps: tuple[int, ...], backend: str) -> dict[str, Any]:
    """Every recipe of one network, zero-shot and fine-tuned under the old and the new defaults."""
    task_ref, task_kwargs = NETWORKS[name]
    start = time.perf_counter()
    task = load_task(task_ref, task_kwargs)  # trains the teacher the first time (cached after)
    # one pass kept: a shuffled DataLoader (the built-ins') yields other batches on every pass, and old
    # and new must fine-tune, calibrate and hold back the same ones
    task = dataclasses.replace(task, train=list(task.train))
    out: dict[str, Any] = {
        "network": name,
        "task": task.name,
        "task_kwargs": task_kwargs,
        "teacher": {k: task.info.get(k) for k in ("teacher_val_accuracy", "teacher_val_top1", "teacher_trained_s")},
        "params": sum(p.numel() for p in task.model.parameters()),
        "train_batches": sum(1 for _ in task.train),
        "rows": {recipe: {} for recipe in RECIPES},
    }
    log(f"{name}: task ready in {time.perf_counter() - start:.1f} s ({out['teacher']})")
    for defaults in DEFAULTS:
        spec = spec_for(task_ref, task_kwargs, defaults, backend)
        t0 = time.perf_counter()
        env = TrialEnv.prepare(spec, task).with_lr(spec, None)  # lr "auto": the range test, once per network
        space = spec.recipe_space(task.model)
        if env.lr is not None:
            space = space.resolved(env.lr.lr)
            out.setdefault("lr_auto", {k: v for k, v in env.lr.as_json().items() if k != "curve"})
            out["lr_auto"]["seconds"] = round(time.perf_counter() - t0, 2)
            log(f"{name}: lr auto = {env.lr.lr:.3g} ({env.lr.rule})")
        base = evaluate_recipe(space.identity(), env, seed=SEED)  # trial 0: the teacher as it is
        env = with_baseline(env, base)
        out[f"baseline_{defaults}"] = base.values["accuracy"]
        out["selection_samples"] = sum(len(t) for _, t in env.selection)
        d = space.distillation
        for recipe_name, (pruning, quantization) in RECIPES.items():
            row = out["rows"][recipe_name]
            for n in steps:
                distillation = DistillationConfig(
                    temperature=TEMPERATURE,
                    alpha=ALPHA,
                    steps=n,
                    lr=float(d.lr),
                    batchnorm=d.batchnorm,
                    schedule=d.schedule,
                    recovery_lr=d.recovery_lr,
                )
                t1 = time.perf_counter()
                rec = evaluate_recipe(Recipe(pruning, quantization, distillation), env, seed=SEED, screen=False)
                ft = dict(rec.finetune)
                row[f"{defaults}_{n}"] = {
                    "accuracy": rec.values["accuracy"],
                    "zero_shot": rec.figures.get("zero_shot_accuracy"),
                    "kept": ft.get("kept"),
                    "lr": ft.get("lr"),
                    "selection_zero_shot": ft.get("selection_zero_shot"),
                    "selection_finetuned": ft.get("selection_finetuned"),
                    "regime": ft.get("regime"),
                    "agreement": ft.get("agreement"),
                    "batchnorm": ft.get("batchnorm"),
                    "schedule": ft.get("schedule"),
                    "explanation": ft.get("explanation"),
                    "loss_first": ft.get("loss_first"),
                    "loss_last": ft.get("loss_last"),
                    "seconds": round(time.perf_counter() - t1, 2),
                }
                row.setdefault("zero_shot", rec.figures.get("zero_shot_accuracy"))
                log(
                    f"{name} | {recipe_name} | {defaults} {n} steps: {rec.values['accuracy']:.4f} "
                    f"(zero-shot {rec.figures.get('zero_shot_accuracy')}, kept {ft.get('kept')}, {ft.get('regime')} "
                    f"{ft.get('batchnorm')} {ft.get('schedule')} lr {ft.get('lr')}, "
                    f"{time.perf_counter() - t1:.1f} s)"
                )
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def table(results: list[dict[str, Any]], steps: tuple[int, ...]) -> str:
    """The evidence table: one line per network and recipe, scores in %."""
    head = ["network", "recipe", "teacher", "zero-shot"]
    head += [f"{d} after {n}" for d in DEFAULTS for n in steps] + ["regime, kept (new)"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 3) + "---|"]
    for net in results:
        for recipe, row in net["rows"].items():
            cells = [net["network"], recipe, pct(net.get("baseline_new")), pct(row.get("zero_shot"))]
            cells += [pct(row.get(f"{d}_{n}", {}).get("accuracy")) for d in DEFAULTS for n in steps]
            new = [row.get(f"new_{n}", {}) for n in steps]
            regime = next((r["regime"] for r in new if r.get("regime")), "-")
            agreement = next((r["agreement"] for r in new if r.get("agreement") is not None), None)
            kept = " / ".join("zs" if r.get("kept") == "zero_shot" else "ft" for r in new)
            cells.append(f"{regime} ({pct(agreement)}), {kept}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{' and '.join(QUICK_NETWORKS)} only, 20 steps (<2 min)")
    parser.add_argument("--networks", nargs="+", choices=sorted(NETWORKS), help="these networks only (default all)")
    parser.add_argument("--steps", nargs="+", type=int, help=f"fine-tuning lengths (default {list(STEPS)}; quick 20)")
    parser.add_argument(
        "--backend", default="eager", help="target.backend: eager skips int8 compiles (accuracy is the same)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pretrained.json"))
    args = parser.parse_args()
    networks = tuple(args.networks or (QUICK_NETWORKS if args.quick else NETWORKS))
    steps = tuple(args.steps or ((20,) if args.quick else STEPS))

    torch.set_num_threads(THREADS)
    start = time.perf_counter()
    results = [run_network(name, steps, args.backend) for name in networks]
    total = time.perf_counter() - start

    print(table(results, steps))
    for net in results:
        lr = net.get("lr_auto", {})
        print(
            f"- {net['network']}: {net['params']:,} parameters, teacher {net['teacher']}, "
            f"{net['train_batches']} training batches, {net['selection_samples']} validation samples select, "
            f"lr auto {lr.get('lr', float('nan')):.3g} ({lr.get('rule', '')}), {net['seconds']} s"
        )
    d = parse_spec({"study": {"name": "b"}, "task": {"name": "digits"}}).space.distillation
    spec_defaults = {"lr": d.lr, "batchnorm": d.batchnorm, "schedule": d.schedule, "recovery_lr": d.recovery_lr}
    print(f"- the spec's fine-tuning defaults in this checkout: {spec_defaults}")
    meta = {
        "spec_defaults": spec_defaults,
        "machine": describe_device("cpu"),
        "torch": torch.__version__,
        "threads": THREADS,
        "backend": args.backend,
        "steps": list(steps),
        "date": datetime.date.today().isoformat(),
        "total_s": round(total, 1),
    }
    print(json.dumps(meta))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "networks": results}, indent=2))


if __name__ == "__main__":
    main()
