"""The regional miss share: a sample's miss share averaged over it and its nearest neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from annoloop.selection.algorithms.failure_regions import regional_miss_share

# Two tight groups far apart: every sample's 3 nearest (itself included) are its own group.
POINTS = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [9.0, 9.0], [9.1, 9.0], [9.0, 9.1]])


def test_a_region_that_fails_throughout_outranks_a_one_off_blind_spot():
    share = np.array([0.5, 0.5, 0.5, 1.0, 0.0, 0.0])  # a weak region; one blind sample
    regional = regional_miss_share(POINTS, share, region_size=3)
    np.testing.assert_allclose(regional[:3], share[:3].mean())
    np.testing.assert_allclose(regional[3:], share[3:].mean())
    assert regional[0] > regional[3]


def test_a_region_of_one_is_the_sample_itself():
    share = np.array([0.2, 0.4, 0.6, 0.8, 1.0, 0.0])
    np.testing.assert_allclose(regional_miss_share(POINTS, share, region_size=1), share)


def test_a_region_as_large_as_the_set_gives_everyone_the_overall_mean():
    share = np.array([0.2, 0.4, 0.6, 0.8, 1.0, 0.0])
    np.testing.assert_allclose(regional_miss_share(POINTS, share, region_size=50), share.mean())


def test_row_order_does_not_change_any_samples_estimate():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(200, 8))
    share = rng.random(200)
    order = rng.permutation(200)
    regional = regional_miss_share(points, share)
    np.testing.assert_allclose(regional_miss_share(points[order], share[order]), regional[order])


def test_no_samples_give_no_estimates():
    assert regional_miss_share(np.empty((0, 4)), np.empty(0)).shape == (0,)


@pytest.mark.parametrize(
    "share, kwargs, message",
    [
        (np.zeros(5), {}, "one value per embedding"),
        (np.full(6, 1.5), {}, r"lie in \[0, 1\]"),
        (np.zeros(6), {"region_size": 0}, "region_size must be >= 1"),
    ],
)
def test_bad_arguments_are_rejected(share, kwargs, message):
    with pytest.raises(ValueError, match=message):
        regional_miss_share(POINTS, share, **kwargs)


def test_non_finite_embeddings_are_rejected():
    points = POINTS.copy()
    points[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        regional_miss_share(points, np.zeros(6))
