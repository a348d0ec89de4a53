"""Operators for the curate step: compute embeddings, then lay them out for the App.

``compute_embeddings`` embeds the target view's camera images (an image model: the
weight-free baseline by default, ImageNet-pretrained EfficientNet-Lite0 with its pip package
installed, or a checkpoint of the user's), point clouds (the FPFH + geometry descriptor),
objects (patches, optional) and scenes (grouped datasets); see :mod:`..selection.embed`. It
is delegated by default: on a large pool it takes a while.

``compute_visualization`` runs FiftyOne Brain's ``compute_visualization`` on one slice's
stored embeddings (sample, scene or patch level), so the App's Embeddings panel can plot
them and colour the points by any field, e.g. ``zcore``.

Both validate their parameters before anything is written.
"""

from __future__ import annotations

import importlib.util
import re

import fiftyone as fo
import fiftyone.operators.types as types
from fiftyone import ViewField as F

from ..selection.embed import DEFAULT_EMBEDDINGS_FIELD, DEFAULT_GROUP_FIELD
from ..selection.embedding_units import IMAGE, POINT_CLOUD
from ..selection.embeddings.models import EFFICIENTNET_LITE0
from .common import AnnoloopOperator, no_dataset_form, progress_reporter
from .forms import detections_fields

MODEL_KINDS = {
    "baseline": "Baseline (colour + gradient histograms; no weights, offline)",
    EFFICIENTNET_LITE0: (
        "EfficientNet-Lite0, ImageNet-pretrained (weights ship in a pip package; offline)"
    ),
    "hf": "Hugging Face checkpoint (CLIP, SigLIP, DINOv2, ViT): hub id or local directory",
    "ultralytics": "Ultralytics YOLO backbone: a .pt checkpoint or a model .yaml",
    "zoo": "FiftyOne zoo model (its weights must already be downloaded)",
}
#: Kinds that name one model, so they need no ``model_path``.
_SELF_CONTAINED_KINDS = ("baseline", EFFICIENTNET_LITE0)
VIZ_METHODS = ("pca", "tsne", "umap")
_PREFERRED_PATCH_FIELDS = ("ground_truth", "oracle")


def _target(ctx):
    return ctx.target_view() if hasattr(ctx, "target_view") else ctx.view


def _embeddable_slices(dataset) -> list[str]:
    if dataset.media_type != "group":
        return []
    media_types = dataset.group_media_types
    return [s for s in dataset.group_slices if media_types[s] in (IMAGE, POINT_CLOUD)]


def _has_labels(dataset, field: str) -> bool:
    """Whether any sample (of the active slice) has at least one detection in ``field``."""
    return len(dataset.match(F(f"{field}.detections").length() > 0).limit(1)) > 0


def _default_patches_field(dataset, fields: list[str]) -> str | None:
    """``ground_truth`` if it has labels, else ``oracle``, else any field with labels."""
    ordered = [f for f in _PREFERRED_PATCH_FIELDS if f in fields] + [
        f for f in fields if f not in _PREFERRED_PATCH_FIELDS
    ]
    return next((f for f in ordered if _has_labels(dataset, f)), fields[0] if fields else None)


def model_spec(kind: str, path: str | None) -> str:
    """The :func:`~..selection.embeddings.models.load_image_model` spec for a form choice."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"model_kind must be one of {sorted(MODEL_KINDS)}, got {kind!r}")
    if kind in _SELF_CONTAINED_KINDS:
        return kind
    path = (path or "").strip()
    if not path:
        raise ValueError(
            f"model_kind '{kind}' needs model_path (a checkpoint id, path or zoo name)"
        )
    return f"{kind}:{path}"


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
        _target(ctx)  # offers the dataset / current view / selection choice
        slices = _embeddable_slices(dataset)
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
        if kind not in _SELF_CONTAINED_KINDS:
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
                    default=_default_patches_field(dataset, fields),
                    label="Object label field",
                    view=types.DropdownView(),
                )
        inputs.int("batch_size", default=32, min=1, label="Batch size")
        inputs.bool(
            "overwrite",
            default=False,
            label="Overwrite",
            description="Recompute embeddings that already exist",
        )
        self.add_execution_mode(ctx, inputs)
        return types.Property(inputs, view=types.View(label="Compute embeddings"))

    def execute(self, ctx) -> dict:
        from ..selection.embed import compute_embeddings

        params = ctx.params
        patches_field = params.get("patches_field") if params.get("patches", True) else None
        return compute_embeddings(
            _target(ctx),
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

    def resolve_output(self, ctx) -> types.Property:
        outputs = types.Object()
        outputs.str("embeddings_field", label="Embeddings field")
        outputs.str("model", label="Image model")
        outputs.obj("slices", label="Per slice", view=types.JSONView())
        outputs.obj("patches", label="Objects", view=types.JSONView())
        outputs.int("groups_written", label="Scene embeddings written")
        outputs.int("groups_incomplete", label="Scenes not fully embedded yet")
        outputs.float("seconds", label="Seconds")
        return types.Property(outputs)


def _vector_fields(collection, patches_field: str | None) -> list[str]:
    """Vector fields of the samples, or vector attributes of ``patches_field``'s detections."""
    if patches_field is None:
        return sorted(collection.get_field_schema(ftype=fo.VectorField))
    schema = collection.get_field_schema(flat=True)
    prefix = f"{patches_field}.detections."
    return sorted(
        path[len(prefix) :]
        for path, f in schema.items()
        if path.startswith(prefix) and isinstance(f, fo.VectorField)
    )


def default_brain_key(
    slice_name: str | None, embeddings: str, patches_field: str | None, method: str
) -> str:
    """``viz_<slice>_<field>[_<patches>]_<method>`` made a valid identifier."""
    parts = ["viz", slice_name, patches_field, embeddings, method]
    return re.sub(r"\W", "_", "_".join(p for p in parts if p))


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
        _target(ctx)
        slices = _embeddable_slices(dataset)
        slice_name = None
        if slices:
            requested = ctx.params.get("slice")
            slice_name = (
                requested
                if requested in slices
                else (ctx.group_slice if ctx.group_slice in slices else slices[0])
            )
            inputs.enum(
                "slice", slices, default=slice_name, label="Slice", view=types.DropdownView()
            )
        detection_fields = detections_fields(dataset)
        if detection_fields:
            inputs.enum(
                "patches_field",
                detection_fields,
                required=False,
                label="Objects of (optional)",
                description="Plot one point per detection of this field instead of one per sample",
                view=types.DropdownView(),
            )
        patches_field = (
            ctx.params.get("patches_field")
            if ctx.params.get("patches_field") in detection_fields
            else None
        )
        collection = dataset.select_group_slices(slice_name) if slice_name else dataset
        candidates = _vector_fields(collection, patches_field)
        if not candidates:
            inputs.view(
                "no_embeddings",
                types.Warning(label="No embeddings stored yet: run compute_embeddings first"),
            )
            return types.Property(inputs)
        default = (
            DEFAULT_EMBEDDINGS_FIELD if DEFAULT_EMBEDDINGS_FIELD in candidates else candidates[0]
        )
        inputs.enum(
            "embeddings", candidates, default=default, label="Embeddings", view=types.DropdownView()
        )
        methods = available_methods()
        inputs.enum(
            "method",
            methods,
            default="pca",
            label="Method",
            description="umap needs umap-learn installed",
        )
        embeddings = ctx.params.get("embeddings") or default
        method = ctx.params.get("method") or "pca"
        inputs.str(
            "brain_key",
            default=default_brain_key(slice_name, embeddings, patches_field, method),
            label="Brain key",
        )
        inputs.bool("overwrite", default=False, label="Replace a run with this brain key")
        self.add_execution_mode(ctx, inputs)
        return types.Property(inputs, view=types.View(label="Visualize embeddings"))

    def execute(self, ctx) -> dict:
        params = ctx.params
        view = _target(ctx)
        slice_name = params.get("slice") or None
        return compute_embedding_visualization(
            view,
            embeddings=params.get("embeddings") or DEFAULT_EMBEDDINGS_FIELD,
            slice_name=slice_name,
            patches_field=params.get("patches_field") or None,
            method=params.get("method") or "pca",
            brain_key=params.get("brain_key") or None,
            overwrite=bool(params.get("overwrite", False)),
        )

    def resolve_output(self, ctx) -> types.Property:
        outputs = types.Object()
        outputs.str("brain_key", label="Brain key")
        outputs.int("num_points", label="Points")
        outputs.str("method", label="Method")
        return types.Property(outputs)


def available_methods() -> list[str]:
    """Dimensionality reductions usable here: UMAP only with umap-learn installed."""
    return [m for m in VIZ_METHODS if m != "umap" or importlib.util.find_spec("umap") is not None]


def compute_embedding_visualization(
    collection,
    *,
    embeddings: str,
    slice_name: str | None = None,
    patches_field: str | None = None,
    method: str = "pca",
    brain_key: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Validate, then run ``fiftyone.brain.compute_visualization`` on stored embeddings.

    ``slice_name`` is required for grouped collections (a layout is per slice); the run is
    stored on the dataset under ``brain_key`` (default from :func:`default_brain_key`).
    """
    import fiftyone.brain as fob

    dataset = collection._dataset
    if collection.media_type == "group":
        slices = _embeddable_slices(dataset)
        if slice_name not in slices:
            raise ValueError(
                f"slice must be one of {slices} for a grouped dataset, got {slice_name!r}"
            )
        collection = collection.select_group_slices(slice_name)
    elif slice_name:
        raise ValueError(f"slice {slice_name!r} given, but the collection is not grouped")
    methods = available_methods()
    if method not in methods:
        raise ValueError(f"method must be one of {methods} here, got {method!r}")
    if patches_field is not None and patches_field not in detections_fields(dataset):
        raise ValueError(
            f"patches_field '{patches_field}' is not a Detections field of '{dataset.name}'"
        )
    candidates = _vector_fields(collection, patches_field)
    if embeddings not in candidates:
        where = f"on the detections of '{patches_field}'" if patches_field else "on the samples"
        raise ValueError(
            f"embeddings '{embeddings}' is not a vector field {where}; found {candidates}"
        )
    path = f"{patches_field}.detections.{embeddings}" if patches_field else embeddings
    count = collection.count(path)
    if count < 2:
        raise ValueError(f"'{path}' has {count} embeddings in this view; a layout needs at least 2")
    brain_key = brain_key or default_brain_key(slice_name, embeddings, patches_field, method)
    if not re.fullmatch(r"[A-Za-z_]\w*", brain_key):
        raise ValueError(
            "brain_key must be letters, digits and underscores, not starting with a digit; "
            f"got {brain_key!r}"
        )
    if brain_key in dataset.list_brain_runs():
        if not overwrite:
            raise ValueError(
                f"brain run '{brain_key}' exists; pass overwrite=True or another brain_key"
            )
        dataset.delete_brain_run(brain_key)

    results = fob.compute_visualization(
        collection,
        embeddings=embeddings,
        patches_field=patches_field,
        method=method,
        brain_key=brain_key,
        num_dims=2,
        progress=False,
    )
    return {
        "brain_key": brain_key,
        "num_points": int(len(results.points)),
        "method": method,
        "embeddings": path,
    }
