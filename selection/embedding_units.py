"""What an embedding run has to do, found and checked before anything is written.

A *unit* is one slice of a grouped collection (or a whole plain collection) with the work
left in it: the samples without an embedding, and for camera slices the objects without a
patch embedding. Every check that :func:`.embed.compute_embeddings` makes before writing
lives here: arguments, slices, field types, media files and the model recorded per field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

import fiftyone as fo
from fiftyone import ViewField as F

from ..core.views import slice_views
from .embeddings.patches import check_boxes

IMAGE, POINT_CLOUD = "image", "point-cloud"
#: Info / summary key of a plain (never grouped) dataset's samples; grouped ones use slice names.
UNGROUPED = "samples"


@dataclass
class EmbeddingUnit:
    """One slice (or a whole plain collection) and the work found for it."""

    key: str  # slice name, or UNGROUPED
    media_type: str
    view: fo.core.collections.SampleCollection
    ids: list = field(default_factory=list)
    paths: list = field(default_factory=list)
    groups: list = field(default_factory=list)
    skipped: int = 0
    model: str | None = None
    dim: int | None = None
    # patches: (sample id, filepath, label ids, boxes) per sample with work
    patch_samples: list = field(default_factory=list)
    patches_total: int = 0
    patch_dim: int | None = None

    @property
    def num_patches(self) -> int:
        """Objects to embed."""
        return sum(len(label_ids) for _, _, label_ids, _ in self.patch_samples)


def check_args(
    embeddings_field: str,
    patches_field: str | None,
    group_field: str | None,
    batch_size: int,
    progress,
) -> None:
    """Refuse field names that are not top-level names, a bad batch size or progress."""
    for name, value in (
        ("embeddings_field", embeddings_field),
        ("patches_field", patches_field),
        ("group_field", group_field),
    ):
        if value is not None and (
            not isinstance(value, str) or not value or "." in value or value.startswith("_")
        ):
            raise ValueError(
                f"{name} must be a top-level field name (no '.', no leading '_'), got {value!r}"
            )
    if group_field is not None and group_field == embeddings_field:
        raise ValueError(f"group_field and embeddings_field must differ, both are '{group_field}'")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be callable or None, got {type(progress).__name__}")


def select_units(collection, slices, grouped: bool) -> list[EmbeddingUnit]:
    """One unit per chosen image / point-cloud slice (one for a plain collection)."""
    dataset = collection._dataset
    media_types = dataset.group_media_types or {}
    if not grouped:
        if slices:
            raise ValueError(
                f"slices {list(slices)} given, but the collection is not grouped "
                f"(media type '{collection.media_type}')"
            )
        if dataset.media_type == "group":
            return _flattened_units(collection, media_types)
        if collection.media_type not in (IMAGE, POINT_CLOUD):
            raise ValueError(
                f"cannot embed media type '{collection.media_type}': "
                "only image and point-cloud samples"
            )
        return [EmbeddingUnit(UNGROUPED, collection.media_type, collection)]
    present = list(collection.group_slices)
    if slices is None or len(slices) == 0:
        chosen = [s for s in present if media_types.get(s) in (IMAGE, POINT_CLOUD)]
    else:
        if isinstance(slices, str):
            slices = [slices]
        unknown = [s for s in slices if s not in present]
        if unknown:
            raise ValueError(f"unknown slice(s) {unknown}; the collection has {present}")
        _check_supported(slices, media_types)
        chosen = list(dict.fromkeys(slices))
    if not chosen:
        raise ValueError(f"the collection has no image or point-cloud slices: {media_types}")
    views = slice_views(collection, chosen)
    return [EmbeddingUnit(s, media_types[s], views[s]) for s in chosen]


def _flattened_units(collection, media_types: dict) -> list[EmbeddingUnit]:
    """Units of a flattened view of a grouped dataset (``select_group_slices``): one per slice
    it spans, so models are recorded and checked per slice as for the grouped dataset."""
    views = slice_views(collection)
    if not views:
        raise ValueError("the collection has no samples; nothing to embed")
    _check_supported(sorted(views), media_types)
    return [EmbeddingUnit(s, media_types[s], view) for s, view in views.items()]


def _check_supported(slices, media_types: dict) -> None:
    unsupported = [s for s in slices if media_types.get(s) not in (IMAGE, POINT_CLOUD)]
    if unsupported:
        raise ValueError(
            f"slice(s) {unsupported} hold {[media_types.get(s) for s in unsupported]} media; "
            "only image and point-cloud slices can be embedded"
        )


def check_vector_field(dataset: fo.Dataset, path: str, what: str) -> None:
    """Refuse a field ``path`` that exists with another type than ``VectorField``."""
    existing = dataset.get_field(path)
    if existing is not None and not isinstance(existing, fo.VectorField):
        raise ValueError(
            f"{what} '{path}' already exists as a {type(existing).__name__}; "
            "it must be a VectorField or not exist"
        )


def check_detections_field(dataset: fo.Dataset, name: str) -> None:
    """Refuse a ``patches_field`` that is missing or not a ``Detections`` field."""
    existing = dataset.get_field(name)
    if existing is None:
        raise ValueError(f"patches_field '{name}' does not exist on dataset '{dataset.name}'")
    if not (
        isinstance(existing, fo.EmbeddedDocumentField)
        and issubclass(existing.document_type, fo.Detections)
    ):
        raise ValueError(
            f"patches_field '{name}' is a {type(existing).__name__} of "
            f"{getattr(existing, 'document_type', None)}, not Detections"
        )


def find_work(
    unit: EmbeddingUnit,
    dataset: fo.Dataset,
    field_name: str,
    patches_field: str | None,
    grouped: bool,
    overwrite: bool,
) -> None:
    """Read, in bulk, the ids / paths (/ boxes) of what this unit still needs."""
    view = unit.view
    declared = dataset.get_field(field_name) is not None
    todo = view if overwrite or not declared else view.exists(field_name, False)
    fields = ["id", "filepath"] + ([f"{dataset.group_field}.id"] if grouped else [])
    values = todo.values(fields)
    unit.ids, unit.paths = values[0], values[1]
    unit.groups = values[2] if grouped else []
    unit.skipped = len(view) - len(unit.ids)
    if patches_field is None or unit.media_type != IMAGE:
        return
    attribute_declared = dataset.get_field(f"{patches_field}.detections.{field_name}") is not None
    unit.patches_total = view.count(f"{patches_field}.detections")
    patch_view = (
        view.exists(patches_field)
        if overwrite or not attribute_declared
        else view.filter_labels(patches_field, ~F(field_name).exists(), only_matches=True)
    )
    sample_ids, paths, label_ids, boxes = patch_view.values(
        [
            "id",
            "filepath",
            f"{patches_field}.detections.id",
            f"{patches_field}.detections.bounding_box",
        ]
    )
    work = [
        (s, p, lids, bxs) for s, p, lids, bxs in zip(sample_ids, paths, label_ids, boxes) if lids
    ]
    flat = [
        b if b is not None and len(b) == 4 else [np.nan] * 4 for _, _, _, bxs in work for b in bxs
    ]
    try:
        check_boxes(flat)
    except ValueError as error:
        raise ValueError(f"'{patches_field}' on {unit.key}: {error}") from None
    unit.patch_samples = work


def check_media(units: list[EmbeddingUnit]) -> None:
    """Refuse to start when a media file to embed is missing (counts them, names one)."""
    for unit in units:
        paths = set(unit.paths) | {s[1] for s in unit.patch_samples}
        missing = sorted(p for p in paths if not os.path.isfile(p))
        if missing:
            raise ValueError(
                f"{len(missing)} of {len(paths)} media files to embed on {unit.key} "
                f"do not exist, e.g. {missing[0]}"
            )


def check_recorded_model(
    dataset: fo.Dataset, records: dict, path: str, unit: EmbeddingUnit, overwrite: bool
) -> None:
    """Refuse to fill a field with a second model's embeddings unless overwriting."""
    recorded = records.get(path, {}).get(unit.key, {}).get("model")
    if (
        recorded
        and recorded != unit.model
        and not overwrite
        and dataset.get_field(path) is not None
    ):
        raise ValueError(
            f"'{path}' on {unit.key} holds embeddings from {recorded}, not {unit.model}; "
            "pass overwrite=True to replace them or choose another embeddings_field"
        )
