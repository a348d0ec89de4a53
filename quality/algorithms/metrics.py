"""Golden-set QA metrics from a :class:`~.matching.MatchResult`: per-class and overall
precision / recall / F1 with Wilson intervals, box tightness, confusions, attribute
agreement.

Everything returned is plain JSON (str keys, floats, ints, lists, ``None`` where a rate is
undefined), so it can be stored on a FiftyOne dataset (``dataset.info``, a run result,
``ctx.store``) and fed to :func:`.drift.detect_drift` later.

Counting follows FiftyOne's ``evaluate_detections(..., classwise=True)``: for class ``c``,
``tp`` are same-class matches, ``fp = n_pred - tp`` and ``fn = n_gt - tp``. The finer
split of errors comes from the class-agnostic pass: a GT is *swapped* (matched to a box of
another class) or *missed* (no box at all); a prediction is swapped or *spurious*.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .matching import MatchResult, as_label_array, encode

__all__ = [
    "MISSED",
    "SPURIOUS",
    "QualityReport",
    "attribute_agreement",
    "missing_mask",
    "quality_report",
    "wilson_interval",
]

#: Confusion column for GT that nothing matched, and row for predictions that matched nothing.
MISSED = "(missed)"
SPURIOUS = "(spurious)"


def wilson_interval(successes, trials, z: float = 1.96):
    """Wilson score interval for a binomial proportion, vectorised.

    Parameters
    ----------
    successes, trials : array-like of int
        Broadcast-compatible counts with ``0 <= successes <= trials``.
    z : float, default 1.96
        Normal quantile (1.96 is a 95 % two-sided interval).

    Returns
    -------
    (low, high) : tuple of ndarray (floats for scalar input)
        Where ``trials == 0`` the proportion is unknown and the interval is ``(0, 1)``.

    Notes
    -----
    Unlike the normal approximation, the Wilson interval stays inside [0, 1] and is
    sensible at 0 % / 100 % and for small counts, which golden sets often have.
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("wilson_interval needs 0 <= successes <= trials for every entry")
    if not z > 0:
        raise ValueError(f"z must be > 0; got {z}")
    safe_n = np.where(n > 0, n, 1.0)
    p = k / safe_n
    z2 = z * z
    denom = 1.0 + z2 / safe_n
    centre = (p + z2 / (2 * safe_n)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / safe_n + z2 / (4 * safe_n**2))
    low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    return low[()], high[()]


def missing_mask(values) -> np.ndarray:
    """``True`` where an attribute value is absent: ``None`` or a float NaN.

    Object columns must hold scalars (str, numbers, bools, None).
    """
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        return np.isnan(arr)
    if arr.dtype.kind == "O":
        # None, or not equal to itself (NaN), in two C-level loops.
        return np.asarray(np.equal(arr, None) | np.not_equal(arr, arr), dtype=bool)
    return np.zeros(arr.shape, bool)


@dataclass
class QualityReport:
    """Golden-set QA summary of one batch. ``to_dict()`` is the JSON form.

    Attributes
    ----------
    overall : dict
        Counts and rates over all classes (see :func:`quality_report`).
    per_class : dict[str, dict]
        The same per class (a GT class or a predicted class).
    confusion : dict[str, dict[str, int]]
        ``confusion[gt_class][pred_class]`` over matched pairs; ``[gt][MISSED]`` counts
        misses and ``[SPURIOUS][pred]`` spurious predictions.
    attributes : dict[str, dict]
        Attribute agreement (see :func:`attribute_agreement`); empty when not asked for.
    iou_threshold : float
    """

    overall: dict
    per_class: dict
    confusion: dict
    attributes: dict = field(default_factory=dict)
    iou_threshold: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


def _rate(num: float, den: float):
    return float(num / den) if den > 0 else None


def _class_stats(n_gt, n_pred, tp, missed, spurious, ious, z) -> dict:
    """Counts and rates for one scope (a class, or everything)."""
    p_lo, p_hi = wilson_interval(tp, n_pred, z)
    r_lo, r_hi = wilson_interval(tp, n_gt, z)
    return {
        "n_gt": int(n_gt),
        "n_pred": int(n_pred),
        "tp": int(tp),
        "fp": int(n_pred - tp),
        "fn": int(n_gt - tp),
        "missed": int(missed),
        "spurious": int(spurious),
        "swapped_gt": int(n_gt - tp - missed),
        "swapped_pred": int(n_pred - tp - spurious),
        "precision": _rate(tp, n_pred),
        "precision_ci": [float(p_lo), float(p_hi)],
        "recall": _rate(tp, n_gt),
        "recall_ci": [float(r_lo), float(r_hi)],
        "f1": _rate(2 * tp, n_gt + n_pred),
        "miss_rate": _rate(missed, n_gt),
        "mean_iou": float(ious.mean()) if ious.size else None,
        "iou_std": float(ious.std(ddof=1)) if ious.size > 1 else None,
        "n_iou": int(ious.size),
    }


def quality_report(
    match: MatchResult,
    gt_label,
    pred_label,
    *,
    z: float = 1.96,
    gt_attributes=None,
    pred_attributes=None,
    attribute_tolerance: float = 0.0,
) -> QualityReport:
    """Score a matched batch.

    Parameters
    ----------
    match : MatchResult
        From :func:`.matching.match_detections` on the same rows.
    gt_label, pred_label : array-like
        The label columns given to the matcher.
    z : float, default 1.96
        Normal quantile of the Wilson intervals.
    gt_attributes, pred_attributes : dict[str, array-like], optional
        Attribute columns (``n_gt`` / ``n_pred`` rows, ``None``/NaN where absent); when
        given, :func:`attribute_agreement` fills ``report.attributes``.
    attribute_tolerance : float, default 0.0
        Numeric attributes agree when ``|a - b| <= attribute_tolerance``.

    Returns
    -------
    QualityReport
        Per scope: ``n_gt``, ``n_pred``, ``tp``, ``fp``, ``fn``, ``missed``, ``spurious``,
        ``swapped_gt``, ``swapped_pred``, ``precision``, ``recall``, ``f1`` (``None`` when
        the denominator is 0), ``precision_ci`` / ``recall_ci`` (Wilson), ``miss_rate``
        (missed / n_gt), and box tightness ``mean_iou`` / ``iou_std`` / ``n_iou`` over all
        matched pairs (same-class and swapped: box fit does not depend on the class name),
        keyed by the GT class.
    """
    gt_label = as_label_array(gt_label, match.n_gt, "gt_label").astype(str)
    pred_label = as_label_array(pred_label, match.n_pred, "pred_label").astype(str)
    classes, (gt_c, pred_c) = encode(gt_label, pred_label)
    n_cls = len(classes)

    tp_c = gt_c[match.gt_index[match.same_class]]
    counts = {
        "n_gt": np.bincount(gt_c, minlength=n_cls),
        "n_pred": np.bincount(pred_c, minlength=n_cls),
        "tp": np.bincount(tp_c, minlength=n_cls),
        "missed": np.bincount(gt_c[match.unmatched_gt], minlength=n_cls),
        "spurious": np.bincount(pred_c[match.unmatched_pred], minlength=n_cls),
    }
    pair_gt_c = gt_c[match.gt_index]
    by_class = np.argsort(pair_gt_c, kind="stable")
    iou_groups = np.split(
        match.iou[by_class], np.cumsum(np.bincount(pair_gt_c, minlength=n_cls))[:-1]
    )

    per_class = {
        str(c): _class_stats(*(counts[k][i] for k in counts), iou_groups[i], z)
        for i, c in enumerate(classes)
    }
    overall = _class_stats(*(int(v.sum()) for v in counts.values()), match.iou, z)

    confusion: dict[str, dict[str, int]] = {}
    cells, cell_counts = np.unique(
        pair_gt_c.astype(np.int64) * n_cls + pred_c[match.pred_index], return_counts=True
    )
    for cell, n in zip(cells.tolist(), cell_counts.tolist()):
        g, p = divmod(cell, n_cls)
        confusion.setdefault(str(classes[g]), {})[str(classes[p])] = n
    for i in np.flatnonzero(counts["missed"]):
        confusion.setdefault(str(classes[i]), {})[MISSED] = int(counts["missed"][i])
    for i in np.flatnonzero(counts["spurious"]):
        confusion.setdefault(SPURIOUS, {})[str(classes[i])] = int(counts["spurious"][i])

    attributes = {}
    if gt_attributes is not None or pred_attributes is not None:
        attributes = attribute_agreement(
            match,
            gt_attributes or {},
            pred_attributes or {},
            tolerance=attribute_tolerance,
            z=z,
        )
    return QualityReport(overall, per_class, confusion, attributes, match.iou_threshold)


def attribute_agreement(
    match: MatchResult,
    gt_attributes,
    pred_attributes,
    *,
    tolerance: float = 0.0,
    same_class_only: bool = True,
    z: float = 1.96,
) -> dict:
    """How often matched GT / prediction pairs agree on each attribute.

    Parameters
    ----------
    match : MatchResult
    gt_attributes : dict[str, array-like of shape (n_gt,)]
    pred_attributes : dict[str, array-like of shape (n_pred,)]
        Attribute columns; ``None`` or NaN marks an absent value.
    tolerance : float, default 0.0
        Numeric values agree when ``|a - b| <= tolerance``; others need equality.
    same_class_only : bool, default True
        Score only same-class pairs (attributes are often class-specific).
    z : float, default 1.96

    Returns
    -------
    dict[str, dict]
        Per attribute present on either side: ``compared`` (pairs with a value on both
        sides), ``agree``, ``rate`` (``None`` when nothing was compared), ``rate_ci``
        (Wilson), ``missing_gt`` / ``missing_pred`` (pairs where only that side lacks it).
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0; got {tolerance}")
    keep = match.same_class if same_class_only else np.ones(len(match.gt_index), bool)
    gi, pi = match.gt_index[keep], match.pred_index[keep]
    out = {}
    for name in sorted(set(gt_attributes) | set(pred_attributes)):
        a = _column(gt_attributes.get(name), match.n_gt, f"gt_attributes[{name!r}]")[gi]
        b = _column(pred_attributes.get(name), match.n_pred, f"pred_attributes[{name!r}]")[pi]
        miss_a, miss_b = missing_mask(a), missing_mask(b)
        both = ~miss_a & ~miss_b
        a, b = a[both], b[both]
        if a.dtype.kind in "biuf" and b.dtype.kind in "biuf":
            agree = np.abs(a.astype(float) - b.astype(float)) <= tolerance
        else:
            agree = np.asarray(a == b, dtype=bool)
        n, k = int(both.sum()), int(agree.sum())
        lo, hi = wilson_interval(k, n, z)
        out[name] = {
            "compared": n,
            "agree": k,
            "rate": _rate(k, n),
            "rate_ci": [float(lo), float(hi)],
            "missing_gt": int((miss_a & ~miss_b).sum()),
            "missing_pred": int((miss_b & ~miss_a).sum()),
        }
    return out


def _column(values, n: int, name: str) -> np.ndarray:
    """An attribute column of length ``n``; an absent column is all ``None``."""
    if values is None:
        return np.full(n, None, dtype=object)
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},); got {arr.shape}")
    return arr
