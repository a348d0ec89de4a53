"""FiftyOne glue of the batch planner: pick the next batch to label, tag it, record why.

:func:`plan_batch` reads a dataset (or a view of it), hands numpy arrays to the pure
:func:`.planner.plan_batch` and writes its answer back in bulk.

**Units.** On a grouped dataset the unit of selection is the scene (the group): its
embedding is read from one slice (``slice_name``, default the dataset's default slice; a
scene embedding such as ``group_embedding`` is the same on every slice), and a picked scene
is tagged on *every* slice. On a flat dataset the unit is the sample.

**Pool, labeled, excluded.** Decided on the whole dataset, never trusted to the caller's
view; a scene counts as tagged or labeled when any of its slices is.

* *labeled*: the label field (default ``ground_truth``) is set (not None: an empty
  ``Detections`` is an image someone labeled as empty), or the unit carries a ``batch:*``
  tag (queued for labeling). Labeled units outside the frozen splits are the
  ``labeled_embeddings`` that coverage measures against.
* *pool*: the units of the caller's view whose label field is empty.
* *excluded*: frozen test (``split:test``) and golden (``split:golden``) units, quarantined
  ones (``qa:quarantine`` on the sample or on one of its labels) and those already in a
  batch. They are passed to the planner as ``excluded`` rows, so the planner itself refuses
  them even when the caller's view contains them.

**Failures** come from a FiftyOne detection evaluation (``eval_key``, default the latest
one that does not cover the frozen test set — in the loop, the mining split's ``eval_mining``).
An evaluation that covers any ``split:test`` sample is refused: choosing training data by the
test set's errors would make its score an optimistic estimate. Per object, ``fn`` (a ground-truth object the model missed), ``confusion`` (a missed
object that a prediction of another class covers) and ``fp`` (a spurious prediction). A
``classwise=True`` evaluation (FiftyOne's default, and :mod:`..training.evaluate`'s) never
matches across classes, so a confusion shows up as an ``fn`` ground truth plus an ``fp``
prediction with nothing linking them. They are linked here by IoU: an ``fn`` box and an
``fp`` box of another label in the same sample overlapping by at least the evaluation's IoU
threshold are one confusion; that is the pair a ``classwise=False`` pass would match, but
it is computed in memory rather than by writing a second evaluation onto the frozen test
set. A ``classwise=False`` evaluation records such a pair itself (``<key>_id`` set on an
``fn`` / ``fp`` object), which counts as well.

Queries are either sample-level (default): one per failing evaluated sample, its
(scene's) embedding, of the sample's heaviest kind, samples with false negatives first, then
by the share of the sample's objects that fail that way (a scene where the model misses
every object is a blind spot; one where it misses 3 of 8 is a weak spot), then by count;
or object-level when ``patches_field`` is given: the patch
embedding of each failing object in that field (``<patches_field>.detections.
<embeddings_field>``, where :func:`.embed.compute_embeddings` stores them), false negatives
first. Failures are queries only: the evaluated samples are labeled and frozen, never
picked.

**Uncertainty** (``targeting_source="uncertainty"``) replaces the failures and needs no
labels and no evaluation: each pool unit is scored by :func:`.uncertainty.
detection_uncertainty` from the confidences of the model's predictions on it
(``<uncertainty_field>.detections.confidence``, written by ``apply_detector`` with target
``"pool"``), read on one image slice (``uncertainty_slice``: default the embeddings' slice
when it holds images, else the first image slice). A unit whose predictions are set but
empty scores 0 (the model sees nothing there); every selectable pool unit must have
predictions, else nothing is planned.

**Outputs** (none when ``dry_run``), written after everything was validated and planned, in
bulk:

* tags ``batch:vN`` and ``source:coverage`` / ``source:targeting`` on every slice of each
  picked unit;
* the embedded document field ``annoloop_pick`` on every picked sample (see
  :data:`PICK_SCHEMA`): batch, round, rank, source, score and what the score means, and for
  failure-targeting picks the failure served (id, kind, its sample) and the distance to it;
* the saved view ``batch_vN`` (the picks, in pick order);
* the custom run ``annoloop_plan_batch_vN`` (method ``annoloop.plan``): parameters, the
  plan's summary, counts and the fallback reason (:func:`plan_record` reads it back).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

import fiftyone as fo
from fiftyone import ViewField as F

from ..core.runs import Progress, load_record, now, record_keys, save_record
from ..quality.algorithms.iou import box_iou_2d
from ..core.names import (
    DEFAULT_GT_FIELD,
    DEFAULT_PRED_FIELD,
    FROZEN_SPLIT_TAGS,
    QUARANTINE_TAG,
    TEST_SPLIT_TAG,
)
from ..core.views import camera_slices, root_dataset, slice_views, units_view
from .algorithms import planner
from .algorithms.targeting import DEFAULT_KIND_WEIGHTS
from .algorithms.uncertainty import detection_uncertainty

__all__ = [
    "BATCH_TAG_PREFIX",
    "PICK_FIELD",
    "PICK_SCHEMA",
    "PLAN_RUN_METHOD",
    "SOURCE_TAG_PREFIX",
    "ZCORE_FIELD",
    "default_eval_key",
    "default_round",
    "default_uncertainty_slice",
    "detection_evaluations",
    "evaluated_test_samples",
    "embedding_fields",
    "next_batch_name",
    "plan_batch",
    "plan_record",
    "plan_run_key",
    "targetable_evaluations",
]

#: Tags of planned batches start with this (``batch:v1``, ``batch:v2``, ...).
BATCH_TAG_PREFIX = "batch:"
#: Tags naming the share a pick came from: ``source:coverage`` or ``source:targeting``.
SOURCE_TAG_PREFIX = "source:"
#: Embedded document on every picked sample saying why it was picked.
PICK_FIELD = "annoloop_pick"
#: Attributes of :data:`PICK_FIELD` and their FiftyOne field types.
PICK_SCHEMA = {
    "batch": fo.StringField,
    "round": fo.IntField,
    "rank": fo.IntField,
    "source": fo.StringField,
    "score": fo.FloatField,
    "score_kind": fo.StringField,
    "near_failure": fo.StringField,
    "near_failure_kind": fo.StringField,
    "near_failure_sample": fo.StringField,
    "distance_to_failure": fo.FloatField,
    "eval_key": fo.StringField,
}
#: FiftyOne custom-run method and key prefix of plan records.
PLAN_RUN_METHOD = "annoloop.plan"
PLAN_RUN_KEY_PREFIX = "annoloop_plan_"
#: Per-sample coverage scores read by ``coverage_method="zcore"``.
ZCORE_FIELD = "zcore"

_BATCH_NAME = re.compile(rf"^{re.escape(BATCH_TAG_PREFIX)}[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}$")
_NUMBERED_BATCH = re.compile(rf"^{re.escape(BATCH_TAG_PREFIX)}v(\d+)$")
#: Failure kinds, heaviest first (the order queries are handed to the planner in).
_KIND_ORDER = tuple(sorted(DEFAULT_KIND_WEIGHTS, key=DEFAULT_KIND_WEIGHTS.get, reverse=True))


# --- public helpers -----------------------------------------------------------------------


def next_batch_name(dataset: fo.Dataset) -> str:
    """``batch:v<N+1>``, N the highest number among existing batch tags and plan records."""
    numbers = [0]
    for tag in _distinct_tags(dataset):
        match = _NUMBERED_BATCH.match(tag)
        if match:
            numbers.append(int(match.group(1)))
    for key in record_keys(dataset, PLAN_RUN_METHOD):
        match = _NUMBERED_BATCH.match(load_record(dataset, key)["batch"])
        if match:
            numbers.append(int(match.group(1)))
    return f"{BATCH_TAG_PREFIX}v{max(numbers) + 1}"


def plan_run_key(batch_name: str) -> str:
    """FiftyOne run key of the plan record of ``batch_name`` (``batch:v3`` ->
    ``annoloop_plan_batch_v3``)."""
    return PLAN_RUN_KEY_PREFIX + re.sub(r"\W", "_", batch_name)


def plan_record(dataset: fo.Dataset, batch_name: str) -> dict:
    """The plan record of ``batch_name`` as a plain dict (see the module docstring)."""
    key = plan_run_key(batch_name)
    record = load_record(dataset, key)
    if record is None:
        raise ValueError(f"no plan record for batch '{batch_name}' on '{dataset.name}'")
    return {k: record[k] for k in _RECORD_KEYS}


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


def default_round(dataset: fo.Dataset, has_evaluation: bool) -> int:
    """The loop round the next batch belongs to, derived from the batches that exist.

    It is the number of batches already planned (distinct ``batch:*`` tags outside the
    frozen splits, where golden QA may reuse batch names), and at least 1 once an evaluation
    is used: an evaluated model means the cold start is over even when the first labels
    came from elsewhere.
    """
    batches = set()
    for view in slice_views(dataset).values():
        batches.update(
            t
            for t in view.match_tags(list(FROZEN_SPLIT_TAGS), bool=False).distinct("tags")
            if t.startswith(BATCH_TAG_PREFIX)
        )
    return max(len(batches), 1 if has_evaluation else 0)


def embedding_fields(dataset: fo.Dataset, slice_name: str | None = None) -> list[str]:
    """Top-level fields of the (slice's) samples that can hold embeddings: vector fields
    and lists of numbers."""
    view = dataset.select_group_slices(slice_name) if slice_name else dataset
    return sorted(
        name for name, field in view.get_field_schema().items() if _is_vector_field(field)
    )


def default_uncertainty_slice(dataset: fo.Dataset, slice_name: str | None = None) -> str | None:
    """The slice whose predictions score a scene's uncertainty: ``slice_name`` (default the
    dataset's default slice) when it holds images, else the first image slice; None for a
    flat dataset or a grouped one without image slices."""
    images = camera_slices(dataset)
    preferred = slice_name or dataset.default_group_slice
    return preferred if preferred in images else next(iter(images), None)


# --- the planner glue ---------------------------------------------------------------------


def plan_batch(
    samples: fo.core.collections.SampleCollection,
    budget: int,
    *,
    embeddings_field: str,
    batch_name: str | None = None,
    coverage_fraction: float | None = None,
    coverage_method: str = planner.DEFAULT_COVERAGE_METHOD,
    targeting_source: str = "failures",
    uncertainty_field: str = DEFAULT_PRED_FIELD,
    uncertainty_slice: str | None = None,
    eval_key: str | None = None,
    pred_field: str | None = None,
    patches_field: str | None = None,
    round_index: int | None = None,
    neighbors_per_failure: int | None = None,
    seed: int = 0,
    dry_run: bool = False,
    slice_name: str | None = None,
    label_field: str | None = None,
    progress: Progress | None = None,
) -> dict:
    """Plan the next batch to label from ``samples`` and (unless ``dry_run``) record it.

    Parameters
    ----------
    samples : Dataset or DatasetView
        Where to pick from (grouped or flat). Exclusions are decided on the whole dataset.
    budget : int
        Units (scenes for grouped datasets, else samples) to pick; > 0.
    embeddings_field : str
        Sample field with the embeddings (e.g. ``embedding`` or ``group_embedding``).
    batch_name : str, optional
        ``batch:<name>``; default :func:`next_batch_name` (``batch:vN``). Must be new.
    coverage_fraction : float, optional
        Coverage share in [0, 1]; None follows the round schedule (cold start 100 %, then
        65 %, then 30 % coverage).
    coverage_method : str, default="kcenter"
        One of :data:`.planner.COVERAGE_METHODS`; ``"zcore"`` reads per-sample scores from
        :data:`ZCORE_FIELD`.
    targeting_source : {"failures", "uncertainty"}, default="failures"
        What the targeting share serves: the failures of an evaluation (``eval_key``,
        ``pred_field``, ``patches_field``, which must stay unset with ``"uncertainty"``), or
        the uncertainty of the model's predictions on the pool (see the module docstring).
    uncertainty_field : str, default="predictions"
        ``Detections`` field with the model's predictions (with confidences) on the pool.
    uncertainty_slice : str, optional
        Grouped datasets: the image slice whose predictions score a scene; default
        :func:`default_uncertainty_slice` of ``slice_name``.
    eval_key : str, optional
        Detection evaluation whose failures are targeted; default the latest one (of
        ``pred_field`` if given), none if the dataset has none.
    pred_field : str, optional
        Predictions field; picks the evaluation when ``eval_key`` is None and must match
        the evaluation's otherwise.
    patches_field : str, optional
        The evaluation's ground-truth or prediction field: use the patch embeddings of its
        failing objects (``<patches_field>.detections.<embeddings_field>``) as queries
        instead of their samples' embeddings.
    round_index : int, optional
        Loop round; default :func:`default_round`.
    neighbors_per_failure : int, optional
        Most pool units one failure (or group of near-duplicate failures) may take; the
        planner's default when None (see :func:`.targeting.select_targets`). When the
        failures' neighbours run out, coverage fills the rest and ``fallback_reason`` says so.
    seed : int, default=0
        Same inputs and seed, same plan.
    dry_run : bool, default=False
        Return the plan and write nothing.
    slice_name : str, optional
        Grouped datasets: the slice whose embeddings stand for the scene; default the
        dataset's default slice.
    label_field : str, optional
        Field whose presence makes a sample labeled; default ``ground_truth`` (which may be
        absent: then only batch tags count). A field given explicitly must exist.
    progress : callable, optional
        Called as ``progress(fraction, label)``.

    Returns
    -------
    dict
        JSON-ready: ``batch``, ``dry_run``, ``unit``, ``slice``, ``round``,
        ``targeting_source``, ``eval_key``, ``uncertainty_field``, ``uncertainty_slice``
        (None unless used), ``coverage_fraction``, ``coverage_method``, ``n_coverage``,
        ``n_targeting``, ``fallback_reason``, ``counts``, ``ids`` (picked unit ids in pick
        order), ``sources``, ``picks`` (one record of why per pick), ``tags``, ``view`` and
        ``run_key`` (None for a dry run).

    Raises
    ------
    ValueError
        On bad arguments, a batch name that exists, an unknown evaluation, a missing
        embeddings field, pool units without embeddings (with the count), a missing or
        non-``Detections`` uncertainty field or pool units without predictions in it (with
        the count), or a budget the pool cannot fill (the planner's message). Nothing is
        written then.
    """
    report = progress or (lambda fraction, label: None)
    _check_args(budget, embeddings_field, coverage_method, targeting_source, seed, progress)
    dataset = root_dataset(samples)
    grouped = dataset.media_type == "group"
    unit_path = f"{dataset.group_field}.id" if grouped else "id"
    slice_name = _check_slice(dataset, slice_name)
    reference = dataset.select_group_slices(slice_name) if grouped else dataset
    _check_embeddings_field(dataset, reference, embeddings_field, slice_name)
    label_field = _check_label_field(dataset, label_field)
    batch_name = _check_batch_name(dataset, batch_name)
    _check_pick_field(dataset)
    uncertainty = targeting_source == "uncertainty"
    if uncertainty:
        _check_no_failure_args(
            eval_key=eval_key, pred_field=pred_field, patches_field=patches_field
        )
        uncertainty_slice = _check_uncertainty_field(
            dataset, uncertainty_field, uncertainty_slice, slice_name
        )
        evaluation = None
    else:
        evaluation = _resolve_evaluation(dataset, eval_key, pred_field, patches_field)
    if round_index is None:
        # Predictions on the pool come from a trained model: like an evaluation, they end
        # the cold start.
        round_index = default_round(dataset, evaluation is not None or uncertainty)

    report(0.05, "reading the pool, labels and exclusions")
    catalog = _read_catalog(dataset, samples, unit_path, label_field)
    table = _UnitTable.read(reference, unit_path, embeddings_field, coverage_method == "zcore")
    pool_units = sorted(catalog.view_units - catalog.labeled)
    if not pool_units:
        raise ValueError(
            f"the view holds no unlabeled {catalog.noun}s to pick from "
            f"({len(catalog.view_units)} {catalog.noun}s, all labeled in '{label_field}')"
        )
    forbidden = catalog.excluded
    excluded = np.array([u in forbidden for u in pool_units], dtype=bool)
    pool, missing = table.rows(pool_units)
    _refuse_missing(missing & ~excluded, embeddings_field, f"pool {catalog.noun}s", slice_name)
    scores = None
    if coverage_method == "zcore":
        scores = table.scores(pool_units)
        _refuse_missing(
            np.isnan(scores) & ~excluded,
            ZCORE_FIELD,
            f"pool {catalog.noun}s",
            slice_name,
            hint="run compute_zcore first",
        )
        scores = np.where(excluded, 0.0, scores)
    uncertainty_scores = (
        _read_uncertainty(
            dataset, uncertainty_slice, uncertainty_field, unit_path, pool_units, excluded,
            catalog.noun,
        )
        if uncertainty
        else None
    )
    covered = sorted(catalog.covered)
    labeled, labeled_missing = table.rows(covered)
    labeled = labeled[~labeled_missing]

    report(0.3, "mining failures")
    failures = (
        _Failures.empty()
        if evaluation is None
        else _mine_failures(dataset, evaluation, patches_field, embeddings_field, table, unit_path)
    )

    report(0.5, "planning")
    try:
        plan = planner.plan_batch(
            pool,
            budget,
            labeled_embeddings=labeled if len(labeled) else None,
            excluded=excluded,
            failure_embeddings=failures.embeddings if len(failures.ids) else None,
            failure_kinds=failures.kinds if len(failures.ids) else None,
            failure_ids=failures.ids if len(failures.ids) else None,
            targeting_source=targeting_source,
            uncertainty_scores=uncertainty_scores,
            coverage_scores=scores,
            coverage_fraction=coverage_fraction,
            round_index=round_index,
            coverage_method=coverage_method,
            neighbors_per_failure=neighbors_per_failure,
            seed=seed,
        )
    except ValueError as err:
        raise ValueError(
            f"cannot plan {batch_name} ({catalog.noun}s are the rows): {err}"
        ) from None

    picked = [pool_units[i] for i in plan.indices]
    fallback = plan.fallback_reason
    if fallback and not uncertainty and not len(failures.ids):
        fallback = f"{_why_no_failures(evaluation)}; {fallback}"
    failure_sample = dict(zip(failures.ids, failures.samples))
    picks = []
    for unit, record in zip(picked, plan.to_records()):
        record = {"id": unit, **{k: v for k, v in record.items() if k != "index"}}
        record["near_failure_sample"] = failure_sample.get(record["near_failure"])
        picks.append(record)
    result = {
        "batch": batch_name,
        "dry_run": bool(dry_run),
        "unit": catalog.noun,
        "slice": slice_name,
        "round": plan.round,
        "targeting_source": targeting_source,
        "eval_key": evaluation.key if evaluation else None,
        "uncertainty_field": uncertainty_field if uncertainty else None,
        "uncertainty_slice": uncertainty_slice if uncertainty else None,
        "coverage_fraction": plan.coverage_fraction,
        "coverage_method": plan.coverage_method,
        "n_coverage": plan.n_coverage,
        "n_targeting": plan.n_targeting,
        "fallback_reason": fallback,
        "counts": {
            "view": len(catalog.view_units),
            "pool": len(pool_units),
            "selectable": int(np.count_nonzero(~excluded)),
            "excluded": catalog.excluded_counts(pool_units),
            "labeled": len(covered),
            "labeled_without_embeddings": int(np.count_nonzero(labeled_missing)),
            "failures": failures.counts,
        },
        "ids": picked,
        "sources": list(plan.source),
        "picks": picks,
        "tags": None,
        "view": None,
        "run_key": None,
    }
    if dry_run:
        report(1.0, f"dry run: {len(picked)} {catalog.noun}s planned, nothing written")
        return result

    report(0.8, "writing tags, pick records, the saved view and the plan record")
    _write(dataset, grouped, batch_name, plan, picks, evaluation, result)
    result["tags"] = [batch_name, *sorted({SOURCE_TAG_PREFIX + s for s in plan.source})]
    result["view"] = _view_name(batch_name)
    result["run_key"] = plan_run_key(batch_name)
    _register_record(
        dataset,
        result,
        params={
            "budget": int(budget),
            "embeddings_field": embeddings_field,
            "slice": slice_name,
            "label_field": label_field,
            "coverage_fraction": coverage_fraction,
            "coverage_method": coverage_method,
            "targeting_source": targeting_source,
            "uncertainty_field": result["uncertainty_field"],
            "uncertainty_slice": result["uncertainty_slice"],
            "eval_key": result["eval_key"],
            "pred_field": evaluation.pred_field if evaluation else pred_field,
            "gt_field": evaluation.gt_field if evaluation else None,
            "patches_field": patches_field,
            "round_index": round_index,
            "neighbors_per_failure": neighbors_per_failure,
            "seed": int(seed),
        },
        summary=plan.summary(),
    )
    report(1.0, f"{batch_name}: {plan.n_targeting} targeting + {plan.n_coverage} coverage")
    return result


# --- validation ---------------------------------------------------------------------------


def _check_args(
    budget, embeddings_field, coverage_method, targeting_source, seed, progress
) -> None:
    if isinstance(budget, bool) or not hasattr(budget, "__index__"):
        raise ValueError(f"budget must be an integer, got {budget!r}")
    if operator.index(budget) <= 0:
        raise ValueError(f"budget must be a positive number of units to label, got {budget}")
    if not isinstance(embeddings_field, str) or not embeddings_field:
        raise ValueError(
            f"embeddings_field is required (a field holding one vector per sample), got "
            f"{embeddings_field!r}; compute embeddings first"
        )
    if coverage_method not in planner.COVERAGE_METHODS:
        raise ValueError(
            f"coverage_method must be one of {planner.COVERAGE_METHODS}, got {coverage_method!r}"
        )
    if targeting_source not in planner.TARGETING_SOURCES:
        raise ValueError(
            f"targeting_source must be one of {planner.TARGETING_SOURCES}, got "
            f"{targeting_source!r}"
        )
    if isinstance(seed, bool) or not hasattr(seed, "__index__"):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be callable or None, got {type(progress).__name__}")


def _check_slice(dataset: fo.Dataset, slice_name: str | None) -> str | None:
    if dataset.media_type != "group":
        if slice_name:
            raise ValueError(
                f"dataset '{dataset.name}' is not grouped; it has no slice {slice_name!r}"
            )
        return None
    slice_name = slice_name or dataset.default_group_slice
    if slice_name not in dataset.group_slices:
        raise ValueError(
            f"slice {slice_name!r} does not exist in '{dataset.name}'; "
            f"slices: {dataset.group_slices}"
        )
    return slice_name


_APPLY_TO_POOL = "apply the detector to the pool first (apply_detector with target 'pool')"


def _check_no_failure_args(**given) -> None:
    """Uncertainty targeting uses no evaluation: refuse its parameters rather than ignore them."""
    named = sorted(name for name, value in given.items() if value is not None)
    if named:
        raise ValueError(
            f"{', '.join(named)} select the failures to target; they do not apply with "
            "targeting_source='uncertainty'"
        )


def _check_uncertainty_field(
    dataset: fo.Dataset, field: str, slice_name: str | None, embeddings_slice: str | None
) -> str | None:
    """The slice to read predictions from (None for flat datasets), after checking that
    ``field`` is a Detections field there."""
    if dataset.media_type == "group":
        images = camera_slices(dataset)
        if slice_name is None:
            slice_name = default_uncertainty_slice(dataset, embeddings_slice)
        if slice_name not in images:
            raise ValueError(
                f"uncertainty_slice must be an image slice of '{dataset.name}' (predictions "
                f"are per image); got {slice_name!r}, image slices: {images}"
            )
    elif slice_name:
        raise ValueError(f"dataset '{dataset.name}' is not grouped; it has no slice {slice_name!r}")
    view = dataset.select_group_slices(slice_name) if slice_name else dataset
    found = view.get_field(field) if isinstance(field, str) and field else None
    where = f" on slice '{slice_name}'" if slice_name else ""
    if found is None:
        raise ValueError(
            f"predictions field {field!r} does not exist{where} of '{dataset.name}'; "
            f"{_APPLY_TO_POOL}"
        )
    if not (
        isinstance(found, fo.EmbeddedDocumentField)
        and issubclass(found.document_type, fo.Detections)
    ):
        kind = getattr(found, "document_type", type(found)).__name__
        raise ValueError(
            f"predictions field '{field}'{where} holds {kind}, not Detections; {_APPLY_TO_POOL}"
        )
    return slice_name


def _is_vector_field(field) -> bool:
    return isinstance(field, fo.VectorField) or (
        isinstance(field, fo.ListField) and isinstance(field.field, (fo.FloatField, fo.IntField))
    )


def _check_embeddings_field(dataset, reference, name: str, slice_name: str | None) -> None:
    field = reference.get_field(name)
    if field is None or not _is_vector_field(field):
        where = f" on slice '{slice_name}'" if slice_name else ""
        what = "does not exist" if field is None else f"is a {type(field).__name__}, not a vector"
        raise ValueError(
            f"embeddings field '{name}' {what}{where} of '{dataset.name}'; vector fields: "
            f"{embedding_fields(dataset, slice_name)} (compute embeddings first)"
        )


def _check_label_field(dataset: fo.Dataset, label_field: str | None) -> str:
    if label_field is None:
        return DEFAULT_GT_FIELD
    if not isinstance(label_field, str) or dataset.get_field(label_field) is None:
        raise ValueError(f"label field {label_field!r} does not exist on '{dataset.name}'")
    return label_field


def _check_batch_name(dataset: fo.Dataset, name: str | None) -> str:
    if name is None:
        return next_batch_name(dataset)
    if not isinstance(name, str) or not _BATCH_NAME.match(name):
        raise ValueError(
            f"batch name must be '{BATCH_TAG_PREFIX}' followed by 1-64 letters, digits, '_', "
            f"'.' or '-' (e.g. '{BATCH_TAG_PREFIX}v3'), got {name!r}"
        )
    where = []
    if name in _distinct_tags(dataset):
        where.append("samples carry its tag")
    if dataset.has_saved_view(_view_name(name)):
        where.append(f"saved view '{_view_name(name)}' exists")
    if dataset.has_run(plan_run_key(name)):
        where.append(f"run '{plan_run_key(name)}' exists")
    if where:
        raise ValueError(
            f"batch '{name}' already exists on '{dataset.name}' ({'; '.join(where)}); "
            f"choose another name, e.g. {next_batch_name(dataset)}"
        )
    return name


def _check_pick_field(dataset: fo.Dataset) -> None:
    field = dataset.get_field(PICK_FIELD)
    if field is not None and not (
        isinstance(field, fo.EmbeddedDocumentField)
        and issubclass(field.document_type, fo.DynamicEmbeddedDocument)
    ):
        raise ValueError(
            f"field '{PICK_FIELD}' exists as a {type(field).__name__}; the planner records "
            "picks there as an embedded document: rename or delete that field"
        )


@dataclass(frozen=True)
class _Evaluation:
    key: str
    gt_field: str
    pred_field: str
    iou: float


def _resolve_evaluation(dataset, eval_key, pred_field, patches_field) -> _Evaluation | None:
    evaluations = detection_evaluations(dataset)
    if eval_key is None:
        eval_key = default_eval_key(dataset, pred_field)
        if eval_key is None:
            if pred_field is not None:
                raise ValueError(
                    f"no detection evaluation of '{pred_field}' on '{dataset.name}'; "
                    f"detection evaluations: {evaluations}"
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
            f"{evaluations}"
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
    return _Evaluation(eval_key, config.gt_field, config.pred_field, float(config.iou))


def _why_no_failures(evaluation: _Evaluation | None) -> str:
    if evaluation is None:
        return "no evaluation on the dataset yet"
    return f"evaluation '{evaluation.key}' has no false negatives, confusions or false positives"


def _refuse_missing(mask: np.ndarray, field: str, what: str, slice_name, hint: str = "") -> None:
    count = int(np.count_nonzero(mask))
    if count:
        where = f" on slice '{slice_name}'" if slice_name else ""
        raise ValueError(
            f"{count} of {len(mask)} {what} have no '{field}'{where}; "
            f"{hint or 'compute their embeddings first'}"
        )


# --- reading ------------------------------------------------------------------------------



def _distinct_tags(dataset) -> set[str]:
    return {t for view in slice_views(dataset).values() for t in view.distinct("tags")}


def _units(dataset, unit_path: str, narrow: Callable) -> set[str]:
    """Units in which a sample of any slice matches ``narrow(slice view)``."""
    return {u for view in slice_views(dataset).values() for u in narrow(view).values(unit_path)}


@dataclass
class _Catalog:
    """Which units of the dataset are where, as sets of unit ids."""

    noun: str
    view_units: set
    labeled: set  # the label field is set on a sample of the unit
    frozen: set
    quarantined: set
    batched: set

    @property
    def covered(self) -> set:
        """Units coverage measures against: labeled or queued for labeling, not frozen."""
        return (self.labeled | self.batched) - self.frozen

    @property
    def excluded(self) -> set:
        return self.frozen | self.quarantined | self.batched

    def excluded_counts(self, pool_units: Sequence[str]) -> dict:
        pool = set(pool_units)
        return {
            "frozen": len(pool & self.frozen),
            "quarantined": len(pool & self.quarantined),
            "batched": len(pool & self.batched),
        }


def _read_catalog(dataset, samples, unit_path: str, label_field: str) -> _Catalog:
    grouped = dataset.media_type == "group"
    view_units = (
        _units(samples, unit_path, lambda v: v)
        if samples.media_type == "group" or not grouped
        else set(samples.values(unit_path))  # a flat view of one slice of a grouped dataset
    )
    labeled = (
        _units(dataset, unit_path, lambda v: v.exists(label_field))
        if dataset.get_field(label_field) is not None
        else set()
    )
    quarantined = _units(dataset, unit_path, lambda v: v.match_tags(QUARANTINE_TAG))
    if dataset.get_field(label_field) is not None:
        quarantined |= _units(
            dataset, unit_path, lambda v: v.match_labels(tags=QUARANTINE_TAG, fields=label_field)
        )
    batch_tags = sorted(t for t in _distinct_tags(dataset) if t.startswith(BATCH_TAG_PREFIX))
    batched = (
        _units(dataset, unit_path, lambda v: v.match_tags(batch_tags)) if batch_tags else set()
    )
    return _Catalog(
        noun="group" if grouped else "sample",
        view_units=view_units,
        labeled=labeled,
        frozen=_units(dataset, unit_path, lambda v: v.match_tags(list(FROZEN_SPLIT_TAGS))),
        quarantined=quarantined,
        batched=batched,
    )


@dataclass
class _UnitTable:
    """Per-unit values of the reference slice: embeddings (and ZCore scores)."""

    row: dict  # unit id -> row
    vectors: np.ndarray  # (units, dim) float32, zeros where missing
    missing: np.ndarray  # (units,) bool
    zcore: np.ndarray | None
    field: str

    @classmethod
    def read(cls, reference, unit_path: str, field: str, with_zcore: bool) -> _UnitTable:
        paths = [unit_path, field]
        if with_zcore:
            if reference.get_field(ZCORE_FIELD) is None:
                raise ValueError(
                    f"coverage_method='zcore' needs per-sample scores in '{ZCORE_FIELD}'; "
                    "run compute_zcore first"
                )
            paths.append(ZCORE_FIELD)
        values = reference.values(paths)
        units, vectors = values[0], values[1]
        lengths = {len(v) for v in vectors if v is not None}
        if len(lengths) > 1:
            raise ValueError(
                f"'{field}' holds vectors of {len(lengths)} different lengths "
                f"{sorted(lengths)}; one field must hold one embedding space"
            )
        dim = lengths.pop() if lengths else 1
        missing = np.array([v is None for v in vectors], dtype=bool)
        array = np.zeros((len(units), dim), dtype=np.float32)
        present = np.flatnonzero(~missing)
        if len(present):
            array[present] = np.stack([np.asarray(vectors[i], dtype=np.float32) for i in present])
        zcore = None
        if with_zcore:
            zcore = np.array([np.nan if s is None else float(s) for s in values[2]])
        return cls({u: i for i, u in enumerate(units)}, array, missing, zcore, field)

    def index(self, units: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``units`` (-1 where the reference slice has no sample) and that mask."""
        rows = np.array([self.row.get(u, -1) for u in units], dtype=np.int64)
        return rows, rows < 0

    def rows(self, units: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of ``units`` and which of them are missing."""
        rows, absent = self.index(units)
        safe = np.where(absent, 0, rows)
        vectors = self.vectors[safe] if len(self.vectors) else np.zeros((len(units), 1), np.float32)
        missing = absent | self.missing[safe] if len(self.missing) else absent
        vectors[missing] = 0.0
        return vectors, missing

    def scores(self, units: Sequence[str]) -> np.ndarray:
        rows, absent = self.index(units)
        return np.where(absent, np.nan, self.zcore[np.where(absent, 0, rows)])


def _read_uncertainty(
    dataset, slice_name, field: str, unit_path: str, pool_units, excluded, noun: str
) -> np.ndarray:
    """Uncertainty score per pool unit from the confidences of its predictions (see
    :mod:`.uncertainty`); excluded units need none and score 0."""
    view = dataset.select_group_slices(slice_name) if slice_name else dataset
    units, confidences = view.values([unit_path, f"{field}.detections.confidence"])
    by_unit = dict(zip(units, confidences))
    # None: the field is unset (no prediction ran); []: the model detected nothing.
    rows = [None if skip else by_unit.get(u) for u, skip in zip(pool_units, excluded)]
    missing = np.array([r is None for r in rows]) & ~excluded
    _refuse_missing(missing, field, f"pool {noun}s", slice_name, hint=_APPLY_TO_POOL)
    unscored = [u for u, r in zip(pool_units, rows) if r and any(c is None for c in r)]
    if unscored:
        raise ValueError(
            f"{len(unscored)} pool {noun}s have detections without a confidence in '{field}'; "
            "uncertainty needs the detector's confidences"
        )
    return detection_uncertainty([r or [] for r in rows])


# --- failures -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failures:
    embeddings: np.ndarray
    kinds: list
    ids: list
    samples: list  # the evaluated sample of each query
    counts: dict

    @classmethod
    def empty(cls) -> _Failures:
        return cls(np.empty((0, 1), np.float32), [], [], [], _failure_counts([], 0, 0))


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


def _mine_failures(dataset, evaluation: _Evaluation, patches_field, field, table, unit_path):
    """Failure queries of ``evaluation``, heaviest kind first (see the module docstring)."""
    key, gt, pred = evaluation.key, evaluation.gt_field, evaluation.pred_field
    view = dataset.load_evaluation_view(key).match((F(f"{key}_fn") > 0) | (F(f"{key}_fp") > 0))
    attributes = ("id", "label", "bounding_box", key, f"{key}_id")
    paths = ["id", unit_path] + [f"{gt}.detections.{a}" for a in attributes]
    paths += [f"{pred}.detections.{a}" for a in (*attributes, "confidence")]
    if patches_field is not None:
        paths.append(f"{patches_field}.detections.{field}")
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
        return _Failures.empty()
    failing_samples = len({o.sample for o in objects})
    if patches_field is None:
        return _sample_queries(objects, sizes, table, failing_samples)
    return _patch_queries(objects, patch_vectors, patches_field, field, patch_side, failing_samples)


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


def _sample_queries(objects: list, sizes: dict, table: _UnitTable, n_samples: int) -> _Failures:
    """One query per failing sample: its unit's embedding, its heaviest kind; ``sizes``
    gives each sample's (ground truth objects, predictions)."""
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
        return rank, -share, -entry[kind], -total, sample

    ordered = sorted(per_sample.items(), key=importance)
    vectors, missing = table.rows([entry["unit"] for _, entry in ordered])
    _refuse_missing(
        missing, table.field, "failing evaluated samples", None, hint="embed the mining set too"
    )
    kinds = [_KIND_ORDER[importance(item)[0]] for item in ordered]
    ids = [sample for sample, _ in ordered]
    return _Failures(vectors, kinds, ids, ids, _failure_counts(objects, n_samples, len(ids)))


def _patch_queries(objects, patch_vectors, patches_field, field, side, n_samples) -> _Failures:
    """One query per failing object of ``patches_field`` (on ``side``): its patch embedding."""
    chosen = [o for o in objects if o.side == side]
    chosen.sort(key=lambda o: (_KIND_ORDER.index(o.kind), -o.severity, o.sample, o.label_id))
    vectors = [patch_vectors.get(o.label_id) for o in chosen]
    missing = np.array([v is None for v in vectors], dtype=bool)
    _refuse_missing(
        missing,
        f"{patches_field}.detections.{field}",
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
    return _Failures(
        embeddings,
        [o.kind for o in chosen],
        [o.label_id for o in chosen],
        [o.sample for o in chosen],
        _failure_counts(objects, n_samples, len(chosen)),
    )


# --- writing ------------------------------------------------------------------------------


def _view_name(batch_name: str) -> str:
    return re.sub(r"\W", "_", batch_name)


def _write(dataset, grouped: bool, batch_name: str, plan, picks: list, evaluation, result) -> None:
    """Tags, pick records and the saved view, each as bulk calls per slice."""
    for source in sorted(set(plan.source)):
        units = [p["id"] for p in picks if p["source"] == source]
        for view in slice_views(units_view(dataset, units)).values():
            view.tag_samples([batch_name, SOURCE_TAG_PREFIX + source])

    _declare_pick_field(dataset)
    by_unit = {p["id"]: p for p in picks}
    eval_key = evaluation.key if evaluation else None
    unit_path = f"{dataset.group_field}.id" if grouped else "id"
    picked = units_view(dataset, list(by_unit))
    for view in slice_views(picked).values():
        sample_ids, units = view.values(["id", unit_path])
        docs = {}
        for sample_id, unit in zip(sample_ids, units):
            pick = by_unit[unit]
            docs[sample_id] = fo.DynamicEmbeddedDocument(
                batch=batch_name,
                round=plan.round,
                eval_key=eval_key,
                **{k: pick[k] for k in PICK_SCHEMA if k in pick},
            )
        view.set_values(PICK_FIELD, docs, key_field="id")

    dataset.save_view(
        _view_name(batch_name),
        picked.sort_by(f"{PICK_FIELD}.rank"),  # pick order
        description=(
            f"{batch_name}: {result['n_targeting']} targeting + {result['n_coverage']} coverage "
            f"{result['unit']}s, round {plan.round}, planned by annoloop"
        ),
    )


def _declare_pick_field(dataset: fo.Dataset) -> None:
    if dataset.get_field(PICK_FIELD) is None:
        dataset.add_sample_field(
            PICK_FIELD, fo.EmbeddedDocumentField, embedded_doc_type=fo.DynamicEmbeddedDocument
        )
    for name, ftype in PICK_SCHEMA.items():
        if dataset.get_field(f"{PICK_FIELD}.{name}") is None:
            dataset.add_sample_field(f"{PICK_FIELD}.{name}", ftype)


_RECORD_KEYS = (
    "batch",
    "created_at",
    "params",
    "plan",
    "counts",
    "fallback_reason",
    "view",
    "tags",
)


def _register_record(dataset, result: dict, *, params: dict, summary: dict) -> None:
    record = {
        "batch": result["batch"],
        "created_at": now(),
        "params": params,
        "plan": summary,
        "counts": result["counts"],
        "fallback_reason": result["fallback_reason"],
        "view": result["view"],
        "tags": result["tags"],
    }
    save_record(dataset, result["run_key"], PLAN_RUN_METHOD, record, overwrite=False)
