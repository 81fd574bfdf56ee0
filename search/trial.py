"""Compress-and-evaluate for one Recipe: prune -> quantize -> distil -> measure.

Knows nothing of Optuna beyond what a trial stores (:class:`~tradeoff.studies.record.TrialRecord`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from tradeoff.objectives import (
    Constraints,
    EvalContext,
    Measurement,
    Objective,
    constraint_values,
    default_objectives,
    describe_device,
)
from tradeoff.spaces import ApplyContext, Recipe, compress
from tradeoff.studies import Task, TrialRecord
from tradeoff.studies.spec import Spec
from tradeoff.studies.tasks import shared_inputs


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
        )


def _measure_all(scored: nn.Module, ctx: EvalContext, objectives: list[Objective]) -> dict[str, Measurement]:
    return {obj.name: obj.measure(scored, ctx) for obj in objectives}


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


def evaluate_recipe(recipe: Recipe, env: TrialEnv, *, seed: int | None = None) -> TrialRecord:
    """Apply ``recipe`` to the task's model and measure the four objectives and every raw figure.

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
    compressed = compress(recipe, env.task.model, ctx_apply)
    start = time.perf_counter()
    ctx = EvalContext(
        example_inputs=env.example_inputs,
        val=env.task.val,
        metric=env.task.metric,
        weight_bits=compressed.weight_bits,
        activation_bits=compressed.activation_bits,
        executable=compressed.executable,
        executed_as=compressed.executed_as,
        execution={"backend": compressed.backend, "note": compressed.note},
        reference=None if is_baseline else env.task.model,
        reference_latency_ms=None if is_baseline else env.baseline["latency_ms"],
        threads=env.threads,
        device=env.device,
    )
    measured = _measure_all(compressed.scored, ctx, env.objectives)
    values = {name: measured[name].value for name in env.names}
    prof = ctx.profile(compressed.scored)  # shared with the energy and complexity objectives
    figures: dict[str, float] = {**prof.figures(), "accuracy": values["accuracy"]}
    lat, energy = measured["latency_ms"].details, measured["energy_mj"].details
    for key in ("median_ms", "iqr_ms", "ci_halfwidth", "rounds", "repeats", "ratio", "reference_ms"):
        if key in lat:
            figures[f"latency_{key}"] = lat[key]
    for key in ("compute_pj", "weights_pj", "activations_pj", "estimated_mj", "idle_w", "gross_mj"):
        if key in energy:
            figures[f"energy_{key}"] = energy[key]
    seconds = {**compressed.seconds, "measure": time.perf_counter() - start}
    return TrialRecord(
        role="baseline" if is_baseline else "candidate",
        recipe=recipe.to_dict(),
        values=values,
        figures=figures,
        provenance={name: _provenance(m, ctx) for name, m in measured.items()},
        constraints=constraint_values({**figures, **values}, env.baseline or values, env.constraints),
        executed_as=compressed.executed_as,
        seconds={k: round(v, 4) for k, v in seconds.items()},
        seed=seed,
    )


def with_baseline(env: TrialEnv, record: TrialRecord) -> TrialEnv:
    """``env`` with the baseline's values set (after trial 0)."""
    return replace(env, baseline=dict(record.values))
