"""Incoming-data drift on synthetic embeddings (pure: numpy arrays in, dataclasses out)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from annoloop.quality.algorithms import incoming_drift as idr

DIM = 16


def _pool(rng, n=400):
    return rng.normal(size=(n, DIM))


def _with_novel(rng, m=100, share=0.1, shift=6.0):
    novel = int(round(m * share))
    batch = np.vstack([rng.normal(size=(m - novel, DIM)), rng.normal(size=(novel, DIM))])
    batch[m - novel :, 0] += shift
    batch[m - novel :, 1] -= shift
    return batch, np.r_[np.zeros(m - novel, bool), np.ones(novel, bool)]


def test_a_shifted_tenth_of_a_batch_is_scored_flagged_clustered_and_alarmed():
    rng = np.random.default_rng(0)
    batch, truth = _with_novel(rng)
    drift = idr.detect_incoming_drift(_pool(rng), batch, scale="none", seed=0)
    assert roc_auc_score(truth, drift.scores.score) > 0.95
    assert drift.alarm and drift.test.p_value < 0.01
    assert drift.novel[truth].sum() >= 9
    assert drift.novel[~truth].sum() <= 2  # Benjamini-Hochberg at fdr = 0.1
    assert set(drift.clusters[0]) >= set(np.flatnonzero(truth & drift.novel))


def test_two_distinct_new_domains_make_two_clusters():
    rng = np.random.default_rng(1)
    batch = np.vstack([rng.normal(size=(80, DIM)), rng.normal(size=(20, DIM))])
    batch[80:90, 0] += 12.0
    batch[90:, 1] += 12.0
    drift = idr.detect_incoming_drift(_pool(rng), batch, scale="none", seed=0)
    groups = sorted(sorted(c.tolist()) for c in drift.clusters if len(c) > 2)
    assert groups == [list(range(80, 90)), list(range(90, 100))]


def test_iid_batches_get_uniform_p_values_and_rarely_alarm():
    p_values, alarms = [], 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        drift = idr.detect_incoming_drift(
            _pool(rng, 200), rng.normal(size=(30, DIM)), scale="none",
            n_permutations=199, seed=seed,
        )
        p_values.append(drift.test.p_value)
        alarms += drift.alarm
    p_values = np.array(p_values)
    assert alarms <= 2
    assert 0.3 < p_values.mean() < 0.7
    assert np.mean(p_values < 0.1) <= 0.2


def test_near_duplicates_inside_pool_and_batch_do_not_raise_the_alarm():
    # Real pools hold near-duplicates; a batch holds its own, never the pool's. The k-th
    # neighbour, not the first, keeps the test calibrated on such data.
    def with_duplicates(rng, n):
        x = rng.normal(size=(n, DIM))
        twins = rng.choice(n, n // 10, replace=False)
        x[twins] = x[(twins + 1) % n] + rng.normal(0.0, 0.01, (len(twins), DIM))
        return x

    alarms = 0
    for seed in range(30):
        rng = np.random.default_rng(500 + seed)
        drift = idr.detect_incoming_drift(
            with_duplicates(rng, 200), with_duplicates(rng, 40), scale="none",
            n_permutations=199, seed=seed,
        )
        alarms += drift.alarm
    assert alarms <= 2


def test_per_sample_p_values_of_iid_samples_are_uniform():
    rng = np.random.default_rng(3)
    scores = idr.novelty_scores(_pool(rng, 500), rng.normal(size=(2000, DIM)), scale="none")
    for level in (0.05, 0.1, 0.5):
        assert abs(np.mean(scores.p_value <= level) - level) < 0.04


def test_the_same_seed_gives_the_same_result():
    rng = np.random.default_rng(4)
    pool, (batch, _) = _pool(rng), _with_novel(rng, share=0.05, shift=2.0)
    a = idr.detect_incoming_drift(pool, batch, n_permutations=99, seed=7)
    b = idr.detect_incoming_drift(pool, batch, n_permutations=99, seed=7)
    assert a.test == b.test
    np.testing.assert_array_equal(a.cluster, b.cluster)
    np.testing.assert_array_equal(a.scores.p_value, b.scores.p_value)


def test_a_large_reference_is_subsampled_for_the_test_only():
    rng = np.random.default_rng(5)
    pool, (batch, _) = _pool(rng, 600), _with_novel(rng, m=40)
    drift = idr.detect_incoming_drift(pool, batch, max_reference=300, n_permutations=99)
    assert drift.test.reference_used == 300
    assert len(drift.scores.reference_score) == 600


def test_benjamini_hochberg_flags_the_prefix_that_passes_its_step():
    # Steps at fdr 0.1, m = 5: 0.02, 0.04, 0.06, 0.08, 0.10.
    p = np.array([0.03, 0.5, 0.035, 0.001, 0.9])
    assert idr.flag_novel(p, fdr=0.1).tolist() == [True, False, True, True, False]
    assert not idr.flag_novel(np.full(4, 0.5)).any()


def test_clusters_of_no_and_of_one_novel_sample():
    x = np.arange(6.0).reshape(3, 2)
    assert idr.cluster_novel(x, np.zeros(3, bool), distance_threshold=1.0).tolist() == [-1] * 3
    assert idr.cluster_novel(x, np.array([False, True, False]), distance_threshold=1.0).tolist() == [-1, 0, -1]


def test_l2_scale_ignores_the_length_of_the_embeddings():
    rng = np.random.default_rng(6)
    pool, batch = _pool(rng), rng.normal(size=(20, DIM))
    a = idr.novelty_scores(pool, batch)
    b = idr.novelty_scores(pool * 3.0, batch * 0.5)
    np.testing.assert_allclose(a.score, b.score)


BAD = [
    (dict(reference=np.zeros((10, 3)), batch=np.zeros((4, 2))), r"same width; got 3 and 2"),
    (dict(reference=np.zeros(10), batch=np.zeros((4, 2))), r"reference must be a non-empty 2-D array"),
    (dict(reference=np.zeros((10, 2)), batch=np.zeros((0, 2))), r"batch must be a non-empty 2-D array"),
    (dict(reference=np.zeros((10, 2)), batch=[[0.0, np.nan]]), r"batch has 1 rows with NaN or inf \(first: row 0\)"),
    (dict(reference=np.zeros((5, 2)), batch=np.zeros((4, 2)), k=5), r"k=5 needs a reference of more than 5 samples; got 5"),
    (dict(reference=np.zeros((10, 2)), batch=np.zeros((4, 2)), k=0), r"k must be a positive int; got 0"),
    (dict(reference=np.zeros((10, 2)), batch=np.zeros((4, 2)), fdr=1.0), r"fdr must be a number in \(0, 1\); got 1.0"),
    (dict(reference=np.zeros((10, 2)), batch=np.zeros((4, 2)), alpha=True), r"alpha must be a number"),
    (dict(reference=np.zeros((10, 2)), batch=np.zeros((4, 2)), scale="cosine"), r"scale must be one of"),
    (dict(reference=np.zeros((10, 2)), batch=np.zeros((4, 2)), seed=-1), r"seed must be a non-negative int"),
    (dict(reference=np.zeros((10, 2)), batch=np.zeros((4, 2)), n_permutations=0), r"n_permutations must be a positive int"),
    (dict(reference=np.zeros((10, 2)), batch=np.zeros((4, 2)), max_reference=3), r"max_reference must exceed k=5"),
]


@pytest.mark.parametrize("kwargs, message", BAD)
def test_bad_input_is_refused_naming_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        idr.detect_incoming_drift(**kwargs)


def test_bad_flags_and_thresholds_are_refused():
    with pytest.raises(ValueError, match=r"p-values in \(0, 1\]"):
        idr.flag_novel([0.0, 0.5])
    with pytest.raises(ValueError, match="novel must be a bool array of length 3"):
        idr.cluster_novel(np.zeros((3, 2)), [1, 0, 1], distance_threshold=1.0)
    with pytest.raises(ValueError, match="distance_threshold must be a positive number"):
        idr.cluster_novel(np.zeros((3, 2)), np.ones(3, bool), distance_threshold=0.0)
