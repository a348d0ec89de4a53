"""Drift alarms: quiet on sampling noise, and each kind of drift raises exactly its alarm.

Batches are simulated end to end: golden GT boxes, an "annotator" that misses, mislabels,
loosens boxes or adds boxes at set rates, then matching and the QA report.
"""

import json

import numpy as np
import pytest

from annoloop.quality.algorithms.drift import DriftRules, batch_summary, detect_drift
from annoloop.quality.algorithms.matching import match_detections
from annoloop.quality.algorithms.metrics import quality_report

GOLDEN = {"car": 600, "person": 400, "truck": 200, "vehicle": 40, "bike": 10}
COMMON = ["car", "person", "truck"]


def _batch(batch, seed, *, miss=None, swap=None, loose=0.0, extra=None):
    """One annotated golden batch as a history entry.

    miss: {gt class: extra miss probability}; swap: {gt class: {label: probability}};
    loose: added box scale (looser boxes); extra: {label: spurious boxes}.
    Baseline noise: 3 % missed, 2 % mislabelled, 3 % spurious, IoU about 0.9.
    """
    rng = np.random.default_rng(seed)
    gt_lab = rng.permutation(np.repeat(list(GOLDEN), list(GOLDEN.values())))
    n = len(gt_lab)
    # Four objects per image, one per quadrant, so objects never overlap each other.
    img, quad = np.divmod(np.arange(n), 4)
    cx, cy = 0.25 + 0.5 * (quad % 2), 0.25 + 0.5 * (quad // 2)
    w, h = rng.uniform(0.15, 0.3, n), rng.uniform(0.15, 0.3, n)
    gt_box = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)

    p_miss = 0.03 + np.array([(miss or {}).get(c, 0.0) for c in gt_lab])
    seen = rng.random(n) >= p_miss
    labels = gt_lab.copy()
    noise = rng.random(n) < 0.02
    labels[noise] = rng.choice(COMMON, noise.sum())
    for cls, targets in (swap or {}).items():
        rows = np.flatnonzero(gt_lab == cls)
        u = rng.random(len(rows))
        edges = np.cumsum(list(targets.values()))
        for (dest, _), lo, hi in zip(targets.items(), np.r_[0, edges[:-1]], edges):
            labels[rows[(u >= lo) & (u < hi)]] = dest
    s = 1.03 + np.abs(rng.normal(0, 0.03, n)) + loose
    pr_box = np.stack([cx - s * w / 2, cy - s * h / 2, s * w, s * h], axis=1)[seen]
    pr_img, pr_lab = img[seen], labels[seen]

    spurious = {c: int(rng.binomial(n, 0.01)) for c in COMMON}
    spurious.update(extra or {})
    sp_lab = np.repeat(list(spurious), list(spurious.values()))
    sp_img = img.max() + 1 + np.arange(len(sp_lab))  # images of their own: never matched
    sp_box = np.tile([0.4, 0.4, 0.2, 0.2], (len(sp_lab), 1))

    pred_img = np.r_[pr_img, sp_img]
    pred_lab = np.r_[pr_lab, sp_lab]
    match = match_detections(img, gt_lab, gt_box, pred_img, pred_lab, np.vstack([pr_box, sp_box]))
    return batch_summary(batch, quality_report(match, gt_lab, pred_lab))


def _clean(k):
    return _batch(f"b{k}", seed=100 + k)


def _found(alarms):
    return {(a.rule, a.class_name) for a in alarms}


def test_clean_batches_with_sampling_noise_raise_nothing():
    history = [_clean(k) for k in range(6)]
    assert detect_drift(history) == []


def test_spread_mislabelling_raises_recall_and_f1_drops_for_that_class():
    history = [
        _clean(0),
        _batch("b1", 1, swap={"car": {"person": 0.05, "truck": 0.05, "bike": 0.05}}),
    ]
    alarms = detect_drift(history)
    assert {("recall_drop", "car"), ("f1_drop", "car")} <= _found(alarms)
    assert {rule for rule, _ in _found(alarms)} == {"recall_drop", "f1_drop"}
    assert {cls for _, cls in _found(alarms)} <= {"car", None}
    car = next(a for a in alarms if a.rule == "recall_drop" and a.class_name == "car")
    assert car.batch == "b1" and car.baseline - car.current > 0.1


def test_looser_boxes_raise_only_iou_drop():
    alarms = detect_drift([_clean(0), _batch("b1", 1, loose=0.12)])
    assert {rule for rule, _ in _found(alarms)} == {"iou_drop"}
    assert {None, "car", "person", "truck", "vehicle"} == {cls for _, cls in _found(alarms)}
    overall = next(a for a in alarms if a.class_name is None)
    assert overall.baseline > 0.85 and overall.current < 0.8


def test_rising_misses_raise_miss_rate_and_explain_the_recall_drop():
    history = [_clean(0), _batch("b1", 1, miss={"car": 0.15})]
    alarms = detect_drift(history)
    assert ("miss_rate_rise", "car") in _found(alarms)
    assert {rule for rule, _ in _found(alarms)} == {"miss_rate_rise"}
    assert {cls for _, cls in _found(alarms)} <= {"car", None}
    unsuppressed = detect_drift(history, DriftRules(suppress_explained=False))
    assert ("recall_drop", "car") in _found(unsuppressed)


def test_a_class_the_baseline_never_used_raises_new_class():
    alarms = detect_drift([_clean(0), _batch("b1", 1, extra={"van": 15})])
    assert _found(alarms) == {("new_class", "van")}
    assert alarms[0].current == 15.0


def test_a_couple_of_stray_labels_of_a_new_class_stay_below_the_guard():
    assert detect_drift([_clean(0), _batch("b1", 1, extra={"van": 2})]) == []


def test_vehicle_split_into_car_and_truck_raises_class_split_only():
    alarms = detect_drift(
        [_clean(0), _batch("b1", 1, swap={"vehicle": {"car": 0.5, "truck": 0.5}})]
    )
    assert _found(alarms) == {("class_split", "vehicle")}
    assert alarms[0].details["into"] == ["car", "truck"]
    assert alarms[0].baseline > 0.9  # baseline share of "vehicle" itself


def test_vehicle_relabelled_as_car_raises_class_rename_only():
    alarms = detect_drift([_clean(0), _batch("b1", 1, swap={"vehicle": {"car": 0.9}})])
    assert _found(alarms) == {("class_rename", "vehicle")}
    assert "'car'" in alarms[0].message


def test_tiny_classes_do_not_flap_even_when_they_collapse():
    assert detect_drift([_clean(0), _batch("b1", 1, miss={"bike": 0.8})]) == []


def test_a_chosen_baseline_replaces_the_first_batch():
    history = [_batch("loose", 7, loose=0.12), _clean(1), _clean(2)]
    assert detect_drift(history) == []  # tighter boxes than the baseline are not drift
    alarms = detect_drift(history, baseline_batch="b1")
    assert {a.batch for a in alarms} == {"loose"}
    assert {rule for rule, _ in _found(alarms)} == {"iou_drop"}


def test_history_and_alarms_round_trip_through_json():
    history = [_clean(0), _batch("b1", 1, swap={"vehicle": {"car": 0.9}}, extra={"van": 10})]
    restored = json.loads(json.dumps(history))
    alarms = detect_drift(restored)
    assert [a.to_dict() for a in alarms] == [a.to_dict() for a in detect_drift(history)]
    assert json.loads(json.dumps([a.to_dict() for a in alarms]))[0]["class"] == "van"


def test_alarms_are_ordered_by_batch_then_rule():
    history = [_clean(0), _batch("b1", 1, loose=0.12), _batch("b2", 2, extra={"van": 9})]
    alarms = detect_drift(history)
    assert [a.batch for a in alarms] == sorted(a.batch for a in alarms)
    assert alarms[0].class_name is None  # overall comes first within a rule


def test_unknown_baseline_and_malformed_history_raise_value_errors():
    with pytest.raises(ValueError, match="not in the history"):
        detect_drift([_clean(0)], baseline_batch="nope")
    with pytest.raises(ValueError, match="lacks"):
        detect_drift([{"batch": 1, "overall": {}}])
