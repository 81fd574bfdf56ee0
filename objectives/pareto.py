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
    """Index of the knee: the member of the front farthest from the plane through its anchor points.

    Each objective (minimised) is first normalised over the front itself, from its best value on the
    front (0) to its worst (1); an objective equal on every member tells nothing and is left out. In
    that space the anchor of objective ``i`` is the corner best in ``i`` and worst in every other
    (``1`` everywhere but ``0`` at ``i``); the ``k`` anchors span the plane ``sum(z) = k - 1``, and the
    knee is the member farthest from it on the ideal's side, i.e. the one with the smallest
    ``sum(z)``. With two objectives the anchors are the front's two ends and this is the classic
    knee, the point farthest from the line joining them.

    The definition depends on no additive shift or positive scale of any objective, and it is
    defined whatever the front: extremes that coincide (one member best in several objectives, common
    when the smallest model is also the fastest) change nothing, unlike a plane fitted through the
    extremes themselves. Ties (within 1e-12) go to the lower ``costs`` when given, else the lower index.

    Example:
        >>> knee_index([[0.0, 1.0], [0.2, 0.2], [1.0, 0.0], [0.6, 0.5]])
        1
        >>> knee_index([[0.0, 10.0, 5.0], [0.0, 10.0, 5.0]], costs=[2.0, 1.0])  # nothing tells them apart
        1
    """
    arr = _points(points)
    if len(arr) == 0:
        raise ValueError("knee_index needs at least one point; the front is empty.")
    low, high = arr.min(axis=0), arr.max(axis=0)
    spread = high - low
    varies = spread > 0
    z = (arr[:, varies] - low[varies]) / spread[varies]
    score = z.sum(axis=1)  # distance to the anchor plane, up to the constant (k - 1) and 1/sqrt(k)
    tiebreak = np.asarray(costs, dtype=float) if costs is not None else np.arange(len(arr), dtype=float)
    best = np.flatnonzero(score <= score.min() + 1e-12)
    return int(best[np.argmin(tiebreak[best])])
