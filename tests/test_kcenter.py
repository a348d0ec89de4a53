"""Greedy k-center: exact behaviour on small arrays, validation, and bounded-memory chunking."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from annoloop.selection.algorithms.coverage_picks import coverage_picks
from annoloop.selection.algorithms.kcenter import KCenterResult, kcenter_greedy
from array_helpers import blobs


def _brute_force_kcenter(x, budget, first=None, labeled=()):
    """Textbook farthest-point selection with a full distance matrix (small inputs only)."""
    d = cdist(x, x)
    centres = list(labeled)
    picks = []
    if not centres:
        picks.append(first)
        centres.append(first)
    while len(picks) < budget:
        nearest = d[:, centres].min(axis=1)
        nearest[centres] = -1.0
        nxt = int(np.argmax(nearest))
        picks.append(nxt)
        centres.append(nxt)
    return picks


def test_kcenter_matches_brute_force_farthest_point_selection():
    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float64)
    result = kcenter_greedy(x, 25, seed=3)
    expected = _brute_force_kcenter(x, 25, first=int(result.indices[0]))
    assert result.indices.tolist() == expected


def test_kcenter_cold_start_first_pick_depends_only_on_seed():
    x = np.random.default_rng(1).normal(size=(200, 4)).astype(np.float32)
    a = kcenter_greedy(x, 10, seed=7)
    b = kcenter_greedy(x, 10, seed=7)
    c = kcenter_greedy(x, 10, seed=8)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.indices[0] != c.indices[0]
    assert np.isinf(a.distances[0])


def test_kcenter_result_types_and_distances_are_non_increasing():
    x = np.random.default_rng(2).normal(size=(500, 16)).astype(np.float32)
    result = kcenter_greedy(x, 40)
    assert isinstance(result, KCenterResult)
    assert result.indices.dtype == np.int64 and result.indices.shape == (40,)
    assert result.distances.dtype == np.float64 and result.distances.shape == (40,)
    assert len(set(result.indices.tolist())) == 40
    assert np.all(np.diff(result.distances[1:]) <= 1e-5)


def test_kcenter_reports_each_picks_distance_to_its_nearest_centre_at_pick_time():
    x = np.random.default_rng(3).normal(size=(120, 5))
    labeled = np.array([4, 50, 99])
    result = kcenter_greedy(x, 6, already_selected=labeled)
    centres = list(labeled)
    for pick, dist in zip(result.indices, result.distances):
        assert dist == pytest.approx(cdist(x[[pick]], x[centres]).min(), rel=1e-6)
        centres.append(pick)


def test_kcenter_treats_already_selected_rows_as_centres_and_never_returns_them():
    x = np.random.default_rng(4).normal(size=(250, 6))
    labeled = np.array([0, 10, 20, 30, 40])
    result = kcenter_greedy(x, 30, already_selected=labeled)
    assert not set(result.indices.tolist()) & set(labeled.tolist())
    assert result.indices.tolist() == _brute_force_kcenter(x, 30, labeled=labeled.tolist())


def test_kcenter_fills_an_uncovered_cluster_before_revisiting_labeled_ones():
    rng = np.random.default_rng(5)
    covered = rng.normal(0.0, 0.1, size=(100, 2))
    uncovered = rng.normal(10.0, 0.1, size=(20, 2))
    x = np.concatenate([covered, uncovered])
    result = kcenter_greedy(x, 1, already_selected=np.arange(100))
    assert result.indices[0] >= 100


def test_kcenter_result_does_not_depend_on_chunk_size():
    x = np.random.default_rng(6).normal(size=(1000, 12)).astype(np.float32)
    labeled = np.arange(0, 1000, 97)
    a = kcenter_greedy(x, 50, already_selected=labeled, chunk_size=65536)
    b = kcenter_greedy(x, 50, already_selected=labeled, chunk_size=37)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.distances, b.distances, rtol=1e-5)


def test_kcenter_with_duplicates_picks_distinct_rows_deterministically():
    x = np.repeat(np.eye(3), 4, axis=0)  # 3 distinct points, 4 copies each
    result = kcenter_greedy(x, 6, seed=0)
    assert len(set(result.indices.tolist())) == 6
    assert set(map(tuple, x[result.indices[:3]])) == set(map(tuple, np.eye(3)))
    np.testing.assert_allclose(result.distances[3:], 0.0, atol=1e-6)
    np.testing.assert_array_equal(result.indices, kcenter_greedy(x, 6, seed=0).indices)


def test_kcenter_can_select_every_unlabeled_row():
    x = np.random.default_rng(7).normal(size=(30, 3))
    result = kcenter_greedy(x, 25, already_selected=np.arange(5))
    assert sorted(result.indices.tolist()) == list(range(5, 30))


def test_kcenter_zero_budget_returns_empty_result():
    result = kcenter_greedy(np.zeros((0, 4)), 0)
    assert result.indices.shape == (0,) and result.distances.shape == (0,)


def test_kcenter_rejects_budget_above_selectable_rows():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match=r"budget=8 exceeds the 7 selectable rows"):
        kcenter_greedy(x, 8, already_selected=np.array([1, 2, 3]))


def test_kcenter_rejects_negative_budget():
    with pytest.raises(ValueError, match="budget must be >= 0"):
        kcenter_greedy(np.zeros((10, 2)), -1)


def test_kcenter_rejects_out_of_range_already_selected():
    with pytest.raises(ValueError, match="2 indices outside"):
        kcenter_greedy(np.zeros((10, 2)), 1, already_selected=np.array([3, 10, -1]))


def test_kcenter_rejects_non_finite_rows_and_names_how_many():
    x = np.zeros((10, 2))
    x[2, 0] = np.nan
    x[5, 1] = np.inf
    with pytest.raises(ValueError, match="2 of 10 rows"):
        kcenter_greedy(x, 1)


def test_kcenter_rejects_one_dimensional_input():
    with pytest.raises(ValueError, match="2-D"):
        kcenter_greedy(np.zeros(10), 1)


def _coverage(pool, n_picks, *, selectable=None, targeted=(), labeled=None, sample_rows, seed=0):
    selectable = np.arange(len(pool)) if selectable is None else selectable
    labeled = np.empty((0, pool.shape[1]), np.float32) if labeled is None else labeled
    rows, _ = coverage_picks(
        pool, selectable, labeled, np.asarray(targeted, dtype=np.int64), n_picks,
        method="kcenter", scores=None, candidate_factor=10, seed=seed, chunk_size=512,
        sample_rows=sample_rows,
    )
    return rows


def test_sampled_kcenter_still_puts_one_pick_in_every_dense_cluster():
    centres = np.random.default_rng(5).uniform(-100, 100, size=(30, 8))
    pool, blob = blobs(centres, per_blob=400)
    rows = _coverage(pool, 30, sample_rows=1000)  # 1,000 of 12,000 rows are considered
    assert sorted(blob[rows].tolist()) == list(range(30))


def test_sampled_kcenter_keeps_to_selectable_untargeted_rows_and_to_its_seed():
    centres = np.random.default_rng(6).uniform(-50, 50, size=(10, 4))
    pool, _ = blobs(centres, per_blob=300)
    selectable = np.arange(0, len(pool), 2)
    targeted = selectable[:50]
    rows = _coverage(pool, 40, selectable=selectable, targeted=targeted, sample_rows=200)
    assert len(set(rows.tolist())) == 40
    assert np.isin(rows, selectable).all() and not np.isin(rows, targeted).any()
    again = _coverage(pool, 40, selectable=selectable, targeted=targeted, sample_rows=200)
    np.testing.assert_array_equal(rows, again)
    other = _coverage(pool, 40, selectable=selectable, targeted=targeted, sample_rows=200, seed=1)
    assert not np.array_equal(rows, other)


def test_kcenter_below_the_sample_size_is_the_exact_greedy():
    pool = np.random.default_rng(7).standard_normal((500, 6)).astype(np.float32)
    rows = _coverage(pool, 12, sample_rows=500, seed=3)
    np.testing.assert_array_equal(rows, kcenter_greedy(pool, 12, seed=3).indices)
