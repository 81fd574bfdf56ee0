"""What the read commands report, as the data their ``--json`` prints (``ls``, ``show``, ``pareto``).

:mod:`tradeoff.search.display` renders these as text; :mod:`tradeoff.search.cli` chooses between
the two. Trial attributes are read through :mod:`tradeoff.studies.record`, their one definition.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from tradeoff.objectives import Weights
from tradeoff.studies import SpecError, feasibility, identity, least_violating, ranked_front, record, study_hypervolume
from tradeoff.studies.results import Feasibility, ResultsError, Violation, objective_names_of, pick, study_spec
from tradeoff.studies.spec import Spec

LEAST_SHOWN = 5  # least-violating trials listed when no trial is feasible: enough to compare, short enough to read


def parse_weights(text: str | None, study: optuna.Study) -> Weights | None:
    """The ``--weights`` option over the study's objectives; ``None`` when not given (the spec's weights).

    Raises:
        SpecError: The text names an unknown objective or is malformed (exit code 2).

    Example:
        >>> parse_weights(None, optuna.create_study()) is None
        True
    """
    if text is None:
        return None
    try:
        return Weights.parse(text, objective_names_of(study))
    except ValueError as exc:
        raise SpecError(f"--weights: {exc}") from None


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state; ``stopped`` (PRUNED at a fidelity rung), ``screened`` and ``duplicate`` besides.

    Example:
        >>> counts(optuna.create_study())["complete"]
        0
    """
    out = {s: 0 for s in ("complete", "fail", "running", "stopped", "screened", "duplicate")}
    for t in study.get_trials(deepcopy=False):
        key = "stopped" if t.state == TrialState.PRUNED else t.state.name.lower()
        out[key] = out.get(key, 0) + 1
        a = record.attrs(t)
        out["screened"] += bool(a.get(record.SCREENED))
        out["duplicate"] += record.DUPLICATE_OF in a
    return out


def hypervolume_or_none(study: optuna.Study) -> float | None:
    """The study's feasible hypervolume, ``None`` where it cannot be computed (no front, foreign study).

    Example:
        >>> hypervolume_or_none(optuna.create_study()) is None
        True
    """
    try:
        return study_hypervolume(study)
    except ResultsError:
        return None


def infeasible_json(feas: Feasibility, least: list[Violation]) -> dict[str, Any]:
    """What ``pareto --json`` prints when no completed trial meets the constraints.

    Example:
        >>> infeasible_json(Feasibility(candidates=4, feasible=0, limits={"max_latency_ms": 0.5}), [])["feasible"]
        False
    """
    return {
        "feasible": False,
        "constraints": feas.limits,
        "candidates": feas.candidates,
        "least_violating": [v.as_json() for v in least],
    }


def study_row(study: optuna.Study) -> dict[str, Any]:
    """One study's row of ``ls``: its task, progress against the budget, front and hypervolume.

    Example:
        >>> study_row(optuna.create_study(study_name="foreign"))["task"] is None  # not made by tradeoff
        True
    """
    try:
        spec: Spec | None = study_spec(study)
    except ResultsError:
        spec = None  # an Optuna study tradeoff did not create
    n = counts(study)
    return {
        "study": study.study_name,
        "task": spec.task.name if spec else None,
        "complete": n["complete"],
        "failed": n["fail"],
        "running": n["running"],
        "budget": spec.study.n_trials if spec else None,
        "front": len(study.best_trials) if n["complete"] else 0,
        "hypervolume": hypervolume_or_none(study) if spec else None,
    }


def _hosts(s: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> dict[str, dict[str, Any]]:
    """Each host that ran the study's trials: how many, and when it joined (``tradeoff worker``, ``launch``)."""
    joined = identity.hosts(s.user_attrs)
    ran = record.trials_by_host(trials)
    return {
        host: {
            "trials": ran.get(host, 0),
            "first_joined": joined.get(host, {}).get("first_joined"),
            "last_joined": joined.get(host, {}).get("last_joined"),
            "workers": joined.get(host, {}).get("workers"),
        }
        for host in dict.fromkeys([*ran, *joined])
    }


def study_summary(s: optuna.Study, weights: str | None) -> tuple[dict[str, Any], Feasibility, list[Violation]]:
    """What ``show --json`` prints, with the feasibility and least-violating trials it was read from.

    Args:
        s: A study tradeoff created (its spec is read back from it).
        weights: The ``--weights`` text, or ``None`` for the spec's weights.

    Example:
        >>> study_summary(optuna.create_study(study_name="foreign"), None)
        Traceback (most recent call last):
        ...
        tradeoff.studies.results.ResultsError: ...
    """
    spec = study_spec(s)
    w = parse_weights(weights, s)
    n = counts(s)
    trials = s.get_trials(deepcopy=False)
    front = ranked_front(s, w) if n["complete"] else []
    least = least_violating(s, LEAST_SHOWN, w) if n["complete"] and not front else []
    feas = feasibility(s)
    data = {
        "study": s.study_name,
        "task": spec.task.name,
        "objectives": list(objective_names_of(s)),
        "weights": (w or spec.weights()).as_dict(),
        "constraints": {k: v for k, v in spec.constraints.model_dump().items() if v is not None},
        "sampler": spec.study.sampler,
        "sampler_chosen": s.user_attrs.get(record.STUDY_SAMPLER),
        "int8_backend": s.user_attrs.get(record.STUDY_BACKEND),  # what backend "auto" timed and kept, and why
        "seed": spec.study.seed,
        "budget": s.user_attrs.get(record.STUDY_BUDGET, spec.study.n_trials),  # across hosts, as last set
        "trials": n,
        "failures": record.failures_by_reason(trials),  # FAIL trials by reason (record.FAIL_REASONS)
        "hosts": _hosts(s, trials),
        "feasible": bool(front) if front or feas.candidates else None,
        "front_size": len(front),
        "hypervolume": hypervolume_or_none(s),
        "best_cost": front[0].as_json() if front else None,
        "knee": pick(s, "knee", w).as_json() if front else None,
        "least_violating": [v.as_json() for v in least],
        # completed trials whose deployable form's accuracy is more than half a point from the scored model's
        "accuracy_gaps": [
            {"trial": t.number, "gap": record.accuracy_gap(t)}
            for t in s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if record.gap_flagged(t)
        ],
        "spec": spec.to_dict(),
    }
    return data, feas, least
