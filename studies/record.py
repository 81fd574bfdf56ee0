"""What a trial and a study store: the one definition, read by the CLI, exports and the dashboard.

Documented for readers outside the code in ``docs/TRIAL_RECORD.md``; a test keeps the two in step.

A finished trial holds:
  * ``values`` (Optuna): the four objectives, named by the study's metric names
    (``accuracy``, the complexity figure — ``size_bytes`` by default —, ``latency_ms``,
    ``energy_mj``), with directions :data:`DIRECTIONS`;
  * constraints (Optuna, ``trial.set_constraint``): one named value per spec constraint, ``<= 0``
    when met; ``study.best_trials`` keeps only feasible trials;
  * user attributes, under the keys below (all JSON).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna

from tradeoff.objectives import DIRECTIONS, OBJECTIVE_NAMES, check_objective_names

# ----- trial user attributes
ROLE = "role"  # "baseline" for trial 0 (the uncompressed teacher), "candidate" otherwise
RECIPE = "recipe"  # Recipe.to_dict(): the exact configs applied (format tradeoff.recipe/1)
FIGURES = "figures"  # every raw figure by name (params, macs, bops, latency spread, energy parts...)
PROVENANCE = "provenance"  # per objective: source (measured|estimated), method, unit, details
DEPLOYABLE_FORM = "deployable_form"  # the form that runs on the target, which latency timed ("int8", "fp32", ...)
SECONDS = "seconds"  # wall time per phase: prune, quantize, distil, measure
SCREENED = "screened"  # True when a cheap constraint failed and fine-tuning was skipped (told COMPLETE, infeasible)
STOPPED = "stopped"  # True when a fidelity rung stopped the trial early (told PRUNED: no values)
STOP_REASON = "stop_reason"  # why a rung stopped it: dominated there, or the accuracy limit out of reach
RUNGS = "rungs"  # fidelity rungs passed: [{"fraction", "steps", "samples", "accuracy"}] (subset accuracy)
RUNG_POINT = "rung_point"  # the trial's objectives at each rung it reached, {fraction: {name: value}}: its point there
HYPERVOLUME = "hypervolume"  # the study's feasible hypervolume once this trial is counted (normalised space)
DEPLOYABLE = (
    "deployable"  # {"key", "latency_ms", "latency_from"}: the deployable form (a hash), the trial that timed it
)
DUPLICATE_OF = "duplicate_of"  # number of the trial whose result this one reuses (same recipe), else absent
ERROR = "error"  # why a FAILED trial failed (one line)
SEED = "seed"  # the seed the recipe was applied with: the same seed reproduces the model
FINETUNE = "finetune"  # how fine-tuning went: rate and rule, loss, zero-shot figures, weights kept and why
WORKER = "worker"  # "host:pid" of the worker process that ran the trial ([search] workers, tradeoff worker)
FAIL_REASON = "fail_reason"  # why a FAILED trial failed, as one of FAIL_REASONS (ERROR has the message)
RETRY_OF = "retry_of"  # number of the trial whose config this one runs again (that trial's worker died)
SUGGESTED_BY = "suggested_by"  # sampler "exact" only: "model" (its own pick) or "tpe" (its fallback chose)

TRIAL_KEYS = (
    ROLE,
    RECIPE,
    SEED,
    FIGURES,
    PROVENANCE,
    DEPLOYABLE_FORM,
    DEPLOYABLE,
    SECONDS,
    SCREENED,
    STOPPED,
    STOP_REASON,
    RUNGS,
    RUNG_POINT,
    FINETUNE,
    HYPERVOLUME,
    DUPLICATE_OF,
    ERROR,
    FAIL_REASON,
    WORKER,
    RETRY_OF,
    SUGGESTED_BY,
)
OPTIONAL_TRIAL_KEYS = (
    RUNG_POINT,
    STOP_REASON,
    DUPLICATE_OF,
    ERROR,
    FAIL_REASON,
    RETRY_OF,
    SUGGESTED_BY,
)  # set only when they apply; every other key is always set

# ----- study user attributes
STUDY_FORMAT_KEY = "format"  # STUDY_FORMAT; studies of format /1 are read through LEGACY_KEYS
STUDY_FORMAT = "tradeoff.study/2"  # /2: the deployable form's keys renamed (LEGACY_KEYS)
STUDY_SPEC = "spec"  # the validated spec as JSON (Spec.to_dict())
# {"name", "kwargs", "teacher_sha256", "data_sha256", "info"}: the task as built when the study was created; a
# host whose task yields another teacher or other data may not add trials (search/identity.py)
STUDY_TASK = "task"
STUDY_SAMPLER = "sampler"  # {"name", "reason"}: the sampler the study runs with (what "auto" chose, and why)

STUDY_LR = "lr"  # {"lr", "divergence_lr", "rule", "curve"}: the fine-tuning rate derived for lr = "auto" (find_lr)
STUDY_BACKEND = "backend"  # {"backend", "reason", "ms"}: the int8 builder "auto" timed faster (search/backend_choice)

STUDY_TARGET = "target"  # target_fingerprint(): the kind of machine every trial of the study is measured on
STUDY_BUDGET = "budget"  # trials in the study, baseline included, across every host (launch/worker --trials set it)
# {"store", "artifact_id", "file", "sha256"}: the teacher the launching host trained, in [study] artifacts
STUDY_TEACHER = "teacher_artifact"
STUDY_HOST_PREFIX = "host:"  # "host:<name>" -> {"fingerprint", "first_joined", "last_joined", "workers"}, one per host

STUDY_KEYS = (
    STUDY_FORMAT_KEY,
    STUDY_SPEC,
    STUDY_TASK,
    STUDY_SAMPLER,
    STUDY_LR,
    STUDY_BACKEND,
    STUDY_TARGET,
    STUDY_BUDGET,
    STUDY_TEACHER,
    STUDY_HOST_PREFIX,
)

# ----- why a trial failed (FAIL_REASON); a FAIL without a reason lost its worker (heartbeat, or an older study)
FAIL_REASONS = ("error", "out of memory", "non-finite", "interrupted", "lost")

# ----- older studies (format tradeoff.study/1) named the deployable form three ways; read them as today
LEGACY_KEYS = {"executed_as": DEPLOYABLE_FORM, "executable": DEPLOYABLE}
LEGACY_PROVENANCE_KEYS = {
    "executed_as": "deployable_form",
    "execution_backend": "deployable_backend",
    "execution_note": "deployable_note",
}


def attrs(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial's user attributes under today's keys, whatever tradeoff version wrote them.

    Every reader of a study (CLI, export, dashboard, runner) goes through this, so a study written
    before a key was renamed reads the same as a new one.

    Example:
        >>> t = optuna.trial.create_trial(value=1.0, user_attrs={"executed_as": "int8"})
        >>> attrs(t)[DEPLOYABLE_FORM]
        'int8'
    """
    out = dict(trial.user_attrs)
    for old, new in LEGACY_KEYS.items():
        if old in out:
            out.setdefault(new, out.pop(old))
    prov = out.get(PROVENANCE)
    if isinstance(prov, dict) and any(
        old in p for p in prov.values() if isinstance(p, dict) for old in LEGACY_PROVENANCE_KEYS
    ):
        out[PROVENANCE] = {
            name: {LEGACY_PROVENANCE_KEYS.get(k, k): v for k, v in p.items()} if isinstance(p, dict) else p
            for name, p in prov.items()
        }
    return out


# ----- small readers over attrs(): what the CLI and reports ask of a trial most often


def recipe_of(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial's recipe (:data:`RECIPE`) as stored, ``{}`` when it has none (a failed or foreign trial).

    Example:
        >>> t = optuna.trial.create_trial(value=1.0, user_attrs={RECIPE: {"pruning": {"ratio": 0.5}}})
        >>> recipe_of(t)["pruning"], recipe_of(optuna.trial.create_trial(value=1.0))
        ({'ratio': 0.5}, {})
    """
    return dict(attrs(trial).get(RECIPE) or {})


def is_baseline(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial is the study's uncompressed baseline (:data:`ROLE` ``"baseline"``).

    Example:
        >>> is_baseline(optuna.trial.create_trial(value=1.0, user_attrs={ROLE: "baseline"}))
        True
    """
    return attrs(trial).get(ROLE) == "baseline"


LEGACY_FINETUNE_KEYS = {  # finetune keys written before [search] select_on existed (held-back batches only)
    "held_back_samples": "selection_samples",
    "held_back_zero_shot": "selection_zero_shot",
    "held_back_finetuned": "selection_finetuned",
}


def finetune_of(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """How a trial's fine-tuning went (:data:`FINETUNE`) under today's keys, ``{}`` when not recorded.

    Example:
        >>> t = optuna.trial.create_trial(value=1.0, user_attrs={FINETUNE: {"kept": "zero_shot", "held_back_samples": 9}})
        >>> finetune_of(t)
        {'kept': 'zero_shot', 'selection_samples': 9, 'selection': 'held_back'}
    """
    ft = dict(attrs(trial).get(FINETUNE) or {})
    if any(old in ft for old in LEGACY_FINETUNE_KEYS):
        ft = {LEGACY_FINETUNE_KEYS.get(k, k): v for k, v in ft.items()}
        ft.setdefault("selection", "held_back")
    return ft


ACCURACY_GAP_FLAG = 0.005  # half a point between the scored model's and the deployable form's accuracy: shown


def accuracy_gap(trial: optuna.trial.FrozenTrial) -> float | None:
    """The deployable form's accuracy less the scored model's (``figures.accuracy_gap``), ``None``
    when only one was measured (no quantization, the baseline, a study from before issue 27).

    Example:
        >>> accuracy_gap(optuna.trial.create_trial(value=1.0, user_attrs={FIGURES: {"accuracy_gap": -0.01}}))
        -0.01
    """
    gap = (attrs(trial).get(FIGURES) or {}).get("accuracy_gap")
    return None if gap is None else float(gap)


def gap_flagged(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the two accuracies of a trial differ by more than :data:`ACCURACY_GAP_FLAG`."""
    gap = accuracy_gap(trial)
    return gap is not None and abs(gap) > ACCURACY_GAP_FLAG


def failure_reason(trial: optuna.trial.FrozenTrial) -> str | None:
    """Why a FAILED trial failed, one of :data:`FAIL_REASONS` (None for a trial that did not fail).

    A failed trial without an error lost its worker: heartbeats failed it (its config is retried,
    see :data:`RETRY_OF`), or an older tradeoff left no reason.

    Example:
        >>> from optuna.trial import TrialState, create_trial
        >>> failure_reason(create_trial(state=TrialState.FAIL, user_attrs={FAIL_REASON: "out of memory"}))
        'out of memory'
        >>> failure_reason(create_trial(state=TrialState.FAIL))
        'lost'
    """
    if trial.state != optuna.trial.TrialState.FAIL:
        return None
    a = trial.user_attrs
    if a.get(FAIL_REASON) in FAIL_REASONS:
        return str(a[FAIL_REASON])
    error = a.get(ERROR)
    if error is None:
        return "lost"
    return "interrupted" if str(error).startswith("interrupted") else "error"


def failures_by_reason(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    """How many trials failed for each reason, in :data:`FAIL_REASONS` order (reasons seen only).

    Example:
        >>> from optuna.trial import TrialState, create_trial
        >>> failures_by_reason([create_trial(state=TrialState.FAIL), create_trial(value=1.0)])
        {'lost': 1}
    """
    counts = {reason: 0 for reason in FAIL_REASONS}
    for t in trials:
        if (reason := failure_reason(t)) is not None:
            counts[reason] += 1
    return {reason: n for reason, n in counts.items() if n}


def trials_by_host(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    """How many trials each host ran (the ``host`` of :data:`WORKER`'s ``host:pid``), most first.

    Example:
        >>> from optuna.trial import create_trial
        >>> trials_by_host([create_trial(value=1.0, user_attrs={WORKER: "a:1"}), create_trial(value=1.0)])
        {'a': 1}
    """
    counts: dict[str, int] = {}
    for t in trials:
        worker = t.user_attrs.get(WORKER)
        if worker:
            host = str(worker).rpartition(":")[0] or str(worker)
            counts[host] = counts.get(host, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def retry_of(trial: optuna.trial.FrozenTrial) -> int | None:
    """The number of the trial whose config ``trial`` runs again (its worker died), else None."""
    value = trial.user_attrs.get(RETRY_OF)
    if value is None:
        history = trial.system_attrs.get("retry_history") or []  # Optuna's own record of the retries
        value = history[-1] if history else None
    return None if value is None else int(value)


def how_tuned(trial: optuna.trial.FrozenTrial) -> str:
    """One word or two on a trial's fine-tuning, for tables: its regime, and ``kept zero-shot`` when
    fine-tuning was undone; ``-`` when it was not fine-tuned (the baseline, ``steps = 0``, screened).

    Example:
        >>> how_tuned(optuna.trial.create_trial(value=1.0, user_attrs={FINETUNE: {"regime": "far", "kept": "finetuned"}}))
        'far'
        >>> how_tuned(optuna.trial.create_trial(value=1.0, user_attrs={FINETUNE: {"regime": "near", "kept": "zero_shot"}}))
        'near, kept zero-shot'
    """
    ft = finetune_of(trial)
    if not ft.get("kept"):
        return "-"
    words = [ft["regime"]] if ft.get("regime") else [str(ft.get("batchnorm", "tuned"))]
    if ft["kept"] == "zero_shot":
        words.append("kept zero-shot")
    return ", ".join(words)


def provenance_of(trial: optuna.trial.FrozenTrial, objective: str) -> dict[str, Any]:
    """How one objective of a trial was obtained (its :data:`PROVENANCE` entry), ``{}`` when not recorded.

    Example:
        >>> t = optuna.trial.create_trial(value=1.0, user_attrs={PROVENANCE: {"energy_mj": {"source": "estimated"}}})
        >>> provenance_of(t, "energy_mj")["source"], provenance_of(t, "latency_ms")
        ('estimated', {})
    """
    return dict((attrs(trial).get(PROVENANCE) or {}).get(objective) or {})


Role = Literal["baseline", "candidate"]


@dataclass(frozen=True)
class TrialRecord:
    """Everything tradeoff stores on a trial besides its parameters.

    Example:
        >>> rec = TrialRecord(role="candidate", recipe={}, values=dict.fromkeys(OBJECTIVE_NAMES, 1.0))
        >>> sorted(rec.user_attrs())[:3]
        ['deployable', 'deployable_form', 'figures']
    """

    role: Role
    recipe: Mapping[str, Any]
    values: Mapping[str, float]
    figures: Mapping[str, float] = field(default_factory=dict)
    provenance: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    constraints: Mapping[str, float] = field(default_factory=dict)
    deployable_form: str = "fp32"
    deployable: Mapping[str, Any] = field(default_factory=dict)
    seconds: Mapping[str, float] = field(default_factory=dict)
    screened: bool = False
    stopped: bool = False
    rungs: tuple[Mapping[str, Any], ...] | list[Mapping[str, Any]] = ()
    seed: int | None = None
    finetune: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            check_objective_names(tuple(self.values))
        except ValueError as exc:
            raise ValueError(f"a trial record needs a value for every objective, in order: {exc}") from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.values)

    def value_list(self) -> list[float]:
        return [float(v) for v in self.values.values()]

    def user_attrs(self) -> dict[str, Any]:
        return {
            ROLE: self.role,
            RECIPE: dict(self.recipe),
            SEED: self.seed,
            FIGURES: dict(self.figures),
            PROVENANCE: {k: dict(v) for k, v in self.provenance.items()},
            DEPLOYABLE_FORM: self.deployable_form,
            DEPLOYABLE: dict(self.deployable),
            SECONDS: dict(self.seconds),
            SCREENED: self.screened,
            STOPPED: self.stopped,
            RUNGS: [dict(r) for r in self.rungs],
            FINETUNE: dict(self.finetune),
        }

    def write(self, trial: optuna.Trial | optuna.trial.FrozenTrial) -> None:
        """Store the record's user attributes and constraints on a running trial (or on a frozen
        trial about to be added with ``study.add_trial``)."""
        for key, value in self.user_attrs().items():
            trial.set_user_attr(key, value)
        for name, value in self.constraints.items():
            trial.set_constraint(name, value)

    @classmethod
    def read(cls, trial: optuna.trial.FrozenTrial, names: tuple[str, ...] = OBJECTIVE_NAMES) -> TrialRecord:
        """The record of a finished trial (COMPLETE, with all four values named by ``names``,
        the study's ``metric_names``)."""
        if trial.values is None or len(trial.values) != len(names):
            raise ValueError(f"trial {trial.number} has no objective values (state {trial.state.name}).")
        a = attrs(trial)
        return cls(
            role=a.get(ROLE, "candidate"),
            recipe=a.get(RECIPE, {}),
            values=dict(zip(names, trial.values, strict=True)),
            figures=a.get(FIGURES, {}),
            provenance=a.get(PROVENANCE, {}),
            constraints=dict(trial.constraints),
            deployable_form=a.get(DEPLOYABLE_FORM, "fp32"),
            deployable=a.get(DEPLOYABLE, {}),
            seconds=a.get(SECONDS, {}),
            screened=bool(a.get(SCREENED, False)),
            stopped=bool(a.get(STOPPED, False)),
            rungs=tuple(a.get(RUNGS, ())),
            seed=a.get(SEED),
            finetune=a.get(FINETUNE, {}),
        )


__all__ = [
    "DIRECTIONS",
    "OBJECTIVE_NAMES",
    "STUDY_KEYS",
    "TRIAL_KEYS",
    "TrialRecord",
]
