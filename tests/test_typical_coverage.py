"""Typical-cluster coverage (TypiClust): dense regions' most typical rows, not outliers."""

import numpy as np
import pytest

from annoloop.selection.algorithms import planner
from annoloop.selection.algorithms.typical import typical_picks
from array_helpers import blobs

# Four dense blobs of 40 rows (spread 0.5) and, far from all of them, six isolated outliers.
CENTRES = [[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]]
DENSE, BLOB = blobs(CENTRES, per_blob=40, scale=0.5)
OUTLIERS = np.array([[-40.0, -40.0], [60.0, -40.0], [-40.0, 60.0], [60.0, 60.0], [10.0, 80.0],
                     [80.0, 10.0]], dtype=np.float32)
POINTS = np.vstack([DENSE, OUTLIERS])
BLOB_OF = np.concatenate([BLOB, np.full(len(OUTLIERS), -1)])


def test_cold_start_takes_one_row_per_dense_blob_and_no_outlier():
    result = typical_picks(POINTS, 4, seed=0)
    assert sorted(BLOB_OF[result.indices].tolist()) == [0, 1, 2, 3]


def test_each_pick_is_its_blobs_most_typical_row_near_the_centre():
    result = typical_picks(POINTS, 4, seed=0)
    for row in result.indices:
        centre = np.asarray(CENTRES[BLOB_OF[row]])
        spread = np.linalg.norm(DENSE[BLOB == BLOB_OF[row]] - centre, axis=1)
        assert np.linalg.norm(POINTS[row] - centre) < np.median(spread)


def test_k_center_opens_with_outliers_where_typical_coverage_does_not():
    kcenter = planner.plan_batch(POINTS, 4, coverage_method="kcenter", seed=0)
    typical = planner.plan_batch(POINTS, 4, coverage_method="typical", seed=0)
    assert (BLOB_OF[kcenter.indices] == -1).sum() >= 3
    assert (BLOB_OF[typical.indices] == -1).sum() == 0


def test_anchored_blobs_are_covered_so_picks_go_to_the_others():
    anchors, _ = blobs(CENTRES[:2], per_blob=3, seed=1)  # labeled rows in blobs 0 and 1
    result = typical_picks(np.vstack([anchors, POINTS]), 2, n_anchors=len(anchors), seed=0)
    assert (result.indices >= len(anchors)).all()
    assert sorted(BLOB_OF[result.indices - len(anchors)].tolist()) == [2, 3]


def test_the_planner_passes_labeled_rows_as_anchors_and_records_typicality():
    labeled, _ = blobs(CENTRES[:3], per_blob=3, seed=1)
    plan = planner.plan_batch(POINTS, 1, coverage_method="typical", labeled_embeddings=labeled)
    assert BLOB_OF[plan.indices].tolist() == [3]
    record = plan.to_records()[0]
    assert record["score_kind"] == "typicality" and record["score"] > 0


def test_more_picks_than_clusters_fill_the_least_covered_clusters_without_repeats():
    result = typical_picks(DENSE, 60, seed=0)
    assert len(np.unique(result.indices)) == 60
    counts = np.bincount(BLOB[result.indices], minlength=4)
    assert counts.min() >= 12  # spread over the blobs, not poured into one


def test_picks_are_reproducible_for_a_seed():
    first, second = typical_picks(POINTS, 7, seed=3), typical_picks(POINTS, 7, seed=3)
    np.testing.assert_array_equal(first.indices, second.indices)
    np.testing.assert_array_equal(first.typicality, second.typicality)


def test_exact_duplicates_are_maximally_typical_and_a_lone_row_is_not():
    points = np.array([[0.0, 0.0]] * 5 + [[9.0, 9.0]], dtype=np.float32)
    result = typical_picks(points, 2, seed=0)
    typicality = dict(zip(result.indices.tolist(), result.typicality.tolist()))
    assert typicality[5] == 0.0
    assert np.isinf([t for row, t in typicality.items() if row != 5]).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_picks=-1), "n_picks must lie in"),
        (dict(n_picks=len(POINTS) - 1, n_anchors=2), "n_picks must lie in"),
        (dict(n_picks=1, n_anchors=len(POINTS) + 1), "n_anchors must lie in"),
        (dict(n_picks=1, k_neighbors=0), "k_neighbors must be >= 1"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        typical_picks(POINTS, **kwargs)


def test_non_finite_rows_are_rejected():
    bad = POINTS.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        typical_picks(bad, 2)
