"""The batch planner on a dataset: pick the next batch to label, tag it, record why.

:func:`plan_batch` (keyword arguments, for the SDK) and :func:`plan` (a
:class:`.request.PlanRequest`, for the operator and the panel) read a dataset (or a view of
it), hand numpy arrays to the pure :func:`.planner.plan` and write its answer back in bulk.
The phases, each in its own module:

1. *resolve* the request against the dataset (:mod:`.request`, checks of :mod:`.pool`,
   :mod:`.failures` and :mod:`.plan_record`): nothing is read before every setting is valid;
2. *read* the pool (:mod:`.pool`): the unlabeled units of the caller's view, which of them
   are excluded and why (:mod:`..core.catalog`), their embeddings and scores;
3. *mine* the failures to target (:mod:`.failures`), or read the uncertainty (:mod:`.pool`);
4. *plan* (:func:`.planner.plan`): targeting first, then coverage;
5. *record* (:mod:`.plan_record`): tags ``batch:vN`` / ``source:*`` on every slice of each
   picked unit, the pick reasons, the saved view and the plan record (none for a dry run).
"""

from __future__ import annotations

import fiftyone as fo

from ..core.locks import dataset_lock
from ..core.catalog import unit_path
from ..core.names import DEFAULT_PRED_FIELD, SOURCE_TAG_PREFIX
from ..core.runs import Progress
from ..core.views import root_dataset
from ..quality.frozen_check import require_frozen
from .algorithms import planner
from .failures import Evaluation, Failures, mine_failures, resolve_evaluation
from .plan_record import (
    check_batch_name,
    check_pick_field,
    default_round,
    plan_run_key,
    save_plan_record,
    view_name,
    write_picks,
)
from .pool import (
    Pool,
    check_embeddings_field,
    check_label_field,
    check_slice,
    check_uncertainty_field,
    read_pool,
)
from .request import PlanRequest

__all__ = ["plan", "plan_batch"]


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
        ``batch:<name>``; default :func:`.plan_record.next_batch_name` (``batch:vN``). Must be new.
    coverage_fraction : float, optional
        Coverage share in [0, 1]; None follows the round schedule (cold start 100 %, then
        65 %, then 30 % coverage).
    coverage_method : str, default="typical"
        One of :data:`.planner.COVERAGE_METHODS`; ``"zcore"`` reads per-sample scores from
        :data:`..core.names.ZCORE_FIELD`.
    targeting_source : {"failures", "uncertainty"}, default="failures"
        What the targeting share serves: the failures of an evaluation (``eval_key``,
        ``pred_field``, ``patches_field``, which must stay unset with ``"uncertainty"``), or
        the uncertainty of the model's predictions on the pool (see :mod:`.pool`).
    uncertainty_field : str, default="predictions"
        ``Detections`` field with the model's predictions (with confidences) on the pool.
    uncertainty_slice : str, optional
        Grouped datasets: the image slice whose predictions score a scene; default
        :func:`.pool.default_uncertainty_slice` of ``slice_name``.
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
        Loop round; default :func:`.plan_record.default_round`.
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
        the count), or a budget the pool cannot fill (the planner's message); a
        ``FrozenSplitError`` when the frozen splits changed since they were drawn
        (:func:`..quality.frozen_check.require_frozen`). Nothing is written then.
    """
    request = PlanRequest(
        budget=budget,
        embeddings_field=embeddings_field,
        batch_name=batch_name,
        coverage_fraction=coverage_fraction,
        coverage_method=coverage_method,
        targeting_source=targeting_source,
        uncertainty_field=uncertainty_field,
        uncertainty_slice=uncertainty_slice,
        eval_key=eval_key,
        pred_field=pred_field,
        patches_field=patches_field,
        round_index=round_index,
        neighbors_per_failure=neighbors_per_failure,
        seed=seed,
        dry_run=dry_run,
        slice_name=slice_name,
        label_field=label_field,
    )
    return plan(samples, request, progress)


def plan(
    samples: fo.core.collections.SampleCollection,
    request: PlanRequest,
    progress: Progress | None = None,
) -> dict:
    """Plan the batch ``request`` asks for from ``samples``; see :func:`plan_batch`, whose
    parameters are the request's fields and whose result and errors are this one's."""
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be callable or None, got {type(progress).__name__}")
    report = progress or (lambda fraction, label: None)
    dataset = root_dataset(samples)
    require_frozen(dataset, "plan_batch")
    if request.dry_run:
        return _plan(samples, dataset, request, report)
    # Naming the batch, choosing from the pool and tagging are one step: under the dataset's
    # write lock, on a fresh copy of its document, so two planners never claim one batch.
    with dataset_lock(dataset, "plan_batch"):
        dataset.reload()
        return _plan(samples, dataset, request, report)


def _plan(samples, dataset: fo.Dataset, request: PlanRequest, report) -> dict:
    request, evaluation = _resolve(dataset, request)

    report(0.05, "reading the pool, labels and exclusions")
    pool = read_pool(
        samples,
        dataset,
        embeddings_field=request.embeddings_field,
        slice_name=request.slice_name,
        label_field=request.label_field,
        with_zcore=request.coverage_method == "zcore",
        uncertainty=(
            (request.uncertainty_field, request.uncertainty_slice) if request.uncertainty else None
        ),
    )
    report(0.3, "mining failures")
    failures = mine_failures(
        dataset, evaluation, request.patches_field, pool.table, unit_path(dataset)
    )
    report(0.5, "planning")
    batch = _run_planner(request, pool, failures)
    result = _result(request, evaluation, pool, failures, batch)
    if request.dry_run:
        report(1.0, f"dry run: {len(result['ids'])} {result['unit']}s planned, nothing written")
        return result

    report(0.8, "writing tags, pick records, the saved view and the plan record")
    _record(dataset, request, evaluation, result, batch)
    report(1.0, f"{result['batch']}: {batch.n_targeting} targeting + {batch.n_coverage} coverage")
    return result


# --- phases -------------------------------------------------------------------------------


def _resolve(dataset: fo.Dataset, request: PlanRequest) -> tuple[PlanRequest, Evaluation | None]:
    """Validate ``request`` and fill in what the dataset decides; the evaluation to target."""
    request.validate()
    slice_name = check_slice(dataset, request.slice_name)
    check_embeddings_field(dataset, request.embeddings_field, slice_name)
    label_field = check_label_field(dataset, request.label_field)
    batch_name = check_batch_name(dataset, request.batch_name)
    check_pick_field(dataset)
    uncertainty_slice, evaluation = None, None
    if request.uncertainty:
        uncertainty_slice = check_uncertainty_field(
            dataset, request.uncertainty_field, request.uncertainty_slice, slice_name
        )
    else:
        evaluation = resolve_evaluation(
            dataset, request.eval_key, request.pred_field, request.patches_field
        )
    round_index = request.round_index
    if round_index is None:
        # Predictions on the pool come from a trained model: like an evaluation, they end
        # the cold start.
        round_index = default_round(dataset, evaluation is not None or request.uncertainty)
    resolved = request.resolved(
        slice_name=slice_name,
        label_field=label_field,
        batch_name=batch_name,
        uncertainty_slice=uncertainty_slice,
        round_index=round_index,
    )
    return resolved, evaluation


def _run_planner(request: PlanRequest, pool: Pool, failures: Failures) -> planner.BatchPlan:
    found = bool(len(failures.ids))
    try:
        return planner.plan(
            pool.embeddings,
            request.settings(),
            labeled_embeddings=pool.labeled_embeddings if len(pool.labeled_embeddings) else None,
            excluded=pool.excluded,
            failure_embeddings=failures.embeddings if found else None,
            failure_kinds=failures.kinds if found else None,
            failure_ids=failures.ids if found else None,
            uncertainty_scores=pool.uncertainty_scores,
            coverage_scores=pool.coverage_scores,
        )
    except ValueError as err:
        raise ValueError(
            f"cannot plan {request.batch_name} ({pool.catalog.noun}s are the rows): {err}"
        ) from None


def _result(
    request: PlanRequest,
    evaluation: Evaluation | None,
    pool: Pool,
    failures: Failures,
    batch: planner.BatchPlan,
) -> dict:
    """The JSON-ready result of :func:`plan_batch` (before anything is written)."""
    picked = [pool.units[i] for i in batch.indices]
    fallback = batch.fallback_reason
    if fallback and not request.uncertainty and not len(failures.ids):
        fallback = f"{failures.why_none(evaluation)}; {fallback}"
    failure_sample = dict(zip(failures.ids, failures.samples))
    picks = []
    for unit, record in zip(picked, batch.to_records()):
        record = {"id": unit, **{k: v for k, v in record.items() if k != "index"}}
        record["near_failure_sample"] = failure_sample.get(record["near_failure"])
        picks.append(record)
    uncertainty = request.uncertainty
    return {
        "batch": request.batch_name,
        "dry_run": bool(request.dry_run),
        "unit": pool.catalog.noun,
        "slice": request.slice_name,
        "round": batch.round,
        "targeting_source": request.targeting_source,
        "eval_key": evaluation.key if evaluation else None,
        "uncertainty_field": request.uncertainty_field if uncertainty else None,
        "uncertainty_slice": request.uncertainty_slice if uncertainty else None,
        "coverage_fraction": batch.coverage_fraction,
        "coverage_method": batch.coverage_method,
        "n_coverage": batch.n_coverage,
        "n_targeting": batch.n_targeting,
        "fallback_reason": fallback,
        "counts": {**pool.counts(), "failures": failures.counts},
        "ids": picked,
        "sources": list(batch.source),
        "picks": picks,
        "tags": None,
        "view": None,
        "run_key": None,
    }


def _record(
    dataset: fo.Dataset,
    request: PlanRequest,
    evaluation: Evaluation | None,
    result: dict,
    batch: planner.BatchPlan,
) -> None:
    """Write the picks and the plan record; fills ``result``'s ``tags``, ``view`` and
    ``run_key``."""
    name = request.batch_name
    write_picks(dataset, result)
    result["tags"] = [name, *sorted({SOURCE_TAG_PREFIX + s for s in batch.source})]
    result["view"] = view_name(name)
    result["run_key"] = plan_run_key(name)
    params = {
        "budget": int(request.budget),
        "embeddings_field": request.embeddings_field,
        "slice": request.slice_name,
        "label_field": request.label_field,
        "coverage_fraction": request.coverage_fraction,
        "coverage_method": request.coverage_method,
        "targeting_source": request.targeting_source,
        "uncertainty_field": result["uncertainty_field"],
        "uncertainty_slice": result["uncertainty_slice"],
        "eval_key": result["eval_key"],
        "pred_field": evaluation.pred_field if evaluation else request.pred_field,
        "gt_field": evaluation.gt_field if evaluation else None,
        "patches_field": request.patches_field,
        "round_index": request.round_index,
        "neighbors_per_failure": request.neighbors_per_failure,
        "seed": int(request.seed),
    }
    save_plan_record(dataset, result, params=params, summary=batch.summary())
