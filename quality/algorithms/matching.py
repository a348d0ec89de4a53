"""Greedy IoU matching of predicted (or annotator) labels to ground truth, in bulk.

Input is a flat table: one row per label with an image/sample key column, so a whole batch
of images is one call. Two passes run per image:

1. **Class-aware** (FiftyOne's ``evaluate_detections(..., method="coco", iou=thr,
   classwise=True)``): predictions in descending confidence order each take the unmatched
   ground truth (GT) *of the same class* with the highest IoU, if that IoU >= ``thr``.
   These pairs are the true positives.
2. **Class-agnostic, among the leftovers**: the same greedy rule over the predictions and
   GT left unmatched by pass 1, over pairs of *different* classes: a *swapped class*.
   (With the same threshold, no same-class pair can be left over: pass 1 would have
   taken it.)

What is still unmatched after both passes is a *miss* (GT) or *spurious* (prediction).
Box tightness is the IoU of the matched pairs.

Matching rules mirror ``fiftyone/utils/eval/coco.py`` (FiftyOne 1.22), so the class-aware
pass gives the same tp / fp / fn as ``evaluate_detections(classwise=True)``:
tp = same-class pairs, fp = swapped + spurious predictions, fn = swapped + missed GT.

- A match needs ``IoU >= min(thr, 1 - 1e-10)``.
- Predictions are ordered by confidence, highest first; a missing (NaN) or zero confidence
  sorts as -1 (FiftyOne sorts on ``confidence or -1``). Equal confidences keep row order,
  as Python's stable ``sorted`` does, so feed rows in each sample's label-list order.
- 2D IoU is FiftyOne's ``compute_bbox_iou``; 3D uses upright cuboids (see :mod:`.iou`).

Deliberate differences:

- **Crowds are not handled**: every GT is a normal object (FiftyOne lets an ``iscrowd``
  GT absorb several predictions). Glue must not pass crowd GT, or must compare against an
  ``evaluate_detections`` run on data without the ``iscrowd`` attribute.
- **Exact IoU ties** between two GT go to the lower GT row. FiftyOne keeps the last one in
  its R-tree's iteration order, which is not specified; only exact float ties differ.
- 3D IoU ignores roll and pitch (FiftyOne's kernel handles arbitrary rotations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .iou import _box_iou_2d_indexed, _cuboid_iou_indexed, as_boxes_2d, as_cuboids

__all__ = ["MatchResult", "as_label_array", "encode", "match_detections"]

# Within-image (gt, pred) pairs whose IoU is evaluated per vectorised step.
_PAIR_CHUNK = 1 << 20


@dataclass(frozen=True)
class MatchResult:
    """Outcome of :func:`match_detections`. All indices are row indices of the inputs.

    Attributes
    ----------
    gt_index, pred_index : ndarray of int64, shape (k,)
        Matched pairs, sorted by ``gt_index``.
    iou : ndarray of float64, shape (k,)
        IoU of each matched pair.
    same_class : ndarray of bool, shape (k,)
        True for class-aware matches (true positives), False for swapped-class pairs
        found by the class-agnostic pass.
    unmatched_gt : ndarray of int64
        GT rows matched by neither pass (misses).
    unmatched_pred : ndarray of int64
        Prediction rows matched by neither pass (spurious).
    n_gt, n_pred : int
        Row counts of the inputs.
    iou_threshold, agnostic_iou_threshold : float
        Thresholds of the two passes.
    """

    gt_index: np.ndarray
    pred_index: np.ndarray
    iou: np.ndarray
    same_class: np.ndarray
    unmatched_gt: np.ndarray
    unmatched_pred: np.ndarray
    n_gt: int
    n_pred: int
    iou_threshold: float
    agnostic_iou_threshold: float

    @property
    def gt_match(self) -> np.ndarray:
        """``(n_gt,)`` matched prediction row for each GT row, -1 where unmatched."""
        out = np.full(self.n_gt, -1, dtype=np.int64)
        out[self.gt_index] = self.pred_index
        return out

    @property
    def pred_match(self) -> np.ndarray:
        """``(n_pred,)`` matched GT row for each prediction row, -1 where unmatched."""
        out = np.full(self.n_pred, -1, dtype=np.int64)
        out[self.pred_index] = self.gt_index
        return out


def as_label_array(values, n: int, name: str) -> np.ndarray:
    """Validate a label column: ``n`` strings or ``n`` integers, no missing values.

    Returns a ``str`` or integer ndarray. Raises ``ValueError`` on a wrong length, on
    ``None`` entries, or on other types.
    """
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{name} must have shape ({n},); got {arr.shape}")
    if arr.dtype.kind in "Uiu":
        return arr
    if arr.dtype.kind == "O" or n == 0:
        is_str = np.frompyfunc(lambda v: isinstance(v, str), 1, 1)(arr).astype(bool)
        if is_str.all():
            return arr.astype(str)
        raise ValueError(
            f"{name}: {int((~is_str).sum())} of {n} labels are not strings "
            "(e.g. None); labels must all be str or all be int"
        )
    raise ValueError(f"{name} must hold str or int labels; got dtype {arr.dtype}")


def encode(*columns: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Shared integer codes for key columns: ``(sorted unique keys, [codes per column])``.

    Strings go through ``unique`` + ``searchsorted``, about twice as fast as a full
    ``return_inverse`` sort of millions of labels; other keys use ``return_inverse``.
    """
    both = np.concatenate(columns)
    if both.dtype.kind == "U":
        keys = np.unique(both)
        codes = np.searchsorted(keys, both)
    else:
        keys, codes = np.unique(both, return_inverse=True)
    return keys, np.split(codes.ravel(), np.cumsum([len(c) for c in columns])[:-1])


def _as_geometry(boxes, n: int, name: str):
    """Validate ``(n, 4)`` 2D boxes or ``(n, 9)`` cuboids [location, dimensions, rotation]."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] not in (4, 9):
        raise ValueError(
            f"{name} must have shape ({n}, 4) for [x, y, w, h] boxes or ({n}, 9) for "
            f"cuboids [location, dimensions, rotation]; got {arr.shape}"
        )
    if arr.shape[1] == 4:
        return as_boxes_2d(arr, name)
    return as_cuboids(arr[:, 0:3], arr[:, 3:6], arr[:, 8], name)


def _within_image_pairs(gt_img: np.ndarray, pred_img: np.ndarray, n_img: int):
    """Yield ``(gt_rows, pred_rows)`` chunks covering every same-image (gt, pred) pair."""
    gt_order = np.argsort(gt_img, kind="stable")
    pred_order = np.argsort(pred_img, kind="stable")
    n_g = np.bincount(gt_img, minlength=n_img)
    n_p = np.bincount(pred_img, minlength=n_img)
    g_start = np.concatenate([[0], np.cumsum(n_g)])
    p_start = np.concatenate([[0], np.cumsum(n_p)])
    pair_end = np.cumsum(n_g * n_p)
    # Image ranges of about _PAIR_CHUNK pairs each (an image larger than that stands alone).
    bounds = np.unique(np.searchsorted(pair_end, np.arange(0, pair_end[-1], _PAIR_CHUNK), "right"))
    for i0, i1 in zip(bounds, np.append(bounds[1:], n_img)):
        g_pos = np.arange(g_start[i0], g_start[i1])
        img = gt_img[gt_order[g_pos]]
        reps = n_p[img]
        total = int(reps.sum())
        if total == 0:
            continue
        run_start = np.repeat(np.cumsum(reps) - reps, reps)
        offset = np.arange(total) - run_start
        p_pos = np.repeat(p_start[img], reps) + offset
        yield gt_order[np.repeat(g_pos, reps)], pred_order[p_pos]


def _greedy(
    pg, pp, piou, pred_rank, gt_free, pred_free
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy matching over candidate pairs, all images at once.

    Image by image, predictions are visited in rank order and each takes its highest-IoU
    free GT. Step ``r`` visits the rank-``r`` prediction of every image together: those
    live in different images, so they never compete, and the loop runs (max predictions
    per image) times instead of once per prediction. ``gt_free`` / ``pred_free`` are
    updated in place.
    """
    keep = gt_free[pg] & pred_free[pp]
    pg, pp, piou = pg[keep], pp[keep], piou[keep]
    rank = pred_rank[pp]
    # Within a rank: by prediction, then best IoU first, ties to the lowest GT row.
    order = np.lexsort((pg, -piou, pp, rank))
    pg, pp, piou, rank = pg[order], pp[order], piou[order], rank[order]
    starts = np.flatnonzero(np.r_[True, rank[1:] != rank[:-1]])
    ends = np.r_[starts[1:], len(rank)]
    out_g, out_p, out_iou = [], [], []
    for s, e in zip(starts, ends):
        g, p = pg[s:e], pp[s:e]
        ok = np.flatnonzero(gt_free[g])
        if ok.size == 0:
            continue
        first = ok[np.r_[True, p[ok][1:] != p[ok][:-1]]]
        gt_free[g[first]] = False
        pred_free[p[first]] = False
        out_g.append(g[first])
        out_p.append(p[first])
        out_iou.append(piou[s:e][first])
    if not out_g:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    return np.concatenate(out_g), np.concatenate(out_p), np.concatenate(out_iou)


def match_detections(
    gt_image,
    gt_label,
    gt_box,
    pred_image,
    pred_label,
    pred_box,
    pred_conf=None,
    *,
    iou_threshold: float = 0.5,
    agnostic_iou_threshold: float | None = None,
) -> MatchResult:
    """Match predictions to ground truth image by image; see the module docstring.

    Parameters
    ----------
    gt_image : array-like of shape (n_gt,)
        Image/sample key of each GT row (ints or strings; only equality matters).
    gt_label : array-like of shape (n_gt,)
        Class of each GT row: all str or all int, no missing values.
    gt_box : array-like of shape (n_gt, 4) or (n_gt, 9)
        Relative ``[x, y, w, h]`` boxes, or cuboids as ``location + dimensions + rotation``
        (9 columns; yaw is ``rotation[2]``, z is up).
    pred_image, pred_label, pred_box : array-like
        The same for the predictions (or annotator labels), ``n_pred`` rows; the geometry
        must have the same number of columns as ``gt_box``.
    pred_conf : array-like of shape (n_pred,), optional
        Confidences; NaN (or 0) means none and sorts as -1, as in FiftyOne. Without it,
        predictions are visited in row order.
    iou_threshold : float, default 0.5
        Minimum IoU of a class-aware match, in (0, 1].
    agnostic_iou_threshold : float, optional
        Minimum IoU of a swapped-class match; defaults to ``iou_threshold``. It only
        pairs different classes, so ``same_class`` is exactly "labels are equal".

    Returns
    -------
    MatchResult

    Notes
    -----
    Only same-image pairs are formed, in chunks of about a million, so memory scales with
    the largest image's ``n_gt * n_pred``, not with the batch. Run the schema gate first:
    non-finite or negative-size geometry raises ``ValueError`` here.
    """
    thr = float(iou_threshold)
    agn = thr if agnostic_iou_threshold is None else float(agnostic_iou_threshold)
    for value, label in ((thr, "iou_threshold"), (agn, "agnostic_iou_threshold")):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{label} must be in (0, 1]; got {value}")
    # FiftyOne caps the threshold so that IoU == 1 still counts at thr == 1.
    thr_eff, agn_eff = min(thr, 1 - 1e-10), min(agn, 1 - 1e-10)

    gt_image = np.asarray(gt_image)
    pred_image = np.asarray(pred_image)
    n_gt, n_pred = len(gt_image), len(pred_image)
    if gt_image.ndim != 1 or pred_image.ndim != 1:
        raise ValueError(
            f"gt_image and pred_image must be 1-D; got {gt_image.shape} and {pred_image.shape}"
        )
    gt_label = as_label_array(gt_label, n_gt, "gt_label")
    pred_label = as_label_array(pred_label, n_pred, "pred_label")
    if n_gt and n_pred and (gt_label.dtype.kind == "U") != (pred_label.dtype.kind == "U"):
        raise ValueError(
            f"gt_label and pred_label must both be str or both be int; "
            f"got {gt_label.dtype} and {pred_label.dtype}"
        )
    gt_geom = _as_geometry(gt_box, n_gt, "gt_box")
    pred_geom = _as_geometry(pred_box, n_pred, "pred_box")
    is_3d = isinstance(gt_geom, tuple)
    if n_gt and n_pred and is_3d != isinstance(pred_geom, tuple):
        raise ValueError("gt_box and pred_box must both be 2D boxes or both be cuboids")

    if pred_conf is None:
        conf = np.full(n_pred, -1.0)
    else:
        conf = np.asarray(pred_conf, dtype=np.float64)
        if conf.shape != (n_pred,):
            raise ValueError(f"pred_conf must have shape ({n_pred},); got {conf.shape}")
        conf = np.where(np.isnan(conf) | (conf == 0), -1.0, conf)

    empty = np.zeros(0, dtype=np.int64)
    if n_gt == 0 or n_pred == 0:
        return MatchResult(
            empty,
            empty,
            np.zeros(0),
            np.zeros(0, bool),
            np.arange(n_gt),
            np.arange(n_pred),
            n_gt,
            n_pred,
            thr,
            agn,
        )

    keys, (gt_img, pred_img) = encode(gt_image, pred_image)
    _, (gt_cls, pred_cls) = encode(gt_label, pred_label)

    # Rank of each prediction within its image: confidence descending, then row order.
    by_conf = np.lexsort((np.arange(n_pred), -conf, pred_img))
    first_of_image = np.searchsorted(pred_img[by_conf], pred_img[by_conf], side="left")
    pred_rank = np.empty(n_pred, dtype=np.int64)
    pred_rank[by_conf] = np.arange(n_pred) - first_of_image

    lowest = min(thr_eff, agn_eff)
    pair_iou = _cuboid_iou_indexed if is_3d else _box_iou_2d_indexed
    cand_g, cand_p, cand_iou = [], [], []
    for g, p in _within_image_pairs(gt_img, pred_img, len(keys)):
        iou = pair_iou(gt_geom, pred_geom, g, p)
        hit = iou >= lowest
        cand_g.append(g[hit])
        cand_p.append(p[hit])
        cand_iou.append(iou[hit])
    pg = np.concatenate(cand_g) if cand_g else empty
    pp = np.concatenate(cand_p) if cand_p else empty
    piou = np.concatenate(cand_iou) if cand_iou else np.zeros(0)

    gt_free = np.ones(n_gt, bool)
    pred_free = np.ones(n_pred, bool)
    aware = (gt_cls[pg] == pred_cls[pp]) & (piou >= thr_eff)
    g1, p1, i1 = _greedy(pg[aware], pp[aware], piou[aware], pred_rank, gt_free, pred_free)
    agnostic = (gt_cls[pg] != pred_cls[pp]) & (piou >= agn_eff)
    g2, p2, i2 = _greedy(pg[agnostic], pp[agnostic], piou[agnostic], pred_rank, gt_free, pred_free)

    gi = np.concatenate([g1, g2])
    order = np.argsort(gi, kind="stable")
    return MatchResult(
        gt_index=gi[order],
        pred_index=np.concatenate([p1, p2])[order],
        iou=np.concatenate([i1, i2])[order],
        same_class=np.concatenate([np.ones(len(g1), bool), np.zeros(len(g2), bool)])[order],
        unmatched_gt=np.flatnonzero(gt_free),
        unmatched_pred=np.flatnonzero(pred_free),
        n_gt=n_gt,
        n_pred=n_pred,
        iou_threshold=thr,
        agnostic_iou_threshold=agn,
    )
