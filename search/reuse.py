"""Reusing what the study already knows: ``[search] reuse_duplicates`` and ``reuse_latency``.

Both read the study's storage, so workers on other hosts share what any of them found.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from tradeoff.objectives import Measurement
from tradeoff.spaces import Recipe
from tradeoff.studies import record
from tradeoff.studies.results import objective_names_of, study_hypervolume

from .deployable import LatencyLookup, latency_measurement
from .workers import INTERRUPTED


@dataclass(frozen=True)
class Reused:
    """What a duplicate took over: the trial it copies (``original``) and its values (``None`` unless complete)."""

    original: int
    values: dict[str, float] | None


@dataclass(frozen=True)
class DuplicateReuse:
    """``[search] reuse_duplicates``: a recipe already tried reuses that trial's outcome instead of running again.

    Example:
        >>> DuplicateReuse(False).reuse(None, None, None) is None  # off: every recipe runs
        True
    """

    enabled: bool

    def reuse(self, study: optuna.Study, trial: optuna.Trial, recipe: Recipe) -> Reused | None:
        """When a finished trial applied the same recipe, copy its outcome onto ``trial``, tell it, and say so.

        The recipe is compared as stored (JSON: tuples are lists). Its values, constraints and user
        attributes (seed included: an export rebuilds the same model) are copied, with
        ``duplicate_of`` naming the trial; its state too (a stopped or failed recipe stays stopped or
        failed). ``None`` (nothing told) when no trial matches, or when reuse is off.
        """
        if not self.enabled:
            return None
        original = self._original(study, json.loads(recipe.to_json()))
        return None if original is None else self._copy(study, trial, original)

    @staticmethod
    def _original(study: optuna.Study, recipe: dict[str, Any]) -> optuna.trial.FrozenTrial | None:
        """The first finished candidate that applied ``recipe`` (an interrupted one never finished)."""
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
            a = record.attrs(t)
            if a.get(record.RECIPE) != recipe or a.get(record.ROLE) == "baseline":
                continue
            if t.state == TrialState.FAIL and a.get(record.ERROR) == INTERRUPTED:
                continue
            return t
        return None

    @staticmethod
    def _copy(study: optuna.Study, trial: optuna.Trial, t: optuna.trial.FrozenTrial) -> Reused:
        """Copy ``t``'s outcome onto ``trial`` and tell it."""
        a = record.attrs(t)
        original = a.get(record.DUPLICATE_OF, t.number)
        for key, value in a.items():
            if key not in (record.HYPERVOLUME, record.WORKER, record.SUGGESTED_BY):  # this trial's own
                trial.set_user_attr(key, value)
        trial.set_user_attr(record.DUPLICATE_OF, original)
        for name, value in t.constraints.items():
            trial.set_constraint(name, value)
        if t.state == TrialState.COMPLETE:
            trial.set_user_attr(record.HYPERVOLUME, study_hypervolume(study))  # a copy adds no volume
            study.tell(trial, list(t.values))
            return Reused(original, dict(zip(objective_names_of(study), t.values, strict=True)))
        study.tell(trial, state=t.state)
        return Reused(original, None)


@dataclass(frozen=True)
class LatencyReuse:
    """``[search] reuse_latency``: a deployable form already timed reuses that latency instead of timing again.

    The form is named by :func:`~tradeoff.search.trial.deployable_key` (what a forward pass's time
    depends on, the device included, so another machine never matches).

    Example:
        >>> LatencyReuse(False).lookup(None) is None  # off: every trial is timed
        True
    """

    enabled: bool

    def lookup(self, study: optuna.Study) -> LatencyLookup | None:
        """What :func:`~tradeoff.search.trial.evaluate_recipe` asks for an earlier timing (``None``: time anew)."""
        if not self.enabled:
            return None
        return lambda key: self.timed(study, key)

    @staticmethod
    def timed(study: optuna.Study, key: str) -> tuple[int, Measurement] | None:
        """The first trial that timed the deployable form ``key`` (read from the storage, so workers on
        other hosts share it), and its latency measurement; ``None`` when none has."""
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            a = record.attrs(t)
            exe = a.get(record.DEPLOYABLE) or {}
            if (
                exe.get("key") == key
                and exe.get("latency_from") is None  # timed on this trial, not itself reused
                and a.get(record.ROLE) != "baseline"  # the baseline's latency is absolute, candidates' are ratios
                and record.DUPLICATE_OF not in a
                and "latency_ms" in (a.get(record.PROVENANCE) or {})
            ):
                return t.number, latency_measurement(a[record.PROVENANCE]["latency_ms"], exe["latency_ms"])
        return None
