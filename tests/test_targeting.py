"""Targeting: chunked nearest-neighbour search and the weighted, spread-out failure picks."""

import numpy as np
import pytest

from annoloop.selection.algorithms import targeting
from array_helpers import blobs


def test_nearest_rows_match_brute_force_across_many_blocks():
    rng = np.random.default_rng(1)
    pool = rng.standard_normal((3000, 16)).astype(np.float32)
    queries = rng.standard_normal((120, 16)).astype(np.float32)
    # 2,000-element blocks: 16 pool rows per block, so the running top-k merges ~190 times.
    idx, dist = targeting.nearest_rows(pool, queries, 7, block_elements=2000)
    exact = np.linalg.norm(queries[:, None, :].astype(float) - pool[None].astype(float), axis=2)
    np.testing.assert_array_equal(idx, np.argsort(exact, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(dist, np.sort(exact, axis=1)[:, :7], atol=1e-4)


def test_nearest_rows_only_return_candidate_rows():
    rng = np.random.default_rng(2)
    pool = rng.standard_normal((500, 8))
    queries = pool[:20] + 1e-3  # each query sits on a row that is not a candidate
    candidates = np.arange(100, 500)
    idx, _ = targeting.nearest_rows(pool, queries, 5, candidates=candidates, block_elements=640)
    assert np.isin(idx, candidates).all()
    exact = np.linalg.norm(queries[:, None, :] - pool[None, candidates], axis=2)
    np.testing.assert_array_equal(idx[:, 0], candidates[exact.argmin(axis=1)])


def test_nearest_rows_clip_k_to_the_candidate_count():
    pool = np.eye(4)
    idx, dist = targeting.nearest_rows(pool, pool[:2], 10, candidates=np.array([1, 3]))
    assert idx.shape == dist.shape == (2, 2)
    assert set(idx.ravel().tolist()) == {1, 3}


def test_default_weights_rank_fn_above_confusion_above_fp():
    weights = targeting.failure_weights(["fp", "confusion", "fn"])
    np.testing.assert_array_equal(weights, [1.0, 2.0, 3.0])


def test_unknown_failure_kind_is_rejected_with_the_known_kinds():
    with pytest.raises(ValueError, match=r"unknown failure kind\(s\) \['miss'\].*'fn'"):
        targeting.failure_weights(["fn", "miss"])


def test_non_positive_kind_weight_is_rejected():
    with pytest.raises(ValueError, match="positive"):
        targeting.failure_weights(["fn"], {"fn": 0.0})


def test_fn_failure_gets_three_picks_for_each_fp_pick():
    pool, blob = blobs([[0, 0], [10, 10]], per_blob=100)
    queries = np.array([[0, 0], [10, 10]], dtype=np.float32)
    weights = targeting.failure_weights(["fn", "fp"])
    result = targeting.select_targets(pool, queries, weights, 40)
    assert np.bincount(blob[result.indices], minlength=2).tolist() == [30, 10]
    np.testing.assert_array_equal(result.query, blob[result.indices])


def test_each_failure_takes_its_nearest_free_rows_in_order():
    pool, _ = blobs([[0, 0]], per_blob=200)
    query = np.array([[0.01, -0.02]], dtype=np.float32)
    result = targeting.select_targets(pool, query, np.ones(1), 15)
    distances = np.linalg.norm(pool.astype(float) - query.astype(float), axis=1)
    np.testing.assert_array_equal(result.indices, np.argsort(distances, kind="stable")[:15])
    np.testing.assert_allclose(result.distances, np.sort(distances)[:15], rtol=1e-12)


def test_near_duplicate_failures_cannot_crowd_out_the_others():
    centres = [[0, 0], [10, 0], [0, 10], [10, 10], [-10, 0], [0, -10]]
    pool, blob = blobs(centres, per_blob=50)
    rng = np.random.default_rng(3)
    duplicates = np.zeros((70, 2), dtype=np.float32) + rng.normal(scale=1e-4, size=(70, 2))
    queries = np.concatenate([duplicates, np.asarray(centres[1:], dtype=np.float32)])
    weights = targeting.failure_weights(["fn"] * len(queries))
    result = targeting.select_targets(pool, queries, weights, 30)
    assert np.bincount(blob[result.indices], minlength=6).tolist() == [5] * 6


def test_equal_weight_failures_each_get_a_pick_before_any_gets_a_second():
    centres = [[10.0 * i, 0] for i in range(8)]
    pool, blob = blobs(centres, per_blob=20)
    queries = np.asarray(centres, dtype=np.float32)
    result = targeting.select_targets(pool, queries, np.ones(8), 12)
    assert sorted(blob[result.indices[:8]].tolist()) == list(range(8))
    assert len(set(result.indices.tolist())) == 12


def test_share_comes_back_short_when_neighbour_lists_run_dry():
    pool, _ = blobs([[0, 0], [10, 10]], per_blob=30)
    queries = np.array([[0, 0], [10, 10]], dtype=np.float32)
    result = targeting.select_targets(pool, queries, np.ones(2), 20, neighbors_per_query=3)
    assert len(result.indices) == 6
    assert len(set(result.indices.tolist())) == 6


def test_select_targets_never_picks_a_non_candidate_row():
    pool, _ = blobs([[0, 0]], per_blob=100)
    candidates = np.arange(0, 100, 2)
    result = targeting.select_targets(
        pool, np.zeros((3, 2)), np.ones(3), 20, candidates=candidates
    )
    assert np.isin(result.indices, candidates).all()
    assert len(result.indices) == 20


def test_nan_failure_embeddings_are_rejected_with_the_row_count():
    queries = np.zeros((5, 3))
    queries[[1, 4], 0] = np.nan
    with pytest.raises(ValueError, match="failure embeddings has 2 of 5 rows containing NaN"):
        targeting.nearest_rows(np.zeros((10, 3)), queries, 2)


def test_query_dimension_must_match_the_pool():
    with pytest.raises(ValueError, match="dimension 4 but the pool embeddings have dimension 3"):
        targeting.nearest_rows(np.zeros((10, 3)), np.zeros((2, 4)), 2)


def test_candidates_outside_the_pool_are_rejected():
    with pytest.raises(ValueError, match="must index the 10 pool rows"):
        targeting.nearest_rows(np.zeros((10, 3)), np.zeros((2, 3)), 2, candidates=[3, 10])


def test_equal_weight_failures_are_served_in_the_callers_order():
    centres = [[10.0 * i, 0] for i in range(8)]
    pool, blob = blobs(centres, per_blob=20)
    queries = np.asarray(centres[::-1], dtype=np.float32)  # most important failure first
    result = targeting.select_targets(pool, queries, np.ones(8), 3)
    assert blob[result.indices].tolist() == [7, 6, 5]
    assert result.query.tolist() == [0, 1, 2]


def test_failures_the_schedule_cannot_reach_do_not_change_the_picks():
    centres = [[10.0 * i, 0] for i in range(6)]
    pool, _ = blobs(centres, per_blob=20)
    fn = np.asarray(centres[:5], dtype=np.float32)
    fp = np.random.default_rng(4).uniform(-5, 55, size=(500, 2)).astype(np.float32)
    alone = targeting.select_targets(pool, fn, np.full(5, 3.0), 5)
    crowded = targeting.select_targets(
        pool, np.concatenate([fp, fn]), np.r_[np.ones(500), np.full(5, 3.0)], 5
    )
    np.testing.assert_array_equal(crowded.indices, alone.indices)
    np.testing.assert_array_equal(crowded.query, alone.query + 500)


def test_huge_finite_values_are_not_mistaken_for_inf():
    rows = np.full((4, 3), 3e38, dtype=np.float32)  # each row sum overflows float32
    assert targeting.validate_embeddings("rows", rows) is rows
