"""Operators for the train -> predict -> evaluate half of the loop.

``train_detector`` exports the labeled, gate-passing, non-frozen samples of one camera
slice and fine-tunes a YOLO detector (delegated by default: it takes minutes), recording a
training run that is ``completed`` only once weights exist. ``apply_detector`` writes a
run's predictions into a field: on the frozen test set (for the ledger), the frozen mining
set (for the planner's failure targeting) or the unlabeled pool (for uncertainty targeting).
``evaluate_model`` evaluates those predictions on the test split (and appends the round to
the ledger) or on the mining split (leaving FiftyOne's per-sample and per-object tp/fp/fn
there for the planner to target; the test split's are never targeted).

Each operator validates its parameters before it writes anything.
"""

from __future__ import annotations

import datetime
import math
import os

import fiftyone as fo
import fiftyone.operators.types as types

from ..training import runs
from ..core.names import (
    DEFAULT_EVAL_KEY,
    DEFAULT_GT_FIELD,
    DEFAULT_PRED_FIELD,
    MINING_EVAL_KEY,
)
from ..core.views import camera_slice
from .common import AnnoloopOperator, no_dataset_form, progress_reporter, require_dataset
from .forms import check_slice, dropdown, label_field_dropdown, slice_dropdown

DEFAULT_MODEL = "yolov8n"
TARGET_TEST = "test"
TARGET_MINING = "mining"
TARGET_POOL = "pool"
TARGET_SLICE = "slice"
TARGET_VIEW = "view"
_TARGETS = {
    TARGET_TEST: "Frozen test set of the slice (what the ledger's evaluation needs)",
    TARGET_MINING: "Frozen mining set of the slice (what failure targeting needs)",
    TARGET_POOL: "Unlabeled pool of the slice (what uncertainty targeting needs)",
    TARGET_SLICE: "Every sample of the slice",
    TARGET_VIEW: "The current view's samples of the slice",
}


class TrainDetector(AnnoloopOperator):
    default_delegated = True

    operator_name = "train_detector"
    operator_label = "annoloop: train detector"
    operator_description = "Fine-tune a YOLO detector on the labeled, gate-passing, non-frozen samples"

    def resolve_input(self, ctx) -> types.Property:
        from ..training.yolo import MODEL_CHOICES

        inputs = types.Object()
        dataset = ctx.dataset
        if dataset is None:
            return no_dataset_form(inputs)
        slice_name = slice_dropdown(inputs, dataset, ctx.params.get("slice"))
        label_field_dropdown(inputs, dataset, "label_field", "Training labels", default=DEFAULT_GT_FIELD)
        inputs.str(
            "run_name",
            default=_next_run_name(dataset),
            label="Run name",
            description="Letters, digits and underscores; recorded on the dataset",
        )
        dropdown(
            inputs,
            "model",
            MODEL_CHOICES,
            DEFAULT_MODEL,
            "Model",
            description="Starts from <model>.pt when present locally, else random weights",
        )
        inputs.str(
            "checkpoint",
            required=False,
            label="Checkpoint",
            description="Optional local .pt to start from, e.g. the previous round's best.pt",
        )
        inputs.int("epochs", default=20, min=1, label="Epochs")
        inputs.int(
            "steps",
            required=False,
            min=1,
            label="Optimizer steps",
            description="Size the run by steps instead of epochs: epochs = steps / batches "
            "per epoch, so a small labeling round still trains enough",
        )
        inputs.int(
            "imgsz",
            default=_default_imgsz(dataset, slice_name),
            min=32,
            label="Image size",
            description="Training size in pixels (default: the slice's largest image side)",
        )
        inputs.int("batch", default=16, min=1, label="Batch size")
        inputs.float(
            "warmup_epochs",
            default=3.0,
            min=0.0,
            label="Warm-up epochs",
            description="Learning-rate warm-up; 1 is enough when fine-tuning an earlier run",
        )
        inputs.bool(
            "rect",
            default=False,
            label="Rectangular batches",
            description="Keep wide images' aspect ratio (small objects keep their pixels)",
        )
        inputs.float("val_fraction", default=0.2, min=0.01, max=0.99, label="Validation share")
        inputs.bool(
            "val_each_epoch",
            default=True,
            label="Validate every epoch",
            description="Off: validate once at the end (faster; best.pt is the last epoch)",
        )
        inputs.int("seed", default=0, label="Seed")
        inputs.bool("overwrite", default=False, label="Overwrite a run of the same name")
        self.add_execution_mode(ctx, inputs)
        return types.Property(inputs, view=types.View(label="Train a detector"))

    def execute(self, ctx) -> dict:
        from ..training.export import export_yolo
        from ..training.yolo import resolve_model_source, train_yolo

        dataset = require_dataset(ctx)
        params = _train_params(ctx.params, dataset)
        # A missing checkpoint or an unknown model fails here, before anything is written.
        resolve_model_source(params["model"], params["checkpoint"])
        run_dir = params["output_dir"]
        report = progress_reporter(ctx)

        report(0.0, "exporting the trainable samples")
        exported = export_yolo(
            dataset,
            os.path.join(run_dir, "data"),
            slice_name=params["slice"],
            label_field=params["label_field"],
            val_fraction=params["val_fraction"],
            seed=params["seed"],
        )
        if params["steps"]:
            batches_per_epoch = math.ceil(len(exported.train_ids) / params["batch"])
            params["epochs"] = max(1, math.ceil(params["steps"] / batches_per_epoch))
        with runs.training_run(dataset, params["run_name"], params, overwrite=params["overwrite"]):
            trained = train_yolo(
                exported.yaml_path,
                run_dir,
                model=params["model"],
                checkpoint=params["checkpoint"],
                epochs=params["epochs"],
                imgsz=params["imgsz"],
                batch=params["batch"],
                warmup_epochs=params["warmup_epochs"],
                rect=params["rect"],
                mosaic=0.0 if params["rect"] else 1.0,
                val_each_epoch=params["val_each_epoch"],
                seed=params["seed"],
                progress=lambda fraction, label: report(0.05 + 0.95 * fraction, label),
            )
            outputs = {
                "export": exported.to_dict(),
                "epoch_seconds": trained.epoch_seconds,
                "device": trained.device,
                "model_source": trained.model_source,
                "save_dir": trained.save_dir,
            }
            runs.complete_run(
                dataset,
                params["run_name"],
                weights=trained.weights,
                metrics=trained.metrics,
                outputs=outputs,
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

    def resolve_output(self, ctx) -> types.Property:
        outputs = types.Object()
        outputs.str("run_name", label="Run")
        outputs.str("weights", label="Weights")
        outputs.int("num_train", label="Training samples")
        outputs.int("num_val", label="Validation samples")
        outputs.list("classes", types.String(), label="Classes")
        outputs.int("epochs", label="Epochs")
        outputs.float("seconds_per_epoch", label="Seconds per epoch")
        outputs.float("val_map50_95", label="Validation mAP50-95")
        return types.Property(outputs)


class ApplyDetector(AnnoloopOperator):
    operator_name = "apply_detector"
    operator_label = "annoloop: apply detector"
    operator_description = "Predict boxes with a trained run's weights into a Detections field"

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        dataset = ctx.dataset
        if dataset is None:
            return no_dataset_form(inputs)
        completed = runs.list_runs(dataset, status=runs.STATUS_COMPLETED)
        names = [r.name for r in completed]
        if names:
            dropdown(inputs, "run_name", names, names[-1], "Training run")
        else:
            inputs.view("no_runs", types.Notice(label="No completed training run: give weights"))
        inputs.str(
            "weights",
            required=False,
            label="Weights",
            description="Optional .pt that replaces the run's weights",
        )
        run = next((r for r in completed if r.name == ctx.params.get("run_name")), None)
        run = run or (completed[-1] if completed else None)
        run_slice = run.params.get("slice") if run else None
        slice_dropdown(inputs, dataset, ctx.params.get("slice") or run_slice)
        inputs.str("pred_field", default=DEFAULT_PRED_FIELD, label="Predictions field")
        choices = types.RadioGroup()
        for value, label in _TARGETS.items():
            choices.add_choice(value, label=label)
        inputs.enum("target", choices.values(), default=TARGET_TEST, label="Predict on", view=choices)
        default_imgsz = run.params.get("imgsz") if run else None
        inputs.int("imgsz", default=default_imgsz or 640, min=32, label="Image size")
        inputs.float("conf", default=0.25, min=0.001, max=1.0, label="Confidence threshold")
        inputs.int("batch_size", default=16, min=1, label="Images per batch")
        self.add_execution_mode(ctx, inputs)
        return types.Property(inputs, view=types.View(label="Apply a detector"))

    def execute(self, ctx) -> dict:
        from ..core.views import pool_set, split_set
        from ..training.yolo import predict_detections

        dataset = require_dataset(ctx)
        p = ctx.params
        run = runs.get_run(dataset, p["run_name"]) if p.get("run_name") else None
        if run is not None and run.status != runs.STATUS_COMPLETED:
            raise ValueError(f"training run '{run.name}' is {run.status}; it has no weights")
        weights = p.get("weights") or (run.weights if run else None)
        if not weights:
            raise ValueError("give a completed training run or a weights file")
        if not os.path.isfile(weights):
            raise ValueError(f"weights '{weights}' do not exist")
        slice_name = check_slice(dataset, p.get("slice") or (run.params.get("slice") if run else None))
        target = p.get("target", TARGET_TEST)
        if target not in _TARGETS:
            raise ValueError(f"target must be one of {sorted(_TARGETS)}; got {target!r}")
        imgsz = int(p.get("imgsz") or (run.params.get("imgsz") if run else 640))
        collection = {
            TARGET_TEST: lambda: split_set(dataset, slice_name, "test"),
            TARGET_MINING: lambda: split_set(dataset, slice_name, "mining"),
            TARGET_POOL: lambda: pool_set(dataset, slice_name),
            TARGET_SLICE: lambda: dataset,
            TARGET_VIEW: lambda: ctx.target_view(),
        }[target]()
        predicted = predict_detections(
            collection,
            weights,
            slice_name=slice_name,
            label_field=p.get("pred_field") or DEFAULT_PRED_FIELD,
            imgsz=imgsz,
            conf=float(p.get("conf", 0.25)),
            batch_size=int(p.get("batch_size", 16)),
            progress=progress_reporter(ctx),
        )
        if run is not None:
            fields = dict(run.outputs.get("predicted_fields", {}))
            fields[predicted.label_field] = {"target": target, "slice": slice_name, **predicted.to_dict()}
            runs.update_outputs(dataset, run.name, {"predicted_fields": fields})
        return {
            "run_name": run.name if run else None,
            "pred_field": predicted.label_field,
            "num_samples": predicted.num_samples,
            "num_detections": predicted.num_detections,
            "images_per_second": predicted.images_per_second,
        }

    def resolve_output(self, ctx) -> types.Property:
        outputs = types.Object()
        outputs.str("pred_field", label="Predictions field")
        outputs.int("num_samples", label="Images")
        outputs.int("num_detections", label="Boxes")
        outputs.float("images_per_second", label="Images per second")
        return types.Property(outputs)


class EvaluateModel(AnnoloopOperator):
    operator_name = "evaluate_model"
    operator_label = "annoloop: evaluate model"
    operator_description = (
        "Evaluate predictions on the frozen test set (the ledger) or mining set (targeting)"
    )

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        dataset = ctx.dataset
        if dataset is None:
            return no_dataset_form(inputs)
        label_field_dropdown(inputs, dataset, "pred_field", "Predictions", default=DEFAULT_PRED_FIELD)
        label_field_dropdown(inputs, dataset, "gt_field", "Ground truth", default=DEFAULT_GT_FIELD)
        pred_field = ctx.params.get("pred_field") or DEFAULT_PRED_FIELD
        run = _run_that_predicted(dataset, pred_field)
        slice_dropdown(
            inputs, dataset, ctx.params.get("slice") or (run.params.get("slice") if run else None)
        )
        split_choices = types.RadioGroup()
        split_choices.add_choice("test", label="Test set: report the round in the ledger")
        split_choices.add_choice("mining", label="Mining set: failures for the planner to target")
        inputs.enum(
            "split", split_choices.values(), default="test", label="Split", view=split_choices
        )
        split = ctx.params.get("split") or "test"
        inputs.str("eval_key", default=_split_eval_key(split), label="Evaluation key")
        inputs.float("iou", default=0.5, min=0.05, max=0.95, label="IoU threshold")
        names = [r.name for r in runs.list_runs(dataset, status=runs.STATUS_COMPLETED)]
        if names:
            dropdown(
                inputs,
                "run_name",
                names,
                run.name if run else names[-1],
                "Training run",
                description="The run whose model made the predictions; its round goes in the ledger",
            )
        inputs.str(
            "batch_name",
            required=False,
            label="Batch",
            description="Ledger name of the batch this round added (default: the latest "
            "annotation batch in the run's training labels, else the run name)",
        )
        if split == "test":
            inputs.bool("record", default=True, label="Record the round in the ledger")
        self.add_execution_mode(ctx, inputs)
        return types.Property(inputs, view=types.View(label="Evaluate on a frozen split"))

    def execute(self, ctx) -> dict:
        from ..training.evaluate import evaluate_split
        from ..training.algorithms.ledger import plateau_signal, record_round

        dataset = require_dataset(ctx)
        p = ctx.params
        pred_field = p.get("pred_field") or DEFAULT_PRED_FIELD
        run_name = p.get("run_name")
        run = runs.get_run(dataset, run_name) if run_name else _run_that_predicted(dataset, pred_field)
        if run is not None and run.status != runs.STATUS_COMPLETED:
            raise ValueError(f"training run '{run.name}' is {run.status}, not completed")
        slice_name = check_slice(dataset, p.get("slice") or (run.params.get("slice") if run else None))
        split = p.get("split") or "test"
        if split not in ("test", "mining"):
            raise ValueError(f"split must be 'test' or 'mining'; got {split!r}")
        # Only the test split reports: a mining evaluation is planner input, not a result.
        record = split == "test" and bool(p.get("record", True))
        if record and run is None:
            raise ValueError("recording a round needs the training run that made the predictions")

        summary = evaluate_split(
            dataset,
            pred_field,
            split=split,
            gt_field=p.get("gt_field") or DEFAULT_GT_FIELD,
            slice_name=slice_name,
            eval_key=p.get("eval_key") or _split_eval_key(split),
            iou=float(p.get("iou", 0.5)),
        )
        result = {**summary.to_dict(), "run_name": run.name if run else None}
        if run is not None:
            runs.update_outputs(dataset, run.name, {f"{split}_metrics": summary.to_dict()})
        if record:
            ledger = record_round(
                dataset,
                batch=p.get("batch_name") or _latest_batch(run),
                total_labels=int(run.outputs["export"]["num_samples"]),
                map_=summary.map,
                per_class_recall=summary.per_class_recall,
                train_run=run.name,
            )
            result["round"] = ledger[-1].to_dict()
            result["plateau"] = plateau_signal(ledger).to_dict()
        return result

    def resolve_output(self, ctx) -> types.Property:
        outputs = types.Object()
        outputs.float("map", label="mAP")
        outputs.int("tp", label="True positives")
        outputs.int("fp", label="False positives")
        outputs.int("fn", label="False negatives")
        outputs.obj("per_class_recall", label="Recall per class")
        outputs.obj("plateau", label="Plateau signal")
        return types.Property(outputs)


def _split_eval_key(split: str) -> str:
    return MINING_EVAL_KEY if split == "mining" else DEFAULT_EVAL_KEY


def _next_run_name(dataset: fo.Dataset) -> str:
    taken = {r.name for r in runs.list_runs(dataset)}
    index = len(taken)
    while f"round_{index}" in taken:
        index += 1
    return f"round_{index}"


def _default_imgsz(dataset: fo.Dataset, slice_name: str | None) -> int:
    """The slice's largest image side, rounded up to the model stride (32), at most 640."""
    view = camera_slice(dataset, slice_name)
    sides = [v for v in (view.bounds("metadata.width")[1], view.bounds("metadata.height")[1]) if v]
    if not sides:
        return 640
    return min(640, 32 * math.ceil(max(sides) / 32))


def _latest_batch(run: runs.RunRecord) -> str:
    """The last annotation batch (by name) a run trained on, else the run's name."""
    batches = run.outputs.get("export", {}).get("batches") or []
    return max(batches) if batches else run.name


def _run_that_predicted(dataset: fo.Dataset, pred_field: str) -> runs.RunRecord | None:
    """The latest completed run that wrote ``pred_field``."""
    completed = runs.list_runs(dataset, status=runs.STATUS_COMPLETED)
    matches = [r for r in completed if pred_field in r.outputs.get("predicted_fields", {})]
    return matches[-1] if matches else None


def _train_params(params: dict, dataset: fo.Dataset) -> dict:
    """Validated, JSON-serialisable training parameters with defaults filled in."""
    run_name = params.get("run_name") or _next_run_name(dataset)
    runs.run_key(run_name)
    overwrite = bool(params.get("overwrite", False))
    if not overwrite and dataset.has_run(runs.run_key(run_name)):
        raise ValueError(f"training run '{run_name}' already exists; choose another name or overwrite it")
    slice_name = check_slice(dataset, params.get("slice"))
    label_field = params.get("label_field") or DEFAULT_GT_FIELD
    if label_field not in dataset.get_field_schema(embedded_doc_type=fo.Detections):
        raise ValueError(f"label field {label_field!r} is not a Detections field of '{dataset.name}'")
    values = {
        "epochs": params.get("epochs", 20),
        "imgsz": params.get("imgsz") or _default_imgsz(dataset, slice_name),
        "batch": params.get("batch", 16),
    }
    steps = params.get("steps")
    if steps is not None:
        values["steps"] = steps
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    val_fraction = float(params.get("val_fraction", 0.2))
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1); got {val_fraction!r}")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    output_dir = params.get("output_dir") or os.path.join(
        fo.config.default_dataset_dir, "annoloop", dataset.name, "train", f"{run_name}-{stamp}"
    )
    return {
        "run_name": run_name,
        "overwrite": overwrite,
        "slice": slice_name,
        "label_field": label_field,
        "model": params.get("model") or DEFAULT_MODEL,
        "checkpoint": params.get("checkpoint") or None,
        "steps": None,
        **{k: int(v) for k, v in values.items()},
        "val_fraction": val_fraction,
        "rect": bool(params.get("rect", False)),
        "val_each_epoch": bool(params.get("val_each_epoch", True)),
        "warmup_epochs": float(params.get("warmup_epochs", 3.0)),
        "seed": int(params.get("seed", 0)),
        "output_dir": output_dir,
    }
