"""A study's results: the baseline, the feasible Pareto front, costs, the pick, a DataFrame."""

from __future__ import annotations

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
from .spec import Spec, parse_spec


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
            "role": self.trial.user_attrs.get(record.ROLE, "candidate"),
            "executed_as": self.trial.user_attrs.get(record.EXECUTED_AS),
        }


def study_spec(study: optuna.Study) -> Spec:
    """The spec the study was launched with."""
    data = study.user_attrs.get(record.STUDY_SPEC)
    if data is None:
        raise ResultsError(f"study {study.study_name!r} was not created by tradeoff (no spec stored).")
    return parse_spec(data, f"study {study.study_name!r}")


def baseline_trial(study: optuna.Study) -> FrozenTrial:
    """Trial 0: the uncompressed model, reference of all normalisation."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get(record.ROLE) == "baseline":
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
    entries = ranked_front(study, weights)
    if rule.isdigit():
        number = int(rule)
        trials = study.get_trials(deepcopy=False)
        if number >= len(trials) or trials[number].state != TrialState.COMPLETE:
            raise ResultsError(f"trial {number} of study {study.study_name!r} is not a completed trial.")
        names = objective_names_of(study)
        weights = _weights_for(study, weights)
        t = trials[number]
        base = values_of(baseline_trial(study), names)
        v = values_of(t, names)
        return FrontEntry(t, v, normalise(v, base, names), weighted_cost(v, base, weights))
    if not entries:
        raise ResultsError(f"study {study.study_name!r} has no feasible trial on its front.")
    if rule == "cost":
        return entries[0]
    if rule == "knee":
        points = np.stack([e.normalised for e in entries])
        return entries[knee_index(points, [e.cost for e in entries])]
    raise ResultsError(f"unknown pick rule {rule!r}; use knee, cost or a trial number.")


def study_hypervolume(study: optuna.Study) -> float:
    """Hypervolume of the feasible front in the normalised space (reference ``(r, 1, 1, 1)``)."""
    spec = study_spec(study)
    base = values_of(baseline_trial(study), objective_names_of(study))
    entries = ranked_front(study, spec.weights())
    ref = reference_point(base["accuracy"], spec.constraints.max_accuracy_drop)
    return hypervolume(np.stack([e.normalised for e in entries]) if entries else np.zeros((0, 4)), ref)


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
        row.update({f"figure.{k}": v for k, v in t.user_attrs.get(record.FIGURES, {}).items()})
        row["role"] = t.user_attrs.get(record.ROLE)
        row["executed_as"] = t.user_attrs.get(record.EXECUTED_AS)
        row["pareto"] = t.number in front
        row["error"] = t.user_attrs.get(record.ERROR)
        rows.append(row)
    return pd.DataFrame(rows)
