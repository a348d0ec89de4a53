"""Evaluate predictions on a frozen split with FiftyOne's ``evaluate_detections``.

Two splits are evaluated, for two different readers: the **test** set (``split:test``) for
the ledger and every reported number, and the **mining** set (``split:mining``) for the
planner, which targets its failures; the test set's failures never feed selection (see
:mod:`..selection.batches`). The split is one camera slice of the groups tagged with its tag
(see :mod:`.views`), minus samples the schema gate quarantined (their ground truth is not trustworthy). The
evaluation is a regular FiftyOne evaluation run under ``eval_key``: per sample it leaves
``<key>_tp``, ``<key>_fp``, ``<key>_fn``, per object ``<key>`` (``"tp"``/``"fp"``/``"fn"``),
``<key>_id`` and ``<key>_iou`` on the dataset, so the planner can mine failures and
``to_evaluation_patches(eval_key)`` works in the App. The returned summary holds plain
numbers and lists only, ready for JSON, an operator's output or the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import fiftyone as fo

from ..core.names import DEFAULT_EVAL_KEY, DEFAULT_GT_FIELD, DEFAULT_PRED_FIELD
from ..core.views import quarantined_ids, root_dataset, split_set

__all__ = ["EvaluationSummary", "evaluate_split"]


@dataclass(frozen=True)
class EvaluationSummary:
    """The outcome of one evaluation of a frozen split.

    Attributes
    ----------
    split : str
        ``"test"`` or ``"mining"``.
    eval_key, pred_field, gt_field : str
        FiftyOne evaluation key and the fields compared.
    slice_name : str or None
        Camera slice evaluated.
    iou : float
        IoU threshold of a match.
    num_samples : int
        Test samples evaluated.
    num_quarantined : int
        Test samples left out because they are quarantined.
    map : float
        COCO-style mAP (IoU 0.50:0.95) from FiftyOne.
    tp, fp, fn : int
        Matched predictions, unmatched predictions, missed ground truth objects.
    classes : list of str
        Classes reported (ground truth and predicted labels).
    per_class : dict of str to dict
        ``{"precision", "recall", "f1", "support"}`` per class at ``iou``.
    confusion_labels : list of str
        Row/column labels of the confusion matrix: the classes, then FiftyOne's missing
        label (``"(none)"``) for unmatched objects.
    confusion_matrix : list of list of int
        Rows are ground truth, columns predictions.
    per_slice_recall : dict of str to dict of str to float
        Recall per value of each field of ``slice_fields`` (scene attributes such as
        ``predicted_time_of_day``), over the values whose samples hold ground truth.
    """

    split: str
    eval_key: str
    pred_field: str
    gt_field: str
    slice_name: str | None
    iou: float
    num_samples: int
    num_quarantined: int
    map: float
    tp: int
    fp: int
    fn: int
    classes: list[str]
    per_class: dict[str, dict[str, float]]
    confusion_labels: list[str]
    confusion_matrix: list[list[int]]
    per_slice_recall: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def per_class_recall(self) -> dict[str, float]:
        """Recall of every class with ground truth in the evaluated split."""
        return {c: m["recall"] for c, m in self.per_class.items() if m["support"] > 0}

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return {**asdict(self), "per_class_recall": self.per_class_recall}


def evaluate_split(
    samples: fo.core.collections.SampleCollection,
    pred_field: str = DEFAULT_PRED_FIELD,
    *,
    split: str = "test",
    gt_field: str = DEFAULT_GT_FIELD,
    slice_name: str | None = None,
    eval_key: str = DEFAULT_EVAL_KEY,
    iou: float = 0.5,
    slice_fields: Sequence[str] = (),
) -> EvaluationSummary:
    """Evaluate ``pred_field`` against ``gt_field`` on a frozen split of one slice.

    Parameters
    ----------
    samples : SampleCollection
        Any dataset or view: the split is looked up on its whole dataset.
    split : {"test", "mining"}, default="test"
        The frozen split to evaluate.
    pred_field : str, default="predictions"
        ``Detections`` field with the model's predictions on every sample of the split.
    gt_field : str, default="ground_truth"
        ``Detections`` field with the split's labels.
    slice_name : str or None
        Camera slice of a grouped dataset; None for a flat image dataset.
    eval_key : str, default="eval"
        FiftyOne evaluation key (a valid identifier); an earlier evaluation under the same
        key is replaced.
    iou : float, default=0.5
        IoU threshold of a match, in (0, 1).
    slice_fields : sequence of str, optional
        Sample fields (scene attributes, e.g. ``categorize_scenes``' ``predicted_*``) whose
        every value gets its own recall.

    Returns
    -------
    EvaluationSummary
    """
    if not isinstance(eval_key, str) or not eval_key.isidentifier():
        raise ValueError(f"eval_key must be a valid identifier; got {eval_key!r}")
    if not 0.0 < iou < 1.0:
        raise ValueError(f"iou must lie in (0, 1); got {iou!r}")
    if pred_field == gt_field:
        raise ValueError(f"pred_field and gt_field are both '{gt_field}'")
    dataset = root_dataset(samples)
    frozen = split_set(samples, slice_name, split)
    detection_fields = frozen.get_field_schema(embedded_doc_type=fo.Detections)
    if gt_field not in detection_fields:
        raise ValueError(
            f"ground truth field {gt_field!r} is not a Detections field of '{dataset.name}'; "
            f"its Detections fields are {sorted(detection_fields)}"
        )
    quarantined = quarantined_ids(frozen, gt_field)
    evaluated = frozen.exclude(quarantined)
    num_samples = len(evaluated)
    if num_samples == 0:
        raise ValueError(
            f"no frozen {split} set on slice {slice_name!r} of '{dataset.name}': create it "
            f"with create_splits first ({len(quarantined)} quarantined {split} samples left out)"
        )
    if pred_field not in detection_fields:
        raise ValueError(
            f"no predictions to evaluate: '{pred_field}' is not a Detections field of "
            f"'{dataset.name}'; apply the detector to the {split} set first"
        )
    missing_pred = num_samples - len(evaluated.exists(pred_field))
    if missing_pred:
        raise ValueError(
            f"{missing_pred} of {num_samples} {split} samples have no predictions in "
            f"'{pred_field}'; apply the detector to the {split} set first"
        )
    missing_gt = num_samples - len(evaluated.exists(gt_field))
    if missing_gt:
        raise ValueError(
            f"{missing_gt} of {num_samples} {split} samples have no labels in '{gt_field}'; "
            f"label the whole {split} set first"
        )
    slice_fields = list(slice_fields)
    schema = evaluated.get_field_schema()
    unknown = [f for f in slice_fields if f not in schema]
    if unknown:
        raise ValueError(
            f"slice fields {unknown} are not sample fields of '{dataset.name}'; run "
            "categorize_scenes to predict a scene attribute, or pass existing fields"
        )
    gt_classes = evaluated.distinct(f"{gt_field}.detections.label")
    if not gt_classes:
        raise ValueError(f"the {split} set holds no ground truth boxes in '{gt_field}'")
    classes = sorted(set(gt_classes) | set(evaluated.distinct(f"{pred_field}.detections.label")))

    results = evaluated.evaluate_detections(
        pred_field, gt_field=gt_field, eval_key=eval_key, iou=iou, compute_mAP=True
    )
    report = results.report(classes=classes)
    per_class = {
        c: {
            "precision": float(report[c]["precision"]),
            "recall": float(report[c]["recall"]),
            "f1": float(report[c]["f1-score"]),
            "support": int(report[c]["support"]),
        }
        for c in classes
    }
    matrix = results.confusion_matrix(classes=classes, include_missing=True)
    return EvaluationSummary(
        split=split,
        eval_key=eval_key,
        pred_field=pred_field,
        gt_field=gt_field,
        slice_name=slice_name,
        iou=float(iou),
        num_samples=num_samples,
        num_quarantined=len(quarantined),
        map=float(results.mAP()),
        tp=int(evaluated.sum(f"{eval_key}_tp")),
        fp=int(evaluated.sum(f"{eval_key}_fp")),
        fn=int(evaluated.sum(f"{eval_key}_fn")),
        classes=classes,
        per_class=per_class,
        confusion_labels=[*classes, results.missing],
        confusion_matrix=[[int(v) for v in row] for row in matrix],
        per_slice_recall={f: _recall_by_value(evaluated, f, eval_key) for f in slice_fields},
    )


def _recall_by_value(evaluated, field_name: str, eval_key: str) -> dict[str, float]:
    """Recall (matched / all ground truth objects) per value of ``field_name``; samples
    without a value, and values without ground truth, are left out."""
    counts: dict[str, list[int]] = {}
    for value, tp, fn in zip(*evaluated.values([field_name, f"{eval_key}_tp", f"{eval_key}_fn"])):
        if value is not None:
            total = counts.setdefault(str(value), [0, 0])
            total[0] += int(tp or 0)
            total[1] += int(tp or 0) + int(fn or 0)
    return {v: tp / n for v, (tp, n) in sorted(counts.items()) if n}
