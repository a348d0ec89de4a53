"""Autolabel a camera slice with a zero-shot detector (FiftyOne glue): resumable, idempotent.

:func:`autolabel` sends the slice's images through a :class:`.base.ZeroShotDetector` in
batches and writes candidate boxes to their own ``Detections`` field (default
``autolabels``), never to the label field itself: labels reach it only through
:func:`.review.review_autolabels`, so a person stays in the loop.

What is written, per sample, in one ``set_values`` per chunk of samples:

- ``<output_field>``: ``Detections`` whose container carries ``run`` (the run id: the
  sample is done) and ``off_schema`` (the texts of boxes dropped because they name no
  schema class); each box carries ``confidence``, ``model``, ``checkpoint``, ``run`` and the
  ``prompt`` that found it. A sample where nothing was found holds an empty ``Detections``,
  so it is done too.
- a FiftyOne custom run ``annoloop_autolabel_<run id>`` (method ``annoloop.autolabel``)
  recording the parameters, ``started`` / ``completed`` / ``failed``, and the summary.

Resuming. Each chunk's labels and done-markers land in the same documents, so a worker
killed mid-run loses at most the chunk in flight. A later call with the same parameters
(same model, checkpoint, prompts, thresholds, slice and field; batch and chunk sizes,
device and ``overwrite`` may differ) finds the unfinished run record and continues it under
the same run id: only samples without a label from that run
are labeled, and each sample's field is replaced, never appended to, so nothing is
duplicated. Without ``overwrite`` any sample whose field is set is skipped, so re-running
on finished samples writes nothing at all; with it, every target sample not yet labeled by
the current run is relabeled.

Vocabulary. The classes default to the label field's schema classes
(``dataset.label_schemas``, else ``dataset.classes`` / ``default_classes``). Prompts are
free text mapped to a schema class (``{"a person riding a bike": "cyclist"}``); a prompt
mapped to nothing (``None``) or to a non-schema class is a distractor: its boxes, and the
boxes of a trained detector's classes that no prompt names, are dropped and counted in
``off_schema``, never written as labels. After mapping, overlapping boxes of one class (from
two prompts of that class) are suppressed above :data:`.base.NMS_IOU`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import fiftyone as fo
import numpy as np
from fiftyone import ViewField as F

from ...core.runs import Progress, load_record, now, record_keys, save_record, update_record
from ...quality.labels import detections_field
from ...quality.algorithms.iou import box_iou_2d
from ...core.names import DEFAULT_GT_FIELD, GOLDEN_SPLIT_TAG
from ...core.views import camera_slice, frozen_slice, root_dataset
from .base import MODELS, NMS_IOU, check_confidence, load_detector, normalise, resolve_checkpoint

__all__ = [
    "AUTOLABEL_RUN_KEY_PREFIX",
    "AUTOLABEL_RUN_METHOD",
    "DEFAULT_OUTPUT_FIELD",
    "Vocabulary",
    "autolabel",
    "autolabel_run",
    "autolabel_runs",
    "build_vocabulary",
    "field_classes",
]

AUTOLABEL_RUN_METHOD = "annoloop.autolabel"
AUTOLABEL_RUN_KEY_PREFIX = "annoloop_autolabel_"
DEFAULT_OUTPUT_FIELD = "autolabels"
STATUS_STARTED = "started"
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"

_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


# ----------------------------------------------------------------------------- vocabulary


def field_classes(dataset: fo.Dataset, label_field: str | None) -> list[str]:
    """Classes ``label_field`` allows: its label-schema classes, else ``dataset.classes``
    for it, else ``dataset.default_classes`` (empty when none is known)."""
    if not label_field:
        return []
    spec = dataset.label_schemas.get(label_field) or {}
    classes = spec.get("classes") or dataset.classes.get(label_field) or dataset.default_classes
    return [str(c) for c in classes or []]


@dataclass(frozen=True)
class Vocabulary:
    """Prompts sent to the model and the schema class each one stands for.

    Attributes
    ----------
    classes : list of str
        The schema classes being labeled.
    prompts : list of str
        Texts sent to the detector.
    prompt_class : list of (str or None)
        Schema class of each prompt; None for a distractor / off-schema prompt.
    """

    classes: list[str]
    prompts: list[str]
    prompt_class: list[str | None]

    def to_dict(self) -> dict:
        """JSON form, as recorded on the run."""
        return {"classes": self.classes, "prompts": [list(p) for p in zip(self.prompts, self.prompt_class)]}


def build_vocabulary(
    classes: Sequence[str], prompts: Mapping[str, str | None] | Sequence[str] | None = None
) -> Vocabulary:
    """Map free-text prompts to schema classes.

    Parameters
    ----------
    classes : sequence of str
        Schema classes; non-empty, unique.
    prompts : mapping or sequence of str, optional
        ``{prompt: class or None}``, or prompts that are themselves class names; default
        one prompt per class, its name. A prompt's class is matched to ``classes`` exactly,
        else ignoring case and spacing; no match (or None) makes it off-schema.

    Raises
    ------
    ValueError
        On an empty or malformed class list, empty or repeated prompts, or prompts none of
        which reaches a schema class.
    """
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise ValueError(f"classes must be a list of class names; got {classes!r}")
    classes = [c.strip() if isinstance(c, str) else c for c in classes]
    if not classes:
        raise ValueError(
            "the class list is empty: pass classes, or give the label field a label schema "
            "(dataset.set_label_schemas) or classes (dataset.classes)"
        )
    bad = [c for c in classes if not isinstance(c, str) or not c]
    if bad:
        raise ValueError(f"classes must be non-empty strings; got {bad}")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise ValueError(f"classes {repeated} are listed more than once")
    by_name = {normalise(c): c for c in reversed(classes)}

    def schema_class(name) -> str | None:
        if name is None:
            return None
        if not isinstance(name, str):
            raise ValueError(f"a prompt's class must be a str or None; got {name!r}")
        return name.strip() if name.strip() in classes else by_name.get(normalise(name))

    if prompts is None:
        pairs = [(c, c) for c in classes]
    elif isinstance(prompts, Mapping):
        pairs = [(p, schema_class(c)) for p, c in prompts.items()]
    elif isinstance(prompts, Sequence) and not isinstance(prompts, str):
        pairs = [(p, schema_class(p) if isinstance(p, str) else None) for p in prompts]
    else:
        raise ValueError(f"prompts must be a dict of prompt -> class or a list of str; got {prompts!r}")
    if not pairs:
        raise ValueError("prompts is empty; leave it unset to use the class names")
    texts = [p.strip() if isinstance(p, str) else p for p, _ in pairs]
    bad = [p for p in texts if not isinstance(p, str) or not p]
    if bad:
        raise ValueError(f"prompts must be non-empty strings; got {bad}")
    seen = Counter(normalise(p) for p in texts)
    repeated = sorted(p for p in texts if seen[normalise(p)] > 1)
    if repeated:
        raise ValueError(f"prompts {repeated} repeat each other (case and spacing ignored)")
    mapped = [c for _, c in pairs]
    if all(c is None for c in mapped):
        raise ValueError(
            f"no prompt maps to a schema class {classes}: every detection would be off-schema"
        )
    return Vocabulary(classes, texts, mapped)


# ---------------------------------------------------------------------------- run records


def _run_key(run_id: str) -> str:
    return AUTOLABEL_RUN_KEY_PREFIX + run_id


def autolabel_runs(dataset: fo.Dataset, output_field: str | None = None) -> list[dict]:
    """Autolabel run records (oldest first), only those writing ``output_field`` when given.

    A process that holds ``dataset`` while a worker writes calls ``dataset.reload()`` first.
    """
    records = [autolabel_run(dataset, key[len(AUTOLABEL_RUN_KEY_PREFIX) :]) for key in record_keys(dataset, AUTOLABEL_RUN_METHOD)]
    records.sort(key=lambda r: r["started_at"])
    return [r for r in records if output_field is None or r["output_field"] == output_field]


def autolabel_run(dataset: fo.Dataset, run_id: str) -> dict:
    """The record of autolabel run ``run_id`` (see the module docstring)."""
    key = _run_key(run_id)
    record = load_record(dataset, key)
    if record is None:
        raise ValueError(f"no autolabel run {run_id!r} on dataset '{dataset.name}'")
    return record


def _save_run(dataset: fo.Dataset, record: dict, *, new: bool) -> None:
    key = _run_key(record["run_id"])
    if new:
        save_record(dataset, key, AUTOLABEL_RUN_METHOD, record, overwrite=False)
    else:
        update_record(dataset, key, AUTOLABEL_RUN_METHOD, record)


# ------------------------------------------------------------------------------ validation


def _check_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return int(value)


def _check_output_field(view, output_field: str, label_field: str | None) -> bool:
    """Validate the output field; return whether it exists already."""
    if not isinstance(output_field, str) or not _FIELD_NAME.match(output_field):
        raise ValueError(
            f"output_field must be a top-level field name (letters, digits, underscores); "
            f"got {output_field!r}"
        )
    if output_field == label_field:
        raise ValueError(
            f"output_field must differ from the label field {label_field!r}: auto-labels go to "
            "their own field and reach the labels only through review"
        )
    dataset = root_dataset(view)
    existing = dataset.get_field(output_field)
    if existing is None:
        return False
    doc_type = getattr(existing, "document_type", None)
    if doc_type is not fo.Detections:
        kind = doc_type.__name__ if doc_type is not None else type(existing).__name__
        raise ValueError(
            f"field {output_field!r} already exists and holds {kind}, not Detections; choose "
            "another output_field"
        )
    foreign = view.exists(output_field).match(~F(f"{output_field}.run").exists()).count()
    if foreign:
        raise ValueError(
            f"field {output_field!r} holds labels on {foreign} samples that autolabel did not "
            "write (annotations or predictions?); choose another output_field"
        )
    return True


def _check_thresholds(class_thresholds, classes: list[str]) -> dict[str, float]:
    if class_thresholds is None:
        return {}
    if not isinstance(class_thresholds, Mapping):
        raise ValueError(f"class_thresholds must be a dict of class -> confidence; got {class_thresholds!r}")
    unknown = sorted(str(c) for c in class_thresholds if c not in classes)
    if unknown:
        raise ValueError(f"class_thresholds name classes {unknown} that are not being labeled {classes}")
    return {c: check_confidence(v, f"class_thresholds[{c!r}]") for c, v in class_thresholds.items()}


def _fingerprint(params: dict) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ labeling


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


class _Labeler:
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


def autolabel(
    samples,
    *,
    model: str,
    checkpoint: str | None = None,
    classes: Sequence[str] | None = None,
    prompts: Mapping[str, str | None] | Sequence[str] | None = None,
    label_field: str | None = DEFAULT_GT_FIELD,
    min_confidence: float = 0.3,
    class_thresholds: Mapping[str, float] | None = None,
    slice_name: str | None = None,
    output_field: str = DEFAULT_OUTPUT_FIELD,
    batch_size: int = 8,
    chunk_size: int = 128,
    device: str | None = None,
    overwrite: bool = False,
    score_golden: bool = False,
    model_options: Mapping | None = None,
    progress: Progress | None = None,
) -> dict:
    """Label the images of one camera slice of ``samples`` with a zero-shot detector.

    Parameters
    ----------
    samples : Dataset or DatasetView
        Target samples (grouped or flat).
    model : str
        A key of :data:`.base.MODELS` (``owlv2``, ``owlvit``, ``grounding_dino``,
        ``yolo_world``, ``trained``).
    checkpoint : str, optional
        Hub id (in the Hugging Face cache), local directory or ``.pt``, or a training run
        name for ``trained``; default the model's usual checkpoint. Never downloaded.
    classes : sequence of str, optional
        Schema classes to label; default :func:`field_classes` of ``label_field``. When the
        label field knows its classes, these must be among them.
    prompts : mapping or sequence of str, optional
        Free-text prompts and their schema classes; see :func:`build_vocabulary`.
    label_field : str or None, default "ground_truth"
        The field whose schema the auto-labels are meant for (default classes; recorded so
        review knows where to accept them). None: ``classes`` alone is the vocabulary.
    min_confidence : float, default 0.3
        Boxes scoring below it are not written; in [0, 1].
    class_thresholds : mapping of str to float, optional
        Per-class minimum confidences overriding ``min_confidence``.
    slice_name : str, optional
        Camera slice of a grouped dataset; must be None for a flat image dataset.
    output_field : str, default "autolabels"
        ``Detections`` field to write; it may exist only as an earlier autolabel output.
    batch_size : int, default 8
        Images per forward pass.
    chunk_size : int, default 128
        Samples per database write: the most work a killed worker loses.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:<n>"``; default CUDA (float16) when present, else CPU.
    overwrite : bool, default False
        Relabel samples that already hold auto-labels from another run.
    score_golden : bool, default False
        Also label the slice's golden samples and score the run against their golden labels
        with :func:`..quality.golden.check_golden` (one history entry per run).
    model_options : mapping, optional
        Loader options of the model (e.g. ``{"text_encoder": ...}`` for ``yolo_world``).
    progress : callable, optional
        ``progress(fraction, message)`` after every batch.

    Returns
    -------
    dict
        ``run_id``, ``run_key``, ``status`` (``"completed"``; ``"up_to_date"`` when there
        was nothing to label, and then nothing was written), ``resumed``, ``model``, ``checkpoint``,
        ``device``, ``output_field``, ``label_field``, ``slice``, ``n_target`` (samples in
        the target), ``n_skipped`` (already done), ``n_labeled`` (labeled by this call),
        ``n_run_samples`` / ``n_detections`` / ``per_class`` (everything the run has written
        so far), ``off_schema`` (``{text: count}`` dropped over the run), ``n_off_schema``,
        ``below_threshold`` (boxes of schema classes under their class threshold, this call),
        ``classes_without_prompt``, ``seconds``, ``images_per_second`` (inference loop of this
        call) and ``golden`` (per-class scores, when asked).

    Raises
    ------
    ValueError
        Unknown model, missing weights, empty class list, a confidence outside [0, 1], a
        target without images, an output field of the wrong type or holding other labels,
        and other bad parameters. Nothing is written then.
    """
    started = time.perf_counter()
    report = progress or (lambda fraction, message: None)
    if model not in MODELS:
        raise ValueError(f"unknown autolabel model {model!r}; choose one of {sorted(MODELS)}")
    min_confidence = check_confidence(min_confidence)
    batch_size = _check_int("batch_size", batch_size)
    chunk_size = _check_int("chunk_size", chunk_size)
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be a bool; got {overwrite!r}")
    model_options = dict(model_options or {})

    dataset = root_dataset(samples)
    target = camera_slice(samples, slice_name)
    slice_view = camera_slice(dataset, slice_name)
    if label_field is not None and dataset.get_field(label_field) is not None:
        detections_field(dataset, label_field)
    known = field_classes(dataset, label_field)
    vocabulary = build_vocabulary(known if classes is None else classes, prompts)
    outside = [c for c in vocabulary.classes if known and c not in known]
    if outside:
        raise ValueError(
            f"classes {outside} are not classes of {label_field!r} ({known}); pass "
            "label_field=None to label a vocabulary of your own"
        )
    thresholds = _check_thresholds(class_thresholds, vocabulary.classes)
    exists = _check_output_field(slice_view, output_field, label_field)
    views = [target]
    if score_golden:
        views.append(frozen_slice(dataset, slice_name, [GOLDEN_SPLIT_TAG]))
        if not views[-1].count():
            raise ValueError(
                f"dataset '{dataset.name}' has no golden samples on this slice; create the "
                "splits first (create_splits) or leave score_golden off"
            )
    n_target = len({sid for view in views for sid in view.values("id")})
    if not n_target:
        raise ValueError(
            f"the target has no images{f' on slice {slice_name!r}' if slice_name else ''}: "
            "nothing to label"
        )
    source = resolve_checkpoint(model, checkpoint, dataset)

    params = {
        "model": model,
        "checkpoint": source,
        "vocabulary": vocabulary.to_dict(),
        "min_confidence": min_confidence,
        "class_thresholds": thresholds,
        "output_field": output_field,
        "slice": slice_name,
        "model_options": model_options,
    }
    fingerprint = _fingerprint(params)
    unfinished = [
        r
        for r in autolabel_runs(dataset, output_field)
        if r["status"] != STATUS_COMPLETED and r["fingerprint"] == fingerprint
    ]
    record = unfinished[-1] if unfinished else None
    run_id = record["run_id"] if record else f"{model}_{uuid.uuid4().hex[:10]}"
    ids, paths = _pending(views, output_field, exists, overwrite, run_id)

    labeler = _Labeler(
        vocabulary, thresholds, min_confidence, {"model": model, "checkpoint": source, "run": run_id}
    )
    loop_seconds, device_used = 0.0, None
    if ids:
        detector = load_detector(model, source, device=device, dataset=dataset, **model_options)
        device_used = getattr(detector, "device", None)
        if record is None:
            record = {
                "run_id": run_id,
                "status": STATUS_STARTED,
                "fingerprint": fingerprint,
                "label_field": label_field,
                "started_at": now(),
                "finished_at": None,
                "error": None,
                "summary": {},
                **params,
            }
            _save_run(dataset, record, new=True)
        if not exists:
            dataset.add_sample_field(output_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)
        loop_start = time.perf_counter()
        try:
            _label(slice_view, output_field, detector, labeler, ids, paths, batch_size, chunk_size, report)
        except BaseException as err:
            error = f"{type(err).__name__}: {err}"
            _save_run(dataset, {**record, "status": STATUS_FAILED, "error": error}, new=False)
            raise
        loop_seconds = time.perf_counter() - loop_start

    summary = _summarise(slice_view, output_field, run_id)
    summary.update(
        run_id=run_id,
        run_key=_run_key(run_id),
        status=STATUS_COMPLETED if record else "up_to_date",
        resumed=bool(unfinished),
        model=model,
        checkpoint=source,
        device=device_used,
        output_field=output_field,
        label_field=label_field,
        slice=slice_name,
        n_target=n_target,
        n_skipped=n_target - len(ids),
        n_labeled=len(ids),
        below_threshold=labeler.below_threshold,
        classes_without_prompt=[c for c in vocabulary.classes if c not in vocabulary.prompt_class],
        seconds=time.perf_counter() - started,
        images_per_second=len(ids) / loop_seconds if loop_seconds > 0 else None,
        golden=None,
    )
    if record:  # a run that labeled something now, or an interrupted one that had nothing left
        if score_golden:
            summary["golden"] = _score_golden(dataset, output_field, run_id, slice_name)
        done = {**record, "status": STATUS_COMPLETED, "finished_at": now(), "summary": summary}
        _save_run(dataset, done, new=False)
    report(1.0, f"{summary['n_detections']} boxes on {summary['n_run_samples']} images")
    return summary


def _pending(views, output_field: str, exists: bool, overwrite: bool, run_id: str):
    """Ids and paths of the samples still to label, in view order, each once."""
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


def _label(slice_view, output_field, detector, labeler, ids, paths, batch_size, chunk_size, report) -> None:
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


def _summarise(slice_view, output_field: str, run_id: str) -> dict:
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


def _score_golden(dataset: fo.Dataset, output_field: str, run_id: str, slice_name: str | None) -> dict:
    """Per-class scores of the run on the golden set (or the reason it could not be scored)."""
    from ...quality.golden import check_golden

    try:
        result = check_golden(
            dataset,
            output_field,
            batch_by="name",
            batch_name=run_id,
            slices=[slice_name] if slice_name else None,
        )
    except ValueError as err:  # e.g. golden labels changed since the split was frozen
        return {"error": str(err)}
    return {**result["per_batch"][run_id][str(slice_name)], "new_alarms": result["new_alarms"]}
