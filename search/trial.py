"""Compress-and-evaluate for one Recipe: prune -> quantize -> distil -> measure.

Knows nothing of Optuna beyond what a trial stores (:class:`~tradeoff.studies.record.TrialRecord`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from tradeoff.objectives import (
    Accuracy,
    Constraints,
    EvalContext,
    Measurement,
    Objective,
    constraint_values,
    default_objectives,
    describe_device,
)
from tradeoff.spaces import INT8_MAX_BITS, ApplyContext, Compression, Deployable, Recipe
from tradeoff.studies import Task, TrialRecord, shared_inputs, val_subset
from tradeoff.studies.spec import Spec


@dataclass
class TrialEnv:
    """What every trial of a study shares, built once per process.

    The training batches are materialised once and the teacher's outputs on them cached, so no
    trial runs the teacher again. ``baseline`` holds the baseline's values once trial 0 is known.
    """

    task: Task
    example_inputs: tuple[torch.Tensor, ...]
    train: list[Any]
    teacher_logits: list[torch.Tensor]
    constraints: Constraints
    threads: int
    device: str
    objectives: list[Objective]
    backend: str = "auto"  # how int8 executes (spec target.backend)
    rung_val: list[Any] = field(default_factory=list)  # fixed validation subset scored at fidelity rungs
    baseline: dict[str, float] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.objectives)

    @classmethod
    def prepare(cls, spec: Spec, task: Task) -> TrialEnv:
        shared = shared_inputs(task, spec.target.batch_size)
        return cls(
            task=task,
            example_inputs=shared.example_inputs,
            train=shared.train,
            teacher_logits=shared.teacher_logits,
            constraints=spec.constraints_(),
            threads=spec.target.threads,
            device=spec.target.device,
            objectives=default_objectives(complexity=spec.objectives.complexity, energy_source=spec.target.energy),
            backend=spec.target.backend,
            rung_val=val_subset(task.val, spec.search.rung_val_size),
        )


def _measure(
    scored: nn.Module, ctx: EvalContext, objectives: list[Objective], names: tuple[str, ...]
) -> dict[str, Measurement]:
    return {obj.name: obj.measure(scored, ctx) for obj in objectives if obj.name in names}


def _provenance(m: Measurement, ctx: EvalContext) -> dict[str, Any]:
    """A measurement's provenance with the fields every objective carries (issue 4)."""
    common = {
        "device": describe_device(ctx.device),
        "threads": ctx.threads,
        "batch_size": int(ctx.example_inputs[0].shape[0]),
        "torch": torch.__version__,
        "repeats": 1,  # one evaluation unless the measurement says otherwise
        "spread": None,  # exact or single-shot figures have none
    }
    return {**common, **m.provenance()}


RungCallback = Callable[[float, int, dict[str, float]], bool]
"""``(fraction, steps_done, values at the rung) -> stop?``: asked at each fidelity rung."""

LatencyLookup = Callable[[str], "tuple[int, Measurement] | None"]
"""``deployable key -> (trial number, latency measurement)`` of an earlier trial that timed the same
deployable form, or ``None``: asked once per trial before timing."""


def deployable_key(
    snapshot: nn.Module,
    deployed: Deployable,
    weight_bits: dict[str, int],
    activation_bits: int,
    example_inputs: tuple[Any, ...],
    *,
    threads: int,
    device: str,
) -> str:
    """A hash of everything a forward pass's time depends on, and nothing it does not.

    Latency is a property of the program that runs, not of the values in it: the layers and their
    shapes (pruning decides these), which layers run in which precision and on what kernels
    (``deployable_form``, the backend and the low-precision layer set), the input shapes, threads, device
    and torch build. Weight values, and so distillation's temperature and alpha, and the weight
    width of a layer that executes in fp32 either way (weight-only quantization) or in int8 either
    way (4-bit codes run on int8 kernels), do not enter it. Two trials with the same key time the
    same deployable form.

    Example:
        >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
        >>> d = Deployable(m, "fp32", "eager", 0.0, "")
        >>> x = (torch.randn(1, 4),)
        >>> a = deployable_key(m, d, {"0": 8}, 32, x, threads=1, device="cpu")
        >>> a == deployable_key(m, d, {"0": 4}, 32, x, threads=1, device="cpu")  # weight-only: fp32 both
        True
        >>> a == deployable_key(m, d, {}, 32, x, threads=2, device="cpu")
        False
    """
    form = deployed.form  # "int8", "int8+fp32", "bf16", "fp16+fp32", ... (tradeoff.spaces.deploy)
    if form.startswith("int8"):
        low = {name: "int8" for name, bits in weight_bits.items() if bits <= INT8_MAX_BITS}
        low["activations"] = f"{activation_bits}-bit"
    elif form.startswith(("bf16", "fp16")):
        low = {name: form for name, bits in weight_bits.items() if bits == 16}
    else:
        low = {}
    tensors = {
        name: [list(t.shape), str(t.dtype)] for name, t in [*snapshot.named_parameters(), *snapshot.named_buffers()]
    }
    described = {
        "modules": {name: type(m).__name__ for name, m in snapshot.named_modules()},
        "tensors": tensors,
        "deployable_form": deployed.form,
        "backend": deployed.backend,
        "low_precision": low,
        "inputs": [[list(x.shape), str(x.dtype)] if isinstance(x, torch.Tensor) else repr(x) for x in example_inputs],
        "threads": threads,
        "device": describe_device(device),
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:20]


def _reused_latency(m: Measurement, trial: int) -> Measurement:
    """An earlier trial's latency, labelled as reused (its source stays what it was: measured)."""
    return replace(
        m,
        method=f"{m.method}; timed once for this deployable form, on trial {trial}",
        details={**m.details, "reused_from_trial": trial},
    )


def latency_measurement(provenance: dict[str, Any], value: float) -> Measurement:
    """Rebuild a stored latency :class:`Measurement` from a trial's provenance entry and its value."""
    details = {k: v for k, v in provenance.items() if k not in ("source", "method", "unit")}
    return Measurement(float(value), provenance["unit"], provenance["source"], provenance["method"], details)


def _subset_samples(batches: Sequence[Any]) -> int:
    return sum(len(targets) for _, targets in batches)


def evaluate_recipe(
    recipe: Recipe,
    env: TrialEnv,
    *,
    seed: int | None = None,
    screen: bool = True,
    rungs: Sequence[float] = (),
    on_rung: RungCallback | None = None,
    latency_of: LatencyLookup | None = None,
) -> TrialRecord:
    """Apply ``recipe`` to the task's model, measure it, and return everything a trial stores.

    Order (DESIGN.md, "How data flows"): prune and attach quantization -> build the deployable form
    and measure what does not depend on fine-tuned weights (complexity, latency, energy) -> with
    ``screen``, when a size/latency/energy constraint already fails, stop there with the zero-shot
    accuracy (``screened``) -> distil, pausing at each of ``rungs`` (fractions of the steps) to score
    accuracy on ``env.rung_val`` and ask ``on_rung`` whether to stop (``stopped``: the record's
    accuracy is then that rung's, on the subset, and must not be told as a final value) -> bake,
    then accuracy on the whole validation set, complexity and energy of the final model.

    With ``latency_of``, a deployable form already timed in the study (same :func:`deployable_key`)
    is not timed again: its measurement is reused, labelled with the trial it came from, and the
    record's ``deployable`` says so (``latency_from``).

    With ``env.baseline`` unset the recipe is taken as the baseline itself (role ``baseline``):
    its latency is an absolute median; later trials are timed interleaved with the teacher and
    reported as baseline latency x ratio (see :mod:`tradeoff.objectives.latency`).
    """
    is_baseline = env.baseline is None
    ctx_apply = ApplyContext(
        example_inputs=env.example_inputs,
        train=env.train,
        teacher_logits=env.teacher_logits,
        seed=seed,
        threads=env.threads,
        backend=env.backend,
    )
    stages = Compression(recipe, env.task.model, ctx_apply)
    snapshot, deployed = stages.snapshot()  # before fine-tuning: what executes, and what it weighs
    weight_bits = recipe.quantization.weight_bits_by_layer(snapshot)

    def context(val: Any) -> EvalContext:
        return EvalContext(
            example_inputs=env.example_inputs,
            val=val,
            metric=env.task.metric,
            weight_bits=weight_bits,
            activation_bits=recipe.quantization.activation_bits,
            deployable=deployed.module,
            deployable_form=deployed.form,
            deployable_details={"backend": deployed.backend, "note": deployed.note},
            reference=None if is_baseline else env.task.model,
            reference_latency_ms=None if is_baseline else env.baseline["latency_ms"],
            threads=env.threads,
            device=env.device,
        )

    start = time.perf_counter()
    cheap_names = tuple(n for n in env.names if n != "accuracy")
    ctx = context(env.task.val)
    key = deployable_key(
        snapshot,
        deployed,
        weight_bits,
        recipe.quantization.activation_bits,
        env.example_inputs,
        threads=env.threads,
        device=env.device,
    )
    earlier = None if is_baseline or latency_of is None else latency_of(key)
    timed = cheap_names if earlier is None else tuple(n for n in cheap_names if n != "latency_ms")
    pre = _measure(snapshot, ctx, env.objectives, timed)
    if earlier is not None:
        pre["latency_ms"] = _reused_latency(earlier[1], earlier[0])
    deployable = {
        "key": key,
        "latency_ms": pre["latency_ms"].value,
        "latency_from": None if earlier is None else earlier[0],
    }
    measure_s = time.perf_counter() - start
    cheap = {name: pre[name].value for name in cheap_names}
    rung_log: list[dict[str, Any]] = []

    def finish(scored: nn.Module, accuracy: Measurement, *, screened: bool = False, stopped: bool = False):
        nonlocal measure_s
        t0 = time.perf_counter()
        measured = dict(pre)
        if not (screened or stopped):  # the final model: its own size, MACs and energy (latency: the built form)
            measured.update(_measure(scored, ctx, env.objectives, tuple(n for n in cheap_names if n != "latency_ms")))
        measured["accuracy"] = accuracy
        values = {name: measured[name].value for name in env.names}
        prof = ctx.profile(scored)
        figures: dict[str, Any] = {**prof.figures(), "accuracy": values["accuracy"]}
        lat, energy = measured["latency_ms"].details, measured["energy_mj"].details
        for key in ("median_ms", "iqr_ms", "ci_halfwidth", "rounds", "repeats", "ratio", "reference_ms"):
            if key in lat:
                figures[f"latency_{key}"] = lat[key]
        for key in ("compute_pj", "weights_pj", "activations_pj", "estimated_mj", "idle_w", "gross_mj"):
            if key in energy:
                figures[f"energy_{key}"] = energy[key]
        measure_s += time.perf_counter() - t0
        seconds = {**stages.seconds, "measure": measure_s}
        return TrialRecord(
            role="baseline" if is_baseline else "candidate",
            recipe=recipe.to_dict(),
            values=values,
            figures=figures,
            provenance={name: _provenance(m, ctx) for name, m in measured.items()},
            constraints=constraint_values({**figures, **values}, env.baseline or values, env.constraints),
            deployable_form=deployed.form,
            deployable=deployable,
            seconds={k: round(v, 4) for k, v in seconds.items()},
            screened=screened,
            stopped=stopped,
            rungs=rung_log,
            seed=seed,
        )

    accuracy = Accuracy()
    if screen and not is_baseline:
        cheap_limits = replace(env.constraints, max_accuracy_drop=None)
        before = {**ctx.profile(snapshot).figures(), **cheap}
        violated = {k: v for k, v in constraint_values(before, env.baseline, cheap_limits).items() if v > 0}
        if violated:  # no fine-tuning can mend these: score it as it stands and stop
            t0 = time.perf_counter()
            zero_shot = accuracy.measure(snapshot, ctx)
            measure_s += time.perf_counter() - t0
            return finish(snapshot, zero_shot, screened=True)

    steps = recipe.distillation.steps
    if on_rung is not None and not is_baseline and steps > 0:
        rung_ctx = context(env.rung_val)
        for fraction in rungs:
            n = int(round(fraction * steps))
            if n <= stages.steps_done or n >= steps:
                continue
            stages.distil_to(n)
            t0 = time.perf_counter()
            acc = accuracy.measure(stages.student, rung_ctx)
            measure_s += time.perf_counter() - t0
            point = {**cheap, "accuracy": acc.value}
            rung_log.append(
                {"fraction": fraction, "steps": n, "samples": _subset_samples(env.rung_val), "accuracy": acc.value}
            )
            if on_rung(fraction, n, {name: point[name] for name in env.names}):
                return finish(snapshot, acc, stopped=True)

    scored = stages.finish()
    t0 = time.perf_counter()
    final_accuracy = accuracy.measure(scored, ctx)
    measure_s += time.perf_counter() - t0
    return finish(scored, final_accuracy)


def with_baseline(env: TrialEnv, record: TrialRecord) -> TrialEnv:
    """``env`` with the baseline's values set (after trial 0)."""
    return replace(env, baseline=dict(record.values))
