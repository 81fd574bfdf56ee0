"""The weighted cost and the constraints, both normalised to the uncompressed baseline.

A study has four objectives, in this order: accuracy (maximised), a complexity figure
(``size_bytes`` unless the spec picks another), latency and energy (all minimised). Normalised
space (every coordinate minimised), with ``0`` the baseline (trial 0) of the same study::

    e = 1 - acc / acc0        s = complexity / complexity0        l = latency / latency0        j = energy / energy0

    cost = alpha * e + beta * s + gamma * l + delta * j      (lower is better)

Constraints are values that are ``<= 0`` when met (Optuna's convention):
``max_accuracy_drop`` is in absolute accuracy points (0.02 = two points below ``acc0``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

OBJECTIVE_NAMES: tuple[str, ...] = ("accuracy", "size_bytes", "latency_ms", "energy_mj")  # the default study
DIRECTIONS: tuple[str, ...] = ("maximize", "minimize", "minimize", "minimize")


def objective_names(complexity: str = "size_bytes") -> tuple[str, ...]:
    """The study's objective names when ``complexity`` is the complexity objective.

    Example:
        >>> objective_names("bops")
        ('accuracy', 'bops', 'latency_ms', 'energy_mj')
    """
    return ("accuracy", complexity, "latency_ms", "energy_mj")


def check_objective_names(names: Sequence[str]) -> tuple[str, ...]:
    """Return ``names`` as a tuple if they are (accuracy, <complexity>, latency_ms, energy_mj)."""
    names = tuple(names)
    if len(names) != 4 or names[0] != "accuracy" or names[2:] != ("latency_ms", "energy_mj"):
        raise ValueError(f"objective names must be (accuracy, <complexity>, latency_ms, energy_mj), got {names}.")
    return names


@dataclass(frozen=True)
class Weights:
    """Weights of the cost, one per objective, in the study's objective order.

    Example:
        >>> w = Weights.parse("accuracy=0.6,size_bytes=0.4")
        >>> w["size_bytes"], w.as_dict()["latency_ms"]
        (0.4, 0.0)
    """

    values: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)  # equal weights unless the spec says
    names: tuple[str, ...] = OBJECTIVE_NAMES

    def __post_init__(self) -> None:
        check_objective_names(self.names)
        if len(self.values) != len(self.names):
            raise ValueError(f"need {len(self.names)} weights for {self.names}, got {len(self.values)}.")
        for name, w in zip(self.names, self.values, strict=True):
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                raise ValueError(f"weight {name!r} must be a number >= 0, got {w!r}.")
        if sum(self.values) <= 0:
            raise ValueError("At least one weight must be > 0; got all zeros.")

    @classmethod
    def from_mapping(cls, weights: Mapping[str, float], names: Sequence[str] = OBJECTIVE_NAMES) -> Weights:
        """Weights by name; names not given weigh 0, unknown names are an error."""
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ValueError(f"unknown objective(s) {unknown} in weights; the objectives are {', '.join(names)}.")
        return cls(tuple(float(weights.get(n, 0.0)) for n in names), tuple(names))

    @classmethod
    def parse(cls, text: str, names: Sequence[str] = OBJECTIVE_NAMES) -> Weights:
        """Parse ``"accuracy=0.6,size_bytes=0.2"``; objectives not named get weight 0."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not sep or name not in names:
                raise ValueError(f"bad weight {part!r}: expected NAME=NUMBER with NAME one of {', '.join(names)}.")
            try:
                values[name] = float(raw)
            except ValueError:
                raise ValueError(f"bad weight {part!r}: {raw!r} is not a number.") from None
        return cls.from_mapping(values, names)

    def __getitem__(self, name: str) -> float:
        return self.values[self.names.index(name)]

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.names, self.values, strict=True))


@dataclass(frozen=True)
class Constraints:
    """Hard limits; ``None`` means no limit."""

    max_accuracy_drop: float | None = None
    max_latency_ms: float | None = None
    max_size_bytes: float | None = None
    max_energy_mj: float | None = None


def normalise(
    values: Mapping[str, float], baseline: Mapping[str, float], names: Sequence[str] = OBJECTIVE_NAMES
) -> np.ndarray:
    """The point ``(e, s, l, j)`` of ``values`` relative to ``baseline`` (module docstring).

    Example:
        >>> b = dict(accuracy=0.9, size_bytes=100, latency_ms=2.0, energy_mj=1.0)
        >>> normalise(dict(accuracy=0.45, size_bytes=25, latency_ms=1.0, energy_mj=1.0), b).tolist()
        [0.5, 0.25, 0.5, 1.0]
    """
    acc, *rest = check_objective_names(names)
    for name in names:
        if baseline[name] <= 0:
            raise ValueError(f"baseline {name} must be > 0 to normalise, got {baseline[name]!r}.")
    return np.array([1.0 - values[acc] / baseline[acc], *(values[n] / baseline[n] for n in rest)])


def weighted_cost(values: Mapping[str, float], baseline: Mapping[str, float], weights: Weights) -> float:
    """``alpha*e + beta*s + gamma*l + delta*j``; lower is better; the baseline scores ``beta+gamma+delta``.

    Example:
        >>> b = dict(accuracy=0.9, size_bytes=100, latency_ms=2.0, energy_mj=1.0)
        >>> weighted_cost(b, b, Weights())
        0.75
    """
    return float(np.array(weights.values) @ normalise(values, baseline, weights.names))


def constraint_values(
    figures: Mapping[str, float], baseline: Mapping[str, float], constraints: Constraints
) -> dict[str, float]:
    """One value per set constraint, ``<= 0`` when met.

    ``figures`` and ``baseline`` need ``accuracy`` and whichever of ``latency_ms``, ``size_bytes``
    and ``energy_mj`` are constrained (a trial's objective values merged with its raw figures).

    Example:
        >>> b = dict(accuracy=0.9, size_bytes=100, latency_ms=2.0, energy_mj=1.0)
        >>> constraint_values(dict(b, accuracy=0.85), b, Constraints(max_accuracy_drop=0.02))
        {'max_accuracy_drop': 0.03}
    """
    out: dict[str, float] = {}
    if constraints.max_accuracy_drop is not None:
        drop = baseline["accuracy"] - figures["accuracy"]
        out["max_accuracy_drop"] = round(drop - constraints.max_accuracy_drop, 12)
    if constraints.max_latency_ms is not None:
        out["max_latency_ms"] = figures["latency_ms"] - constraints.max_latency_ms
    if constraints.max_size_bytes is not None:
        out["max_size_bytes"] = figures["size_bytes"] - constraints.max_size_bytes
    if constraints.max_energy_mj is not None:
        out["max_energy_mj"] = figures["energy_mj"] - constraints.max_energy_mj
    return out
