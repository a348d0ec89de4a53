"""Operators for the curate step: compute embeddings, then lay them out for the App.

``compute_embeddings`` embeds the target view's camera images (an image model: the
weight-free baseline by default, ImageNet-pretrained EfficientNet-Lite0 with its pip package
installed, or a checkpoint of the user's), point clouds (the FPFH + geometry descriptor),
objects (patches, optional) and scenes (grouped datasets); see :mod:`..selection.embed`. It
is delegated by default: on a large pool it takes a while.

``compute_visualization`` runs FiftyOne Brain's ``compute_visualization`` on one slice's
stored embeddings (sample, scene or patch level), so the App's Embeddings panel can plot
them and colour the points by any field, e.g. ``zcore``; see :mod:`..selection.visualization`.

Both are forms over those functions, which validate every parameter before they write.
"""

from __future__ import annotations

import fiftyone.operators.types as types

from ..selection.embed import DEFAULT_EMBEDDINGS_FIELD, DEFAULT_GROUP_FIELD
from ..selection.embed_choices import (
    MODEL_KINDS,
    SELF_CONTAINED_KINDS,
    default_patches_field,
    model_spec,
)
from ..selection.visualization import (
    available_methods,
    compute_embedding_visualization,
    default_brain_key,
    default_embeddings,
    default_slice,
    embeddable_slices,
    vector_fields,
)
from .common import (
    AnnoloopOperator,
    no_dataset_form,
    overwrite_toggle,
    progress_reporter,
    queue_sibling,
    require_dataset,
    run_target,
    whole_number,
)
from .forms import detections_fields, dropdown, filled_count, number
from .results import result_property


class ComputeEmbeddings(AnnoloopOperator):
    default_delegated = True

    operator_name = "compute_embeddings"
    operator_label = "annoloop: compute embeddings"
    operator_description = "Embed camera images, point clouds, objects and scenes for curation"

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        dataset = ctx.dataset
        if dataset is None:
            return no_dataset_form(inputs)
        run_target(ctx, inputs, action="Embed")
        slices = embeddable_slices(dataset)
        if slices:
            inputs.list(
                "slices",
                types.String(),
                default=slices,
                label="Slices",
                description="Camera slices use the image model, point clouds the 3D descriptor",
                view=types.AutocompleteView(
                    choices=[
                        types.Choice(s, label=f"{s} ({dataset.group_media_types[s]})")
                        for s in slices
                    ],
                    allow_user_input=False,
                    allow_duplicates=False,
                ),
            )
        kinds = types.RadioGroup()
        for kind, description in MODEL_KINDS.items():
            kinds.add_choice(kind, label=kind, description=description)
        inputs.enum(
            "model_kind", kinds.values(), default="baseline", label="Image model", view=kinds
        )
        kind = ctx.params.get("model_kind", "baseline")
        if kind not in SELF_CONTAINED_KINDS:
            inputs.str(
                "model_path",
                required=True,
                label="Model",
                description={
                    "hf": "Hub id (e.g. facebook/dinov2-small) or a saved checkpoint's directory",
                    "ultralytics": "Path to a .pt checkpoint, or a model YAML such as yolov8n.yaml",
                    "zoo": "Zoo model name, e.g. clip-vit-base32-torch",
                }.get(kind),
            )
        if kind == "hf":
            inputs.bool(
                "allow_download",
                default=False,
                label="Allow download",
                description="Fetch the checkpoint if it is not on disk",
            )
        inputs.str("embeddings_field", default=DEFAULT_EMBEDDINGS_FIELD, label="Embeddings field")
        if slices:
            inputs.str(
                "group_field",
                default=DEFAULT_GROUP_FIELD,
                label="Scene embedding field",
                description="The scene's embedding, stored on every sample of the group",
            )
        fields = detections_fields(dataset)
        if fields:
            inputs.bool(
                "patches",
                default=True,
                label="Embed objects",
                description="One embedding per detection, stored on the detection",
            )
            if ctx.params.get("patches", True):
                inputs.enum(
                    "patches_field",
                    fields,
                    default=default_patches_field(dataset, fields),
                    label="Object label field",
                    view=types.DropdownView(),
                )
        number(inputs, ctx.params, "batch_size", whole=True, default=32, low=1, label="Batch size")
        number(
            inputs, ctx.params, "shards", whole=True, default=1, low=1, high=1024,
            label="Shards",
            description="Split the run by scene into this many scheduled operations, which "
            "every worker on this database takes as it frees up",
        )
        field = ctx.params.get("embeddings_field") or DEFAULT_EMBEDDINGS_FIELD
        embedded = filled_count(dataset, field)
        overwrite_toggle(
            inputs,
            f"'{field}' already holds embeddings on {embedded:,} samples" if embedded else None,
            "Recompute embeddings that already exist (off: only the missing ones are computed)",
        )
        return types.Property(inputs, view=types.View(label="Compute embeddings"))

    def resolve_run_name(self, ctx) -> str | None:
        shard = ctx.params.get("shard")
        if shard is None:
            return None  # FiftyOne's default: the operator's label
        return f"Embeddings shard {int(shard) + 1} of {int(ctx.params.get('shards', 1))}"

    def execute(self, ctx) -> dict:
        from ..core.runs import process_identity
        from ..selection.embed import compute_embeddings
        from ..core.unit_shards import shard_view
        from ..selection.embedding_shards import start_sharded_embeddings

        params = ctx.params
        patches_field = params.get("patches_field") if params.get("patches", True) else None
        settings = dict(
            slices=params.get("slices") or None,
            model=model_spec(params.get("model_kind", "baseline"), params.get("model_path")),
            embeddings_field=params.get("embeddings_field") or DEFAULT_EMBEDDINGS_FIELD,
            patches_field=patches_field or None,
            group_field=params.get("group_field") or DEFAULT_GROUP_FIELD,
            batch_size=int(params.get("batch_size", 32)),
            overwrite=bool(params.get("overwrite", False)),
            allow_download=bool(params.get("allow_download", False)),
            progress=progress_reporter(ctx),
        )
        target, shards = run_target(ctx), whole_number(params.get("shards", 1))
        shard = params.get("shard")
        if shard is not None:  # one shard of a sharded run, on whichever worker took it
            view = shard_view(target, whole_number(shard), shards)
            return {**compute_embeddings(view, **settings), "shard": int(shard), **process_identity()}
        if shards == 1:
            return compute_embeddings(target, **settings)

        def queue(k: int) -> str:
            return queue_sibling(self, ctx, self.operator_name, target.view(), {**params, "shard": k})

        return {
            **start_sharded_embeddings(target, shards, queue, **settings),
            "next_step": f"Each of the {shards} shards is a scheduled operation: every "
            "`fiftyone delegated launch` worker on this database takes shards as it frees up. "
            "Re-run this form (Overwrite off) to finish whatever a failed shard left.",
        }

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx,
            {
                "embeddings_field": "Embeddings field",
                "model": "Image model",
                "groups_written": "Scene embeddings written",
                "groups_incomplete": "Scenes not fully embedded yet",
                "seconds": "Seconds",
                "slices": "Per slice",
                "patches": "Objects",
                "shards": "Shards",
                "queued": "Shards queued",
                "units_per_shard": "Units per shard",
                "to_embed": "To embed, per slice",
                "next_step": "Next",
            },
            markdown_keys=("next_step",),
        )


class ComputeVisualization(AnnoloopOperator):
    default_delegated = False  # PCA is instant; choose "Schedule" for t-SNE / UMAP on big pools

    operator_name = "compute_visualization"
    operator_label = "annoloop: visualize embeddings"
    operator_description = "2D layout of stored embeddings for the App's Embeddings panel"

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        dataset = ctx.dataset
        if dataset is None:
            return no_dataset_form(inputs)
        run_target(ctx, inputs, action="Plot")
        slices = embeddable_slices(dataset)
        slice_name = default_slice(dataset, ctx.params.get("slice"), ctx.group_slice)
        if slices:
            dropdown(inputs, "slice", slices, slice_name, "Slice")
        detection_fields = detections_fields(dataset)
        if detection_fields:
            dropdown(
                inputs,
                "patches_field",
                detection_fields,
                None,
                "Objects of (optional)",
                "Plot one point per detection of this field instead of one per sample",
            )
        patches_field = (
            ctx.params.get("patches_field")
            if ctx.params.get("patches_field") in detection_fields
            else None
        )
        collection = dataset.select_group_slices(slice_name) if slice_name else dataset
        candidates = vector_fields(collection, patches_field)
        if not candidates:
            inputs.view(
                "no_embeddings",
                types.Warning(label="No embeddings stored yet: run compute_embeddings first"),
            )
            return types.Property(inputs)
        default = default_embeddings(collection, patches_field)
        dropdown(inputs, "embeddings", candidates, default, "Embeddings")
        dropdown(
            inputs,
            "method",
            available_methods(),
            "pca",
            "Method",
            "umap needs umap-learn installed",
        )
        embeddings = ctx.params.get("embeddings") or default
        method = ctx.params.get("method") or "pca"
        default_key = default_brain_key(slice_name, embeddings, patches_field, method)
        inputs.str("brain_key", default=default_key, label="Brain key")
        brain_key = ctx.params.get("brain_key") or default_key
        overwrite_toggle(
            inputs,
            f"Brain key '{brain_key}' already holds a visualization"
            if brain_key in dataset.list_brain_runs()
            else None,
            "Replace the run with this brain key",
        )
        return types.Property(inputs, view=types.View(label="Visualize embeddings"))

    def execute(self, ctx) -> dict:
        params = ctx.params
        return compute_embedding_visualization(
            run_target(ctx),
            embeddings=params.get("embeddings") or None,
            slice_name=params.get("slice") or default_slice(require_dataset(ctx), ctx.group_slice),
            patches_field=params.get("patches_field") or None,
            method=params.get("method") or "pca",
            brain_key=params.get("brain_key") or None,
            overwrite=bool(params.get("overwrite", False)),
        )

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx, {"brain_key": "Brain key", "num_points": "Points", "method": "Method"}
        )
