"""Studies with hand-chosen values, recorded the way the runner records them."""

from __future__ import annotations

import datetime
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


def synthetic_study(storage: str, n: int, *, seed: int = 0, name: str = "synthetic") -> optuna.Study:
    """A study of ``n`` trials in the real trial-record format, written in bulk: the baseline, then
    candidates with random recipes and plausible values (accuracy falls as size falls), a tenth of
    them stopped at a rung and a tenth screened. For the dashboard's size tests and benchmark."""
    import numpy as np

    from tradeoff.objectives import Constraints, constraint_values
    from tradeoff.spaces import DistillationConfig, QuantizationConfig

    rng = np.random.default_rng(seed)
    spec = parse_spec({"study": {"name": name, "n_trials": n}, "task": {"name": "digits"},
                       "constraints": {"max_accuracy_drop": 0.05}})  # fmt: skip
    study = optuna.create_study(study_name=name, storage=storage, directions=list(DIRECTIONS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(OBJECTIVE_NAMES))
    study.set_user_attr(record.STUDY_SPEC, spec.to_dict())
    limits = Constraints(max_accuracy_drop=0.05)
    trials = []
    start = datetime.datetime(2026, 12, 1)
    for i in range(n):
        ratio = 0.0 if i == 0 else float(rng.uniform(0, 0.9))
        bits = 32 if i == 0 else int(rng.choice([4, 8, 16, 32]))
        size = BASE["size_bytes"] * (1 - ratio) * bits / 32
        values = {
            "accuracy": BASE["accuracy"]
            - (0 if i == 0 else float(0.3 * ratio**2 + rng.normal(0, 0.01) + (0.02 if bits == 4 else 0))),
            "size_bytes": size,
            "latency_ms": BASE["latency_ms"] * (1 - 0.6 * ratio) * float(rng.uniform(0.9, 1.1)),
            "energy_mj": BASE["energy_mj"] * (1 - 0.7 * ratio) * bits / 32,
        }
        kind = "complete" if i == 0 else str(rng.choice(["complete"] * 8 + ["stopped", "screened"]))
        recipe = Recipe(
            pruning=PruningConfig(ratio=round(ratio, 2)),
            quantization=QuantizationConfig(weight_bits=bits),
            distillation=DistillationConfig(steps=0 if i == 0 else 200),
        )
        rec = TrialRecord(
            role="baseline" if i == 0 else "candidate",
            recipe=recipe.to_dict(),
            values=values,
            figures={"params": 1000 - i, "accuracy": values["accuracy"]},
            provenance={
                nm: {"source": "measured", "method": "synthetic", "device": "cpu", "threads": 1}
                for nm in OBJECTIVE_NAMES
            },
            constraints=constraint_values(values, BASE, limits),
            seconds={"distil": 1.0},
            screened=kind == "screened",
            stopped=kind == "stopped",
        )
        t = optuna.trial.create_trial(
            values=None if kind == "stopped" else rec.value_list(),
            state=optuna.trial.TrialState.PRUNED if kind == "stopped" else optuna.trial.TrialState.COMPLETE,
            user_attrs={**rec.user_attrs(), record.HYPERVOLUME: float(i) / n},
            system_attrs={"constraints": list(rec.constraints.values())},
        )
        t.datetime_start = start + datetime.timedelta(seconds=10 * i)
        t.datetime_complete = t.datetime_start + datetime.timedelta(seconds=9)
        trials.append(t)
    study.add_trials(trials)
    return study
