"""The study spec's tables, one pydantic model per ``[section]`` (``studies/spec.py`` puts them together).

Each field says its default and why next to it; every default of a ``[space.*]`` table is read from a
default-built space (``tradeoff.spaces``), never restated here.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from tradeoff.objectives import COMPLEXITY_FIGURES, ENERGY_SOURCES, Weights, objective_names, open_counter
from tradeoff.spaces import (
    ACTIVATION_BITS,
    BACKENDS,
    BATCHNORMS,
    FLOAT16_KINDS,
    IMPORTANCES,
    KINDS,
    LR_AUTO,
    SCHEDULES,
    SCOPES,
    WEIGHT_BITS,
    DistillationSpace,
    PruningSpace,
    QuantizationSpace,
)

Ratio = Annotated[float, Strict(), Field(ge=0.0, lt=1.0)]
Temperature = Annotated[float, Strict(), Field(gt=0)]
Alpha = Annotated[float, Strict(), Field(ge=0, le=1)]
Rate = Annotated[float, Strict(), Field(gt=0, le=1)]  # a learning rate above 1 is a typo, not a choice
# TOML has arrays, not tuples: a [low, high] pair is a list of two (strict elements, lax container)
Pair = Field(strict=False)
WeightBits = Literal[WEIGHT_BITS]  # type: ignore[valid-type]
ActivationBits = Literal[ACTIVATION_BITS]  # type: ignore[valid-type]
# the samplers a study may name (tradeoff.search.samplers builds each; it takes the names from here,
# since studies cannot import search); the spec also accepts "auto"
SAMPLER_NAMES: tuple[str, ...] = ("tpe", "gp", "nsga2", "nsga3", "random", "exact")
# the [space.*] sections' defaults are the spaces' own: read from a default-built space, never restated
_PRUNING = PruningSpace()
_QUANTIZATION = QuantizationSpace()
_DISTILLATION = DistillationSpace()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class StudySection(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    n_trials: int = Field(default=30, ge=1)  # trials in the study, the baseline (trial 0) included
    # auto: chosen from the space and the budget (tradeoff.search.samplers); the rest by name
    sampler: Literal[("auto", *SAMPLER_NAMES)] = "auto"  # type: ignore[valid-type]
    seed: int | None = 0
    storage: str | None = None
    # on a database server (PostgreSQL): a running trial records a heartbeat this often, and one silent for
    # grace_s is failed and its config retried by another worker (Optuna's heartbeat). 10 s costs one small
    # write per trial every 10 s; 60 s of grace rides out a server restart without failing live trials
    heartbeat_s: int = Field(default=10, ge=1)
    grace_s: int = Field(default=60, ge=2)
    # on a database server: how long a worker rides out a lost connection before it stops (studies/reconnect.py)
    reconnect_s: int = Field(default=120, ge=1)
    # a shared directory (an Optuna artifact store) where the launching host puts the teacher it trained, so that
    # hosts joining the study load it instead of training it again (fashion-mnist's teacher: 17 minutes here)
    artifacts: str | None = None

    @model_validator(mode="after")
    def _grace_after_heartbeat(self) -> StudySection:
        if self.grace_s <= self.heartbeat_s:
            raise ValueError(
                f"study.grace_s ({self.grace_s}) must be longer than study.heartbeat_s ({self.heartbeat_s}): a live "
                "trial would be failed between two heartbeats; use at least twice the interval"
            )
        return self


class TaskSection(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    name: str = Field(min_length=1)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TargetSection(_Strict):
    device: str = Field(default="cpu", pattern=r"^(cpu|cuda(:\d+)?)$")
    threads: int = Field(default=1, ge=1)  # one thread: quietest and, on small machines, fastest
    batch_size: int = Field(default=1, ge=1)  # latency and energy are per forward pass of this batch
    energy: Literal[ENERGY_SOURCES] = "auto"  # type: ignore[valid-type]  # a counter where there is one
    # how int8 executes: inductor (PT2E + torch.compile), fx (torch.ao, no compiler), eager (no int8);
    # auto: once per study the faster of inductor and fx, timed on the teacher (search/backend_choice.py);
    # where neither builds the teacher, inductor falling back to fx per trial
    backend: Literal[BACKENDS] = "auto"  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _available_here(self) -> TargetSection:
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"target.device {self.device!r}: no CUDA device on this machine; use 'cpu'")
        try:
            open_counter(self.energy, self.device)
        except ValueError as exc:
            raise ValueError(f"target.energy: {exc}".rstrip(".")) from None
        return self


class PruningSection(_Strict):
    kind: list[Literal[KINDS]] = Field(default=list(_PRUNING.kind), min_length=1)  # type: ignore[valid-type]
    ratio: Annotated[tuple[Ratio, Ratio], Pair] = _PRUNING.ratio
    importance: list[Literal[IMPORTANCES]] = Field(default=list(_PRUNING.importance), min_length=1)  # type: ignore[valid-type]
    scope: Literal[SCOPES] = _PRUNING.scope  # type: ignore[valid-type]
    protect: list[Annotated[str, Field(min_length=1)]] = []  # layer patterns never pruned (e.g. the stem)
    per_group: bool = False  # one ratio knob per layer group of [space.groups]


class QuantizationSection(_Strict):
    weight_bits: list[WeightBits] = Field(default=list(_QUANTIZATION.weight_bits), min_length=1)
    # 8-bit activations let the deployable form run int8 kernels (the latency win); 32 keeps fp32
    activation_bits: list[ActivationBits] = Field(default=list(_QUANTIZATION.activation_bits), min_length=1)
    float16: Literal[tuple(FLOAT16_KINDS)] = _QUANTIZATION.float16  # type: ignore[valid-type]  # what 16 bits means
    per_group: bool = False  # one weight-width knob per layer group of [space.groups]


class DistillationSection(_Strict):
    temperature: Annotated[tuple[Temperature, Temperature], Pair] = _DISTILLATION.temperature
    alpha: Annotated[tuple[Alpha, Alpha], Pair] = _DISTILLATION.alpha
    steps: int = Field(default=_DISTILLATION.steps, ge=0)
    # "auto": derived once per study by a learning-rate range test on the teacher (tradeoff.spaces.find_lr);
    # a number fixes it; [low, high] makes it a knob, sampled log-uniformly
    lr: Literal[LR_AUTO] | Rate | Annotated[tuple[Rate, Rate], Pair] = _DISTILLATION.lr  # type: ignore[valid-type]
    # "auto": decided per student from its agreement with the teacher before fine-tuning (near: frozen
    # BatchNorm, the derived rate, warm-up + cosine; far: BatchNorm updated, recovery_lr, constant)
    batchnorm: Literal[BATCHNORMS] = _DISTILLATION.batchnorm  # type: ignore[valid-type]
    schedule: Literal[SCHEDULES] = _DISTILLATION.schedule  # type: ignore[valid-type]
    # the rate of a student far from the teacher under "auto" modes, when lr is "auto" (a fixed lr or a knob
    # is the rate of every student)
    recovery_lr: Rate = _DISTILLATION.recovery_lr


def recovery_lr_of(d: DistillationSection) -> float:
    """The rate of students far from the teacher: ``recovery_lr`` when the spec gives it or ``lr`` is "auto";
    a fixed ``lr`` otherwise, since a user who fixes the rate means it for every student."""
    if "recovery_lr" in d.model_fields_set or d.lr == LR_AUTO or isinstance(d.lr, tuple):
        return d.recovery_lr
    return float(d.lr)


class SpaceSection(_Strict):
    # "auto": one group per top-level child module with weight layers; or name -> layer pattern(s)
    groups: Any = "auto"
    pruning: PruningSection = PruningSection()
    quantization: QuantizationSection = QuantizationSection()
    distillation: DistillationSection = DistillationSection()

    @field_validator("groups")
    @classmethod
    def _groups(cls, groups: Any) -> str | dict[str, str]:
        """``"auto"``, or a table of group name -> pattern or list of patterns (kept comma-joined)."""
        if groups == "auto":
            return groups
        if not isinstance(groups, dict) or not groups:
            raise ValueError(
                f"must be 'auto' or a table of group name -> layer pattern(s), e.g. {{stage1 = 'layer1'}}; "
                f"got {groups!r}"
            )
        out: dict[str, str] = {}
        for name, patterns in groups.items():
            if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
                raise ValueError(f"group name {name!r} may only hold letters, digits, '_' and '-'")
            if isinstance(patterns, str):
                patterns = [patterns]
            if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) and p for p in patterns):
                raise ValueError(f"group {name!r} needs a layer pattern or a list of them, got {patterns!r}")
            out[name] = ",".join(patterns)
        return out

    @model_validator(mode="after")
    def _ranges_ordered(self) -> SpaceSection:
        for path, (lo, hi) in (
            ("space.pruning.ratio", self.pruning.ratio),
            ("space.distillation.temperature", self.distillation.temperature),
            ("space.distillation.alpha", self.distillation.alpha),
            *([("space.distillation.lr", self.distillation.lr)] if isinstance(self.distillation.lr, tuple) else []),
        ):
            if lo > hi:
                raise ValueError(f"{path} must be [low, high] with low <= high, got {[lo, hi]}")
        return self


Weight = Annotated[float, Strict(), Field(ge=0)]


class ObjectivesSection(_Strict):
    """Which figure is the complexity objective, and the cost's weights by objective name.

    All four objectives are Pareto objectives whatever their weight; an unset weight is 0.25.
    """

    complexity: Literal[COMPLEXITY_FIGURES] = "size_bytes"  # type: ignore[valid-type]
    accuracy: Weight = 0.25
    size_bytes: Weight | None = None
    params: Weight | None = None
    nonzero_params: Weight | None = None
    macs: Weight | None = None
    bops: Weight | None = None
    latency_ms: Weight = 0.25
    energy_mj: Weight = 0.25

    @model_validator(mode="after")
    def _weight_only_the_chosen_complexity(self) -> ObjectivesSection:
        for figure in COMPLEXITY_FIGURES:
            if figure != self.complexity and getattr(self, figure) is not None:
                raise ValueError(
                    f"objectives.{figure} is weighted but the complexity objective is {self.complexity!r}; "
                    f"set objectives.complexity = {figure!r} or remove the weight"
                )
        if sum(self.weights().values) <= 0:
            raise ValueError("objectives: at least one weight must be > 0")
        return self

    def names(self) -> tuple[str, ...]:
        return objective_names(self.complexity)

    def weights(self) -> Weights:
        chosen = getattr(self, self.complexity)
        values = (self.accuracy, 0.25 if chosen is None else chosen, self.latency_ms, self.energy_mj)
        return Weights(values, self.names())


class ConstraintsSection(_Strict):
    max_accuracy_drop: float | None = Field(default=None, ge=0, le=1)  # absolute: 0.02 = 2 points
    max_latency_ms: float | None = Field(default=None, gt=0)
    max_size_bytes: float | None = Field(default=None, gt=0)
    max_energy_mj: float | None = Field(default=None, gt=0)


Fraction = Annotated[float, Strict(), Field(gt=0.0, lt=1.0)]


class SearchSection(_Strict):
    """How the search spends its budget (issue 5): screening, fidelity rungs, duplicates, warm starts."""

    # skip fine-tuning when a size/latency/energy constraint already fails before it, size and modelled
    # energy taken at the least any fine-tuned weights could pack to; the sampler still learns the infeasible region
    screen: bool = True
    # fractions of the distillation steps at which a trial is scored on a fixed validation subset and
    # may be stopped; two early looks save most of the steps of hopeless trials; [] turns rungs off
    rungs: list[Fraction] = [0.25, 0.5]
    rung_val_size: int = Field(default=1000, ge=1)  # samples scored at a rung: ~0.1 s on the built-in tasks
    # stop at a rung when this many completed trials' final points dominate the best the trial could still
    # end at (its rung accuracy plus the largest rung-to-final gain seen from there, and the three cheap
    # objectives); rung points against rung points stopped front members (issue 25); 3 keeps one lucky trial
    # from stopping it
    stop_dominated_by: int = Field(default=3, ge=1)
    # stop at a rung when the accuracy there plus the largest gain from that rung to the final accuracy
    # seen on the study's completed trials that were no higher at that rung (the gain grows with the
    # room left) still misses max_accuracy_drop; it waits for this many such trials (the gain's
    # evidence) and 0 turns it off. Infeasible trials add nothing to the front, and a
    # fine-tune that ends below the limit cost as much as one that ends on it
    stop_infeasible_after: int = Field(default=3, ge=0)
    reuse_duplicates: bool = True  # a recipe already tried (after rounding) reuses its result
    # an executable already timed (same layer shapes, same precision per layer, same kernels: latency does
    # not depend on weight values, T or alpha) reuses that latency instead of timing it again (~3 s a trial)
    reuse_latency: bool = True
    # a trial whose fine-tuning ends no higher than the accuracy it had before fine-tuning, on the selection data
    # (select_on), keeps the weights from before: fine-tuning must never make it worse
    keep_better: bool = True
    # what judges fine-tuning (keep_better, rungs), apart from what the reported accuracy is scored on
    # (studies/shared.py): "validation" keeps the rung subset (at most a fifth of validation) apart and reports
    # on the rest, since held-back training views can look unlike the validation data (augmented views of a
    # network trained elsewhere: issue 26); "held_back" holds the last ~10 % of training batches back instead
    select_on: Literal["validation", "held_back"] = "validation"
    # configs tried first, right after the baseline: "auto" (int8, and int8 weights with fp32 activations,
    # at a few pruning ratios, where the space holds them), [] for none, or a list of tables of knob values
    warm_start: Any = "auto"
    # TPE's random start-up trials take the categorical knobs (bit-widths) as a balanced design instead of
    # independent draws (tradeoff.search.balanced): TPE never proposes a width pair it has not seen, and
    # with the baseline and warm starts among its 10 start-up trials, independent draws missed w4a8 in
    # about half the runs (issue 25); it costs no trial, and other samplers ignore it
    balanced_start: bool = True
    # processes on this host running trials at once (tradeoff.search.workers): "auto" = cores // target.threads
    # (at most 4; one on a GPU), since a trial runs at target.threads and one process leaves the other cores
    # idle; 1 makes a seeded study reproducible (with more, the order trials finish in depends on timing)
    workers: Any = "auto"

    @field_validator("rungs")
    @classmethod
    def _rungs_increasing(cls, rungs: list[float]) -> list[float]:
        if any(b <= a for a, b in itertools.pairwise(rungs)):
            raise ValueError(f"must be strictly increasing fractions in (0, 1), got {rungs}")
        return rungs

    @field_validator("workers")
    @classmethod
    def _workers(cls, workers: Any) -> int | str:
        if workers == "auto" or (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1):
            return workers
        raise ValueError(f"must be a positive number of worker processes or 'auto', got {workers!r}")

    @field_validator("warm_start")
    @classmethod
    def _warm_start(cls, warm: Any) -> str | list[dict[str, Any]]:
        """``"auto"``, or a list of tables; dotted TOML keys (``pruning.ratio = 0.5``) are flattened."""
        if warm == "auto":
            return warm
        if not isinstance(warm, list) or not all(isinstance(w, dict) for w in warm):
            raise ValueError(
                "must be 'auto' or a list of tables of knob values, e.g. "
                f"[{{pruning.ratio = 0.5, quantization.weight_bits = 8}}]; got {warm!r}"
            )
        return [_flatten(w) for w in warm]


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"pruning": {"ratio": 0.5}}`` -> ``{"pruning.ratio": 0.5}`` (TOML dotted keys nest)."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
