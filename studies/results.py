"""A study's results: the baseline, the feasible Pareto front, costs, the pick, the least-violating trials when
nothing is feasible, a DataFrame."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from tradeoff.objectives import (
    OBJECTIVE_NAMES,
    Weights,
    hypervolume,
    knee_index,
    normalise,
    reference_point,
    weighted_cost,
)

from . import record
from .spec import Spec, parse_stored_spec


class ResultsError(RuntimeError):
    """A study cannot answer the question asked (no baseline yet, no feasible trial...)."""


@dataclass(frozen=True)
class FrontEntry:
    """One member of the front with its cost and normalised point."""

    trial: FrozenTrial
    values: dict[str, float]
    normalised: np.ndarray
    cost: float

    def as_json(self) -> dict[str, Any]:
        return {
            "trial": self.trial.number,
            "params": self.trial.params,
            "values": self.values,
            "normalised": dict(zip(("e", "s", "l", "j"), map(float, self.normalised))),
            "cost": self.cost,
            "role": record.attrs(self.trial).get(record.ROLE, "candidate"),
            "deployable_form": record.attrs(self.trial).get(record.DEPLOYABLE_FORM),
            "finetune": record.finetune_of(self.trial),
        }


def study_spec(study: optuna.Study) -> Spec:
    """The spec the study was launched with."""
    data = study.user_attrs.get(record.STUDY_SPEC)
    if data is None:
        raise ResultsError(f"study {study.study_name!r} was not created by tradeoff (no spec stored).")
    return parse_stored_spec(data, f"study {study.study_name!r}")


BASELINE_AMONG_FIRST = 8  # the baseline is trial 0, or one of the first after interrupted trials


def baseline_trial(study: optuna.Study) -> FrozenTrial:
    """Trial 0: the uncompressed model, reference of all normalisation."""
    storage, sid = study._storage, study._study_id
    for number in range(BASELINE_AMONG_FIRST):  # one read each, not the study (get_n_trials reads them all)
        try:
            t = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(sid, number))
        except KeyError:  # fewer trials than that
            break
        if t.state == TrialState.COMPLETE and record.is_baseline(t):
            return t
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if record.is_baseline(t):
            return t
    raise ResultsError(f"study {study.study_name!r} has no completed baseline trial yet.")


def objective_names_of(study: optuna.Study) -> tuple[str, ...]:
    """The study's objective names (its metric names; the default four for unnamed studies)."""
    return tuple(study.metric_names or OBJECTIVE_NAMES)


def values_of(trial: FrozenTrial, names: tuple[str, ...] = OBJECTIVE_NAMES) -> dict[str, float]:
    return dict(zip(names, trial.values, strict=True))


def _weights_for(study: optuna.Study, weights: Weights | None) -> Weights:
    """``weights`` (e.g. from the command line) checked against the study's objectives, else the spec's."""
    if weights is None:
        return study_spec(study).weights()
    names = objective_names_of(study)
    if weights.names != names:
        raise ResultsError(
            f"weights name {', '.join(weights.names)} but study {study.study_name!r} has objectives {', '.join(names)}."
        )
    return weights


def ranked_front(study: optuna.Study, weights: Weights | None = None) -> list[FrontEntry]:
    """The feasible Pareto front (``study.best_trials``), ranked by weighted cost (lowest first)."""
    names = objective_names_of(study)
    weights = _weights_for(study, weights)
    base = values_of(baseline_trial(study), names)
    entries = []
    for t in study.best_trials:
        v = values_of(t, names)
        entries.append(FrontEntry(t, v, normalise(v, base, names), weighted_cost(v, base, weights)))
    return sorted(entries, key=lambda e: (e.cost, e.trial.number))


def pick(study: optuna.Study, rule: str, weights: Weights | None = None) -> FrontEntry:
    """The trial chosen by ``rule``: ``"knee"``, ``"cost"`` (lowest weighted cost) or a trial number."""
    if rule.isdigit():
        number = int(rule)
        try:  # one trial read, not the whole study (the dashboard's export of a 10,000-trial study)
            t = study._storage.get_trial(
                study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
            )
        except KeyError:
            t = None
        if t is None or t.state != TrialState.COMPLETE:
            raise ResultsError(f"trial {number} of study {study.study_name!r} is not a completed trial.")
        names = objective_names_of(study)
        weights = _weights_for(study, weights)
        base = values_of(baseline_trial(study), names)
        v = values_of(t, names)
        return FrontEntry(t, v, normalise(v, base, names), weighted_cost(v, base, weights))
    entries = ranked_front(study, weights)  # only the rules that choose from the front need it
    if not entries:
        raise ResultsError(
            f"study {study.study_name!r} has no feasible trial on its front: no completed trial meets the "
            f"constraints; `tradeoff pareto {study.study_name}` lists the least-violating trials, and --pick N "
            "chooses one of them by number."
        )
    if rule == "cost":
        return entries[0]
    if rule == "knee":
        points = np.stack([e.normalised for e in entries])
        return entries[knee_index(points, [e.cost for e in entries])]
    raise ResultsError(f"unknown pick rule {rule!r}; use knee, cost or a trial number.")


ACCURACY_DROP = "max_accuracy_drop"


@dataclass(frozen=True)
class Violation:
    """A completed candidate with the constraints it misses: each constraint's value (``<= 0`` when met, else
    by how much it is missed, in the constraint's unit), that miss relative to its scale, and their sum."""

    trial: FrozenTrial
    values: dict[str, float]
    constraints: dict[str, float]
    relative: dict[str, float]
    violation: float
    cost: float

    @property
    def missed(self) -> tuple[str, ...]:
        """The names of the constraints this trial misses."""
        return tuple(name for name, value in self.constraints.items() if value > 0)

    def as_json(self) -> dict[str, Any]:
        return {
            "trial": self.trial.number,
            "params": self.trial.params,
            "values": self.values,
            "constraints": self.constraints,
            "relative": self.relative,
            "violation": self.violation,
            "missed": list(self.missed),
            "cost": self.cost,
            "role": record.attrs(self.trial).get(record.ROLE, "candidate"),
            "deployable_form": record.attrs(self.trial).get(record.DEPLOYABLE_FORM),
        }


@dataclass(frozen=True)
class Feasibility:
    """How many completed candidates a study has, how many meet every constraint, and the limits they are held to
    (the spec's set constraints, e.g. ``{"max_accuracy_drop": 0.01, "max_latency_ms": 0.5}``)."""

    candidates: int
    feasible: int
    limits: dict[str, float]

    @property
    def none_feasible(self) -> bool:
        """True when there are completed candidates and not one of them meets the constraints."""
        return self.candidates > 0 and self.feasible == 0


def constraint_limits(study: optuna.Study) -> dict[str, float]:
    """The spec's set constraints by name (``max_accuracy_drop`` in absolute accuracy points, as a fraction)."""
    return {k: float(v) for k, v in study_spec(study).constraints.model_dump().items() if v is not None}


def relative_violation(
    constraints: Mapping[str, float], baseline_accuracy: float, limits: Mapping[str, float]
) -> dict[str, float]:
    """Each missed constraint's miss relative to its scale, so misses in different units add up.

    A constraint value ``c`` is ``<= 0`` when met; a miss ``c > 0`` is divided by its scale:

    * ``max_accuracy_drop`` (a drop in absolute accuracy points): by the baseline accuracy ``acc0``, so a miss
      is the fraction of the baseline's accuracy lost beyond the allowed drop;
    * ``max_latency_ms``, ``max_size_bytes``, ``max_energy_mj``: by the limit itself, so a miss is the
      fraction by which the figure exceeds its limit;
    * any other constraint (or one with no positive scale): by 1.

    Met constraints contribute 0. The total violation of a trial is the sum of these values.

    Example:
        >>> rel = relative_violation(
        ...     {"max_accuracy_drop": 0.045, "max_latency_ms": 0.05, "max_size_bytes": -20.0},
        ...     baseline_accuracy=0.9,
        ...     limits={"max_accuracy_drop": 0.01, "max_latency_ms": 0.5, "max_size_bytes": 500.0},
        ... )
        >>> {k: round(v, 6) for k, v in rel.items()}
        {'max_accuracy_drop': 0.05, 'max_latency_ms': 0.1, 'max_size_bytes': 0.0}
    """
    out: dict[str, float] = {}
    for name, value in constraints.items():
        scale = baseline_accuracy if name == ACCURACY_DROP else limits.get(name)
        scale = float(scale) if scale is not None and scale > 0 else 1.0
        out[name] = max(float(value), 0.0) / scale
    return out


def _completed_candidates(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if not record.is_baseline(t)]


def feasibility(study: optuna.Study) -> Feasibility:
    """The number of completed candidates (the baseline is not one), how many are feasible, and the limits.

    A candidate is feasible when every constraint value it has is ``<= 0`` (Optuna's rule).
    """
    candidates = _completed_candidates(study)
    feasible = sum(all(v <= 0 for v in t.constraints.values()) for t in candidates)
    return Feasibility(len(candidates), feasible, constraint_limits(study))


def least_violating(study: optuna.Study, n: int | None = 5, weights: Weights | None = None) -> list[Violation]:
    """The ``n`` completed candidates closest to meeting the constraints (all of them when ``n`` is None).

    Among completed candidate trials that have constraint values (``trial.constraints``, ``<= 0`` when met), the
    total violation is the sum over missed constraints of the miss divided by its scale (see
    :func:`relative_violation`)::

        violation = max(0, c_acc) / acc0 + max(0, c_ms) / max_latency_ms
                    + max(0, c_size) / max_size_bytes + max(0, c_mj) / max_energy_mj

    where ``acc0`` is the baseline's accuracy and the limits are the study spec's. Missing the accuracy drop by
    4.5 points (0.045) with ``acc0 = 0.9`` (0.05) thus ranks before missing a 0.5 ms limit by 0.05 ms (0.1).
    Trials are ranked by total violation (feasible ones, at 0, first), then by weighted cost, then by trial
    number.

    Args:
        study: a tradeoff study with a completed baseline.
        n: how many to return; None for all.
        weights: cost weights for the tie-break (default: the spec's).

    Raises:
        ResultsError: the study has no spec or no completed baseline yet, or ``weights`` do not match it.
    """
    names = objective_names_of(study)
    weights = _weights_for(study, weights)
    base = values_of(baseline_trial(study), names)
    limits = constraint_limits(study)
    entries = []
    for t in _completed_candidates(study):
        if not t.constraints:
            continue
        v = values_of(t, names)
        rel = relative_violation(t.constraints, base["accuracy"], limits)
        entries.append(Violation(t, v, dict(t.constraints), rel, sum(rel.values()), weighted_cost(v, base, weights)))
    entries.sort(key=lambda e: (e.violation, e.cost, e.trial.number))
    return entries if n is None else entries[:n]


def study_hypervolume(study: optuna.Study, *, extra: Mapping[str, float] | None = None) -> float:
    """Hypervolume of the feasible front in the normalised space (reference ``(r, 1, 1, 1)``).

    ``extra``: the values of one more feasible trial, not told yet (the runner stores the
    hypervolume on a trial before telling it, as a finished trial's attributes are frozen).
    """
    spec = study_spec(study)
    names = objective_names_of(study)
    base = values_of(baseline_trial(study), names)
    points = [e.normalised for e in ranked_front(study, spec.weights())]
    if extra is not None:
        points.append(normalise(extra, base, names))
    ref = reference_point(base["accuracy"], spec.constraints.max_accuracy_drop)
    return hypervolume(np.stack(points) if points else np.zeros((0, 4)), ref)


def hypervolume_history(study: optuna.Study) -> list[dict[str, Any]]:
    """The study's hypervolume after each finished trial, in completion order, as stored by the runner.

    Each row: ``trial``, ``state``, ``hypervolume`` (``None`` for a stopped or failed trial: the
    front did not change) and ``elapsed_s`` (seconds from the first trial's start).
    """
    return history_of(study.get_trials(deepcopy=False))


def history_of(trials: Sequence[Any]) -> list[dict[str, Any]]:
    """:func:`hypervolume_history` of trials already read (anything with ``number``, ``state``,
    ``user_attrs``, ``datetime_start`` and ``datetime_complete``, as the dashboard's fast read has)."""
    done = [t for t in trials if t.datetime_complete is not None]
    done.sort(key=lambda t: t.datetime_complete)
    if not done:
        return []
    t0 = min(t.datetime_start or t.datetime_complete for t in done)
    return [
        {
            "trial": t.number,
            "state": t.state.name,
            "hypervolume": record.attrs(t).get(record.HYPERVOLUME),
            "elapsed_s": (t.datetime_complete - t0).total_seconds(),
        }
        for t in done
    ]


def trials_frame(study: optuna.Study, weights: Weights | None = None) -> pd.DataFrame:
    """One row per trial: number, state, params, values, figures, cost, Pareto flag."""
    names = objective_names_of(study)
    weights = _weights_for(study, weights)
    try:
        base: dict[str, float] | None = values_of(baseline_trial(study), names)
    except ResultsError:
        base = None
    front = {t.number for t in study.best_trials} if base else set()
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name}
        row.update({f"param.{k}": v for k, v in t.params.items()})
        if t.values is not None:
            row.update(values_of(t, names))
            if base is not None:
                row["cost"] = weighted_cost(values_of(t, names), base, weights)
        a = record.attrs(t)
        row.update({f"figure.{k}": v for k, v in a.get(record.FIGURES, {}).items()})
        row["role"] = a.get(record.ROLE)
        row["deployable_form"] = a.get(record.DEPLOYABLE_FORM)
        row["pareto"] = t.number in front
        row["error"] = a.get(record.ERROR)
        rows.append(row)
    return pd.DataFrame(rows)
