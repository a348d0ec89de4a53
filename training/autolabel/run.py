"""Autolabel a camera slice with a zero-shot detector (FiftyOne glue): resumable, idempotent.

:func:`autolabel` sends the slice's images through a :class:`.base.ZeroShotDetector` in
batches and writes candidate boxes to their own ``Detections`` field (default
``autolabels``), never to the label field itself: labels reach it only through
:func:`.review.review_autolabels`, so a person stays in the loop. The frozen splits are left
alone: test and mining samples are never labeled, golden ones only with ``score_golden``
(to score the model), and a field the splits record (test fields, golden field) is never
the output.

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
two prompts of that class) are suppressed above :data:`.base.NMS_IOU` (:mod:`.vocabulary`
maps the prompts, :mod:`.labeling` turns boxes into labels and writes them).

The steps of a run are public for :mod:`.shards`, which runs the same steps per shard:
:func:`check_autolabel` (everything checked, nothing written), :func:`label_pending`,
:func:`run_summary` and :func:`complete_run`. This module keeps the run records beside the
run (callers read both from here), which leaves it near 600 lines, a fifth of them
:func:`autolabel`'s docstring.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import fiftyone as fo
import numpy as np
from fiftyone import ViewField as F

from ...core.locks import dataset_lock, run_lock
from ...core.runs import Progress, load_record, now, record_keys, save_record, update_record
from ...quality.frozen_check import SPLIT_TAGS, frozen_fields, frozen_sample_ids
from ...quality.labels import detections_field
from ...core.names import DEFAULT_GT_FIELD, GOLDEN_SPLIT_TAG
from ...core.views import camera_slice, frozen_slice, root_dataset
from ..runs import STATUS_COMPLETED, STATUS_FAILED, STATUS_STARTED
from .base import MODELS, check_confidence, load_detector, resolve_checkpoint
from .labeling import Labeler, label_samples, pending, summarise
from .vocabulary import Vocabulary, build_vocabulary

__all__ = [
    "AUTOLABEL_RUN_KEY_PREFIX",
    "AUTOLABEL_RUN_METHOD",
    "DEFAULT_OUTPUT_FIELD",
    "autolabel",
    "autolabel_run",
    "autolabel_runs",
    "field_classes",
]

AUTOLABEL_RUN_METHOD = "annoloop.autolabel"
AUTOLABEL_RUN_KEY_PREFIX = "annoloop_autolabel_"
DEFAULT_OUTPUT_FIELD = "autolabels"

_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
#: :func:`autolabel`'s settings, in the order :func:`check_autolabel` unpacks them.
_SETTINGS = (
    "model", "checkpoint", "classes", "prompts", "label_field", "min_confidence",
    "class_thresholds", "slice_name", "output_field", "batch_size", "chunk_size", "device",
    "overwrite", "score_golden", "model_options",
)


# ----------------------------------------------------------------------------- vocabulary


def field_classes(dataset: fo.Dataset, label_field: str | None) -> list[str]:
    """Classes ``label_field`` allows: its label-schema classes, else ``dataset.classes``
    for it, else ``dataset.default_classes`` (empty when none is known)."""
    if not label_field:
        return []
    spec = dataset.label_schemas.get(label_field) or {}
    classes = spec.get("classes") or dataset.classes.get(label_field) or dataset.default_classes
    return [str(c) for c in classes or []]


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


def save_run(dataset: fo.Dataset, record: dict, *, new: bool) -> None:
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
    if output_field in frozen_fields(dataset):
        raise ValueError(
            f"output_field {output_field!r} holds the frozen splits' recorded labels; "
            "choose another output_field (default 'autolabels')"
        )
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
        with :func:`..quality.golden.check_golden` (one history entry per run). Without it
        golden samples in the target are skipped like the test and mining samples, which
        are always skipped (:func:`..quality.frozen_check.frozen_sample_ids`): autolabel
        never labels the sets that measure it.
    model_options : mapping, optional
        Loader options of the model (e.g. ``{"text_encoder": ...}`` for ``yolo_world``).
    progress : callable, optional
        ``progress(fraction, message)`` after every batch.

    Returns
    -------
    dict
        ``run_id``, ``run_key``, ``status`` (``"completed"``; ``"up_to_date"`` when there
        was nothing to label, and then nothing was written), ``resumed``, ``model``, ``checkpoint``,
        ``device``, ``output_field``, ``label_field``, ``slice``, ``n_target`` (samples to
        label), ``n_skipped_frozen`` (samples of the target left out because they are in a
        frozen split), ``n_skipped`` (already done), ``n_labeled`` (labeled by this call),
        ``n_run_samples`` / ``n_detections`` / ``per_class`` (everything the run has written
        so far), ``off_schema`` (``{text: count}`` dropped over the run), ``n_off_schema``,
        ``below_threshold`` (boxes of schema classes under their class threshold, this call),
        ``classes_without_prompt``, ``seconds``, ``images_per_second`` (inference loop of this
        call) and ``golden`` (per-class scores, when asked).

    Raises
    ------
    ValueError
        Unknown model, missing weights, empty class list, a confidence outside [0, 1], a
        target without images (or only frozen ones), an output field of the wrong type,
        holding other labels or recorded as frozen, and other bad parameters. Nothing is
        written then.
    """
    settings = {k: v for k, v in locals().items() if k not in ("samples", "progress")}
    started = time.perf_counter()
    report = progress or (lambda fraction, message: None)
    call = check_autolabel(samples, **settings)
    dataset = call.dataset
    # One run per output field at a time: a second call for the same field fails at once
    # naming the holder; a killed run's lock lapses and a re-run resumes its record.
    with run_lock(dataset, f"autolabel:{output_field}", "autolabel", f"autolabel into '{output_field}'"):
        dataset.reload()
        record = unfinished_run(dataset, output_field, call.fingerprint)
        resumed = record is not None
        run_id = record["run_id"] if record else f"{model}_{uuid.uuid4().hex[:10]}"
        labeled = label_pending(call, call.views, run_id, record, report)
        record = record or labeled.record
        summary = run_summary(call, run_id, labeled, started, resumed=resumed, n_target=call.n_target)
        summary["status"] = STATUS_COMPLETED if record else "up_to_date"
        if record:  # a run that labeled something now, or an interrupted one that had nothing left
            complete_run(dataset, record, summary, score_golden)
        report(1.0, f"{summary['n_detections']} boxes on {summary['n_run_samples']} images")
        return summary


@dataclass
class AutolabelCall:
    """A checked :func:`autolabel` call: what it labels and how (nothing written yet)."""

    dataset: fo.Dataset
    slice_view: fo.DatasetView  # the whole camera slice (summaries count over it)
    views: list  # what to label: the target less its frozen samples (+ golden ones)
    n_target: int
    n_frozen: int
    vocabulary: Vocabulary
    thresholds: dict
    exists: bool  # the output field exists already
    params: dict  # what defines the run (its fingerprint)
    fingerprint: str
    label_field: str | None
    batch_size: int
    chunk_size: int
    device: str | None
    overwrite: bool
    score_golden: bool

    @property
    def output_field(self) -> str:
        return self.params["output_field"]


def check_autolabel(samples, **settings) -> AutolabelCall:
    """Check an :func:`autolabel` call, given its keyword arguments (``progress`` aside),
    without labeling or writing anything; raises what :func:`autolabel` raises."""
    call = inspect.signature(autolabel).bind(samples, **settings)
    call.apply_defaults()
    (
        model, checkpoint, classes, prompts, label_field, min_confidence, class_thresholds,
        slice_name, output_field, batch_size, chunk_size, device, overwrite, score_golden,
        model_options,
    ) = (call.arguments[name] for name in _SETTINGS)
    min_confidence, batch_size, chunk_size = _check_options(
        model, min_confidence, batch_size, chunk_size, overwrite
    )
    dataset = root_dataset(samples)
    target = camera_slice(samples, slice_name)
    slice_view = camera_slice(dataset, slice_name)
    vocabulary = _vocabulary(dataset, label_field, classes, prompts)
    thresholds = _check_thresholds(class_thresholds, vocabulary.classes)
    exists = _check_output_field(slice_view, output_field, label_field)
    views, n_target, n_frozen = _targets(dataset, target, slice_name, score_golden)
    params = {
        "model": model,
        "checkpoint": resolve_checkpoint(model, checkpoint, dataset),
        "vocabulary": vocabulary.to_dict(),
        "min_confidence": min_confidence,
        "class_thresholds": thresholds,
        "output_field": output_field,
        "slice": slice_name,
        "model_options": dict(model_options or {}),
    }
    return AutolabelCall(
        dataset, slice_view, views, n_target, n_frozen, vocabulary, thresholds, exists, params,
        _fingerprint(params), label_field, batch_size, chunk_size, device, overwrite, score_golden,
    )


@dataclass
class Labeled:
    """What :func:`label_pending` did."""

    n_pending: int
    record: dict | None  # the run's record (started now when there was something to label)
    labeler: Labeler
    loop_seconds: float
    device: str | None


def label_pending(call: AutolabelCall, views: list, run_id: str, record: dict | None, report) -> Labeled:
    """Label the samples of ``views`` not yet done (see :func:`.labeling.pending`) under
    run ``run_id``, starting its record when there is something to label and none yet."""
    dataset, field, params = call.dataset, call.output_field, call.params
    ids, paths = pending(views, field, call.exists, call.overwrite, run_id)
    labeler = Labeler(
        call.vocabulary, call.thresholds, params["min_confidence"],
        {"model": params["model"], "checkpoint": params["checkpoint"], "run": run_id},
    )
    if not ids:
        return Labeled(0, record, labeler, 0.0, None)
    detector = load_detector(
        params["model"], params["checkpoint"], device=call.device, dataset=dataset,
        **params["model_options"],
    )
    if record is None:
        record = start_run(dataset, run_id, call.fingerprint, call.label_field, params)
    if not call.exists:
        with dataset_lock(dataset, "autolabel"):
            dataset.reload()
            if dataset.get_field(field) is None:
                dataset.add_sample_field(field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)
    loop_seconds = _timed_or_failed(
        dataset,
        record,
        lambda: label_samples(
            call.slice_view, field, detector, labeler, ids, paths, call.batch_size,
            call.chunk_size, report,
        ),
    )
    return Labeled(len(ids), record, labeler, loop_seconds, getattr(detector, "device", None))


def run_summary(
    call: AutolabelCall, run_id: str, labeled: Labeled, started: float, *, resumed: bool, n_target: int
) -> dict:
    """The result of a call (see :func:`autolabel`'s Returns), totals read back from MongoDB."""
    params = call.params
    summary = summarise(call.slice_view, call.output_field, run_id)
    summary.update(
        run_id=run_id,
        run_key=_run_key(run_id),
        resumed=resumed,
        model=params["model"],
        checkpoint=params["checkpoint"],
        device=labeled.device,
        output_field=call.output_field,
        label_field=call.label_field,
        slice=params["slice"],
        n_target=n_target,
        n_skipped_frozen=call.n_frozen,
        n_skipped=n_target - labeled.n_pending,
        n_labeled=labeled.n_pending,
        below_threshold=labeled.labeler.below_threshold,
        classes_without_prompt=[
            c for c in call.vocabulary.classes if c not in call.vocabulary.prompt_class
        ],
        seconds=time.perf_counter() - started,
        images_per_second=(
            labeled.n_pending / labeled.loop_seconds if labeled.loop_seconds > 0 else None
        ),
        golden=None,
    )
    return summary


def _check_options(model: str, min_confidence, batch_size, chunk_size, overwrite) -> tuple:
    """``(min_confidence, batch_size, chunk_size)`` checked; raises on a bad model or option."""
    if model not in MODELS:
        raise ValueError(f"unknown autolabel model {model!r}; choose one of {sorted(MODELS)}")
    min_confidence = check_confidence(min_confidence)
    batch_size = _check_int("batch_size", batch_size)
    chunk_size = _check_int("chunk_size", chunk_size)
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be a bool; got {overwrite!r}")
    return min_confidence, batch_size, chunk_size


def _vocabulary(dataset: fo.Dataset, label_field: str | None, classes, prompts) -> Vocabulary:
    """The vocabulary, its classes within those of ``label_field`` when it knows any."""
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
    return vocabulary


def _targets(dataset: fo.Dataset, target, slice_name: str | None, score_golden: bool) -> tuple:
    """``(views to label, number of distinct samples in them, frozen target samples left
    out)``: the target without its frozen samples (golden ones kept with ``score_golden``),
    plus the slice's golden samples with ``score_golden``."""
    skipped = [s for s in SPLIT_TAGS if not (score_golden and s == "golden")]
    frozen = frozen_sample_ids(dataset, skipped)
    target_ids = target.values("id")
    left_out = [sid for sid in target_ids if sid in frozen]
    views = [target.exclude(left_out) if left_out else target]
    if score_golden:
        views.append(frozen_slice(dataset, slice_name, [GOLDEN_SPLIT_TAG]))
        if not views[-1].count():
            raise ValueError(
                f"dataset '{dataset.name}' has no golden samples on this slice; create the "
                "splits first (create_splits) or leave score_golden off"
            )
    n_target = len({sid for view in views for sid in view.values("id")})
    if not n_target and left_out:
        raise ValueError(
            f"all {len(target_ids)} target images are in the frozen {' / '.join(skipped)} "
            "splits, which autolabel never labels"
            + ("" if score_golden else "; pass score_golden=True to label golden samples")
        )
    if not n_target:
        raise ValueError(
            f"the target has no images{f' on slice {slice_name!r}' if slice_name else ''}: "
            "nothing to label"
        )
    return views, n_target, len(left_out)


def unfinished_run(dataset: fo.Dataset, output_field: str, fingerprint: str) -> dict | None:
    """The latest unfinished run with these parameters (to resume), or None."""
    unfinished = [
        r
        for r in autolabel_runs(dataset, output_field)
        if r["status"] != STATUS_COMPLETED and r["fingerprint"] == fingerprint
    ]
    return unfinished[-1] if unfinished else None


def start_run(dataset, run_id: str, fingerprint: str, label_field, params: dict) -> dict:
    """Save and return the ``started`` record of a new run."""
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
    save_run(dataset, record, new=True)
    return record


def _timed_or_failed(dataset: fo.Dataset, record: dict, label) -> float:
    """Seconds ``label()`` took; a failure is recorded on the run before it propagates."""
    loop_start = time.perf_counter()
    try:
        label()
    except BaseException as err:
        error = f"{type(err).__name__}: {err}"
        # The stored record, not this call's copy: shards of the run may have updated it.
        with dataset_lock(dataset, "autolabel"):
            dataset.reload()
            current = autolabel_run(dataset, record["run_id"])
            save_run(dataset, {**current, "status": STATUS_FAILED, "error": error}, new=False)
        raise
    return time.perf_counter() - loop_start


def complete_run(dataset: fo.Dataset, record: dict, summary: dict, score_golden: bool) -> None:
    """Score on the golden set when asked (into ``summary``), then mark the run completed."""
    if score_golden:
        summary["golden"] = _score_golden(
            dataset, summary["output_field"], summary["run_id"], summary["slice"]
        )
    done = {**record, "status": STATUS_COMPLETED, "finished_at": now(), "summary": summary}
    save_run(dataset, done, new=False)


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
