"""The weighted cost and the constraints, both normalised to the uncompressed baseline.

Normalised space (every coordinate minimised), with ``0`` the baseline (trial 0) of the same study::

    e = 1 - acc / acc0        s = size / size0        l = latency / latency0        j = energy / energy0

    cost = alpha * e + beta * s + gamma * l + delta * energy_term      (lower is better)

Constraints are values that are ``<= 0`` when met (Optuna's convention):
``max_accuracy_drop`` is in absolute accuracy points (0.02 = two points below ``acc0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

OBJECTIVE_NAMES: tuple[str, ...] = ("accuracy", "size_bytes", "latency_ms", "energy_mj")
DIRECTIONS: tuple[str, ...] = ("maximize", "minimize", "minimize", "minimize")


@dataclass(frozen=True)
class Weights:
    """Weights of the cost, one per objective; the default weighs all four equally.

    Example:
        >>> Weights.parse("accuracy=0.6,size_bytes=0.4").size_bytes
        0.4
    """

    accuracy: float = 0.25
    size_bytes: float = 0.25
    latency_ms: float = 0.25
    energy_mj: float = 0.25

    def __post_init__(self) -> None:
        for name, w in asdict(self).items():
            if not isinstance(w, (int, float)) or w < 0:
                raise ValueError(f"weight {name!r} must be a number >= 0, got {w!r}.")
        if sum(asdict(self).values()) <= 0:
            raise ValueError("At least one weight must be > 0; got all zeros.")

    @classmethod
    def parse(cls, text: str) -> Weights:
        """Parse ``"accuracy=0.6,size_bytes=0.2"``; objectives not named get weight 0."""
        values: dict[str, float] = dict.fromkeys(OBJECTIVE_NAMES, 0.0)
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not sep or name not in values:
                raise ValueError(
                    f"bad weight {part!r}: expected NAME=NUMBER with NAME one of {', '.join(OBJECTIVE_NAMES)}."
                )
            try:
                values[name] = float(raw)
            except ValueError:
                raise ValueError(f"bad weight {part!r}: {raw!r} is not a number.") from None
        return cls(**values)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Constraints:
    """Hard limits; ``None`` means no limit."""

    max_accuracy_drop: float | None = None
    max_latency_ms: float | None = None
    max_size_bytes: float | None = None
    max_energy_mj: float | None = None


def normalise(values: Mapping[str, float], baseline: Mapping[str, float]) -> np.ndarray:
    """The point ``(e, s, l, j)`` of ``values`` relative to ``baseline`` (module docstring).

    Example:
        >>> b = dict(accuracy=0.9, size_bytes=100, latency_ms=2.0, energy_mj=1.0)
        >>> normalise(dict(accuracy=0.45, size_bytes=25, latency_ms=1.0, energy_mj=1.0), b).tolist()
        [0.5, 0.25, 0.5, 1.0]
    """
    for name in OBJECTIVE_NAMES:
        if baseline[name] <= 0:
            raise ValueError(f"baseline {name} must be > 0 to normalise, got {baseline[name]!r}.")
    return np.array(
        [
            1.0 - values["accuracy"] / baseline["accuracy"],
            values["size_bytes"] / baseline["size_bytes"],
            values["latency_ms"] / baseline["latency_ms"],
            values["energy_mj"] / baseline["energy_mj"],
        ]
    )


def weighted_cost(values: Mapping[str, float], baseline: Mapping[str, float], weights: Weights) -> float:
    """``alpha*e + beta*s + gamma*l + delta*j``; lower is better; the baseline scores ``beta+gamma+delta``.

    Example:
        >>> b = dict(accuracy=0.9, size_bytes=100, latency_ms=2.0, energy_mj=1.0)
        >>> weighted_cost(b, b, Weights())
        0.75
    """
    w = np.array([getattr(weights, n) for n in OBJECTIVE_NAMES])
    return float(w @ normalise(values, baseline))


def constraint_values(
    values: Mapping[str, float], baseline: Mapping[str, float], constraints: Constraints
) -> dict[str, float]:
    """One value per set constraint, ``<= 0`` when met.

    Example:
        >>> b = dict(accuracy=0.9, size_bytes=100, latency_ms=2.0, energy_mj=1.0)
        >>> constraint_values(dict(b, accuracy=0.85), b, Constraints(max_accuracy_drop=0.02))
        {'max_accuracy_drop': 0.03}
    """
    out: dict[str, float] = {}
    if constraints.max_accuracy_drop is not None:
        drop = baseline["accuracy"] - values["accuracy"]
        out["max_accuracy_drop"] = round(drop - constraints.max_accuracy_drop, 12)
    if constraints.max_latency_ms is not None:
        out["max_latency_ms"] = values["latency_ms"] - constraints.max_latency_ms
    if constraints.max_size_bytes is not None:
        out["max_size_bytes"] = values["size_bytes"] - constraints.max_size_bytes
    if constraints.max_energy_mj is not None:
        out["max_energy_mj"] = values["energy_mj"] - constraints.max_energy_mj
    return out
