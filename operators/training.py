"""Operators for the train -> predict -> evaluate half of the loop: forms over
:mod:`..training.detector`.

``train_detector`` (delegated by default: it takes minutes) fine-tunes a YOLO detector on
the labeled, gate-passing, non-frozen samples of one camera slice; ``apply_detector``
writes a run's predictions on the frozen test or mining set, the unlabeled pool, the slice
or the view; ``evaluate_model`` scores them on the test split (a ledger round) or the mining
split (the planner's failures). The functions validate every parameter before they write.
"""

from __future__ import annotations

import fiftyone.operators.types as types

from ..core.names import DEFAULT_GT_FIELD, DEFAULT_PRED_FIELD
from ..training import runs
from ..training.detector import run_that_predicted
from ..training.params import (
    DEFAULT_MODEL,
    TARGET_VIEW,
    TARGET_TEST,
    TARGETS,
    TRAIN_PARAMS,
    check_slice,
    default_imgsz,
    next_run_name,
    split_eval_key,
)
from .common import (
    AnnoloopOperator,
    no_dataset_form,
    overwrite_toggle,
    progress_reporter,
    require_dataset,
    run_target,
)
from .forms import dropdown, label_field_dropdown, number, slice_dropdown
from .loop_defaults import NO_START, default_start, start_checkpoint, test_label_field, weighted_runs
from .results import result_property


class TrainDetector(AnnoloopOperator):
    default_delegated = True

    operator_name = "train_detector"
    operator_label = "annoloop: train detector"
    operator_description = "Fine-tune a YOLO detector on the labeled, gate-passing, non-frozen samples"

    def resolve_input(self, ctx) -> types.Property:
        from ..training.yolo import LITE0_DETECTOR, MODEL_CHOICES

        inputs = types.Object()
        dataset = ctx.dataset
        if dataset is None:
            return no_dataset_form(inputs)
        slice_name = slice_dropdown(inputs, dataset, ctx.params.get("slice"))
        label_field_dropdown(inputs, dataset, "label_field", "Training labels", default=DEFAULT_GT_FIELD)
        inputs.str(
            "run_name",
            default=next_run_name(dataset),
            label="Run name",
            description="Letters, digits and underscores; recorded on the dataset",
        )
        dropdown(
            inputs,
            "model",
            MODEL_CHOICES,
            DEFAULT_MODEL,
            "Model",
            description=f"{LITE0_DETECTOR}: YOLOv8n on an ImageNet-pretrained backbone "
            "(offline); others start from <model>.pt when present locally, else random weights",
        )
        starts = [r.name for r in weighted_runs(dataset)]
        dropdown(
            inputs,
            "start_from",
            [NO_START, *starts],
            default_start(dataset),
            "Start from",
            description="A previous run's weights (default: the latest, so each round builds "
            f"on the last); '{NO_START}': the model's own start",
        )
        inputs.str(
            "checkpoint",
            required=False,
            label="Checkpoint",
            description="Optional local .pt that replaces 'Start from'",
        )
        number(inputs, ctx.params, "epochs", whole=True, default=20, low=1, label="Epochs")
        number(
            inputs,
            ctx.params,
            "steps",
            whole=True,
            required=False,
            low=1,
            label="Optimizer steps",
            description="Size the run by steps instead of epochs: epochs = steps / batches "
            "per epoch, so a small labeling round still trains enough",
        )
        number(
            inputs,
            ctx.params,
            "imgsz",
            whole=True,
            default=default_imgsz(dataset, slice_name),
            low=32,
            label="Image size",
            description="Training size in pixels (default: the slice's largest image side)",
        )
        number(inputs, ctx.params, "batch", whole=True, default=16, low=1, label="Batch size")
        number(
            inputs,
            ctx.params,
            "warmup_epochs",
            whole=False,
            default=3.0,
            low=0.0,
            label="Warm-up epochs",
            description="Learning-rate warm-up; 1 is enough when fine-tuning an earlier run",
        )
        number(
            inputs,
            ctx.params,
            "freeze",
            whole=True,
            default=0,
            low=0,
            label="Frozen layers",
            description="The first layers keep their starting weights: 1 freezes "
            f"{LITE0_DETECTOR}'s pretrained backbone (faster steps, less to learn)",
        )
        inputs.bool(
            "rect",
            default=False,
            label="Rectangular batches",
            description="Keep wide images' aspect ratio (small objects keep their pixels)",
        )
        number(
            inputs, ctx.params, "val_fraction",
            whole=False, default=0.2, low=0.01, high=0.99, label="Validation share",
        )
        inputs.bool(
            "val_each_epoch",
            default=True,
            label="Validate every epoch",
            description="Off: validate once at the end (faster; best.pt is the last epoch)",
        )
        inputs.int("seed", default=0, label="Seed")
        run_name = ctx.params.get("run_name") or next_run_name(dataset)
        known = {r.name: r.status for r in runs.list_runs(dataset)}
        overwrite_toggle(
            inputs,
            f"Training run '{run_name}' exists ({known[run_name]})" if run_name in known else None,
            "Replace the record (and outputs) of a run of the same name",
        )
        return types.Property(inputs, view=types.View(label="Train a detector"))

    def execute(self, ctx) -> dict:
        from ..training.detector import train_detector

        dataset = require_dataset(ctx)
        p = dict(ctx.params)
        if not p.get("checkpoint"):  # validated before anything is written
            p["checkpoint"] = start_checkpoint(dataset, p.get("start_from"))
        return train_detector(
            dataset,
            slice_name=p.get("slice"),
            progress=progress_reporter(ctx),
            **{name: p[name] for name in TRAIN_PARAMS if name in p},
        )

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx,
            {
                "run_name": "Run",
                "weights": "Weights",
                "num_train": "Training images",
                "num_val": "Validation images",
                "classes": "Classes",
                "epochs": "Epochs",
                "seconds_per_epoch": "Seconds per epoch",
                "val_map50_95": "Validation mAP50-95",
            },
        )


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
        for value, label in TARGETS.items():
            choices.add_choice(value, label=label)
        inputs.enum("target", choices.values(), default=TARGET_TEST, label="Predict on", view=choices)
        if ctx.params.get("target") == TARGET_VIEW:
            run_target(ctx, inputs, action="Predict on")
        default_imgsz = run.params.get("imgsz") if run else None
        number(
            inputs, ctx.params, "imgsz",
            whole=True, default=default_imgsz or 640, low=32, label="Image size",
        )
        number(
            inputs, ctx.params, "conf",
            whole=False, default=0.25, low=0.001, high=1.0, label="Confidence threshold",
        )
        number(inputs, ctx.params, "batch_size", whole=True, default=16, low=1, label="Images per batch")
        return types.Property(inputs, view=types.View(label="Apply a detector"))

    def execute(self, ctx) -> dict:
        from ..training.detector import apply_detector

        p = ctx.params
        return apply_detector(
            require_dataset(ctx),
            run_name=p.get("run_name") or None,
            weights=p.get("weights") or None,
            slice_name=p.get("slice"),
            pred_field=p.get("pred_field") or DEFAULT_PRED_FIELD,
            target=p.get("target", TARGET_TEST),
            imgsz=p.get("imgsz"),
            conf=p.get("conf", 0.25),
            batch_size=p.get("batch_size", 16),
            view=run_target(ctx),
            progress=progress_reporter(ctx),
        )

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx,
            {
                "pred_field": "Predictions field",
                "num_samples": "Images",
                "num_detections": "Boxes",
                "images_per_second": "Images per second",
            },
        )


def _evaluation_gt_field(dataset, eval_key: str) -> str | None:
    """The ground-truth field of the dataset's evaluation ``eval_key``; None when absent."""
    if eval_key not in dataset.list_evaluations():
        return None
    return getattr(dataset.get_evaluation_info(eval_key).config, "gt_field", None)


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
        pred_field = ctx.params.get("pred_field") or DEFAULT_PRED_FIELD
        run = run_that_predicted(dataset, pred_field)
        slice_name = slice_dropdown(
            inputs, dataset, ctx.params.get("slice") or (run.params.get("slice") if run else None)
        )
        split = ctx.params.get("split") or "test"
        eval_key = ctx.params.get("eval_key") or split_eval_key(split)
        # FiftyOne replaces an evaluation only with one against the same ground truth, so a
        # re-run of an existing key defaults to its field.
        replaced = _evaluation_gt_field(dataset, eval_key)
        gt_field = label_field_dropdown(
            inputs,
            dataset,
            "gt_field",
            "Ground truth",
            "Default: the field the evaluation it replaces used, else the field that labels "
            "the frozen test split",
            default=replaced or test_label_field(dataset, slice_name, pred_field),
        )
        split_choices = types.RadioGroup()
        split_choices.add_choice("test", label="Test set: report the round in the ledger")
        split_choices.add_choice("mining", label="Mining set: failures for the planner to target")
        inputs.enum(
            "split", split_choices.values(), default="test", label="Split", view=split_choices
        )
        inputs.str("eval_key", default=split_eval_key(split), label="Evaluation key")
        number(
            inputs, ctx.params, "iou",
            whole=False, default=0.5, low=0.05, high=0.95, label="IoU threshold",
        )
        chosen_gt = ctx.params.get("gt_field") or gt_field
        if replaced and chosen_gt != replaced:
            inputs.view(
                "eval_key_notice",
                types.Warning(
                    label=f"Evaluation '{eval_key}' was made against '{replaced}': FiftyOne "
                    f"cannot replace it with one against '{chosen_gt}'; change the key"
                ),
            )
        elif replaced:
            inputs.view(
                "eval_key_notice",
                types.Notice(label=f"Evaluation '{eval_key}' exists: this run replaces it"),
            )
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
        return types.Property(inputs, view=types.View(label="Evaluate on a frozen split"))

    def execute(self, ctx) -> dict:
        from ..training.detector import evaluate_model

        dataset = require_dataset(ctx)
        p = ctx.params
        pred_field = p.get("pred_field") or DEFAULT_PRED_FIELD
        gt_field = p.get("gt_field") or test_label_field(
            dataset, check_slice(dataset, p.get("slice")), pred_field
        )
        return evaluate_model(
            dataset,
            pred_field=pred_field,
            run_name=p.get("run_name") or None,
            slice_name=p.get("slice"),
            split=p.get("split") or "test",
            gt_field=gt_field,
            eval_key=p.get("eval_key") or None,
            iou=p.get("iou", 0.5),
            batch_name=p.get("batch_name") or None,
            record=p.get("record", True),
        )

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx,
            {
                "map": "mAP",
                "tp": "True positives",
                "fp": "False positives",
                "fn": "False negatives",
                "per_class_recall": "Recall per class",
                "per_slice_recall": "Recall per predicted scene attribute",
                "plateau": "Plateau signal",
            },
        )
