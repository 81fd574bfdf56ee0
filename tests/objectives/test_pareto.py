from __future__ import annotations

import itertools

import numpy as np
import pytest

from tradeoff.objectives import hypervolume, knee_index, nondominated_rank, pareto_mask, reference_point


def _brute_force_front(points: np.ndarray) -> np.ndarray:
    n = len(points)
    return np.array(
        [
            not any(np.all(points[j] <= points[i]) and np.any(points[j] < points[i]) for j in range(n) if j != i)
            for i in range(n)
        ]
    )


@pytest.mark.parametrize("seed", range(5))
def test_front_matches_a_brute_force_check(seed: int) -> None:
    pts = np.random.default_rng(seed).random((40, 4)).round(1)  # rounding makes ties and duplicates
    assert np.array_equal(pareto_mask(pts), _brute_force_front(pts))


def test_ranks_peel_fronts() -> None:
    assert nondominated_rank([[0, 0], [1, 1], [2, 2], [0, 3]]).tolist() == [0, 1, 2, 1]


def _monte_carlo_hv(points: np.ndarray, ref: np.ndarray, n: int = 200_000) -> float:
    rng = np.random.default_rng(0)
    lo = points.min(axis=0)
    samples = lo + rng.random((n, len(ref))) * (ref - lo)
    dominated = np.zeros(n, dtype=bool)
    for p in points:
        dominated |= np.all(samples >= p, axis=1)
    return float(dominated.mean() * np.prod(ref - lo))


def test_hypervolume_against_an_independent_estimate() -> None:
    pts = np.random.default_rng(1).random((12, 4)) * 0.9
    ref = np.ones(4)
    assert hypervolume(pts, ref) == pytest.approx(_monte_carlo_hv(pts, ref), rel=0.02)


def test_hypervolume_exact_small_cases_and_points_outside_the_box() -> None:
    assert hypervolume([[0.5, 0.5], [0.25, 0.75]], [1, 1]) == pytest.approx(0.25 + 0.25 * 0.25)
    assert hypervolume([[2.0, 0.0]], [1, 1]) == 0.0
    assert hypervolume(np.zeros((0, 2)), [1, 1]) == 0.0
    assert hypervolume([[0.5, 0.5], [2.0, 0.0]], [1, 1]) == pytest.approx(0.25)


def test_reference_point_uses_the_relative_drop_limit() -> None:
    assert reference_point(0.5, 0.05).tolist() == [0.1, 1, 1, 1]
    assert reference_point(0.9, None).tolist() == [0.1, 1, 1, 1]


def test_knee_is_the_point_farthest_inside_the_extremes_plane() -> None:
    pts = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.3, 0.3, 0.3], [0.5, 0.5, 0.4]])
    assert knee_index(pts) == 3
    for perm in itertools.permutations(range(5)):
        assert perm[knee_index(pts[list(perm)])] == 3


def test_knee_ties_go_to_lower_cost() -> None:
    pts = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.2], [0.2, 0.2]])
    assert knee_index(pts, costs=[1, 1, 0.5, 0.4]) == 3
    with pytest.raises(ValueError, match="empty"):
        knee_index(np.zeros((0, 2)))


def _inclusion_exclusion_hv(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume by inclusion-exclusion over every subset (an independent, slow definition)."""
    total = 0.0
    for k in range(1, len(points) + 1):
        for subset in itertools.combinations(points, k):
            corner = np.max(subset, axis=0)  # the intersection of the boxes [p, ref]
            total += (-1) ** (k + 1) * float(np.prod(np.clip(ref - corner, 0, None)))
    return total


@pytest.mark.parametrize("seed", range(4))
def test_hypervolume_matches_an_exact_independent_definition_in_four_dimensions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pts = rng.random((9, 4)) * 1.1  # some points leave the box in some coordinate
    ref = np.array([0.1, 1.0, 1.0, 1.0]) if seed % 2 else np.ones(4)
    assert hypervolume(pts, ref) == pytest.approx(_inclusion_exclusion_hv(pts, ref), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_dominating_count_matches_a_brute_force_count(seed: int) -> None:
    from tradeoff.objectives import dominating_count

    pts = np.random.default_rng(seed).random((30, 4)).round(1)
    for p in pts[:10]:
        expected = sum(bool(np.all(q <= p) and np.any(q < p)) for q in pts)
        assert dominating_count(p, pts) == expected
