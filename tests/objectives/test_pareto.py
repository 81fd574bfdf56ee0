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


def test_the_knee_of_a_convex_bulge_is_the_bulge_in_2_3_and_4_objectives() -> None:
    for k in (2, 3, 4):
        anchors = np.ones((k, k)) - np.eye(k)  # best in one objective, worst in the others
        bulge = np.full(k, 0.3)  # well inside the plane through them
        shallow = np.full(k, (k - 1) / k) + np.linspace(-0.05, 0.05, k)  # on that plane, nearly
        pts = np.vstack([anchors, shallow, bulge])
        assert knee_index(pts) == k + 1


def test_the_knee_does_not_move_when_any_axis_is_shifted_or_scaled() -> None:
    rng = np.random.default_rng(0)
    for trial in range(300):
        k = int(rng.integers(2, 5))
        pts = rng.random((int(rng.integers(2, 12)), k))
        pts = pts[pareto_mask(pts)]
        knee = knee_index(pts)
        shift, scale = rng.normal(0, 10, k), rng.uniform(0.01, 100, k)
        assert knee_index(pts * scale + shift) == knee, trial


def test_coinciding_extremes_and_flat_fronts_have_a_defined_knee() -> None:
    # one member best in size, latency and energy at once (the most compressed model), the rest trade accuracy
    pts = np.array([[0.30, 0.1, 0.1, 0.1], [0.00, 1.0, 1.0, 1.0], [0.05, 0.3, 0.4, 0.35], [0.15, 0.2, 0.2, 0.2]])
    knee = knee_index(pts)
    assert knee == knee_index(pts + [5.0, 0, 0, 0])  # the old plane fit moved under this shift
    assert knee == 3
    flat = np.array([[0.0, 1.0], [0.25, 0.75], [0.5, 0.5], [1.0, 0.0]])  # all on the line: every one ties
    assert knee_index(flat, costs=[4, 3, 1, 2]) == 2
    assert knee_index([[0.4, 0.4]]) == 0
