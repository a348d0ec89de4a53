"""QA metrics: Wilson intervals, FiftyOne-consistent counts, confusions, attribute agreement."""

import json

import numpy as np
import pytest

from annoloop.quality.algorithms.matching import match_detections
from annoloop.quality.algorithms.metrics import (
    MISSED,
    SPURIOUS,
    attribute_agreement,
    quality_report,
    wilson_interval,
)


def _scene():
    """One image: car matched, truck GT boxed as car (swap), person missed, dog spurious."""
    gt_lab = ["car", "truck", "person"]
    pr_lab = ["car", "car", "dog"]
    gt_box = [[0.1, 0.1, 0.2, 0.2], [0.6, 0.6, 0.2, 0.2], [0.1, 0.6, 0.2, 0.2]]
    pr_box = [[0.1, 0.1, 0.2, 0.18], [0.6, 0.6, 0.2, 0.2], [0.6, 0.1, 0.2, 0.2]]
    match = match_detections([0] * 3, gt_lab, gt_box, [0] * 3, pr_lab, pr_box)
    return match, gt_lab, pr_lab


def test_wilson_interval_matches_published_values():
    lo, hi = wilson_interval([0, 5, 10], [10, 10, 10])
    np.testing.assert_allclose(lo, [0.0, 0.236590, 0.722460], atol=1e-6)
    np.testing.assert_allclose(hi, [0.277540, 0.763410, 1.0], atol=1e-6)


def test_wilson_interval_contains_the_proportion_and_narrows_with_more_trials():
    k = np.array([1, 10, 100, 1000])
    n = np.array([3, 30, 300, 3000])
    lo, hi = wilson_interval(k, n)
    assert np.all((lo <= k / n) & (k / n <= hi))
    assert np.all(np.diff(hi - lo) < 0)


def test_wilson_interval_of_zero_trials_is_uninformative():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_rejects_more_successes_than_trials():
    with pytest.raises(ValueError, match="successes <= trials"):
        wilson_interval([3], [2])


def test_report_counts_agree_with_fiftyone_classwise_definitions():
    match, gt_lab, pr_lab = _scene()
    o = quality_report(match, gt_lab, pr_lab).overall
    # tp = same-class pairs; fp = swapped + spurious predictions; fn = swapped + missed GT.
    assert (o["tp"], o["fp"], o["fn"]) == (1, 2, 2)
    assert (o["missed"], o["spurious"], o["swapped_gt"], o["swapped_pred"]) == (1, 1, 1, 1)
    assert o["precision"] == pytest.approx(1 / 3) and o["recall"] == pytest.approx(1 / 3)
    assert o["f1"] == pytest.approx(2 * 1 / (3 + 3))
    assert o["miss_rate"] == pytest.approx(1 / 3)


def test_per_class_counts_add_up_to_overall():
    rng = np.random.default_rng(0)
    n = 400
    gt_img = rng.integers(0, 50, n)
    gt_box = np.hstack([rng.uniform(0, 0.6, (n, 2)), rng.uniform(0.05, 0.3, (n, 2))])
    keep = rng.random(n) < 0.8
    pr_box = gt_box[keep] + rng.normal(0, 0.02, (keep.sum(), 4)) * [1, 1, 0, 0]
    gt_lab = rng.choice(["a", "b", "c"], n)
    pr_lab = np.where(rng.random(keep.sum()) < 0.9, gt_lab[keep], "c")
    match = match_detections(gt_img, gt_lab, gt_box, gt_img[keep], pr_lab, pr_box)
    rep = quality_report(match, gt_lab, pr_lab)
    for key in ("n_gt", "n_pred", "tp", "fp", "fn", "missed", "spurious", "swapped_gt"):
        assert sum(c[key] for c in rep.per_class.values()) == rep.overall[key]
    # Every GT lands in exactly one confusion cell; every prediction too.
    assert sum(sum(row.values()) for g, row in rep.confusion.items() if g != SPURIOUS) == n
    assert (
        sum(v for row in rep.confusion.values() for k, v in row.items() if k != MISSED)
        == keep.sum()
    )


def test_confusion_records_swaps_misses_and_spurious_predictions():
    match, gt_lab, pr_lab = _scene()
    assert quality_report(match, gt_lab, pr_lab).confusion == {
        "car": {"car": 1},
        "truck": {"car": 1},
        "person": {MISSED: 1},
        SPURIOUS: {"dog": 1},
    }


def test_rates_with_empty_denominators_are_none_and_the_report_is_json():
    match, gt_lab, pr_lab = _scene()
    rep = quality_report(match, gt_lab, pr_lab)
    assert rep.per_class["dog"]["recall"] is None  # no dog GT
    assert rep.per_class["person"]["precision"] is None  # no person predictions
    assert rep.per_class["person"]["mean_iou"] is None
    assert json.loads(json.dumps(rep.to_dict())) == rep.to_dict()


def test_mean_iou_measures_box_tightness_of_matched_pairs():
    match, gt_lab, pr_lab = _scene()
    rep = quality_report(match, gt_lab, pr_lab)
    assert rep.per_class["car"]["mean_iou"] == pytest.approx(0.9)
    assert rep.overall["mean_iou"] == pytest.approx((0.9 + 1.0) / 2)
    assert rep.overall["n_iou"] == 2


def test_integer_labels_are_reported_under_string_keys():
    match = match_detections([0], [3], [[0, 0, 0.2, 0.2]], [0], [3], [[0, 0, 0.2, 0.2]])
    assert quality_report(match, [3], [3]).per_class["3"]["tp"] == 1


def test_attribute_agreement_skips_missing_values_and_applies_tolerance():
    gt_box = [[0.1 * k, 0.0, 0.05, 0.05] for k in range(5)]
    match = match_detections([0] * 5, ["a"] * 5, gt_box, [0] * 5, ["a"] * 5, gt_box)
    gt = {"occluded": [True, False, None, True, True], "height": [1.0, 2.0, 3.0, np.nan, 5.0]}
    pr = {
        "occluded": np.array([True, True, True, None, True], dtype=object),
        "height": [1.05, 2.0, 3.5, 4.0, 5.0],
        "color": ["red"] * 5,
    }
    agree = attribute_agreement(match, gt, pr, tolerance=0.1)
    assert agree["occluded"]["compared"] == 3 and agree["occluded"]["agree"] == 2
    assert agree["occluded"]["missing_gt"] == 1 and agree["occluded"]["missing_pred"] == 1
    assert agree["height"]["compared"] == 4 and agree["height"]["agree"] == 3
    assert agree["color"]["compared"] == 0 and agree["color"]["rate"] is None
    assert agree["color"]["missing_gt"] == 5


def test_attribute_agreement_can_be_attached_to_the_report():
    match, gt_lab, pr_lab = _scene()
    rep = quality_report(
        match,
        gt_lab,
        pr_lab,
        gt_attributes={"occluded": [True, True, False]},
        pred_attributes={"occluded": [True, False, False]},
    )
    # Only the same-class car pair is scored by default.
    assert rep.attributes["occluded"]["compared"] == 1 and rep.attributes["occluded"]["rate"] == 1.0


def test_attribute_column_of_wrong_length_is_rejected():
    match, gt_lab, pr_lab = _scene()
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        attribute_agreement(match, {"x": [1, 2]}, {})
