"""Studies with hand-chosen values, recorded the way the runner records them."""

from __future__ import annotations

import warnings

import optuna

from tradeoff.objectives import DIRECTIONS, OBJECTIVE_NAMES
from tradeoff.spaces import PruningConfig, Recipe
from tradeoff.studies import TrialRecord, parse_spec, record

BASE = dict(accuracy=0.9, size_bytes=1000.0, latency_ms=2.0, energy_mj=1.0)


def fake_study(
    candidates: list[dict[str, float]],
    *,
    max_drop: float | None = 0.05,
    constraints: dict[str, float] | None = None,
    storage: str | None = None,
    figures: dict[int, dict[str, float]] | None = None,  # extra figures of candidate i (1-based), e.g. accuracy_gap
    name: str = "fake",
) -> optuna.Study:
    """A study of the baseline ``BASE`` and ``candidates``; ``constraints`` (the spec's table) replaces
    the default accuracy-drop limit ``max_drop``."""
    if constraints is None:
        constraints = {"max_accuracy_drop": max_drop} if max_drop is not None else {}
    spec = parse_spec(
        {
            "study": {"name": name},
            "task": {"name": "digits"},
            "objectives": {"accuracy": 0.5, "size_bytes": 0.5, "latency_ms": 0.0, "energy_mj": 0.0},
            "constraints": constraints,
        }
    )
    study = optuna.create_study(study_name=name, storage=storage, directions=list(DIRECTIONS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(OBJECTIVE_NAMES))
    study.set_user_attr(record.STUDY_SPEC, spec.to_dict())
    limits = spec.constraints_()
    from tradeoff.objectives import constraint_values

    for i, values in enumerate([BASE, *candidates]):
        trial = study.ask()
        rec = TrialRecord(
            role="baseline" if i == 0 else "candidate",
            recipe=Recipe(pruning=PruningConfig(ratio=0.1 * min(i, 9))).to_dict(),
            values=values,
            figures={"params": 100 - i, **(figures or {}).get(i, {})},
            provenance={n: {"source": "measured", "method": "test"} for n in OBJECTIVE_NAMES},
            constraints=constraint_values(values, BASE, limits),
            seconds={"distil": 1.0},
        )
        rec.write(trial)
        study.tell(trial, rec.value_list())
    return study
