"""The failures a batch targets: which evaluation, and what it got wrong.

**Which evaluation.** A FiftyOne detection evaluation (``eval_key``, default the latest one
that does not cover the frozen test set: in the loop, the mining split's ``eval_mining``).
An evaluation that covers any ``split:test`` sample is refused: choosing training data by
the test set's errors would make its score an optimistic estimate.

**What failed**, per object: ``fn`` (a ground-truth object the model missed),
``confusion`` (a missed object that a prediction of another class covers) and ``fp`` (a
spurious prediction). A ``classwise=True`` evaluation (FiftyOne's default, and
:mod:`..training.evaluate`'s) never matches across classes, so a confusion shows up as an
``fn`` ground truth plus an ``fp`` prediction with nothing linking them. They are linked
here by IoU: an ``fn`` box and an ``fp`` box of another label in the same sample overlapping
by at least the evaluation's IoU threshold are one confusion; that is the pair a
``classwise=False`` pass would match, computed in memory rather than by writing a second
evaluation onto the frozen set. A ``classwise=False`` evaluation records such a pair itself
(``<key>_id`` set on an ``fn`` / ``fp`` object), which counts as well.

**Queries** are either sample-level (default): one per failing evaluated sample, its
(scene's) embedding, of the sample's heaviest kind, samples with false negatives first, then
systematic failures before isolated ones (by the *regional miss share*: the mean share of
missed objects over the sample and its nearest evaluated neighbours,
:mod:`.algorithms.failure_regions`), then by the share of the sample's own objects that fail
that way (a scene where the model misses every object is a blind spot; one where it misses 3
of 8 is a weak spot), then by count; or
object-level when ``patches_field`` is given: the patch embedding of each failing object in
that field (``<patches_field>.detections.<embeddings_field>``, where
:func:`.embed.compute_embeddings` stores them), false negatives first. Failures are queries
only: the evaluated samples are labeled and frozen, never picked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import fiftyone as fo
from fiftyone import ViewField as F

from ..core.names import TEST_SPLIT_TAG
from ..quality.algorithms.iou import box_iou_2d
from .algorithms.failure_regions import regional_miss_share
from .algorithms.targeting import DEFAULT_KIND_WEIGHTS
from .pool import UnitTable, refuse_missing

__all__ = [
    "Evaluation",
    "Failures",
    "default_eval_key",
    "detection_evaluations",
    "evaluated_test_samples",
    "mine_failures",
    "resolve_evaluation",
    "targetable_evaluations",
]

#: Failure kinds, heaviest first (the order queries are handed to the planner in).
_KIND_ORDER = tuple(sorted(DEFAULT_KIND_WEIGHTS, key=DEFAULT_KIND_WEIGHTS.get, reverse=True))


# --- which evaluation ---------------------------------------------------------------------


def detection_evaluations(dataset: fo.Dataset, pred_field: str | None = None) -> list[str]:
    """Keys of the dataset's detection evaluations (of ``pred_field`` if given), oldest first."""
    infos = [(key, dataset.get_evaluation_info(key)) for key in dataset.list_evaluations()]
    infos = [
        (key, info)
        for key, info in infos
        if getattr(info.config, "type", None) == "detection"
        and (pred_field is None or info.config.pred_field == pred_field)
    ]
    infos.sort(key=lambda pair: pair[1].timestamp)
    return [key for key, _ in infos]


def evaluated_test_samples(dataset: fo.Dataset, eval_key: str) -> int:
    """How many frozen test samples (``split:test``) evaluation ``eval_key`` covers."""
    return dataset.load_evaluation_view(eval_key).match_tags(TEST_SPLIT_TAG).count()


def targetable_evaluations(dataset: fo.Dataset, pred_field: str | None = None) -> list[str]:
    """The detection evaluations the planner may target (none covers a test sample)."""
    return [
        key
        for key in detection_evaluations(dataset, pred_field)
        if not evaluated_test_samples(dataset, key)
    ]


def default_eval_key(dataset: fo.Dataset, pred_field: str | None = None) -> str | None:
    """The latest targetable evaluation (of ``pred_field`` if given), or None."""
    keys = targetable_evaluations(dataset, pred_field)
    return keys[-1] if keys else None


@dataclass(frozen=True)
class Evaluation:
    """A resolved detection evaluation: its key, fields and IoU threshold."""

    key: str
    gt_field: str
    pred_field: str
    iou: float


def resolve_evaluation(
    dataset: fo.Dataset, eval_key: str | None, pred_field: str | None, patches_field: str | None
) -> Evaluation | None:
    """The evaluation to target (``eval_key``, else the default one), None when the dataset
    has none.

    Raises
    ------
    ValueError
        On an unknown or non-detection evaluation, one covering test samples, or a
        ``pred_field`` / ``patches_field`` that is not the evaluation's.
    """
    evaluations = detection_evaluations(dataset)
    if eval_key is None:
        eval_key = default_eval_key(dataset, pred_field)
        if eval_key is None:
            if pred_field is not None:
                raise ValueError(
                    f"no detection evaluation of '{pred_field}' on '{dataset.name}'; "
                    f"detection evaluations: {evaluations} (evaluate_model with split "
                    "'mining' makes one to target)"
                )
            if patches_field:
                raise ValueError(
                    f"patches_field '{patches_field}' given, but there is no evaluation"
                )
            return None
    elif eval_key not in evaluations:
        others = dataset.list_evaluations()
        what = "is not a detection evaluation" if eval_key in others else "does not exist"
        raise ValueError(
            f"evaluation '{eval_key}' {what} on '{dataset.name}'; detection evaluations: "
            f"{evaluations} (evaluate_model with split 'mining' makes one to target)"
        )
    on_test = evaluated_test_samples(dataset, eval_key)
    if on_test:
        raise ValueError(
            f"evaluation '{eval_key}' covers {on_test} samples of the frozen test set "
            f"('{TEST_SPLIT_TAG}'): targeting the test set's failures would make its score an "
            "optimistic estimate. Predict and evaluate the mining split instead "
            "(apply_detector with target 'mining', then evaluate_model with split 'mining') "
            "and target that evaluation"
        )
    config = dataset.get_evaluation_info(eval_key).config
    if pred_field is not None and pred_field != config.pred_field:
        raise ValueError(
            f"evaluation '{eval_key}' evaluated '{config.pred_field}', not '{pred_field}'"
        )
    if patches_field is not None and patches_field not in (config.gt_field, config.pred_field):
        raise ValueError(
            f"patches_field must be a field of evaluation '{eval_key}': '{config.gt_field}' "
            f"(missed and confused objects) or '{config.pred_field}' (false positives), got "
            f"{patches_field!r}"
        )
    return Evaluation(eval_key, config.gt_field, config.pred_field, float(config.iou))


# --- what failed --------------------------------------------------------------------------


@dataclass(frozen=True)
class Failures:
    """Failure queries for the planner, heaviest kind first, and their counts."""

    embeddings: np.ndarray
    kinds: list
    ids: list
    samples: list  # the evaluated sample of each query
    counts: dict

    @classmethod
    def empty(cls) -> Failures:
        return cls(np.empty((0, 1), np.float32), [], [], [], _failure_counts([], 0, 0))

    def why_none(self, evaluation: Evaluation | None) -> str:
        """Why there are no failure queries (for the plan's fallback reason)."""
        if evaluation is None:
            return "no evaluation on the dataset yet"
        return (
            f"evaluation '{evaluation.key}' has no false negatives, confusions or false "
            "positives"
        )


def _failure_counts(objects: list, n_samples: int, n_queries: int) -> dict:
    counts = {kind: 0 for kind in _KIND_ORDER}
    for obj in objects:
        if obj.side == "gt" or obj.kind == "fp":  # a confusion is counted once, by its GT
            counts[obj.kind] += 1
    return {**counts, "samples": n_samples, "queries": n_queries}


@dataclass(frozen=True)
class _FailingObject:
    sample: str
    unit: str
    side: str  # "gt" or "pred"
    label_id: str
    kind: str
    severity: float  # box area for missed objects, confidence for predictions
    position: int  # index in the sample's detections of its field


def mine_failures(
    dataset: fo.Dataset,
    evaluation: Evaluation | None,
    patches_field: str | None,
    table: UnitTable,
    unit_path: str,
) -> Failures:
    """Failure queries of ``evaluation`` (none without one), heaviest kind first (see the
    module docstring); ``table`` holds the units' embeddings."""
    if evaluation is None:
        return Failures.empty()
    key, gt, pred = evaluation.key, evaluation.gt_field, evaluation.pred_field
    view = dataset.load_evaluation_view(key).match((F(f"{key}_fn") > 0) | (F(f"{key}_fp") > 0))
    attributes = ("id", "label", "bounding_box", key, f"{key}_id")
    paths = ["id", unit_path] + [f"{gt}.detections.{a}" for a in attributes]
    paths += [f"{pred}.detections.{a}" for a in (*attributes, "confidence")]
    if patches_field is not None:
        paths.append(f"{patches_field}.detections.{table.field}")
    values = view.values(paths)
    samples, units = values[0], values[1]
    gt_values, pred_values = values[2:7], values[7:13]

    patch_side = "gt" if patches_field == gt else "pred"
    objects: list[_FailingObject] = []
    patch_vectors: dict[str, object] = {}  # label id -> patch embedding (or None)
    sizes: dict[str, tuple[int, int]] = {}  # sample -> (ground truth objects, predictions)
    for i, (sample, unit) in enumerate(zip(samples, units)):
        gt_objects = [list(col[i] or []) for col in gt_values]
        pred_objects = [list(col[i] or []) for col in pred_values]
        sizes[sample] = (len(gt_objects[0]), len(pred_objects[0]))
        found = _sample_failures(sample, unit, gt_objects, pred_objects, key, evaluation.iou)
        objects.extend(found)
        if patches_field is not None:
            patches = values[-1][i] or []
            for obj in found:
                if obj.side == patch_side:
                    patch_vectors[obj.label_id] = patches[obj.position]
    if not objects:
        return Failures.empty()
    failing_samples = len({o.sample for o in objects})
    if patches_field is None:
        regional = _regional_miss_shares(dataset, key, unit_path, table)
        return _sample_queries(objects, sizes, regional, table, failing_samples)
    field = f"{patches_field}.detections.{table.field}"
    return _patch_queries(objects, patch_vectors, field, patch_side, failing_samples)


def _sample_failures(sample, unit, gt_objects, pred_objects, key, iou_thresh) -> list:
    """The failing objects of one evaluated sample, confusions linked by IoU or by match id."""
    gt_ids, gt_labels, gt_boxes, gt_evals, gt_match = gt_objects
    pred_ids, pred_labels, pred_boxes, pred_evals, pred_match, confidences = pred_objects
    fn = [j for j, e in enumerate(gt_evals) if e == "fn"]
    fp = [k for k, e in enumerate(pred_evals) if e == "fp"]
    # A classwise=False evaluation links a cross-class match itself.
    confused_gt = {j for j in fn if gt_match[j]}
    confused_pred = {k for k in fp if pred_match[k]}
    with_boxes_gt = [j for j in fn if gt_boxes[j] is not None]
    with_boxes_pred = [k for k in fp if pred_boxes[k] is not None]
    if with_boxes_gt and with_boxes_pred:
        iou = box_iou_2d(
            [gt_boxes[j] for j in with_boxes_gt], [pred_boxes[k] for k in with_boxes_pred]
        )
        other_class = np.array(
            [[gt_labels[j] != pred_labels[k] for k in with_boxes_pred] for j in with_boxes_gt]
        )
        linked = (iou >= iou_thresh) & other_class
        confused_gt.update(with_boxes_gt[a] for a in np.flatnonzero(linked.any(axis=1)))
        confused_pred.update(with_boxes_pred[b] for b in np.flatnonzero(linked.any(axis=0)))
    found = []
    for j in fn:
        box = gt_boxes[j]
        area = float(box[2] * box[3]) if box is not None else 0.0
        kind = "confusion" if j in confused_gt else "fn"
        found.append(_FailingObject(sample, unit, "gt", gt_ids[j], kind, area, j))
    for k in fp:
        kind = "confusion" if k in confused_pred else "fp"
        confidence = float(confidences[k]) if confidences[k] is not None else 0.0
        found.append(_FailingObject(sample, unit, "pred", pred_ids[k], kind, confidence, k))
    return found


def _regional_miss_shares(dataset, key: str, unit_path: str, table: UnitTable) -> dict:
    """Evaluated sample id -> regional miss share (over every sample ``key`` evaluated)."""
    samples, units, tps, fns = dataset.load_evaluation_view(key).values(
        ["id", unit_path, f"{key}_tp", f"{key}_fn"]
    )
    vectors, missing = table.rows(units)
    refuse_missing(missing, table.field, "evaluated samples", None, hint="embed the mining set too")
    tp, fn = np.array(tps, dtype=np.float64), np.array(fns, dtype=np.float64)
    share = np.divide(fn, tp + fn, out=np.zeros(len(fn)), where=tp + fn > 0)
    return dict(zip(samples, regional_miss_share(vectors, share).tolist()))


def _sample_queries(
    objects: list, sizes: dict, regional: dict, table: UnitTable, n_samples: int
) -> Failures:
    """One query per failing sample: its unit's embedding, its heaviest kind; ``sizes``
    gives each sample's (ground truth objects, predictions), ``regional`` its regional miss
    share."""
    per_sample: dict[str, dict] = {}
    for obj in objects:
        entry = per_sample.setdefault(
            obj.sample, {"unit": obj.unit, **{kind: 0 for kind in _KIND_ORDER}}
        )
        if obj.side == "gt" or obj.kind == "fp":
            entry[obj.kind] += 1

    def importance(item):
        sample, entry = item
        rank = next(r for r, kind in enumerate(_KIND_ORDER) if entry[kind])
        kind = _KIND_ORDER[rank]
        n_gt, n_pred = sizes[sample]
        share = entry[kind] / max(1, n_pred if kind == "fp" else n_gt)
        total = sum(entry[k] for k in _KIND_ORDER)
        return rank, -regional[sample], -share, -entry[kind], -total, sample

    ordered = sorted(per_sample.items(), key=importance)
    vectors, missing = table.rows([entry["unit"] for _, entry in ordered])
    refuse_missing(
        missing, table.field, "failing evaluated samples", None, hint="embed the mining set too"
    )
    kinds = [_KIND_ORDER[importance(item)[0]] for item in ordered]
    ids = [sample for sample, _ in ordered]
    return Failures(vectors, kinds, ids, ids, _failure_counts(objects, n_samples, len(ids)))


def _patch_queries(objects, patch_vectors, field: str, side: str, n_samples: int) -> Failures:
    """One query per failing object on ``side``: its patch embedding (in ``field``)."""
    chosen = [o for o in objects if o.side == side]
    chosen.sort(key=lambda o: (_KIND_ORDER.index(o.kind), -o.severity, o.sample, o.label_id))
    vectors = [patch_vectors.get(o.label_id) for o in chosen]
    missing = np.array([v is None for v in vectors], dtype=bool)
    refuse_missing(
        missing,
        field,
        "failing objects",
        None,
        hint="compute patch embeddings for the evaluated samples first",
    )
    lengths = {len(v) for v in vectors}
    if len(lengths) > 1:
        raise ValueError(
            f"patch embeddings have {len(lengths)} different lengths {sorted(lengths)}"
        )
    embeddings = (
        np.stack([np.asarray(v, dtype=np.float32) for v in vectors])
        if vectors
        else np.empty((0, 1), np.float32)
    )
    return Failures(
        embeddings,
        [o.kind for o in chosen],
        [o.label_id for o in chosen],
        [o.sample for o in chosen],
        _failure_counts(objects, n_samples, len(chosen)),
    )
