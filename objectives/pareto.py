"""Pareto math on arrays of points where every coordinate is minimised.

Pure functions of numpy arrays. Non-dominated sorting and hypervolume are Optuna's own
implementations (the ones its samplers use), wrapped here so the rest of the project calls one
stable place; the knee point is the usual "farthest from the plane through the extremes".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from optuna._hypervolume import compute_hypervolume
from optuna.study._multi_objective import _fast_non_domination_rank

DEFAULT_ACCURACY_REFERENCE = 0.1  # e-coordinate of the reference point when no drop limit is set


def _points(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"points must be a 2-D array (n_points, n_objectives), got shape {arr.shape}.")
    return arr


def nondominated_rank(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Rank of each point: 0 for the non-dominated front, 1 for the next, and so on.

    Example:
        >>> nondominated_rank([[1, 2], [2, 1], [2, 2]]).tolist()
        [0, 0, 1]
    """
    arr = _points(points)
    if len(arr) == 0:
        return np.zeros(0, dtype=int)
    return _fast_non_domination_rank(arr)


def pareto_mask(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Boolean mask of the non-dominated points (duplicates of a front point are all kept)."""
    return nondominated_rank(points) == 0


def dominating_count(point: Sequence[float], others: np.ndarray | Sequence[Sequence[float]]) -> int:
    """How many of ``others`` dominate ``point`` (no worse in every coordinate, better in one).

    Example:
        >>> dominating_count([1.0, 1.0], [[0.5, 1.0], [1.0, 1.0], [0.0, 2.0], [0.9, 0.9]])
        2
    """
    p = np.asarray(point, dtype=float)
    arr = np.asarray(others, dtype=float).reshape(-1, len(p))
    return int(np.sum(np.all(arr <= p, axis=1) & np.any(arr < p, axis=1)))


def reference_point(acc0: float, max_accuracy_drop: float | None, n_objectives: int = 4) -> np.ndarray:
    """The hypervolume reference ``(r, 1, 1, 1)`` in the normalised space (docs/DESIGN.md).

    ``r`` is the accuracy drop limit relative to ``acc0`` when one is set, else 0.1.

    Example:
        >>> reference_point(0.5, 0.02).tolist()
        [0.04, 1.0, 1.0, 1.0]
    """
    r = DEFAULT_ACCURACY_REFERENCE if max_accuracy_drop is None else max_accuracy_drop / acc0
    return np.array([r] + [1.0] * (n_objectives - 1))


def hypervolume(points: np.ndarray | Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume dominated by ``points`` inside the box bounded by ``reference``.

    Points outside the box add nothing (they are dropped before Optuna's WFG computation).

    Example:
        >>> hypervolume([[0.5, 0.5]], [1.0, 1.0])
        0.25
    """
    arr = _points(points)
    ref = np.asarray(reference, dtype=float)
    if arr.size == 0:
        return 0.0
    inside = arr[np.all(arr <= ref, axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(compute_hypervolume(inside, ref))


def knee_index(points: np.ndarray | Sequence[Sequence[float]], costs: Sequence[float] | None = None) -> int:
    """Index of the knee: the point farthest on the good side of the plane through the extremes.

    The extremes are, per objective, the point best in it. The plane ``a . x = 1`` through them is
    solved in the least-squares sense (exact when the extremes are independent). Distances are
    signed so that points nearer the ideal than the plane count positive. Ties (within 1e-12)
    are broken by lower ``costs`` when given, else by lower index.

    Example:
        >>> knee_index([[0.0, 1.0], [0.2, 0.2], [1.0, 0.0], [0.6, 0.5]])
        1
    """
    arr = _points(points)
    if len(arr) == 0:
        raise ValueError("knee_index needs at least one point; the front is empty.")
    extremes = arr[np.argmin(arr, axis=0)]
    a, *_ = np.linalg.lstsq(extremes, np.ones(len(extremes)), rcond=None)
    norm = float(np.linalg.norm(a))
    dist = (1.0 - arr @ a) / norm if norm > 0 else np.zeros(len(arr))
    tiebreak = np.asarray(costs, dtype=float) if costs is not None else np.arange(len(arr), dtype=float)
    best = np.flatnonzero(dist >= dist.max() - 1e-12)
    return int(best[np.argmin(tiebreak[best])])
