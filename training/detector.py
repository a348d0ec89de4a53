"""Train, apply and evaluate a detector: the train -> predict -> evaluate half of the loop.

:func:`train_detector` exports the labeled, gate-passing, non-frozen samples of one camera
slice and fine-tunes a YOLO detector, recording a training run that is ``completed`` only
once weights exist. :func:`apply_detector` writes a run's predictions into a field: on the
frozen test set (for the ledger), the frozen mining set (for the planner's failure
targeting) or the unlabeled pool (for uncertainty targeting). :func:`evaluate_model`
evaluates them on the test split (and appends the round to the ledger) or on the mining
split (leaving FiftyOne's per-sample and per-object tp/fp/fn there for the planner to
target; the test split's are never targeted).

Each validates its parameters before it writes anything, and writes under the dataset's
write lock. The operators of the same names are their forms.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import fiftyone as fo

from ..core.locks import dataset_lock
from ..core.names import DEFAULT_GT_FIELD, DEFAULT_PRED_FIELD
from ..core.runs import Progress
from ..core.views import pool_set, split_set
from ..quality.frozen_check import require_frozen
from . import runs
from .params import (
    SPLITS,
    TARGET_MINING,
    TARGET_POOL,
    TARGET_SLICE,
    TARGET_TEST,
    TARGET_VIEW,
    TARGETS,
    check_slice,
    split_eval_key,
    train_params,
)

__all__ = ["apply_detector", "evaluate_model", "latest_batch", "run_that_predicted", "train_detector"]


def run_that_predicted(dataset: fo.Dataset, pred_field: str) -> runs.RunRecord | None:
    """The latest completed run that wrote ``pred_field``, or None."""
    completed = runs.list_runs(dataset, status=runs.STATUS_COMPLETED)
    matches = [r for r in completed if pred_field in r.outputs.get("predicted_fields", {})]
    return matches[-1] if matches else None


def latest_batch(run: runs.RunRecord) -> str:
    """The last annotation batch (by name) a run trained on, else the run's name."""
    batches = run.outputs.get("export", {}).get("batches") or []
    return max(batches) if batches else run.name


def train_detector(
    dataset: fo.Dataset, *, slice_name: str | None = None, progress: Progress | None = None, **params
) -> dict:
    """Export the trainable samples of a slice, fine-tune a YOLO detector, record the run.

    Parameters
    ----------
    dataset : fiftyone.core.dataset.Dataset
        The dataset to train on.
    slice_name : str, optional
        Camera slice (default: the dataset's default camera slice).
    progress : callable, optional
        ``progress(fraction, label)``.
    **params
        The keywords of :func:`.params.train_params` (:data:`.params.TRAIN_PARAMS`).

    Returns
    -------
    dict
        ``run_name``, ``weights``, ``num_train``, ``num_val``, ``classes``, ``epochs``,
        ``seconds_per_epoch`` and ``val_map50_95``.

    Raises
    ------
    FrozenSplitError
        When the frozen splits changed since they were drawn (see
        :func:`..quality.frozen_check.require_frozen`); nothing is exported or trained.
    """
    from .export import plan_yolo_export, require_empty_dir, write_yolo_export
    from .yolo import resolve_model_source, train_yolo

    require_frozen(dataset, "train_detector")
    params = train_params(dataset, slice_name=slice_name, **params)
    # A missing checkpoint or an unknown model fails here, before anything is written.
    resolve_model_source(params["model"], params["checkpoint"])
    export_dir = os.path.join(params["output_dir"], "data")
    if params["output_dir"] != runs.dead_run_output_dir(dataset, params["run_name"]):
        require_empty_dir(export_dir)  # a killed run's own folders are removed on the claim
    # Every input check runs before the run name is claimed: bad input leaves no record.
    export = plan_yolo_export(
        dataset,
        slice_name=params["slice"],
        label_field=params["label_field"],
        val_fraction=params["val_fraction"],
        seed=params["seed"],
    )
    if params["steps"]:
        batches_per_epoch = math.ceil(len(export.train_ids) / params["batch"])
        params["epochs"] = max(1, math.ceil(params["steps"] / batches_per_epoch))
    # The name is claimed before anything is written: a worker killed at any later point
    # leaves a started record naming its folders, which one re-run removes and replaces.
    with runs.training_run(dataset, params["run_name"], params, overwrite=params["overwrite"]):
        if progress is not None:
            progress(0.0, "exporting the trainable samples")
        exported = write_yolo_export(export, export_dir)
        trained = train_yolo(
            exported.yaml_path,
            params["output_dir"],
            model=params["model"],
            checkpoint=params["checkpoint"],
            epochs=params["epochs"],
            imgsz=params["imgsz"],
            batch=params["batch"],
            warmup_epochs=params["warmup_epochs"],
            freeze=params["freeze"],
            rect=params["rect"],
            mosaic=0.0 if params["rect"] else 1.0,
            val_each_epoch=params["val_each_epoch"],
            seed=params["seed"],
            progress=None if progress is None else lambda f, label: progress(0.05 + 0.95 * f, label),
        )
        outputs = {
            "export": exported.to_dict(),
            "epoch_seconds": trained.epoch_seconds,
            "device": trained.device,
            "model_source": trained.model_source,
            "save_dir": trained.save_dir,
        }
        runs.complete_run(
            dataset, params["run_name"], weights=trained.weights, metrics=trained.metrics, outputs=outputs
        )
    return {
        "run_name": params["run_name"],
        "weights": trained.weights,
        "num_train": len(exported.train_ids),
        "num_val": len(exported.val_ids),
        "classes": exported.classes,
        "epochs": trained.epochs,
        "seconds_per_epoch": sum(trained.epoch_seconds) / max(1, len(trained.epoch_seconds)),
        "val_map50_95": trained.metrics.get("metrics/mAP50-95(B)", 0.0),
    }


def _completed_run(dataset: fo.Dataset, run_name: str | None, why: str) -> runs.RunRecord | None:
    """The run named ``run_name`` (None for none), refused (saying ``why``) unless completed."""
    run = runs.get_run(dataset, run_name) if run_name else None
    if run is not None and run.status != runs.STATUS_COMPLETED:
        raise ValueError(f"training run '{run.name}' is {run.status}{why}")
    return run


def _prediction_target(dataset: fo.Dataset, slice_name: str | None, target: str, view):
    """The samples ``target`` names (see :data:`.params.TARGETS`)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {sorted(TARGETS)}; got {target!r}")
    if target == TARGET_VIEW and view is None:
        raise ValueError("target 'view' needs the view to predict on")
    return {
        TARGET_TEST: lambda: split_set(dataset, slice_name, "test"),
        TARGET_MINING: lambda: split_set(dataset, slice_name, "mining"),
        TARGET_POOL: lambda: pool_set(dataset, slice_name),
        TARGET_SLICE: lambda: dataset,
        TARGET_VIEW: lambda: view,
    }[target]()


def apply_detector(
    dataset: fo.Dataset,
    *,
    run_name: str | None = None,
    weights: str | None = None,
    slice_name: str | None = None,
    pred_field: str = DEFAULT_PRED_FIELD,
    target: str = TARGET_TEST,
    imgsz: int | None = None,
    conf: float = 0.25,
    batch_size: int = 16,
    view: fo.core.collections.SampleCollection | None = None,
    progress: Progress | None = None,
) -> dict:
    """Predict boxes with a completed run's weights (or ``weights``) into ``pred_field``.

    Parameters
    ----------
    dataset : fiftyone.core.dataset.Dataset
        The dataset to predict on.
    run_name : str, optional
        A completed training run: its weights, slice and image size are the defaults, and
        the predicted field is recorded on it.
    weights : str, optional
        A ``.pt`` file that replaces the run's weights (required without a run).
    slice_name : str, optional
        Camera slice (default: the run's, else the dataset's default camera slice).
    pred_field : str
        Field to write the detections to.
    target : str
        One of :data:`.params.TARGETS`.
    imgsz : int, optional
        Inference size (default: the run's, else 640).
    conf : float
        Confidence threshold.
    batch_size : int
        Images per forward pass.
    view : SampleCollection, optional
        The samples of target ``"view"``.
    progress : callable, optional
        ``progress(fraction, label)``.

    Returns
    -------
    dict
        ``run_name``, ``pred_field``, ``num_samples``, ``num_detections`` and
        ``images_per_second``.
    """
    from .yolo import predict_detections

    run = _completed_run(dataset, run_name, "; it has no weights")
    weights = weights or (run.weights if run else None)
    if not weights:
        raise ValueError(
            f"dataset '{dataset.name}' has no completed training run to predict with; train "
            "one with train_detector, or pass weights (a .pt file)"
        )
    if not os.path.isfile(weights):
        raise ValueError(
            f"weights '{weights}' do not exist; pass the path of a .pt file (a completed "
            "run's weights, e.g. <run folder>/weights/best.pt)"
        )
    slice_name = check_slice(dataset, slice_name or (run.params.get("slice") if run else None))
    collection = _prediction_target(dataset, slice_name, target, view)
    # Writing the field and adding it to the run's fields are one step: under the dataset's
    # write lock, with the run read again, so a racing call's field stays in the record.
    with dataset_lock(dataset, "apply_detector"):
        dataset.reload()
        run = _completed_run(dataset, run_name, "; it has no weights")
        predicted = predict_detections(
            collection,
            weights,
            slice_name=slice_name,
            label_field=pred_field or DEFAULT_PRED_FIELD,
            imgsz=int(imgsz or (run.params.get("imgsz") if run else 640)),
            conf=float(conf),
            batch_size=int(batch_size),
            progress=progress,
        )
        if run is not None:
            fields = dict(run.outputs.get("predicted_fields", {}))
            fields[predicted.label_field] = {
                "target": target, "slice": slice_name, **predicted.to_dict()
            }
            runs.update_outputs(dataset, run.name, {"predicted_fields": fields})
    return {
        "run_name": run.name if run else None,
        "pred_field": predicted.label_field,
        "num_samples": predicted.num_samples,
        "num_detections": predicted.num_detections,
        "images_per_second": predicted.images_per_second,
    }


def evaluate_model(
    dataset: fo.Dataset,
    *,
    pred_field: str = DEFAULT_PRED_FIELD,
    run_name: str | None = None,
    slice_name: str | None = None,
    split: str = "test",
    gt_field: str = DEFAULT_GT_FIELD,
    eval_key: str | None = None,
    iou: float = 0.5,
    batch_name: str | None = None,
    record: bool = True,
    slice_fields: Sequence[str] | None = None,
) -> dict:
    """Evaluate ``pred_field`` on a frozen split; on the test split, record the ledger round.

    Parameters
    ----------
    dataset : fiftyone.core.dataset.Dataset
        The dataset holding the predictions.
    pred_field : str
        The predictions to evaluate.
    run_name : str, optional
        The completed run that made them (default: the latest one that wrote ``pred_field``).
    slice_name : str, optional
        Camera slice (default: the run's, else the dataset's default camera slice).
    split : str
        ``"test"`` (the ledger) or ``"mining"`` (the planner's failures, never recorded).
    gt_field : str
        Ground truth.
    eval_key : str, optional
        Evaluation key (default: :func:`.params.split_eval_key`).
    iou : float
        IoU threshold.
    batch_name : str, optional
        Ledger name of the round's batch (default: :func:`latest_batch` of the run).
    record : bool
        Append the round to the ledger (test split only; needs the run).
    slice_fields : sequence of str, optional
        Scene-attribute fields whose every value gets its own recall in the result and the
        round (``per_slice_recall``); default the fields ``categorize_scenes`` wrote.

    Returns
    -------
    dict
        The evaluation summary and ``run_name``; with a recorded round also ``round`` and
        ``plateau``.

    Raises
    ------
    FrozenSplitError
        When the frozen splits changed since they were drawn: a score against edited or
        swapped test labels means nothing. Nothing is evaluated or recorded.
    """
    from .algorithms.ledger import plateau_signal, record_round
    from ..quality.scene_attributes import predicted_attribute_fields
    from .evaluate import evaluate_split

    require_frozen(dataset, "evaluate_model")
    if slice_fields is None:
        slice_fields = predicted_attribute_fields(dataset)
    pred_field = pred_field or DEFAULT_PRED_FIELD
    if run_name:
        run = _completed_run(dataset, run_name, ", not completed")
    else:
        run = run_that_predicted(dataset, pred_field)
    slice_name = check_slice(dataset, slice_name or (run.params.get("slice") if run else None))
    split = split or "test"
    if split not in SPLITS:
        raise ValueError(f"split must be 'test' or 'mining'; got {split!r}")
    # Only the test split reports: a mining evaluation is planner input, not a result.
    record = split == "test" and bool(record)
    if record and run is None:
        missing = dataset.get_field(pred_field) is None
        raise ValueError(
            f"no training run made the predictions in {pred_field!r}"
            + (" (the field does not exist: run apply_detector first)" if missing else "")
            + ", so the round cannot be recorded; pass run_name, or record=False to evaluate only"
        )

    # The evaluation writes per-sample results and the round extends the ledger in
    # dataset.info (read-modify-write): under the dataset's write lock, so racing
    # evaluations never mix their results, lose a round or number two rounds alike.
    with dataset_lock(dataset, "evaluate_model"):
        dataset.reload()
        summary = evaluate_split(
            dataset,
            pred_field,
            split=split,
            gt_field=gt_field or DEFAULT_GT_FIELD,
            slice_name=slice_name,
            eval_key=eval_key or split_eval_key(split),
            iou=float(iou),
            slice_fields=slice_fields,
        )
        result = {**summary.to_dict(), "run_name": run.name if run else None}
        if run is not None:
            runs.update_outputs(dataset, run.name, {f"{split}_metrics": summary.to_dict()})
        if record:
            ledger = record_round(
                dataset,
                batch=batch_name or latest_batch(run),
                total_labels=int(run.outputs["export"]["num_samples"]),
                map_=summary.map,
                per_class_recall=summary.per_class_recall,
                train_run=run.name,
                per_slice_recall=summary.per_slice_recall,
            )
            result["round"] = ledger[-1].to_dict()
            result["plateau"] = plateau_signal(ledger).to_dict()
    return result
