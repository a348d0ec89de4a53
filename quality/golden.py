"""Golden-set QA on a FiftyOne dataset (glue): score each annotation batch against the golden
labels and raise drift alarms over the batches.

:func:`check_golden` reads, per slice, the golden labels (the ``golden`` field that
:func:`.frozen.create_splits` filled) and a candidate field (an annotator's or an
autolabeler's ``Detections``) on the golden samples, splits the samples into batches, matches
each batch with :func:`.matching.match_detections` (2D boxes on camera slices, cuboids on
point-cloud slices) and scores it with :func:`.metrics.quality_report`.

The history: one entry per (batch, slice), each a :func:`.drift.batch_summary` plus
``slice``, ``n_samples``, ``n_invalid_pred`` and ``checked_at``, oldest first, lives in the
results of the FiftyOne custom run ``annoloop_golden_<candidate field>`` (method
``annoloop.golden_qa``); its config holds the parameters and the latest alarms. Checking a
batch again replaces its entry in place, so the baseline (the first batch) stays first.
:func:`.drift.detect_drift` runs over each slice's history after every check.

Batches come from a label attribute (``batch``, written by the simulated annotator), a sample
tag with a prefix (``batch:<name>``), or one name for the whole golden set
(:mod:`.golden_batches`). The phases: validate, read every slice and assign batches, score
each (batch, slice), then, under the dataset's write lock, merge into the latest stored
history, detect drift and write the record.

Just over ~400 lines: the public ``check_golden`` and its documented phases, with the names
the operators and panels import.
"""

from __future__ import annotations

from collections.abc import Sequence

import fiftyone as fo
import numpy as np

from ..core.locks import dataset_lock
from ..core.runs import Progress, load_results, now, save_record
from ..core.names import BATCH_TAG_PREFIX, GOLDEN_SPLIT_TAG
from ..core.views import root_dataset, tagged_groups
from .algorithms.drift import DriftRules, batch_summary, detect_drift
from .frozen import DEFAULT_GOLDEN_FIELD
from .frozen_check import check_frozen, frozen_record
from .golden_batches import Batching
from .labels import checkable_slice_views, detections_field, on_slice, read_detections
from .algorithms.matching import match_detections
from .algorithms.metrics import quality_report

__all__ = [
    "BATCH_BY",
    "BATCH_BY_SOURCES",
    "DEFAULT_BATCH_ATTRIBUTE",
    "GOLDEN_RUN_KEY_PREFIX",
    "GOLDEN_RUN_METHOD",
    "check_golden",
    "golden_history",
    "golden_run_key",
    "score_rows",
]

GOLDEN_RUN_METHOD = "annoloop.golden_qa"
GOLDEN_RUN_KEY_PREFIX = "annoloop_golden_"
#: How golden samples are split into batches: choice -> where a sample's batch comes from.
BATCH_BY_SOURCES = {
    "attribute": "the batch_attribute of its candidate labels",
    "tag": "its sample tag starting with batch_tag_prefix",
    "name": "batch_name, one name for the whole golden set",
}
BATCH_BY = tuple(BATCH_BY_SOURCES)
DEFAULT_BATCH_ATTRIBUTE = "batch"
_SUMMARY_KEYS = (
    "n_gt", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1", "miss_rate", "mean_iou"
)


def golden_run_key(candidate_field: str) -> str:
    """FiftyOne run key of the golden-QA history of ``candidate_field``."""
    return GOLDEN_RUN_KEY_PREFIX + candidate_field.replace(".", "__")


def golden_history(dataset: fo.Dataset, candidate_field: str) -> list[dict]:
    """The stored history of ``candidate_field`` (oldest first); empty when none."""
    key = golden_run_key(candidate_field)
    dataset = root_dataset(dataset)
    results = load_results(dataset, key)
    return [] if results is None else list(results.history)


def _valid_geometry(geometry: np.ndarray) -> np.ndarray:
    """Rows the matcher accepts: finite, and non-negative box sizes / positive dimensions."""
    if geometry.shape[1] == 4:
        return np.isfinite(geometry).all(axis=1) & (geometry[:, 2:] >= 0).all(axis=1)
    return np.isfinite(geometry).all(axis=1) & (geometry[:, 3:6] > 0).all(axis=1)


def _is_str(values: np.ndarray) -> np.ndarray:
    return np.fromiter((isinstance(v, str) for v in values), bool, len(values))


def _as_float(value) -> float:
    """A confidence as float; NaN (no confidence) for None or anything non-numeric."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    return np.nan


def _check_params(
    dataset,
    candidate_field,
    golden_field,
    iou,
    batch_by,
    batch_attribute,
    batch_tag_prefix,
    batch_name,
):
    # The settings first (they need no dataset), then the fields.
    if batch_by not in BATCH_BY:
        choices = "; ".join(f"{k!r}: {v}" for k, v in BATCH_BY_SOURCES.items())
        raise ValueError(f"batch_by must be one of {list(BATCH_BY)}, got {batch_by!r} ({choices})")
    if batch_by == "attribute" and not (isinstance(batch_attribute, str) and batch_attribute):
        raise ValueError(f"batch_attribute must be a label attribute name; got {batch_attribute!r}")
    if batch_by == "tag" and not (isinstance(batch_tag_prefix, str) and batch_tag_prefix):
        raise ValueError(f"batch_tag_prefix must be a non-empty str; got {batch_tag_prefix!r}")
    if batch_by == "name" and not (isinstance(batch_name, str) and batch_name.strip()):
        raise ValueError(
            "batch_by='name' needs a batch_name: pass the one batch name of the whole golden "
            "set (e.g. 'batch-003')"
        )
    if isinstance(iou, bool) or not isinstance(iou, (int, float)) or not 0.0 < float(iou) <= 1.0:
        raise ValueError(f"iou must be a number in (0, 1]; got {iou!r}")
    detections_field(dataset, candidate_field, "candidate field")
    if dataset.get_field(golden_field) is None:
        raise ValueError(
            f"golden field {golden_field!r} does not exist on dataset '{dataset.name}': the "
            "golden set has no golden labels; run create_splits with a source field first"
        )
    detections_field(dataset, golden_field, "golden field")
    if candidate_field == golden_field:
        raise ValueError("the candidate field must differ from the golden field")


def _golden_samples(dataset: fo.Dataset):
    """The golden set: every sample of the groups tagged ``split:golden`` (flat: tagged).

    Raises ``ValueError`` when no sample is tagged.
    """
    if dataset.media_type == "group":
        groups = tagged_groups(dataset, [GOLDEN_SPLIT_TAG])
        view = dataset.select_groups(groups) if groups else None
    else:
        view = dataset.match_tags(GOLDEN_SPLIT_TAG)
        view = view if view.count() else None
    if view is None:
        raise ValueError(
            f"dataset '{dataset.name}' has no golden set (no sample tagged {GOLDEN_SPLIT_TAG!r})"
        )
    return view


def _compact(entry: dict) -> dict:
    """Headline numbers of one history entry, for results and the operator output."""
    return {
        "n_samples": entry["n_samples"],
        "n_invalid_pred": entry["n_invalid_pred"],
        "overall": {k: entry["overall"][k] for k in _SUMMARY_KEYS},
        "per_class": {
            c: {k: s[k] for k in ("n_gt", "n_pred", "precision", "recall", "f1", "mean_iou")}
            for c, s in entry["per_class"].items()
        },
    }


def check_golden(
    dataset,
    candidate_field: str,
    *,
    golden_field: str | None = None,
    iou: float = 0.5,
    batch_by: str = "attribute",
    batch_attribute: str = DEFAULT_BATCH_ATTRIBUTE,
    batch_tag_prefix: str = BATCH_TAG_PREFIX,
    batch_name: str | None = None,
    slices: Sequence[str] | None = None,
    baseline_batch=None,
    reset_history: bool = False,
    rules: DriftRules | None = None,
    progress: Progress | None = None,
) -> dict:
    """Score ``candidate_field`` against the golden labels, batch by batch; detect drift.

    Parameters
    ----------
    dataset : Dataset or DatasetView
        Its dataset's golden set is used (QA is defined on the whole golden set).
    candidate_field : str
        ``Detections`` to score (annotator or autolabeler output).
    golden_field : str, optional
        Golden labels; default the field recorded by ``create_splits``, else ``"golden"``.
    iou : float, default 0.5
        IoU threshold of a match, in (0, 1]; one history uses one threshold.
    batch_by : {"attribute", "tag", "name"}
        Batch of a golden sample: the ``batch_attribute`` of its candidate labels, its
        sample tag starting with ``batch_tag_prefix`` (the rest is the batch name), or
        ``batch_name`` for the whole golden set.
    slices : sequence of str, optional
        Slices of a grouped dataset; default every image and point-cloud slice.
    baseline_batch : optional
        Batch that drift is measured against; default the first in the history.
    reset_history : bool, default False
        Start a new history (required to change ``iou``).
    rules : DriftRules, optional
        Drift thresholds.
    progress : callable, optional
        ``progress(fraction, message)``.

    Returns
    -------
    dict
        ``run_key``, ``candidate_field``, ``golden_field``, ``iou``, ``batches`` (checked
        now), ``per_batch[batch][slice]`` (sample count, overall and per-class precision,
        recall, F1, mean IoU...), ``unassigned_samples``, ``alarms`` (every alarm over the
        history, dicts with ``slice``), ``new_alarms`` (those of the batches checked now),
        ``frozen`` (the golden split's fingerprint check) and ``history_length``.

    Raises
    ------
    ValueError
        On an unknown ``batch_by`` (the message lists the choices), a missing batch
        attribute, tag prefix or name, an IoU outside (0, 1], unknown or non-Detections
        fields, no golden set, golden samples without golden labels, changed golden labels,
        an IoU different from the history's, or no batch found. Nothing is written then.
    """
    report = progress or (lambda fraction, message: None)
    dataset = root_dataset(dataset)
    record = frozen_record(dataset)
    recorded_field = record["params"]["golden_field"] if record else None
    golden_field = golden_field or recorded_field or DEFAULT_GOLDEN_FIELD
    _check_params(
        dataset,
        candidate_field,
        golden_field,
        iou,
        batch_by,
        batch_attribute,
        batch_tag_prefix,
        batch_name,
    )
    iou = float(iou)
    golden_set = _golden_samples(dataset)
    frozen = check_frozen(dataset, splits=["golden"], strict=golden_field == recorded_field)
    key = golden_run_key(candidate_field)
    if not reset_history:  # a history at another IoU is refused before anything is read
        _scored_history(dataset, candidate_field, iou)

    # Read every slice and assign batches before scoring anything.
    report(0.0, "reading the golden set")
    group_path = f"{dataset.group_field}.id" if dataset.media_type == "group" else None
    batching = Batching(batch_by, batch_attribute, batch_tag_prefix, batch_name, group_path)
    read = {
        name: _read_slice(view, is_3d, name, golden_field, candidate_field, batching)
        for name, (view, is_3d) in checkable_slice_views(golden_set, slices).items()
    }
    assign = batching.assigner(read, candidate_field)

    entries, unassigned = [], 0
    checked_at = now()
    stamp = {
        "candidate_field": candidate_field, "golden_field": golden_field, "checked_at": checked_at
    }
    for k, (name, (gt, cand, batches)) in enumerate(read.items()):
        report(0.1 + 0.7 * k / len(read), f"scoring {name or 'samples'}")
        batches = assign(cand, batches)
        unassigned += sum(b is None for b in batches)
        entries += _score_slice(gt, cand, batches, iou, {"slice": name, **stamp})

    report(0.9, "saving the history")
    # Extending the history is read-modify-write: under the dataset's write lock, on the
    # latest stored history, so a check running at the same time keeps its entries.
    with dataset_lock(dataset, "check_golden"):
        dataset.reload()
        history = [] if reset_history else _scored_history(dataset, candidate_field, iou)
        _merge_history(history, entries)
        alarms = _alarms(history, rules or DriftRules(), baseline_batch)
        config = _config(stamp, iou, batching, baseline_batch, history, alarms)
        save_record(dataset, key, GOLDEN_RUN_METHOD, config, results={"history": history})
    checked = sorted({e["batch"] for e in entries})
    new_alarms = [a for a in alarms if a["batch"] in checked]
    report(1.0, f"{len(new_alarms)} alarms")
    return {
        "run_key": key,
        "candidate_field": candidate_field,
        "golden_field": golden_field,
        "iou": iou,
        "batches": checked,
        "per_batch": _per_batch(entries),
        "unassigned_samples": unassigned,
        "alarms": alarms,
        "new_alarms": new_alarms,
        "frozen": frozen.to_dict(),
        "history_length": len(history),
    }


def _scored_history(dataset: fo.Dataset, candidate_field: str, iou: float) -> list[dict]:
    """The stored history; raises when it was scored at another IoU."""
    history = golden_history(dataset, candidate_field)
    if history and abs(history[0]["iou_threshold"] - iou) > 1e-12:
        raise ValueError(
            f"the history of {candidate_field!r} was scored at IoU {history[0]['iou_threshold']}; "
            f"pass iou={history[0]['iou_threshold']} or reset_history=True"
        )
    return history


def _read_slice(view, is_3d: bool, name, golden_field: str, candidate_field: str, batching):
    """``(golden rows, candidate rows, batch per sample)`` of one slice.

    Raises on golden samples without golden labels or with malformed ones.
    """
    gt = read_detections(view, golden_field, is_3d)
    missing = [sid for sid, p in zip(gt.sample_ids, gt.present) if not p]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(gt.sample_ids)} golden samples{on_slice(name)} have no "
            f"{golden_field!r} labels (e.g. {missing[0]}); the golden set needs golden labels"
        )
    bad = ~(_valid_geometry(gt.geometry) & _is_str(gt.label))
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} golden labels{on_slice(name)} have no class or malformed "
            f"geometry (e.g. label {gt.label_id[bad][0]}); fix the golden set"
        )
    cand = read_detections(
        view,
        candidate_field,
        is_3d,
        attributes=["confidence"] + batching.attributes,
        extra=batching.extra(),
    )
    if cand.sample_ids != gt.sample_ids:  # same view, same order; guard anyway
        raise RuntimeError("golden and candidate reads returned different samples")
    return gt, cand, batching.sample_batches(cand)


def _score_slice(gt, cand, batches: list, iou: float, stamp: dict) -> list[dict]:
    """One history entry per batch of one slice: a :func:`.drift.batch_summary` and counts.

    ``stamp`` holds the entry's ``slice`` and provenance (fields, ``checked_at``).
    """
    batch_of_sample = np.array(batches, dtype=object)
    return [
        {
            **score_rows(gt, cand, batch_of_sample == batch, iou, batch),
            "slice": stamp["slice"],
            **stamp,
        }
        for batch in sorted({b for b in batches if b is not None})
    ]


def score_rows(gt, cand, in_batch: np.ndarray, iou: float, batch) -> dict:
    """Golden scores of the samples ``in_batch`` of one read: a :func:`.drift.batch_summary`.

    Parameters
    ----------
    gt, cand : LabelRows
        Golden and candidate labels of the same flat view (:func:`.labels.read_detections`).
    in_batch : ndarray of bool, shape (n_samples,)
        The samples to score.
    iou : float
        IoU threshold of a match.
    batch : object
        The entry's batch id.

    Returns
    -------
    dict
        The summary (overall and per-class precision, recall, mean IoU, confusions) plus
        ``n_samples`` and ``n_invalid_pred`` (candidate labels without a class or with a
        malformed box, left out of the matching).
    """
    ok_pred = _valid_geometry(cand.geometry) & _is_str(cand.label)
    sample_key = np.asarray(gt.sample_ids, dtype=object)
    conf = np.array([_as_float(c) for c in cand.attributes["confidence"].tolist()])
    g = in_batch[gt.sample]
    p = in_batch[cand.sample]
    keep = p & ok_pred
    match = match_detections(
        sample_key[gt.sample[g]].astype(str),
        gt.label[g].astype(str),
        gt.geometry[g],
        sample_key[cand.sample[keep]].astype(str),
        cand.label[keep].astype(str),
        cand.geometry[keep],
        conf[keep],
        iou_threshold=iou,
    )
    quality = quality_report(match, gt.label[g].astype(str), cand.label[keep].astype(str))
    return {
        **batch_summary(batch, quality),
        "n_samples": int(in_batch.sum()),
        "n_invalid_pred": int((p & ~ok_pred).sum()),
    }


def _merge_history(history: list, entries: list) -> None:
    """Add ``entries`` to ``history`` in place; a re-checked (batch, slice) keeps its place."""
    position = {(e["batch"], e["slice"]): i for i, e in enumerate(history)}
    for entry in entries:
        at = position.get((entry["batch"], entry["slice"]))
        if at is None:
            position[(entry["batch"], entry["slice"])] = len(history)
            history.append(entry)
        else:
            history[at] = entry


def _alarms(history: list, rules: DriftRules, baseline_batch) -> list[dict]:
    """Every drift alarm over each slice's history, with its ``slice``."""
    alarms = []
    for name in dict.fromkeys(e["slice"] for e in history):
        per_slice = [e for e in history if e["slice"] == name]
        if baseline_batch is not None and baseline_batch not in {e["batch"] for e in per_slice}:
            raise ValueError(
                f"baseline batch {baseline_batch!r} is not in the history{on_slice(name)}; "
                f"batches: {[e['batch'] for e in per_slice]}"
            )
        for alarm in detect_drift(per_slice, rules, baseline_batch=baseline_batch):
            alarms.append({**alarm.to_dict(), "slice": name})
    return alarms


def _per_batch(entries: list) -> dict:
    """``{batch: {slice: headline numbers}}`` of the entries checked now."""
    per_batch: dict = {}
    for entry in entries:
        per_batch.setdefault(entry["batch"], {})[str(entry["slice"])] = _compact(entry)
    return per_batch


def _config(stamp: dict, iou: float, batching: Batching, baseline_batch, history, alarms) -> dict:
    """The golden-QA run's config: parameters, the history's batches and its alarms."""
    return dict(
        candidate_field=stamp["candidate_field"],
        golden_field=stamp["golden_field"],
        iou=iou,
        batch_by=batching.by,
        batch_attribute=batching.attribute if batching.by == "attribute" else None,
        batch_tag_prefix=batching.tag_prefix if batching.by == "tag" else None,
        baseline_batch=baseline_batch,
        updated_at=stamp["checked_at"],
        batches=list(dict.fromkeys(e["batch"] for e in history)),
        alarms=alarms,
    )
