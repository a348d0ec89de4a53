"""ZCore: exact agreement with the plain reference loop, determinism, and edge cases."""

import numpy as np
import pytest

from annoloop.selection.algorithms import zcore
from annoloop.selection.algorithms.zcore_reference import reference_raw_scores, reference_zcore_scores
from annoloop.selection.zcore_torch import torch_engine


def _pool(n_rows=300, dim=8, seed=0):
    return np.random.default_rng(seed).standard_normal((n_rows, dim))


def _assert_matches_reference(x, params, **kwargs):
    draws = zcore.draw_samples(x, params)
    fast = zcore.coverage_redundancy_scores(x, draws, params, **kwargs)
    slow = reference_raw_scores(x, draws, params.redund_nn, params.redund_exp)
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-9)


# Equivalence with the reference loop (float64 embeddings: the reference computes coverage
# distances in float64, the fast path in the embeddings' dtype).


def test_zcore_matches_reference_loop_for_the_same_draws():
    _assert_matches_reference(_pool(), zcore.ZCoreParams(n_sample=1500, redund_nn=20, seed=1))


def test_zcore_matches_reference_when_rows_are_streamed_in_chunks():
    params = zcore.ZCoreParams(n_sample=1500, redund_nn=20, seed=2)
    _assert_matches_reference(_pool(), params, chunk_rows=37)


def test_zcore_matches_reference_for_three_dimensional_subspaces():
    params = zcore.ZCoreParams(n_sample=800, sample_dim=3, redund_nn=40, redund_exp=2, seed=3)
    _assert_matches_reference(_pool(400, 6), params)


def test_zcore_matches_reference_when_a_fixed_row_subsample_misleads_the_radius_guess():
    # Every 7th row sits in one tight cluster: the strided row subsample the fast path uses
    # to guess a neighbourhood radius sees only that cluster, so many guesses enclose too
    # few rows and the exact fallback must take over.
    x = _pool(2000, 4, seed=4)
    x[::7] *= 1e-3
    params = zcore.ZCoreParams(n_sample=400, redund_nn=300, seed=0)
    _assert_matches_reference(x, params)
    _assert_matches_reference(x, params, chunk_rows=300)


def test_zcore_resolves_duplicate_rows_deterministically_like_a_stable_sort():
    x = _pool(200, 5, seed=5)
    x[100:150] = x[:50]  # 50 exact duplicates
    params = zcore.ZCoreParams(n_sample=1500, redund_nn=30, seed=6)
    _assert_matches_reference(x, params)
    _assert_matches_reference(x, params, chunk_rows=64)


def test_zcore_charges_the_copy_of_a_duplicate_that_comes_later_in_the_seeded_order():
    x = np.repeat(_pool(60, 3, seed=7), 2, axis=0)  # rows 2i and 2i+1 are identical
    params = zcore.ZCoreParams(n_sample=3000, redund_nn=10, rand_init=False)
    scores = zcore.zcore_scores(x, params)
    rank = np.argsort(zcore.draw_samples(x, params).order)  # position in the tie order
    first = np.where(rank[0::2] < rank[1::2], scores[0::2], scores[1::2])
    second = np.where(rank[0::2] < rank[1::2], scores[1::2], scores[0::2])
    assert np.all(first >= second) and np.mean(first > second) > 0.5
    # Which copy is kept follows the seed, not the row index.
    assert 0.2 < np.mean(scores[0::2] > scores[1::2]) < 0.8


def test_raw_scores_sum_to_zero_because_each_draw_credits_one_and_charges_one():
    x = _pool(50, 4, seed=8)
    params = zcore.ZCoreParams(n_sample=700, redund_nn=1000, seed=9)  # more than N - 1
    raw = zcore.coverage_redundancy_scores(x, zcore.draw_samples(x, params), params)
    assert raw.sum() == pytest.approx(0.0, abs=1e-9)
    _assert_matches_reference(x, params)


def test_zcore_full_pipeline_matches_reference_scores():
    x = _pool(150, 6, seed=10)
    params = zcore.ZCoreParams(n_sample=600, redund_nn=25, seed=11)
    np.testing.assert_allclose(
        zcore.zcore_scores(x, params), reference_zcore_scores(x, params), atol=1e-9
    )


# Pools above zcore._BRUTE_ROWS + _BRUTE_ROWS_PER_NN * redund_nn rows (2048 + 6k) search
# candidates per draw instead of taking every row; these exercise that search in memory.


def test_zcore_matches_reference_when_candidates_are_searched_per_draw():
    params = zcore.ZCoreParams(n_sample=800, redund_nn=10, seed=22)
    _assert_matches_reference(_pool(2600, 6, seed=22), params)


def test_zcore_candidate_search_survives_a_misleading_subsample_and_duplicates():
    x = _pool(2700, 4, seed=23)
    x[::2] *= 1e-3  # the strided subsample (every 2nd row here) sees one tight cluster only
    x[1001:1201:2] = x[1:201:2]  # exact duplicates among the other rows
    _assert_matches_reference(x, zcore.ZCoreParams(n_sample=600, redund_nn=90, seed=24))


# Ties are broken by the seed, not by row order.


def _digits():
    from sklearn.datasets import load_digits

    return load_digits().data  # pixel values in 17 levels: exact ties in every subspace


def test_zcore_scores_do_not_favour_early_rows_on_tied_data():
    from scipy.stats import spearmanr

    # One seed's tie order is one random permutation: its correlation with the row index
    # has a spread of about 1 / sqrt(N) (0.024 here), so four seeds are averaged.
    rows = np.arange(len(_digits()))
    rho = [
        spearmanr(zcore.zcore_scores(_digits(), zcore.ZCoreParams(n_sample=10000, seed=s)), rows)
        for s in range(4)
    ]
    assert abs(np.mean([r.statistic for r in rho])) < 0.05


def test_zcore_scores_of_shuffled_rows_agree_with_the_original_as_a_reseeded_run_does():
    from scipy.stats import spearmanr

    x = _digits()
    shuffle = np.random.default_rng(1).permutation(len(x))
    params = zcore.ZCoreParams(n_sample=20000, seed=0)
    scores = zcore.zcore_scores(x, params)
    shuffled = zcore.zcore_scores(x[shuffle], params)
    reseeded = zcore.zcore_scores(x, zcore.ZCoreParams(n_sample=20000, seed=1))
    agreement = spearmanr(scores[shuffle], shuffled).statistic
    assert agreement > spearmanr(scores, reseeded).statistic - 0.02


def test_raw_scores_move_with_the_rows_when_rows_and_tie_order_are_permuted_together():
    x = _digits()[:700]
    params = zcore.ZCoreParams(n_sample=1500, redund_nn=50, seed=3)
    draws = zcore.draw_samples(x, params)
    shuffle = np.random.default_rng(2).permutation(len(x))
    # Row i of x[shuffle] is row shuffle[i] of x: keep each row's place in the tie order.
    moved = zcore.ZCoreDraws(draws.dims, draws.points, np.argsort(shuffle)[draws.order])
    np.testing.assert_array_equal(
        zcore.coverage_redundancy_scores(x[shuffle], moved, params),
        zcore.coverage_redundancy_scores(x, draws, params)[shuffle],
    )


def test_zcore_matches_reference_on_tied_data_in_the_seeded_tie_order():
    x = _digits()[:600]
    _assert_matches_reference(x, zcore.ZCoreParams(n_sample=800, redund_nn=40, seed=4))
    params = zcore.ZCoreParams(n_sample=300, redund_nn=40, seed=4)
    _assert_matches_reference(x, params, chunk_rows=90)


# Behaviour of the scores.


def test_zcore_is_deterministic_for_a_seed_and_varies_across_seeds():
    x = _pool(300, 8, seed=12).astype(np.float32)
    params = zcore.ZCoreParams(n_sample=2000, redund_nn=30, seed=5)
    a = zcore.zcore_scores(x, params)
    np.testing.assert_array_equal(a, zcore.zcore_scores(x, params))
    other = zcore.ZCoreParams(n_sample=2000, redund_nn=30, seed=6)
    assert not np.array_equal(a, zcore.zcore_scores(x, other))


def test_zcore_scores_do_not_depend_on_worker_count():
    x = _pool(500, 8, seed=13).astype(np.float32)
    one = zcore.ZCoreParams(n_sample=5000, redund_nn=40, n_workers=1)
    two = zcore.ZCoreParams(n_sample=5000, redund_nn=40, n_workers=2)
    np.testing.assert_array_equal(zcore.zcore_scores(x, one), zcore.zcore_scores(x, two))


def test_zcore_scores_are_min_max_normalised():
    scores = zcore.zcore_scores(_pool(), zcore.ZCoreParams(n_sample=1000, redund_nn=20))
    assert scores.shape == (300,) and scores.dtype == np.float64
    assert scores.min() == 0.0 and scores.max() == 1.0


def test_zcore_ranks_isolated_rows_above_a_dense_cluster():
    rng = np.random.default_rng(14)
    cluster = rng.normal(0.0, 0.1, size=(400, 6))
    isolated = rng.uniform(-3.0, 3.0, size=(5, 6))
    scores = zcore.zcore_scores(
        np.concatenate([cluster, isolated]), zcore.ZCoreParams(n_sample=4000, redund_nn=50)
    )
    assert scores[400:].min() > np.quantile(scores[:400], 0.9)


def test_zcore_gives_fortran_and_c_ordered_embeddings_the_same_scores():
    x = _pool(300, 8, seed=15).astype(np.float32)
    params = zcore.ZCoreParams(n_sample=1000, redund_nn=20)
    np.testing.assert_array_equal(
        zcore.zcore_scores(x, params), zcore.zcore_scores(np.asfortranarray(x), params)
    )


def test_zcore_combines_several_embedding_sets_by_concatenating_features():
    a, b = _pool(200, 4, seed=16), _pool(200, 3, seed=17)
    params = zcore.ZCoreParams(n_sample=800, redund_nn=20)
    np.testing.assert_array_equal(
        zcore.zcore_scores([a, b], params),
        zcore.zcore_scores(np.concatenate([a, b], axis=1), params),
    )


def test_zcore_torch_backend_matches_numpy_backend():
    x = _pool(400, 6, seed=18)
    params = zcore.ZCoreParams(n_sample=600, redund_nn=30, seed=2)
    draws = zcore.draw_samples(x, params)
    np.testing.assert_allclose(
        zcore.coverage_redundancy_scores(x, draws, params, engine=torch_engine("cpu")),
        zcore.coverage_redundancy_scores(x, draws, params),
        atol=1e-9,
    )


def test_zcore_reports_progress_up_to_one():
    seen = []
    zcore.zcore_scores(
        _pool(100, 4), zcore.ZCoreParams(n_sample=5000, redund_nn=10), progress=seen.append
    )
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == 3


def test_draw_samples_picks_distinct_varying_dimensions_and_points_within_their_range():
    x = _pool(100, 6, seed=19)
    x[:, 2] = 5.0  # constant
    draws = zcore.draw_samples(x, zcore.ZCoreParams(n_sample=3000, sample_dim=3, seed=4))
    assert draws.dims.shape == draws.points.shape == (3000, 3)
    assert np.all(np.sort(draws.dims, axis=1)[:, 1:] != np.sort(draws.dims, axis=1)[:, :-1])
    assert not np.any(draws.dims == 2)
    assert set(np.unique(draws.dims)) == {0, 1, 3, 4, 5}
    low, high = x.min(axis=0)[draws.dims], x.max(axis=0)[draws.dims]
    assert np.all((draws.points >= low) & (draws.points <= high))


# Edge cases.


def test_zcore_constant_dimensions_do_not_change_scores():
    x = _pool(200, 4, seed=20)
    padded = np.insert(x, [1, 3], 7.0, axis=1)  # two constant columns
    params = zcore.ZCoreParams(n_sample=800, redund_nn=20)
    np.testing.assert_array_equal(zcore.zcore_scores(x, params), zcore.zcore_scores(padded, params))


def test_zcore_lowers_sample_dim_with_a_warning_when_too_few_dimensions_vary():
    x = _pool(100, 3, seed=21)
    x[:, 1:] = 0.0
    with pytest.warns(UserWarning, match="only 1 of 3 embedding dimensions vary"):
        scores = zcore.zcore_scores(x, zcore.ZCoreParams(n_sample=500, redund_nn=10))
    assert scores.shape == (100,) and scores.max() == 1.0


def test_zcore_scores_identical_rows_and_a_single_row_as_all_zero():
    np.testing.assert_array_equal(zcore.zcore_scores(np.ones((10, 4))), np.zeros(10))
    np.testing.assert_array_equal(zcore.zcore_scores(np.ones((1, 4))), np.zeros(1))


def test_zcore_returns_empty_scores_for_empty_input():
    assert zcore.zcore_scores(np.zeros((0, 8))).shape == (0,)


def test_zcore_rejects_non_finite_rows_and_names_how_many():
    x = _pool(20, 3)
    x[3, 1], x[7, 0], x[7, 2] = np.nan, np.inf, -np.inf
    with pytest.raises(ValueError, match="2 of 20 rows"):
        zcore.zcore_scores(x)


def test_zcore_rejects_one_dimensional_input():
    with pytest.raises(ValueError, match=r"2-D .*shape \(10,\)"):
        zcore.zcore_scores(np.zeros(10))


def test_zcore_rejects_mismatched_row_counts_across_embedding_sets():
    with pytest.raises(ValueError, match=r"different row counts \[10, 12\]"):
        zcore.zcore_scores([np.zeros((10, 2)), np.zeros((12, 2))])


def test_zcore_rejects_sample_dim_above_the_number_of_dimensions():
    with pytest.raises(ValueError, match="sample_dim=5 exceeds the 3 embedding dimensions"):
        zcore.zcore_scores(_pool(10, 3), zcore.ZCoreParams(sample_dim=5))


def test_zcore_rejects_invalid_hyperparameters():
    with pytest.raises(ValueError, match="n_sample must be an integer >= 1"):
        zcore.ZCoreParams(n_sample=0)
    with pytest.raises(ValueError, match="redund_nn must be an integer >= 1"):
        zcore.ZCoreParams(redund_nn=2.5)


def test_coverage_redundancy_scores_rejects_a_tie_order_that_is_not_a_permutation():
    draws = zcore.ZCoreDraws(np.array([[0, 1]]), np.array([[0.0, 0.0]]), np.zeros(10, int))
    with pytest.raises(ValueError, match="permutation of the 10 rows"):
        zcore.coverage_redundancy_scores(_pool(10, 3), draws)


def test_coverage_redundancy_scores_rejects_draws_outside_the_embedding_dimensions():
    draws = zcore.ZCoreDraws(np.array([[0, 3]]), np.array([[0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"1 entries outside \[0, 3\)"):
        zcore.coverage_redundancy_scores(_pool(10, 3), draws)


def test_shards_of_a_run_sum_to_the_unsharded_scores_and_repeat_bit_for_bit():
    x = _pool()
    params = zcore.ZCoreParams(n_sample=5 * 2048, redund_nn=10, seed=2)
    parts = [zcore.zcore_shard_scores(x, params, k, 3) for k in range(3)]
    np.testing.assert_array_equal(parts[1], zcore.zcore_shard_scores(x, params, 1, 3))
    combined = zcore.combine_shard_scores(parts, params)
    np.testing.assert_allclose(combined, zcore.zcore_scores(x, params), atol=1e-12)
    assert not np.array_equal(parts[0], parts[1])  # each shard scores its own draws


def test_a_shard_count_above_the_runs_blocks_of_draws_is_refused():
    with pytest.raises(ValueError, match=r"shards must be a whole number from 1 to 2 "):
        zcore.zcore_shard_scores(_pool(), zcore.ZCoreParams(n_sample=4096), 0, 3)
