"""Review auto-labels (FiftyOne glue): accept the good ones into the label field, or discard.

A person picks samples (a selection, a view, a batch) and decides. **Accept** copies a
sample's candidate boxes into the label field when they pass the schema gate
(:func:`..quality.schema_rules.validate_labels` against the field's label schema: class,
box, required attributes), reach the confidence bar, and do not repeat a label the field
already has (same class, IoU at or above ``duplicate_iou``). **Discard** keeps them out,
and removes what an earlier accept of the same run had copied.

Provenance. Accepted labels carry their ``confidence`` and two label tags, ``autolabel``
and ``autolabel:<run id>`` (the run record names the model and checkpoint). Tags, not
attributes: the gate reports any attribute the schema does not declare, so a provenance
attribute would quarantine every accepted label.

State. The decision is written on the candidates: ``review`` on the sample's ``Detections``
(``"accepted"`` / ``"discarded"``) and, on each candidate box, ``review`` = ``"accepted"`` or
why it was not (``"low_confidence"``, ``"duplicate"``, a gate rule id, ``"discarded"``).
Repeating a decision changes nothing; the label field is written before the decision, and
the duplicate check keeps a repeated accept from copying a box twice.

Frozen splits. Accept refuses samples of the test, mining and golden splits (a model never
labels the sets that measure it) and a field the splits record; discard stays allowed.
"""

from __future__ import annotations

from collections import Counter

import fiftyone as fo
import numpy as np
from fiftyone import ViewField as F

from ...core.locks import dataset_lock
from ...core.runs import Progress, now
from ...quality.frozen_check import frozen_fields, frozen_sample_ids
from ...quality.gate import resolve_schema
from ...quality.labels import detections_field
from ...quality.algorithms.iou import box_iou_2d_paired
from ...quality.algorithms.schema_rules import load_schema, validate_labels
from ...core.names import DEFAULT_GT_FIELD, FROZEN_SPLIT_TAGS
from ...core.views import camera_slice, root_dataset
from .base import check_confidence
from .run import DEFAULT_OUTPUT_FIELD, autolabel_runs, field_classes

__all__ = ["ACTIONS", "AUTOLABEL_TAG", "review_autolabels"]

ACTIONS = ("accept", "discard")
#: The decision each action records on the candidates.
_DECISION = {"accept": "accepted", "discard": "discarded"}
#: Label tag of every label accepted from a model; ``autolabel:<run id>`` names the run.
AUTOLABEL_TAG = "autolabel"
_CHUNK = 1024  # samples read, decided and written together


def _run_tag(run_id: str) -> str:
    return f"{AUTOLABEL_TAG}:{run_id}"


def _review_schema(dataset: fo.Dataset, label_field: str, schema):
    """The label field's schema (explicit, stored, else its known classes)."""
    if schema or label_field in dataset.label_schemas:
        return load_schema(resolve_schema(dataset, label_field, schema))
    classes = field_classes(dataset, label_field)
    if not classes:
        raise ValueError(
            f"accepting into {label_field!r} needs its schema: set one with "
            "dataset.set_label_schemas(), set dataset.classes, or pass a schema"
        )
    return load_schema({"classes": classes})


def _rows(detections: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-label ``(sample index, class, [x, y, w, h], confidence)`` of a chunk."""
    sample, label, box, conf = [], [], [], []
    for i, dets in enumerate(detections):
        for d in dets.detections if dets is not None else []:
            sample.append(i)
            label.append(d.label)
            bb = d.bounding_box
            box.append(bb if bb is not None and len(bb) == 4 else [np.nan] * 4)
            conf.append(np.nan if d.confidence is None else d.confidence)
    return (
        np.asarray(sample, dtype=np.int64),
        np.asarray(label, dtype=object),
        np.asarray(box, dtype=np.float64).reshape(-1, 4),
        np.asarray(conf, dtype=np.float64),
    )


def _duplicates(cand, existing, iou: float) -> np.ndarray:
    """Candidates overlapping an existing label of their sample and class at IoU >= ``iou``."""
    c_sample, c_label, c_box, _ = cand
    e_sample, e_label, e_box, _ = existing
    starts = np.searchsorted(e_sample, c_sample, "left")
    counts = np.searchsorted(e_sample, c_sample, "right") - starts
    ia = np.repeat(np.arange(len(c_sample)), counts)
    ib = np.repeat(starts, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    same = c_label[ia] == e_label[ib]
    ia, ib = ia[same], ib[same]
    hit = box_iou_2d_paired(c_box[ia], e_box[ib]) >= iou
    dup = np.zeros(len(c_sample), bool)
    dup[ia[hit]] = True
    return dup


def _decide(schema, cand, existing, min_confidence: float, duplicate_iou: float) -> np.ndarray:
    """Review outcome of each candidate row: ``"accepted"`` or why not."""
    sample, label, box, conf = cand
    outcome = np.full(len(sample), "accepted", dtype=object)
    report = validate_labels(schema, sample, label, box, {})
    # First rule per bad row (the report is sorted by row, then rule).
    rows, first = np.unique(report.row, return_index=True)
    outcome[rows] = report.rule[first]
    ok = outcome == "accepted"
    outcome[ok & ~(conf >= min_confidence)] = "low_confidence"
    ok = outcome == "accepted"
    outcome[ok & _duplicates(cand, existing, duplicate_iou)] = "duplicate"
    return outcome


def review_autolabels(
    samples,
    *,
    action: str = "accept",
    autolabel_field: str = DEFAULT_OUTPUT_FIELD,
    label_field: str | None = None,
    min_confidence: float = 0.5,
    slice_name: str | None = None,
    schema=None,
    duplicate_iou: float = 0.7,
    progress: Progress | None = None,
) -> dict:
    """Accept or discard the auto-labels of one camera slice of ``samples``.

    Parameters
    ----------
    samples : Dataset or DatasetView
        The samples decided on: a selection for per-sample review, a view for bulk review.
    action : {"accept", "discard"}
    autolabel_field : str, default "autolabels"
        Field written by :func:`.run.autolabel`.
    label_field : str, optional
        Field accepted labels go to; default the ``label_field`` of the latest autolabel run
        on ``autolabel_field``, else ``ground_truth``. Created if missing.
    min_confidence : float, default 0.5
        The confidence bar of ``accept``, in [0, 1].
    slice_name : str, optional
        Camera slice of a grouped dataset.
    schema : dict or str, optional
        Label schema to gate against; default the field's stored label schema, else its
        classes (``dataset.classes`` / ``default_classes``).
    duplicate_iou : float, default 0.7
        A candidate overlapping a label of its class already in the field this much is not
        copied again; in (0, 1].
    progress : callable, optional
        ``progress(fraction, message)``.

    Returns
    -------
    dict
        ``action``, ``autolabel_field``, ``label_field``, ``min_confidence``, ``n_samples``
        (decided now), ``n_unchanged`` (already decided this way), ``n_candidates``,
        ``n_accepted``, ``accepted_per_class``, ``rejected`` (count per reason) and
        ``n_removed`` (labels taken back out of the label field by ``discard``).

    Raises
    ------
    ValueError
        Unknown action, a bar outside [0, 1], fields of the wrong type, no schema to gate
        against, a target with no auto-labeled images, or an accept that would write labels
        of frozen (test, mining, golden) samples or a frozen field. Nothing is written then.
    """
    report = progress or (lambda fraction, message: None)
    min_confidence, duplicate_iou = _check_bars(action, min_confidence, duplicate_iou)
    dataset = root_dataset(samples)
    view = camera_slice(samples, slice_name)
    label_field = _label_field(dataset, autolabel_field, label_field)
    gate = _review_schema(dataset, label_field, schema) if action == "accept" else None

    # Decided and written under the lock: two reviews at once never decide the same labels twice.
    with dataset_lock(dataset, "review_autolabels"):
        dataset.reload()
        labeled = view.match(F(f"{autolabel_field}.run").exists())
        if not labeled.count():
            raise ValueError(
                f"no sample of the target has auto-labels in {autolabel_field!r}; run autolabel first"
            )
        decision = _DECISION[action]
        todo = labeled.match(F(f"{autolabel_field}.review") != decision)
        ids = todo.values("id")
        if action == "accept":
            _refuse_frozen(dataset, ids, label_field)
        if ids and dataset.get_field(label_field) is None:
            dataset.add_sample_field(label_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)

        tally = _Tally()
        reviewed_at = now()
        for begin in range(0, len(ids), _CHUNK):
            chunk_ids = ids[begin : begin + _CHUNK]
            chunk = view.select(chunk_ids, ordered=True)
            candidates, targets = chunk.values([autolabel_field, label_field])
            cand = _rows(candidates)
            if action == "accept":
                outcome = _decide(gate, cand, _rows(targets), min_confidence, duplicate_iou)
            else:
                outcome = np.full(len(cand[0]), decision, dtype=object)
            new_targets, removed = _apply(action, chunk_ids, candidates, targets, cand, outcome, reviewed_at)
            if new_targets:
                chunk.set_values(label_field, new_targets, key_field="id")
            chunk.set_values(autolabel_field, dict(zip(chunk_ids, candidates)), key_field="id", dynamic=True)
            tally.add(cand, outcome, removed)
            done = begin + len(chunk_ids)
            report(done / len(ids), f"reviewed {done}/{len(ids)} samples")

        n_accepted = tally.outcomes.pop("accepted", 0)
        tally.outcomes.pop("discarded", None)  # not a rejection reason
        return {
            "action": action,
            "autolabel_field": autolabel_field,
            "label_field": label_field,
            "min_confidence": min_confidence,
            "n_samples": len(ids),
            "n_unchanged": labeled.count() - len(ids),
            "n_candidates": tally.n_candidates,
            "n_accepted": n_accepted,
            "accepted_per_class": dict(sorted(tally.per_class.items())),
            "rejected": dict(sorted(tally.outcomes.items())),
            "n_removed": tally.n_removed,
        }


def _check_bars(action: str, min_confidence, duplicate_iou) -> tuple[float, float]:
    """The action and both bars checked: ``(min_confidence, duplicate_iou)``."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}; got {action!r}")
    min_confidence = check_confidence(min_confidence)
    duplicate_iou = check_confidence(duplicate_iou, "duplicate_iou")
    if duplicate_iou == 0.0:
        raise ValueError("duplicate_iou must lie in (0, 1]; got 0")
    return min_confidence, duplicate_iou


def _refuse_frozen(dataset: fo.Dataset, ids: list, label_field: str) -> None:
    """Raise when accepting would write a frozen field or labels of frozen samples."""
    if label_field in frozen_fields(dataset):
        raise ValueError(
            f"{label_field!r} holds the frozen splits' recorded labels; accept into another "
            "label_field"
        )
    frozen = frozen_sample_ids(dataset)
    blocked = [sid for sid in ids if sid in frozen]
    if blocked:
        raise ValueError(
            f"{len(blocked)} of the {len(ids)} samples to accept are in the frozen test, "
            f"mining or golden splits (e.g. {', '.join(blocked[:3])}), whose labels must not "
            "come from a model; review a view without them (e.g. "
            f"samples.match_tags({list(FROZEN_SPLIT_TAGS)}, bool=False)) or discard their "
            "candidates"
        )


def _label_field(dataset: fo.Dataset, autolabel_field: str, label_field: str | None) -> str:
    """The field accepted labels go to (default: the latest run's), checked."""
    detections_field(dataset, autolabel_field, "autolabel field")
    if label_field is None:
        runs = autolabel_runs(dataset, autolabel_field)
        label_field = (runs[-1]["label_field"] if runs else None) or DEFAULT_GT_FIELD
    if label_field == autolabel_field:
        raise ValueError("the label field must differ from the autolabel field")
    if dataset.get_field(label_field) is not None:
        detections_field(dataset, label_field)
    return label_field


def _apply(action, chunk_ids, candidates, targets, cand, outcome, reviewed_at) -> tuple[dict, int]:
    """Apply one chunk's outcomes in memory: ``(changed label-field values, labels removed)``.

    Accepted candidates are appended to the sample's labels (discard removes this run's);
    each candidate and its container record the decision.
    """
    decision = _DECISION[action]
    new_targets, n_removed = {}, 0
    for i, (sid, dets, current) in enumerate(zip(chunk_ids, candidates, targets)):
        rows = np.flatnonzero(cand[0] == i)
        run_tag = _run_tag(dets.run)
        current = current if current is not None else fo.Detections()
        before = len(current.detections)
        if action == "accept":
            current.detections = list(current.detections) + [
                fo.Detection(
                    label=d.label,
                    bounding_box=list(d.bounding_box),
                    confidence=d.confidence,
                    tags=[AUTOLABEL_TAG, run_tag],
                )
                for d, r in zip(dets.detections, rows)
                if outcome[r] == "accepted"
            ]
        else:
            current.detections = [d for d in current.detections if run_tag not in (d.tags or [])]
            n_removed += before - len(current.detections)
        if len(current.detections) != before:
            new_targets[sid] = current
        for d, r in zip(dets.detections, rows):
            d["review"] = str(outcome[r])
        dets["review"] = decision
        dets["reviewed_at"] = reviewed_at
    return new_targets, n_removed


class _Tally:
    """Counts over the chunks: candidates, outcomes, accepted classes, removed labels."""

    def __init__(self):
        self.outcomes: Counter = Counter()
        self.per_class: Counter = Counter()
        self.n_candidates = 0
        self.n_removed = 0

    def add(self, cand, outcome: np.ndarray, n_removed: int) -> None:
        self.n_candidates += len(outcome)
        self.outcomes.update(outcome.tolist())
        self.per_class.update(cand[1][outcome == "accepted"].tolist())
        self.n_removed += n_removed
