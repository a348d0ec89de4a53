"""Label efficiency: labels a strategy needs to reach a baseline's final score."""

import pytest

from annoloop.loop.algorithms.efficiency import label_efficiency, labels_to_reach, mean_sd


def test_the_curve_is_read_between_rounds_by_linear_interpolation():
    labels, scores = [30, 60, 90], [0.1, 0.2, 0.4]
    target = 0.3
    # Between (60, 0.2) and (90, 0.4): halfway up, halfway across.
    assert labels_to_reach(labels, scores, target) == pytest.approx(60 + 30 * (0.3 - 0.2) / 0.2)


def test_a_score_before_the_first_round_is_read_from_the_origin():
    assert labels_to_reach([40, 80], [0.2, 0.3], 0.1) == pytest.approx(40 * 0.1 / 0.2)


def test_a_target_never_reached_is_none_and_is_not_extrapolated():
    assert labels_to_reach([30, 60], [0.1, 0.2], 0.21) is None


def test_the_first_crossing_counts_when_the_curve_dips_later():
    assert labels_to_reach([10, 20, 30], [0.5, 0.1, 0.6], 0.5) == pytest.approx(10)


def test_a_strategy_that_matches_the_baseline_needs_all_its_labels():
    labels, scores = [30, 60, 90], [0.05, 0.1, 0.2]
    assert label_efficiency(labels, scores, labels, scores) == pytest.approx(1.0)


def test_a_strategy_that_is_twice_as_good_per_label_needs_fewer_labels():
    labels = [30, 60, 90]
    base = [0.1, 0.2, 0.3]
    better = [2 * s for s in base]
    # better reaches 0.3 at 45 labels (between 0.2 at 30 and 0.4 at 60).
    assert label_efficiency(labels, better, labels, base) == pytest.approx(45 / 90)


def test_a_baseline_that_never_learned_gives_no_ratio():
    assert label_efficiency([30, 60], [0.1, 0.2], [30, 60], [0.0, 0.0]) is None


@pytest.mark.parametrize(
    "labels, scores, message",
    [([], [], "non-empty"), ([30, 20], [0.1, 0.2], "increasing"), ([0, 10], [0, 0.1], "positive"),
     ([10, 20], [0.1, float("nan")], "finite"), ([10], [0.1, 0.2], "equal length")],
)
def test_bad_curves_are_refused_with_a_clear_message(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        labels_to_reach(labels, scores, 0.1)


def test_mean_and_sd_skip_missing_values():
    assert mean_sd([0.2, None, 0.4]) == (pytest.approx(0.3), pytest.approx(0.1414213562), 2)
    assert mean_sd([None]) == (None, None, 0)
    assert mean_sd([0.5]) == (0.5, 0.0, 1)
