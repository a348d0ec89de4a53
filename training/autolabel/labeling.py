"""Detector boxes to ``Detections`` on a camera slice (FiftyOne glue for :func:`.run.autolabel`).

:class:`Labeler` maps each box's prompt to its schema class, applies the per-class
confidence bars, suppresses same-class overlaps above :data:`.base.NMS_IOU` and stamps the
provenance; :func:`label_samples` runs the detector in batches and writes each chunk of
samples with one ``set_values``; :func:`pending` and :func:`summarise` read which samples
are still to label and what a run has written.
"""

from __future__ import annotations

from collections import Counter

import fiftyone as fo
import numpy as np
from fiftyone import ViewField as F

from ...core.views import root_dataset
from ...quality.algorithms.iou import box_iou_2d
from .base import NMS_IOU
from .vocabulary import Vocabulary

__all__ = ["Labeler", "label_samples", "pending", "summarise"]


def _read_image(path: str):
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as err:
        raise ValueError(f"cannot read image {path}: {err}") from None


def _class_nms(xywh: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Indices kept by greedy same-class suppression above ``NMS_IOU`` (best first)."""
    order = np.argsort(-scores, kind="stable")
    iou = box_iou_2d(xywh[order], xywh[order])
    same = classes[order][:, None] == classes[order][None, :]
    suppressed = np.zeros(len(order), bool)
    for i in range(len(order)):
        if not suppressed[i]:
            suppressed[i + 1 :] |= (iou[i, i + 1 :] > NMS_IOU) & same[i, i + 1 :]
    return order[~suppressed]


class Labeler:
    """Turns detector boxes into ``Detections`` with provenance, counting what it drops."""

    def __init__(
        self, vocabulary: Vocabulary, thresholds: dict[str, float], min_confidence: float, provenance: dict
    ):
        self.vocabulary = vocabulary
        self.thresholds = thresholds
        self.min_confidence = min_confidence
        self.provenance = provenance
        self.class_index = {c: i for i, c in enumerate(vocabulary.classes)}
        self.below_threshold = 0

    def detections(self, boxes) -> fo.Detections:
        """The ``Detections`` of one image's boxes (``run`` and ``off_schema`` on the container)."""
        keep, off_schema = [], []
        for box in boxes:
            cls = self.vocabulary.prompt_class[box.prompt] if box.prompt >= 0 else None
            if cls is None:
                if box.score >= self.min_confidence:
                    off_schema.append(box.text)
            elif box.score >= self.thresholds.get(cls, self.min_confidence):
                keep.append((box, cls))
            else:
                self.below_threshold += 1
        if keep:
            xywh = np.array([b.xywh for b, _ in keep], dtype=np.float64)
            scores = np.array([b.score for b, _ in keep])
            codes = np.array([self.class_index[c] for _, c in keep])
            keep = [keep[i] for i in _class_nms(xywh, scores, codes)]
        return fo.Detections(
            detections=[
                fo.Detection(
                    label=cls,
                    bounding_box=[float(v) for v in box.xywh],
                    confidence=float(box.score),
                    prompt=box.text,
                    **self.provenance,
                )
                for box, cls in keep
            ],
            run=self.provenance["run"],
            off_schema=off_schema,
        )


def pending(views, output_field: str, exists: bool, overwrite: bool, run_id: str) -> tuple[list, list]:
    """Ids and paths of the samples still to label, in view order, each once.

    Without ``exists`` every sample is; with ``overwrite`` every sample not labeled by
    ``run_id``; otherwise only samples whose ``output_field`` is unset.
    """
    ids, paths, seen = [], [], set()
    for view in views:
        if not exists:
            todo = view
        elif overwrite:
            todo = view.match(F(f"{output_field}.run") != run_id)
        else:
            todo = view.exists(output_field, False)
        for sid, path in zip(*todo.values(["id", "filepath"])):
            if sid not in seen:
                seen.add(sid)
                ids.append(sid)
                paths.append(path)
    return ids, paths


def label_samples(
    slice_view, output_field, detector, labeler: Labeler, ids, paths, batch_size, chunk_size, report
) -> None:
    """Detect in batches; write each chunk's ``Detections`` (and done-markers) in one call."""
    # The detector keeps everything at or above the lowest bar; the labeler applies each bar.
    floor = min([labeler.min_confidence, *labeler.thresholds.values()])
    for begin in range(0, len(ids), chunk_size):
        end = min(begin + chunk_size, len(ids))
        chunk = {}
        for start in range(begin, end, batch_size):
            stop = min(start + batch_size, end)
            found = detector.detect([_read_image(p) for p in paths[start:stop]], labeler.vocabulary.prompts, floor)
            chunk.update(zip(ids[start:stop], map(labeler.detections, found)))
            report(stop / len(ids), f"labeled {stop}/{len(ids)} images")
        slice_view.set_values(output_field, chunk, key_field="id", dynamic=True)


def summarise(slice_view, output_field: str, run_id: str) -> dict:
    """Totals of everything run ``run_id`` has written, read back from the database."""
    if root_dataset(slice_view).get_field(output_field) is None:
        return {"n_run_samples": 0, "n_detections": 0, "per_class": {}, "off_schema": {}, "n_off_schema": 0}
    done = slice_view.match(F(f"{output_field}.run") == run_id)
    per_class = done.count_values(f"{output_field}.detections.label")
    dropped = Counter(t for texts in done.values(f"{output_field}.off_schema") for t in texts or [])
    return {
        "n_run_samples": done.count(),
        "n_detections": int(sum(per_class.values())),
        "per_class": dict(sorted(per_class.items())),
        "off_schema": dict(sorted(dropped.items())),
        "n_off_schema": int(sum(dropped.values())),
    }
