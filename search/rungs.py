"""Fidelity rungs: ``[search] rungs``, ``stop_dominated_by`` and ``stop_infeasible_after``.

At each rung (a fraction of its distillation steps) a trial is scored on a fixed validation subset
(``[search] rung_val_size``, built in :meth:`tradeoff.search.trial_env.TrialEnv.prepare`) and
:class:`RungStopping` decides whether to stop it there, asking two rules in turn:
:class:`DominatedAtRung`, then :class:`AccuracyOutOfReach`. A stopped trial keeps its reason
under :data:`~tradeoff.studies.record.STOP_REASON` and is told ``PRUNED``.

Every rule reads the other trials from the study's storage, so workers on other hosts share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from tradeoff.objectives import dominating_count, normalise
from tradeoff.studies import record
from tradeoff.studies.sections import SearchSection

from .trial_env import TrialEnv

Trial = optuna.Trial | optuna.trial.FrozenTrial


def rung_key(fraction: float) -> str:
    """How a rung is named in the stored records.

    Example:
        >>> rung_key(0.25), rung_key(0.5)
        ('0.25', '0.5')
    """
    return f"{fraction:g}"


@dataclass(frozen=True)
class DominatedAtRung:
    """``[search] stop_dominated_by``: stop a trial when that many completed trials dominate the best it could
    still end at.

    The trial's accuracy at the rung (on the fixed validation subset) is raised by the largest gain
    from that rung to the final accuracy seen on the completed trials that were no higher there
    (:meth:`AccuracyOutOfReach.gains`; at least ``need`` of them, or nothing is stopped); with its
    size, latency and energy as measured before fine-tuning (latency is final; size and a modelled
    energy can still shrink where fine-tuning moves low-bit weights onto code 0), that is its
    optimistic final point. It is stopped when ``need`` completed trials' *final* points dominate
    it, all normalised to the baseline. Rung points are not compared with rung points: on ``digits``
    (72 rung samples) trials dominated there by 3 to 9 others ended on the front, 0.7-5 % of the
    hypervolume lost (docs/BENCHMARKS.md, issue 25), and running or stopped trials have no final point.
    A duplicate's copied point is not a second opinion.

    Example:
        >>> DominatedAtRung(3).need
        3
    """

    need: int

    def why_stop(
        self,
        trial: Trial,
        trials: Sequence[optuna.trial.FrozenTrial],
        env: TrialEnv,
        key: str,
        values: dict[str, float],
    ) -> str | None:
        """Why ``trial`` at rung ``key`` with ``values`` cannot end off the dominated region, or ``None``."""
        base = env.baseline or {}
        completed = [
            t
            for t in trials
            if t.number != trial.number
            and t.state == TrialState.COMPLETE
            and t.values is not None
            and record.DUPLICATE_OF not in record.attrs(t)
        ]
        gains = AccuracyOutOfReach.gains(completed, env.names.index("accuracy"), key, values["accuracy"])
        if len(gains) < self.need:
            return None
        best = {**values, "accuracy": values["accuracy"] + max(gains)}
        others = [normalise(dict(zip(env.names, t.values, strict=True)), base, env.names) for t in completed]
        count = dominating_count(normalise(best, base, env.names), others)
        if count < self.need:
            return None
        return (
            f"dominated at rung {key} by {count} completed trials (>= {self.need}), even with the largest gain seen "
            f"from there on {len(gains)} completed trials at or below it ({max(gains):+.4f})"
        )


@dataclass(frozen=True)
class AccuracyOutOfReach:
    """``[search] stop_infeasible_after``: stop a trial whose accuracy limit is out of reach from its rung.

    The evidence is the study's completed trials that were fully fine-tuned and passed this rung
    at an accuracy no higher than the trial's (read from the storage, so workers share it): the largest
    gain any of them made from its accuracy at the rung to its final accuracy. Only trials that
    started at least as low count, because the gain grows with the room left: on ``digits`` a
    student at 0.78 after a quarter of its steps ended at 0.98 (+0.20) where the largest gain
    of the trials that had started higher was +0.16, so the old rule, which took any trials'
    largest gain, stopped trials that finish feasible, right at the accuracy limit where the
    front's most compressed points are. A gain from lower down bounds the gain from higher up;
    one from higher up does not. A trial whose rung accuracy plus that most optimistic gain still ends
    below the limit would finish infeasible; until ``need`` such trials exist, nothing is stopped
    this way (0 turns the rule off).

    Example:
        >>> from tradeoff.objectives import Constraints, default_objectives
        >>> env = TrialEnv(task=None, example_inputs=(), train=[], teacher_logits=[], threads=1, device="cpu",
        ...                constraints=Constraints(max_accuracy_drop=0.05), objectives=default_objectives(),
        ...                baseline={"accuracy": 0.95})
        >>> def done(at_rung, final):  # a completed trial that passed rung 0.25 at ``at_rung``
        ...     rungs = [{"fraction": 0.25, "steps": 2, "samples": 10, "accuracy": at_rung}]
        ...     return optuna.trial.create_trial(values=[final, 1, 1, 1], user_attrs={record.RUNGS: rungs})
        >>> rule = AccuracyOutOfReach(1)
        >>> print(rule.why_stop([done(0.5, 0.6)], env, "0.25", 0.7))  # nobody started as high: +0.1 from lower
        accuracy 0.7000 at rung 0.25 plus the largest gain ... (+0.1000) stays below the limit 0.9000 (...)
        >>> rule.why_stop([done(0.5, 0.95)], env, "0.25", 0.7) is None  # +0.45 from lower down reaches it
        True
    """

    need: int

    def why_stop(
        self, completed: Sequence[optuna.trial.FrozenTrial], env: TrialEnv, key: str, accuracy: float
    ) -> str | None:
        """Why ``max_accuracy_drop`` cannot be met from ``accuracy`` at rung ``key``, or ``None`` when it can."""
        drop = env.constraints.max_accuracy_drop
        if self.need == 0 or drop is None or env.baseline is None:
            return None
        limit = env.baseline["accuracy"] - drop
        gains = self.gains(completed, env.names.index("accuracy"), key, accuracy)
        if len(gains) < self.need or accuracy + max(gains) >= limit:
            return None
        return (
            f"accuracy {accuracy:.4f} at rung {key} plus the largest gain seen on {len(gains)} completed trials "
            f"that were at or below it there ({max(gains):+.4f}) stays below the limit {limit:.4f} "
            f"(max_accuracy_drop {drop:g})"
        )

    @staticmethod
    def gains(completed: Sequence[optuna.trial.FrozenTrial], at: int, key: str, accuracy: float) -> list[float]:
        """Final minus rung-``key`` accuracy of the fully fine-tuned ``completed`` trials that started at or
        below ``accuracy`` there (``at``: the accuracy's index in the values)."""
        gains = []
        for t in completed:
            a = record.attrs(t)
            if a.get(record.ROLE) == "baseline" or a.get(record.SCREENED) or record.DUPLICATE_OF in a:
                continue
            rung = next((r["accuracy"] for r in a.get(record.RUNGS) or () if rung_key(r["fraction"]) == key), None)
            if rung is not None and t.values is not None and rung <= accuracy:  # started at least as low
                gains.append(t.values[at] - rung)
        return gains


@dataclass(frozen=True)
class RungStopping:
    """``[search] rungs`` and the two rules that may stop a trial at one of them.

    Example:
        >>> from tradeoff.studies.sections import SearchSection
        >>> RungStopping.from_spec(SearchSection()).fractions
        (0.25, 0.5)
    """

    fractions: tuple[float, ...]
    dominated: DominatedAtRung
    out_of_reach: AccuracyOutOfReach

    @classmethod
    def from_spec(cls, search: SearchSection) -> RungStopping:
        """The spec's rungs and stopping rules."""
        return cls(
            tuple(search.rungs),
            DominatedAtRung(search.stop_dominated_by),
            AccuracyOutOfReach(search.stop_infeasible_after),
        )

    def at_rung(
        self, study: optuna.Study, trial: optuna.Trial, env: TrialEnv, fraction: float, values: dict[str, float]
    ) -> bool:
        """Record the trial's point at a rung; stop it when enough completed trials dominate the best it could
        still end at (:class:`DominatedAtRung`), or when the accuracy limit is out of reach from there
        (:class:`AccuracyOutOfReach`).

        The point is the trial's accuracy at that rung (on the fixed validation subset) with its
        size, latency and energy as measured before fine-tuning. The completed trials are read from the
        storage, so workers on other hosts learn from each other too.
        """
        key = rung_key(fraction)
        points = dict(record.attrs(trial).get(record.RUNG_POINT) or {})
        points[key] = values
        trial.set_user_attr(record.RUNG_POINT, points)
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))  # final points and gains
        reason = self.dominated.why_stop(trial, completed, env, key, values)
        if reason is None:
            reason = self.out_of_reach.why_stop(completed, env, key, values["accuracy"])
        if reason is None:
            return False
        trial.set_user_attr(record.STOP_REASON, reason)
        return True
