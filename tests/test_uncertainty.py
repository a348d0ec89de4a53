"""Uncertainty scores of a detector's predictions, on plain arrays."""

import doctest

import numpy as np
import pytest

from annoloop.selection.algorithms import uncertainty
from annoloop.selection.algorithms.uncertainty import binary_entropy, detection_uncertainty


def test_the_docstring_examples_hold():
    assert doctest.testmod(uncertainty).failed == 0


def test_box_entropy_is_symmetric_zero_when_certain_and_largest_at_one_half():
    p = np.linspace(0.0, 1.0, 101)
    entropy = binary_entropy(p)
    np.testing.assert_allclose(entropy, entropy[::-1], atol=1e-12)
    assert entropy[0] == entropy[-1] == 0.0
    assert entropy.argmax() == 50 and entropy.max() == pytest.approx(1.0)
    # The nearer a confidence lies to 0.5, the more uncertain the box.
    distance = np.abs(p - 0.5)
    order = np.argsort(distance, kind="stable")
    assert np.all(np.diff(entropy[order]) <= 1e-12)


def reference(rows, top_k):
    """The definition, one row at a time: the sum of the top_k largest box entropies."""
    return np.array(
        [np.sort(binary_entropy(np.asarray(row, dtype=float)))[::-1][:top_k].sum() for row in rows]
    )


@pytest.mark.parametrize("top_k", [1, 3, 10, None])
def test_scores_are_the_sum_of_each_images_top_k_box_entropies(top_k):
    rng = np.random.default_rng(0)
    rows = [rng.uniform(size=rng.integers(0, 25)) for _ in range(200)]
    np.testing.assert_allclose(detection_uncertainty(rows, top_k=top_k), reference(rows, top_k))


def test_an_image_with_more_uncertain_objects_ranks_higher_but_a_crowd_is_capped():
    doubtful = 0.5
    scores = detection_uncertainty([[doubtful], [doubtful] * 2, [doubtful] * 50], top_k=10)
    assert scores[1] == pytest.approx(2 * scores[0])
    assert scores[2] == pytest.approx(10 * binary_entropy(doubtful))


def test_top_k_one_is_max_aggregation_and_none_the_plain_sum():
    rows = [[0.5, 0.9, 0.2], [0.7], [0.99, 0.01, 0.6, 0.4]]
    np.testing.assert_allclose(
        detection_uncertainty(rows, top_k=1), [binary_entropy(r).max() for r in rows]
    )
    np.testing.assert_allclose(
        detection_uncertainty(rows, top_k=None), [binary_entropy(r).sum() for r in rows]
    )


def test_an_image_without_detections_scores_zero_and_rows_are_independent():
    rows = [[0.3, 0.6], [], [0.5], []]
    scores = detection_uncertainty(rows)
    assert scores[1] == scores[3] == 0.0 and (scores[[0, 2]] > 0).all()
    permutation = [2, 0, 3, 1]
    np.testing.assert_array_equal(
        detection_uncertainty([rows[i] for i in permutation]), scores[permutation]
    )
    assert detection_uncertainty([]).shape == (0,)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[0.5, 1.2], [np.nan], [0.1]], "2 confidences in 2 of 3 rows are NaN, inf or outside"),
        ([[-0.1], [np.inf, 0.2]], "2 confidences in 2 of 2 rows are NaN, inf or outside"),
        ([[0.5], [[0.1, 0.2]]], "1 of 2 rows are not 1-D lists of confidences"),
    ],
    ids=["above-one-and-nan", "negative-and-inf", "two-dimensional-row"],
)
def test_bad_confidences_are_rejected_with_counts(rows, message):
    with pytest.raises(ValueError, match=message):
        detection_uncertainty(rows)


@pytest.mark.parametrize("top_k", [0, -2, 1.5, True])
def test_top_k_must_be_a_positive_integer_or_none(top_k):
    with pytest.raises(ValueError, match="top_k must be a positive integer or None"):
        detection_uncertainty([[0.5]], top_k=top_k)
