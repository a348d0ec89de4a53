"""Greedy golden-set matching: COCO/FiftyOne rules, swapped / missed / spurious, bulk input."""

import numpy as np
import pytest

from annoloop.quality.algorithms import iou
from annoloop.quality.algorithms.matching import match_detections


def _reference(gt_img, gt_lab, gt_box, pr_img, pr_lab, pr_box, conf, thr):
    """Plain per-image loops following FiftyOne's coco.py rules (no crowds)."""
    pairs = {}
    gt_used, pr_used = set(), set()
    for class_aware in (True, False):
        for img in sorted(set(gt_img) | set(pr_img)):
            preds = [j for j in range(len(pr_img)) if pr_img[j] == img and j not in pr_used]
            preds.sort(key=lambda j: -(conf[j] or -1))  # stable: ties keep row order
            gts = [i for i in range(len(gt_img)) if gt_img[i] == img]
            for j in preds:
                best, best_iou = None, min(thr, 1 - 1e-10)
                for i in gts:
                    if i in gt_used or (gt_lab[i] == pr_lab[j]) != class_aware:
                        continue
                    v = iou.box_iou_2d([gt_box[i]], [pr_box[j]])[0, 0]
                    if v >= best_iou and (best is None or v > best_iou):
                        best, best_iou = i, v
                if best is not None:
                    gt_used.add(best)
                    pr_used.add(j)
                    pairs[best] = (j, class_aware)
    return pairs


def _random_batch(rng, n_images, max_gt, max_pred, classes=("car", "person", "truck")):
    gt_img, pr_img = [], []
    for k in range(n_images):
        gt_img += [k] * int(rng.integers(0, max_gt + 1))
        pr_img += [k] * int(rng.integers(0, max_pred + 1))
    gt_img, pr_img = np.array(gt_img), np.array(pr_img)
    # Boxes cluster in a small area so many pairs overlap, across and within classes.
    gt_box = np.hstack(
        [rng.uniform(0.2, 0.5, (len(gt_img), 2)), rng.uniform(0.1, 0.3, (len(gt_img), 2))]
    )
    pr_box = np.hstack(
        [rng.uniform(0.2, 0.5, (len(pr_img), 2)), rng.uniform(0.1, 0.3, (len(pr_img), 2))]
    )
    gt_lab = rng.choice(classes, len(gt_img))
    pr_lab = rng.choice(classes, len(pr_img))
    conf = rng.uniform(0.05, 1.0, len(pr_img))
    return gt_img, gt_lab, gt_box, pr_img, pr_lab, pr_box, conf


def test_matching_agrees_with_reference_fiftyone_rules_on_random_batches():
    rng = np.random.default_rng(0)
    same = swapped = 0
    for thr in (0.1, 0.3, 0.5):
        batch = _random_batch(rng, n_images=60, max_gt=6, max_pred=7)
        r = match_detections(*batch, iou_threshold=thr)
        expected = _reference(*batch, thr)
        got = {int(g): (int(p), bool(s)) for g, p, s in zip(r.gt_index, r.pred_index, r.same_class)}
        assert got == expected
        same += r.same_class.sum()
        swapped += (~r.same_class).sum()
    assert same > 50 and swapped > 20  # both passes were exercised


def test_matching_agrees_with_reference_across_pair_chunks():
    # ~1.1 M same-image pairs: more than one chunk of the pair generator.
    rng = np.random.default_rng(1)
    n_img, per = 300, 60
    gt_img = np.repeat(np.arange(n_img), per)
    pr_img = np.repeat(np.arange(n_img), per)
    gt_box = np.hstack(
        [rng.uniform(0, 0.9, (len(gt_img), 2)), rng.uniform(0.02, 0.1, (len(gt_img), 2))]
    )
    pr_box = gt_box + rng.normal(0, 0.01, gt_box.shape) * [1, 1, 0, 0]
    labels = rng.choice(["a", "b"], len(gt_img))
    conf = rng.uniform(0.1, 1, len(pr_img))
    r = match_detections(gt_img, labels, gt_box, pr_img, labels, pr_box, conf)
    # Every prediction is a small shift of its own GT: the matcher must recover that.
    hits = r.gt_index == r.pred_index
    assert hits.mean() > 0.99
    assert len(r.gt_index) + len(r.unmatched_gt) == len(gt_img)


def test_higher_confidence_prediction_takes_the_contested_ground_truth():
    gt = [[0.1, 0.1, 0.4, 0.4]]
    preds = [[0.1, 0.1, 0.4, 0.38], [0.1, 0.1, 0.4, 0.4]]  # the second fits better
    r = match_detections([0], ["car"], gt, [0, 0], ["car", "car"], preds, [0.3, 0.9])
    assert r.pred_index.tolist() == [1] and r.unmatched_pred.tolist() == [0]
    r = match_detections([0], ["car"], gt, [0, 0], ["car", "car"], preds, [0.9, 0.3])
    assert r.pred_index.tolist() == [0] and r.unmatched_pred.tolist() == [1]


def test_missing_confidence_sorts_last_like_fiftyone_and_ties_keep_row_order():
    gt = [[0.1, 0.1, 0.4, 0.4]]
    preds = [[0.1, 0.1, 0.4, 0.4]] * 3
    r = match_detections([0], ["car"], gt, [0, 0, 0], ["car"] * 3, preds, [np.nan, 0.2, 0.2])
    assert r.pred_index.tolist() == [1]
    r = match_detections([0], ["car"], gt, [0, 0, 0], ["car"] * 3, preds)
    assert r.pred_index.tolist() == [0]


def test_prediction_takes_highest_iou_ground_truth_and_exact_ties_go_to_lower_row():
    gts = [[0.1, 0.1, 0.4, 0.4], [0.1, 0.1, 0.4, 0.42], [0.1, 0.1, 0.4, 0.4]]
    r = match_detections([0, 0, 0], ["car"] * 3, gts, [0], ["car"], [[0.1, 0.1, 0.4, 0.4]])
    assert r.gt_index.tolist() == [0]


def test_wrong_class_overlap_is_a_swap_and_leftovers_are_missed_or_spurious():
    gt_box = [[0.1, 0.1, 0.2, 0.2], [0.6, 0.6, 0.2, 0.2], [0.1, 0.6, 0.2, 0.2]]
    pr_box = [[0.1, 0.1, 0.2, 0.2], [0.6, 0.6, 0.2, 0.19], [0.6, 0.1, 0.2, 0.2]]
    r = match_detections(
        [0, 0, 0], ["car", "truck", "person"], gt_box, [0, 0, 0], ["car", "car", "dog"], pr_box
    )
    assert r.gt_index.tolist() == [0, 1]
    assert r.same_class.tolist() == [True, False]  # truck GT boxed as "car": swapped
    assert r.unmatched_gt.tolist() == [2]  # person: missed
    assert r.unmatched_pred.tolist() == [2]  # dog: spurious
    assert r.gt_match.tolist() == [0, 1, -1] and r.pred_match.tolist() == [0, 1, -1]


def test_class_aware_pass_wins_over_a_better_overlap_of_another_class():
    gt_box = [[0.1, 0.1, 0.3, 0.3], [0.1, 0.1, 0.3, 0.25]]
    r = match_detections([0, 0], ["truck", "car"], gt_box, [0], ["car"], [[0.1, 0.1, 0.3, 0.3]])
    assert r.gt_index.tolist() == [1] and r.same_class.tolist() == [True]


def test_iou_equal_to_threshold_matches_and_threshold_one_matches_identical_boxes():
    # IoU of these two is exactly 0.5 in binary floating point.
    r = match_detections(
        [0], ["a"], [[0.0, 0.0, 0.5, 0.5]], [0], ["a"], [[0.0, 0.0, 0.5, 0.25]], iou_threshold=0.5
    )
    assert len(r.gt_index) == 1 and r.iou[0] == 0.5
    r = match_detections(
        [0], ["a"], [[0.1, 0.1, 0.3, 0.3]], [0], ["a"], [[0.1, 0.1, 0.3, 0.3]], iou_threshold=1.0
    )
    assert len(r.gt_index) == 1


def test_string_image_keys_and_row_order_do_not_change_the_matching():
    rng = np.random.default_rng(2)
    gt_img, gt_lab, gt_box, pr_img, pr_lab, pr_box, conf = _random_batch(rng, 40, 5, 5)
    base = match_detections(gt_img, gt_lab, gt_box, pr_img, pr_lab, pr_box, conf, iou_threshold=0.3)
    gp, pp = rng.permutation(len(gt_img)), rng.permutation(len(pr_img))
    names = np.array([f"sample-{k:03d}" for k in range(40)])
    shuffled = match_detections(
        names[gt_img[gp]],
        gt_lab[gp],
        gt_box[gp],
        names[pr_img[pp]],
        pr_lab[pp],
        pr_box[pp],
        conf[pp],
        iou_threshold=0.3,
    )
    assert sorted(zip(gp[shuffled.gt_index], pp[shuffled.pred_index])) == sorted(
        zip(base.gt_index, base.pred_index)
    )


def test_cuboids_are_matched_in_3d():
    # [location, dimensions, rotation]; the second prediction is turned 90° about z.
    gt = [[0, 0, 0, 4, 2, 1.5, 0, 0, 0], [10, 0, 0, 4, 2, 1.5, 0, 0, 0]]
    pr = [[0.2, 0, 0, 4, 2, 1.5, 0, 0, 0.05], [10, 0, 0, 4, 2, 1.5, 0, 0, np.pi / 2]]
    r = match_detections([0, 0], ["car", "car"], gt, [0, 0], ["car", "car"], pr)
    assert r.gt_index.tolist() == [0] and r.unmatched_gt.tolist() == [1]
    assert 0.8 < r.iou[0] < 1.0


def test_empty_inputs_give_all_rows_unmatched():
    r = match_detections([0, 1], ["a", "b"], [[0, 0, 0.1, 0.1]] * 2, [], [], np.zeros((0, 4)))
    assert r.unmatched_gt.tolist() == [0, 1] and len(r.gt_index) == 0 and r.n_pred == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(gt_label=["a", None]), "not strings"),
        (dict(pred_label=[1]), "both be str or both be int"),
        (dict(gt_box=[[0, 0, np.nan, 1], [0, 0, 1, 1]]), "NaN"),
        (dict(pred_box=[[0, 0, 0, 1, 1, 1, 0, 0, 0]]), "both be 2D boxes or both be cuboids"),
        (dict(pred_conf=[0.5, 0.5]), "pred_conf"),
        (dict(iou_threshold=0.0), r"\(0, 1\]"),
        (dict(gt_image=[0]), "gt_label"),
    ],
)
def test_bad_input_raises_a_clear_value_error(kwargs, message):
    args = dict(
        gt_image=[0, 0],
        gt_label=["a", "b"],
        gt_box=[[0, 0, 0.1, 0.1], [0.5, 0.5, 0.1, 0.1]],
        pred_image=[0],
        pred_label=["a"],
        pred_box=[[0, 0, 0.1, 0.1]],
        pred_conf=None,
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        match_detections(**args)
