"""Operators for autolabeling: a foundation model proposes boxes, a person decides.

``autolabel`` runs a zero-shot detector (OWLv2, OWL-ViT, Grounding DINO, YOLO-World) or a
detector trained by ``train_detector`` over the target's images on one camera slice and
writes candidate boxes, with confidence and provenance, to their own field. It is
delegated by default (a GPU worker: ``fiftyone delegated launch``), resumable and
idempotent; it runs immediately too, for small targets. With a golden set it can score the
run against the golden labels, per class. ``review_autolabels`` accepts the confident,
schema-passing candidates into the label field, or discards them, for selected samples or
in bulk. The work is in :mod:`..training.autolabel`; both operators validate their
parameters there before anything is written.

Targets: the current view, the selected samples (their whole scenes on grouped datasets),
or every sample (scene) carrying a batch tag.
"""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators.types as types

from ..training import runs
from ..core.names import DEFAULT_GT_FIELD, GOLDEN_SPLIT_TAG
from ..core.views import frozen_slice
from .common import (
    AnnoloopOperator,
    no_dataset_form,
    progress_reporter,
    queue_sibling,
    require_dataset,
    whole_number,
)
from ..training.autolabel.targets import selected_scenes, tagged_scenes
from ..training.params import check_slice
from .forms import dropdown, label_field_dropdown, number, slice_dropdown
from .results import result_property

DEFAULT_MODEL = "owlv2"
TARGET_VIEW = "view"
TARGET_SELECTED = "selected"
TARGET_TAG = "tag"
_TARGETS = {
    TARGET_VIEW: "The current view",
    TARGET_SELECTED: "The selected samples (their scenes, on grouped datasets)",
    TARGET_TAG: "Samples (scenes) with a batch tag",
}


def target_samples(ctx, dataset: fo.Dataset):
    """The samples an autolabel / review call acts on (see the module docstring)."""
    target = ctx.params.get("target") or TARGET_VIEW
    if target == TARGET_VIEW:
        return ctx.view
    if target == TARGET_SELECTED:
        return selected_scenes(dataset, ctx.selected or [])
    if target == TARGET_TAG:
        return tagged_scenes(dataset, ctx.params.get("batch_tag"))
    raise ValueError(f"target must be one of {sorted(_TARGETS)}; got {target!r}")


def parse_pairs(values, what: str) -> dict | None:
    """``{key: value}`` from a dict, or from ``"key = value"`` strings (the App's form).

    A string without ``=`` maps to itself; ``"key ="`` maps to None. Values stay strings.
    """
    if values is None or isinstance(values, dict):
        return values
    if isinstance(values, str):
        values = [values]
    pairs = {}
    for item in values:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{what} entries must be 'text = value' strings; got {item!r}")
        key, _, value = item.rpartition("=") if "=" in item else (item, "", item)
        pairs[key.strip()] = value.strip() or None
    return pairs


def _thresholds(values) -> dict | None:
    pairs = parse_pairs(values, "class_thresholds")
    if pairs is None:
        return None
    out = {}
    for cls, value in pairs.items():
        try:
            out[cls] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"class_thresholds[{cls!r}] must be a number; got {value!r}") from None
    return out


def _target_input(ctx, inputs: types.Object) -> None:
    choices = types.RadioGroup()
    for value, label in _TARGETS.items():
        if value != TARGET_SELECTED or ctx.selected:
            choices.add_choice(value, label=label)
    inputs.enum(
        "target",
        choices.values(),
        default=TARGET_SELECTED if ctx.selected else TARGET_VIEW,
        label="Samples",
        view=choices,
    )
    if ctx.params.get("target") == TARGET_TAG:
        inputs.str("batch_tag", required=True, label="Batch tag", description="e.g. batch:003")


def _has_golden(dataset: fo.Dataset, slice_name: str | None) -> bool:
    try:
        return bool(frozen_slice(dataset, slice_name, [GOLDEN_SPLIT_TAG]).count())
    except ValueError:
        return False


class Autolabel(AnnoloopOperator):
    default_delegated = True

    operator_name = "autolabel"
    operator_label = "annoloop: autolabel with a foundation model"
    operator_description = (
        "Zero-shot boxes (OWLv2, OWL-ViT, Grounding DINO, YOLO-World or a "
        "trained detector) into a candidate field, for review"
    )

    def resolve_input(self, ctx) -> types.Property:
        from ..training.autolabel.base import MODELS
        from ..training.autolabel.run import DEFAULT_OUTPUT_FIELD, field_classes
        from ..training.autolabel.yolo_world import DEFAULT_TEXT_ENCODER

        inputs = types.Object()
        dataset = ctx.dataset
        if dataset is None:
            return no_dataset_form(inputs)
        _target_input(ctx, inputs)
        slice_name = slice_dropdown(inputs, dataset, ctx.params.get("slice"))
        model = ctx.params.get("model") if ctx.params.get("model") in MODELS else DEFAULT_MODEL
        dropdown(inputs, "model", list(MODELS), DEFAULT_MODEL, "Model", MODELS[model].description)
        if model == "trained":
            names = [r.name for r in runs.list_runs(dataset, status=runs.STATUS_COMPLETED)]
            if names:
                dropdown(inputs, "checkpoint", names, names[-1], "Training run")
            else:
                inputs.view("no_run", types.Warning(label="No completed training run: train a detector first"))
        else:
            missing = _missing_checkpoint(model, ctx.params.get("checkpoint"), dataset)
            inputs.str(
                "checkpoint",
                default=MODELS[model].default_checkpoint,
                label="Checkpoint",
                description="Hub id already in the Hugging Face cache, or a local directory "
                "(.pt for YOLO-World); nothing is downloaded",
                invalid=missing is not None,
                error_message=missing or "",
            )
            if missing is not None:
                inputs.view("missing_checkpoint", types.Warning(label=_without_weights(dataset)))
        if model == "yolo_world":
            inputs.str(
                "text_encoder",
                default=DEFAULT_TEXT_ENCODER,
                label="Text encoder",
                description="CLIP text model (hub id in the cache, or a directory)",
            )
        label_field_dropdown(inputs, dataset, "label_field", "Labels the classes come from", default=DEFAULT_GT_FIELD)
        label_field = ctx.params.get("label_field") or DEFAULT_GT_FIELD
        inputs.list(
            "classes",
            types.String(),
            default=field_classes(dataset, label_field),
            label="Classes",
            description="Default: the label field's schema classes",
        )
        inputs.list(
            "prompts",
            types.String(),
            required=False,
            label="Prompts",
            description="Optional free text mapped to a class, 'a person on a bike = cyclist'; "
            "'traffic cone =' is a distractor (dropped, counted). Default: the class names",
        )
        inputs.float("min_confidence", default=0.3, label="Minimum confidence", description="In [0, 1]")
        inputs.list(
            "class_thresholds",
            types.String(),
            required=False,
            label="Per-class thresholds",
            description="Optional, 'class = confidence'",
        )
        inputs.str("output_field", default=DEFAULT_OUTPUT_FIELD, label="Output field")
        number(
            inputs, ctx.params, "batch_size",
            whole=True, default=8, low=1, label="Batch size", description="Images per forward pass",
        )
        number(
            inputs,
            ctx.params,
            "chunk_size",
            whole=True,
            default=128,
            low=1,
            label="Write every",
            description="Samples per database write: the most a stopped worker has to redo",
        )
        number(
            inputs, ctx.params, "shards", whole=True, default=1, low=1, high=1024,
            label="Shards",
            description="Split the run by scene into this many scheduled operations, which "
            "every worker on this database takes as it frees up",
        )
        inputs.bool(
            "overwrite",
            default=False,
            label="Overwrite",
            description="Relabel samples that already have auto-labels (default: skip them)",
        )
        if _has_golden(dataset, slice_name):
            inputs.bool(
                "score_golden",
                default=False,
                label="Score against the golden set",
                description="Also label the golden samples and report precision / recall per class",
            )
        return types.Property(inputs, view=types.View(label="Autolabel with a foundation model"))

    def resolve_run_name(self, ctx) -> str | None:
        shard = ctx.params.get("shard")
        if shard is None:
            return None  # FiftyOne's default: the operator's label
        return f"Autolabel shard {int(shard) + 1} of {int(ctx.params.get('shards', 1))}"

    def execute(self, ctx) -> dict:
        from ..training.autolabel.run import DEFAULT_OUTPUT_FIELD, autolabel
        from ..training.autolabel.shards import run_autolabel_shard, start_sharded_autolabel

        dataset = require_dataset(ctx)
        p = ctx.params
        model = p.get("model") or DEFAULT_MODEL
        options = {"text_encoder": p["text_encoder"]} if model == "yolo_world" and p.get("text_encoder") else {}
        target = target_samples(ctx, dataset)
        settings = dict(
            model=model,
            checkpoint=p.get("checkpoint") or None,
            classes=p.get("classes"),
            prompts=parse_pairs(p.get("prompts") or None, "prompts"),
            label_field=p.get("label_field") or DEFAULT_GT_FIELD,
            min_confidence=p.get("min_confidence", 0.3),
            class_thresholds=_thresholds(p.get("class_thresholds") or None),
            slice_name=check_slice(dataset, p.get("slice")),
            output_field=p.get("output_field") or DEFAULT_OUTPUT_FIELD,
            batch_size=p.get("batch_size", 8),
            chunk_size=p.get("chunk_size", 128),
            device=p.get("device") or None,
            overwrite=p.get("overwrite", False),
            score_golden=p.get("score_golden", False),
            model_options=options,
            progress=progress_reporter(ctx),
        )
        shards = whole_number(p.get("shards", 1))
        if p.get("shard") is not None:  # one shard of a sharded run, on whichever worker took it
            return run_autolabel_shard(
                target, run_id=p["run_id"], shard=whole_number(p["shard"]), **settings
            )
        if shards == 1:
            return autolabel(target, **settings)

        def queue(shard: int, run_id: str) -> str:
            # The shard's target is this call's, as a view: "view" reproduces it exactly.
            params = {**p, "target": TARGET_VIEW, "shard": shard, "run_id": run_id}
            return queue_sibling(self, ctx, self.operator_name, target.view(), params)

        return {
            **start_sharded_autolabel(target, shards=shards, queue_shard=queue, **settings),
            "status": "queued",
            "next_step": f"Each of the {shards} shards is a scheduled operation: every "
            "`fiftyone delegated launch` worker on this database takes shards as it frees up; "
            "the last one to finish completes the run. Re-run this form to finish whatever a "
            "failed shard left.",
        }

    def resolve_output(self, ctx) -> types.Property:
        outputs = types.Object()
        outputs.str("run_id", label="Run")
        outputs.str("status", label="Status")
        outputs.int("n_labeled", label="Images labeled now")
        outputs.int("n_skipped", label="Images already labeled (skipped)")
        outputs.int("n_detections", label="Boxes written by the run")
        outputs.obj("per_class", label="Boxes per class", view=types.JSONView())
        outputs.obj("off_schema", label="Off-schema boxes dropped", view=types.JSONView())
        outputs.float("images_per_second", label="Images per second")
        outputs.obj("golden", label="Golden-set scores", view=types.JSONView())
        outputs.int("shards", label="Shards")
        outputs.list("queued", types.Number(), label="Shards queued")
        outputs.list("units_per_shard", types.Number(), label="Scenes per shard")
        outputs.str("next_step", label="Next", view=types.MarkdownView())
        return types.Property(outputs)


def _missing_checkpoint(model: str, checkpoint: str | None, dataset) -> str | None:
    """Why ``model``'s weights cannot be used here (not on this machine), or None."""
    from ..training.autolabel.base import resolve_checkpoint

    try:
        resolve_checkpoint(model, checkpoint or None, dataset)
    except ValueError as err:
        return str(err)
    return None


def _without_weights(dataset) -> str:
    """What to do when the chosen model has no weights here: the trained runs, if any."""
    names = [r.name for r in runs.list_runs(dataset, status=runs.STATUS_COMPLETED)]
    if names:
        return (
            "This model's weights are not on this machine. Choose model 'trained' to label "
            f"with a detector trained here ({', '.join(names[-3:])}), or give a local checkpoint"
        )
    return "This model's weights are not on this machine: give a local checkpoint directory"


class ReviewAutolabels(AnnoloopOperator):
    operator_name = "review_autolabels"
    operator_label = "annoloop: review auto-labels"
    operator_description = "Accept confident, schema-passing auto-labels into the label field, or discard them"

    def resolve_input(self, ctx) -> types.Property:
        from ..training.autolabel.review import ACTIONS
        from ..training.autolabel.run import DEFAULT_OUTPUT_FIELD, autolabel_runs

        inputs = types.Object()
        dataset = ctx.dataset
        if dataset is None:
            return no_dataset_form(inputs)
        choices = types.RadioGroup()
        choices.add_choice("accept", label="Accept", description="Copy the good ones into the label field")
        choices.add_choice("discard", label="Discard", description="Keep them out (and undo an accept)")
        inputs.enum("action", list(ACTIONS), default="accept", label="Decision", view=choices)
        _target_input(ctx, inputs)
        slice_dropdown(inputs, dataset, ctx.params.get("slice"))
        label_field_dropdown(inputs, dataset, "autolabel_field", "Auto-labels", default=DEFAULT_OUTPUT_FIELD)
        field = ctx.params.get("autolabel_field") or DEFAULT_OUTPUT_FIELD
        latest = autolabel_runs(dataset, field)
        if not latest:
            # The dropdown falls back to another Detections field (the golden labels, say):
            # say before submit that there is nothing to review in it.
            inputs.view(
                "no_autolabels",
                types.Warning(label=f"No autolabel run wrote '{field}': run autolabel first"),
            )
        inputs.str(
            "label_field",
            default=(latest[-1]["label_field"] if latest else None) or DEFAULT_GT_FIELD,
            label="Label field",
            description="Accepted labels go here, tagged 'autolabel'",
        )
        inputs.float("min_confidence", default=0.5, label="Confidence bar", description="In [0, 1]")
        inputs.float(
            "duplicate_iou",
            default=0.7,
            label="Duplicate IoU",
            description="In (0, 1]: a box overlapping a label of its class this much is not copied",
        )
        inputs.str("schema", required=False, label="Schema (JSON)", description="Default: the label field's")
        return types.Property(inputs, view=types.View(label="Review auto-labels"))

    def execute(self, ctx) -> dict:
        from ..training.autolabel.review import review_autolabels
        from ..training.autolabel.run import DEFAULT_OUTPUT_FIELD

        dataset = require_dataset(ctx)
        p = ctx.params
        return review_autolabels(
            target_samples(ctx, dataset),
            action=p.get("action") or "accept",
            autolabel_field=p.get("autolabel_field") or DEFAULT_OUTPUT_FIELD,
            label_field=p.get("label_field") or None,
            min_confidence=p.get("min_confidence", 0.5),
            slice_name=check_slice(dataset, p.get("slice")),
            schema=p.get("schema") or None,
            duplicate_iou=p.get("duplicate_iou", 0.7),
            progress=progress_reporter(ctx),
        )

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx,
            {
                "n_samples": "Samples decided",
                "n_accepted": "Labels accepted",
                "rejected": "Not accepted, by reason",
                "n_removed": "Labels taken back out",
            },
        )
