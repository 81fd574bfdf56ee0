"""What is measured: accuracy, complexity, latency, energy; the weighted cost; Pareto math.

Every objective returns a :class:`Measurement` that says whether it was measured on the target or
estimated by a documented model. This package knows nothing of compression or of Optuna studies.
"""

from __future__ import annotations

from ._base import EvalContext, Measurement, Objective, describe_device, top1
from .accuracy import Accuracy, evaluate
from .complexity import ModelProfile, SizeBytes, profile, size_bytes
from .cost import DIRECTIONS, OBJECTIVE_NAMES, Constraints, Weights, constraint_values, normalise, weighted_cost
from .energy import EnergyMj, EnergyModel
from .latency import LatencyMs, measure_latency
from .pareto import hypervolume, knee_index, nondominated_rank, pareto_mask, reference_point


def default_objectives() -> list[Objective]:
    """The four study objectives, in the order of :data:`OBJECTIVE_NAMES`."""
    return [Accuracy(), SizeBytes(), LatencyMs(), EnergyMj()]


__all__ = [
    "DIRECTIONS",
    "OBJECTIVE_NAMES",
    "Accuracy",
    "Constraints",
    "EnergyMj",
    "EnergyModel",
    "EvalContext",
    "LatencyMs",
    "Measurement",
    "ModelProfile",
    "Objective",
    "SizeBytes",
    "Weights",
    "constraint_values",
    "default_objectives",
    "describe_device",
    "evaluate",
    "hypervolume",
    "knee_index",
    "measure_latency",
    "nondominated_rank",
    "normalise",
    "pareto_mask",
    "profile",
    "reference_point",
    "size_bytes",
    "top1",
    "weighted_cost",
]
