"""What is measured: accuracy, complexity, latency, energy; the weighted cost; Pareto math.

Every objective returns a :class:`Measurement` that says whether it was measured on the target or
estimated by a documented model. This package knows nothing of compression or of Optuna studies.
"""

from __future__ import annotations

from ._base import EvalContext, Measurement, Objective, describe_device, top1
from ._lock import measurement_lock
from .accuracy import Accuracy, NonFinite, evaluate
from .complexity import COMPLEXITY_FIGURES, Complexity, SizeBytes
from .cost import (
    DIRECTIONS,
    OBJECTIVE_NAMES,
    Constraints,
    Weights,
    check_objective_names,
    constraint_values,
    normalise,
    objective_names,
    weighted_cost,
)
from .energy import ENERGY_SOURCES, EnergyMj, EnergyModel, measure_energy, open_counter
from .fingerprint import fingerprint_differences, target_fingerprint
from .latency import LatencyMs, measure_latency, median_ci
from .packing import packed_state_dict
from .pareto import dominating_count, hypervolume, knee_index, nondominated_rank, pareto_mask, reference_point
from .profile import ModelProfile, profile, size_bytes, size_bytes_floor


def default_objectives(*, complexity: str = "size_bytes", energy_source: str = "auto") -> list[Objective]:
    """The four study objectives, in the order of :func:`objective_names` (``complexity``)."""
    return [Accuracy(), Complexity(complexity), LatencyMs(), EnergyMj(source=energy_source)]


__all__ = [
    "COMPLEXITY_FIGURES",
    "DIRECTIONS",
    "ENERGY_SOURCES",
    "OBJECTIVE_NAMES",
    "Accuracy",
    "Complexity",
    "Constraints",
    "EnergyMj",
    "EnergyModel",
    "EvalContext",
    "LatencyMs",
    "Measurement",
    "ModelProfile",
    "NonFinite",
    "Objective",
    "SizeBytes",
    "Weights",
    "check_objective_names",
    "constraint_values",
    "default_objectives",
    "describe_device",
    "dominating_count",
    "evaluate",
    "fingerprint_differences",
    "hypervolume",
    "knee_index",
    "measure_energy",
    "measure_latency",
    "measurement_lock",
    "median_ci",
    "nondominated_rank",
    "normalise",
    "objective_names",
    "open_counter",
    "packed_state_dict",
    "pareto_mask",
    "profile",
    "reference_point",
    "size_bytes",
    "size_bytes_floor",
    "target_fingerprint",
    "top1",
    "weighted_cost",
]
