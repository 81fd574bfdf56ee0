"""What every trial of a study shares (:class:`TrialEnv`), built once per process and then per baseline.

The training batches are materialised once and the teacher's outputs on them cached; the study's
fine-tuning rate is derived once (``lr = "auto"``); the baseline's values are set after trial 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import optuna
import torch

from tradeoff.objectives import Constraints, Objective, default_objectives
from tradeoff.spaces import AUTO, LR_AUTO, LrFinding, as_args, cache_teacher_outputs, find_lr
from tradeoff.spaces.quantization import CALIBRATION_BATCHES
from tradeoff.studies import Task, TrialRecord, check_target_fits, record, shared_inputs
from tradeoff.studies.spec import Spec

from .backend_choice import BackendChoice, choose_backend, needs_choice
from .finetune import KeepBetter

__all__ = ["TrialEnv", "with_baseline"]


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
    backend: str = "auto"  # how int8 executes (spec target.backend; under "auto", the study's timed choice)
    backend_choice: BackendChoice | None = None  # what "auto" chose for the study, and why
    rung_val: list[Any] = field(default_factory=list)  # fixed validation subset scored at fidelity rungs
    baseline: dict[str, float] | None = None
    val: Any = None  # what the reported accuracy is scored on (None: the task's whole validation set)
    selection: list[Any] = field(default_factory=list)  # what judges fine-tuning, apart from val and from tuning
    selection_logits: list[torch.Tensor] = field(default_factory=list)  # the teacher's outputs on it (ties)
    select_on: str = ""  # "validation" (a slice of it) or "held_back" (training batches); "": no selection data
    keep_better: KeepBetter = field(default_factory=KeepBetter)  # [search] keep_better
    lr: LrFinding | None = None  # the study's derived fine-tuning rate, when the spec says lr = "auto"
    data_sha256: str = ""  # the task's training and validation data, hashed (the study's data identity)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.objectives)

    @classmethod
    def prepare(cls, spec: Spec, task: Task) -> TrialEnv:
        """What every trial shares; first ``SpecError`` if this host cannot meet ``spec.target`` (threads
        beyond its cores, a batch that cannot be allocated: :func:`tradeoff.studies.check_target_fits`)."""
        check_target_fits(spec, task)  # every run path (launch, its workers) starts here: refuse before allocating
        search = spec.search
        shared = shared_inputs(
            task, spec.target.batch_size, select_on=search.select_on, select_size=search.rung_val_size
        )
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
            rung_val=shared.rung_val,
            val=shared.val,
            selection=shared.selection,
            selection_logits=cache_teacher_outputs(task.model, shared.selection),
            select_on=shared.select_on if shared.selection else "",
            keep_better=KeepBetter(enabled=search.keep_better),
            data_sha256=shared.data_sha256,
        )

    def with_lr(self, spec: Spec, stored: dict[str, Any] | None = None) -> TrialEnv:
        """This env with the study's fine-tuning rate derived (``lr = "auto"``): the one ``stored`` on the
        study when it has one (a resumed study, another worker), else by :func:`tradeoff.spaces.find_lr`."""
        d = spec.space.distillation
        if d.lr != LR_AUTO:
            return self
        if stored is not None:
            found = LrFinding(float(stored["lr"]), stored.get("divergence_lr"), rule=str(stored.get("rule", "")))
        else:
            near_mode = "frozen" if d.batchnorm == AUTO else d.batchnorm  # the rate is for students near the teacher
            found = find_lr(
                self.task.model, self.train, self.teacher_logits, batchnorm=near_mode, seed=spec.study.seed or 0
            )
        return replace(self, lr=found)

    def with_backend(self, spec: Spec, stored: dict[str, Any] | None = None) -> TrialEnv:
        """This env with the study's int8 builder chosen (``[target] backend = "auto"``): the one ``stored`` on the
        study when it has one, else the faster of the two on the teacher (:func:`.backend_choice.choose_backend`)."""
        if not needs_choice(spec.target.backend, spec.target.device, tuple(spec.space.quantization.activation_bits)):
            return self
        if stored is not None:
            choice: BackendChoice | None = BackendChoice.from_json(stored)
        else:
            calibration = [as_args(inputs) for inputs, _ in self.train[:CALIBRATION_BATCHES]]
            choice = choose_backend(self.task.model, as_args(self.example_inputs), calibration, threads=self.threads)
        return self if choice is None else replace(self, backend=choice.backend, backend_choice=choice)

    def for_study(self, spec: Spec, study: optuna.Study) -> TrialEnv:
        """This env with what ``"auto"`` settings derive once per study: the fine-tuning rate and the int8 builder.

        What the study stores is read; what it lacks is derived and stored, so that every worker and a
        resumed run use the same. Call it under the study lock (one host derives, the others read).
        """
        env = self.with_lr(spec, study.user_attrs.get(record.STUDY_LR))
        if env.lr is not None and record.STUDY_LR not in study.user_attrs:
            study.set_user_attr(record.STUDY_LR, env.lr.as_json())
        env = env.with_backend(spec, study.user_attrs.get(record.STUDY_BACKEND))
        if env.backend_choice is not None and record.STUDY_BACKEND not in study.user_attrs:
            study.set_user_attr(record.STUDY_BACKEND, env.backend_choice.as_json())
        return env


def with_baseline(env: TrialEnv, record: TrialRecord) -> TrialEnv:
    """``env`` with the baseline's values set (after trial 0)."""
    return replace(env, baseline=dict(record.values))
