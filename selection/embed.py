"""FiftyOne glue: embed camera images, point clouds and objects, and build scene embeddings.

:func:`compute_embeddings` fills, for a (grouped or plain) collection:

* ``embeddings_field`` (default ``"embedding"``, a ``VectorField``) on every sample of the
  chosen slices: camera (image) slices through an image model (:mod:`.embeddings.models`,
  default the weight-free ``baseline-colour-gradient``), point-cloud slices through the
  ``fpfh-geometry`` descriptor (:mod:`.embeddings.pointcloud`). One field holds both; its
  length differs between slices, never within one.
* with ``patches_field`` (a ``Detections`` field): the same attribute name **on each
  detection** of the camera slices (``<patches_field>.detections.<embeddings_field>``), from
  a crop of the object with some context. That is where FiftyOne itself keeps patch
  embeddings, so ``fob.compute_visualization(view, patches_field=..., embeddings=<name>)``
  and similarity indexes read them directly. Point-cloud (3D cuboid) labels are not embedded.
* for grouped collections, ``group_field`` (default ``"group_embedding"``) on **every sample
  of each scene**: the scene is the unit of selection, and storing the scene vector on each
  slice's sample means any slice view (the App's active slice, a planner's view) has it
  without joins. It is the concatenation, in ``dataset.group_slices`` order, of the
  scene's per-slice embeddings over *all* the dataset's image and point-cloud slices, each
  unit-norm, divided by sqrt(number of slices): unit norm, every slice weighted equally
  whatever its dimension. A scene that lacks a slice's sample altogether gets zeros for that
  block; a scene whose samples are not all embedded yet gets no scene embedding (counted
  as ``groups_incomplete``) until they are.

Runs are resumable and cheap to repeat: samples (and objects) that already have an embedding
are skipped unless ``overwrite=True``; embeddings are written in bulk chunks as they are
computed, so an interrupted run keeps its finished chunks. Which model produced each slice's
embeddings is recorded in ``dataset.info["annoloop_embeddings"]``; filling a field from a
different model than the one recorded needs ``overwrite=True``, so one field never silently
mixes two models.

Everything is validated before anything is written: unknown or unsupported slices, fields of
the wrong type, missing media files, malformed boxes and empty collections raise a
``ValueError`` naming the problem and how many samples it affects.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

import fiftyone as fo
from fiftyone import ViewField as F

from ..core.runs import Progress
from ..core.views import slice_views
from .algorithms.image_features import l2_normalize
from .embeddings.models import ImageEmbedder, load_image_model, read_rgb
from .embeddings.patches import check_boxes, crop_patches
from .embeddings.pointcloud import (
    POINTCLOUD_DESCRIPTOR_NAME,
    PointCloudDescriptorConfig,
    pointcloud_descriptor,
    read_point_cloud,
)

INFO_KEY = "annoloop_embeddings"
DEFAULT_EMBEDDINGS_FIELD = "embedding"
DEFAULT_GROUP_FIELD = "group_embedding"
IMAGE, POINT_CLOUD = "image", "point-cloud"
#: Crop size and context margin of object patches (see :mod:`.embeddings.patches`).
PATCH_SIZE, PATCH_MARGIN = 96, 0.1
#: Info / summary key of a plain (never grouped) dataset's samples; grouped ones use slice names.
UNGROUPED = "samples"
_WRITE_CHUNK = 1024  # samples or objects per bulk write
_GROUP_CHUNK = 10_000  # scenes per read-compose-write round


@dataclass
class _Unit:
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


def compute_embeddings(
    collection: fo.core.collections.SampleCollection,
    *,
    slices: Sequence[str] | None = None,
    model: str | ImageEmbedder = "baseline",
    embeddings_field: str | None = None,
    patches_field: str | None = None,
    group_field: str | None = DEFAULT_GROUP_FIELD,
    batch_size: int = 32,
    overwrite: bool = False,
    allow_download: bool = False,
    device: str | None = None,
    pointcloud_config: PointCloudDescriptorConfig | None = None,
    progress: Progress | None = None,
) -> dict:
    """Embed a collection's samples, objects and scenes, and store them on it.

    Parameters
    ----------
    collection : Dataset or DatasetView
        Grouped (camera + point-cloud slices) or plain (image or point-cloud media). Only
        its samples are embedded; scene embeddings are built for its groups.
    slices : sequence of str, optional
        Grouped collections only: the slices to embed; default all image and point-cloud
        slices.
    model : str or ImageEmbedder, default="baseline"
        Image model for camera slices and patches; a spec for
        :func:`~.embeddings.models.load_image_model` (``"baseline"``, ``"efficientnet_lite0"``,
        ``"hf:<id or dir>"``, ``"ultralytics:<path>"``, ``"zoo:<name>"``) or an embedder.
    embeddings_field : str, optional
        Sample field, and detection attribute for patches; default ``"embedding"``.
    patches_field : str, optional
        A ``Detections`` field whose objects on camera slices get patch embeddings.
    group_field : str or None, default="group_embedding"
        Scene-embedding field for grouped collections; None skips scene embeddings.
    batch_size : int, default=32
        Images (or patches) per model call.
    overwrite : bool, default=False
        Recompute embeddings that exist (and allow a different model than the recorded one).
    allow_download : bool, default=False
        Let a Hugging Face model be downloaded if it is not on disk.
    device : str, optional
        Torch device for learned models; default CUDA when available.
    pointcloud_config : PointCloudDescriptorConfig, optional
        Parameters of the 3D descriptor (defaults suit driving LiDAR in metres).
    progress : callable, optional
        Called as ``progress(fraction, label)`` as work completes.

    Returns
    -------
    dict
        JSON-ready summary: per slice ``computed`` / ``skipped`` / ``dim`` / ``model``, the
        patch and scene counts, and the seconds taken.

    Raises
    ------
    ValueError
        On bad arguments or data (see the module docstring); nothing is written then.
    FileNotFoundError
        When the model's weights are not on disk.
    """
    started = time.perf_counter()
    embeddings_field = embeddings_field or DEFAULT_EMBEDDINGS_FIELD
    _check_args(embeddings_field, patches_field, group_field, batch_size, progress)
    dataset = collection._dataset
    grouped = collection.media_type == "group"
    group_field = group_field if grouped else None
    pointcloud_config = pointcloud_config or PointCloudDescriptorConfig()

    units = _select_units(collection, slices, grouped)
    camera_units = [u for u in units if u.media_type == IMAGE]
    if patches_field is not None and not camera_units:
        raise ValueError(
            f"patches_field '{patches_field}' needs a camera slice, but the selected slices "
            f"are {[u.key for u in units]}"
        )
    _check_vector_field(dataset, embeddings_field, "embeddings_field")
    if group_field:
        _check_vector_field(dataset, group_field, "group_field")
    patch_path = None
    if patches_field is not None:
        _check_detections_field(dataset, patches_field)
        patch_path = f"{patches_field}.detections.{embeddings_field}"
        _check_vector_field(dataset, patch_path, "patch embeddings attribute")

    for unit in units:
        _find_work(unit, dataset, embeddings_field, patches_field, grouped, overwrite)
    if sum(len(u.view) for u in units) == 0:
        raise ValueError(
            f"the collection has no samples in {[u.key for u in units]}; nothing to embed"
        )
    _check_media(units)

    embedder = None
    if camera_units:
        embedder = (
            model
            if isinstance(model, ImageEmbedder)
            else load_image_model(model, allow_download=allow_download, device=device)
        )
    records = dataset.info.get(INFO_KEY, {})
    for unit in units:
        unit.model = embedder.name if unit.media_type == IMAGE else POINTCLOUD_DESCRIPTOR_NAME
        _check_recorded_model(dataset, records, embeddings_field, unit, overwrite)
        if patch_path is not None and unit.media_type == IMAGE:
            _check_recorded_model(dataset, records, patch_path, unit, overwrite)

    # Validation is over: from here on, write.
    report = _Reporter(progress, sum(len(u.ids) + u.num_patches for u in units))
    _declare_vector_field(dataset, embeddings_field)
    if patch_path is not None:
        _declare_vector_field(dataset, patch_path)
    touched_groups: set[str] = set()
    for unit in units:
        if unit.media_type == IMAGE:
            _embed_images(unit, embedder, embeddings_field, batch_size, report)
        else:
            _embed_point_clouds(unit, embeddings_field, pointcloud_config, report)
        _record(
            dataset, embeddings_field, unit.key, unit.model, unit.dim, unit.ids, pointcloud_config
        )
        touched_groups.update(unit.groups)
        if patch_path is not None and unit.media_type == IMAGE:
            _embed_patches(unit, embedder, patch_path, batch_size, report)
            _record(
                dataset, patch_path, unit.key, unit.model, unit.patch_dim, unit.patch_samples, None
            )

    groups_summary = None
    if group_field:
        groups_summary = _embed_groups(
            collection, embeddings_field, group_field, touched_groups, overwrite, report
        )
    report.done("Embeddings computed")

    records = dataset.info.get(INFO_KEY, {})
    return {
        "embeddings_field": embeddings_field,
        "model": embedder.name if embedder else None,
        "slices": {
            u.key: {
                "media_type": u.media_type,
                "model": u.model,
                "computed": len(u.ids),
                "skipped": u.skipped,
                "dim": records.get(embeddings_field, {}).get(u.key, {}).get("dim"),
            }
            for u in units
        },
        "patches": (
            None
            if patch_path is None
            else {
                "field": patch_path,
                "computed": sum(u.num_patches for u in camera_units),
                "skipped": sum(u.patches_total - u.num_patches for u in camera_units),
                "dim": {
                    u.key: records.get(patch_path, {}).get(u.key, {}).get("dim")
                    for u in camera_units
                },
            }
        ),
        "group_field": group_field,
        **(groups_summary or {"group_slices": None, "groups_written": 0, "groups_incomplete": 0}),
        "seconds": round(time.perf_counter() - started, 3),
    }


# --- validation ---------------------------------------------------------------------------


def _check_args(embeddings_field, patches_field, group_field, batch_size, progress) -> None:
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


def _select_units(collection, slices, grouped: bool) -> list[_Unit]:
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
        return [_Unit(UNGROUPED, collection.media_type, collection)]
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
    return [_Unit(s, media_types[s], views[s]) for s in chosen]


def _flattened_units(collection, media_types: dict) -> list[_Unit]:
    """Units of a flattened view of a grouped dataset (``select_group_slices``): one per slice
    it spans, so models are recorded and checked per slice as for the grouped dataset."""
    name_path = f"{collection._dataset.group_field}.name"
    present = set(collection.distinct(name_path))
    if not present:
        raise ValueError("the collection has no samples; nothing to embed")
    _check_supported(sorted(present), media_types)
    ordered = [s for s in media_types if s in present]
    return [_Unit(s, media_types[s], collection.match(F(name_path) == s)) for s in ordered]


def _check_supported(slices, media_types: dict) -> None:
    unsupported = [s for s in slices if media_types.get(s) not in (IMAGE, POINT_CLOUD)]
    if unsupported:
        raise ValueError(
            f"slice(s) {unsupported} hold {[media_types.get(s) for s in unsupported]} media; "
            "only image and point-cloud slices can be embedded"
        )


def _check_vector_field(dataset, path: str, what: str) -> None:
    existing = dataset.get_field(path)
    if existing is not None and not isinstance(existing, fo.VectorField):
        raise ValueError(
            f"{what} '{path}' already exists as a {type(existing).__name__}; "
            "it must be a VectorField or not exist"
        )


def _check_detections_field(dataset, name: str) -> None:
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


def _find_work(unit: _Unit, dataset, field_name, patches_field, grouped, overwrite) -> None:
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


def _check_media(units: list[_Unit]) -> None:
    for unit in units:
        paths = set(unit.paths) | {s[1] for s in unit.patch_samples}
        missing = sorted(p for p in paths if not os.path.isfile(p))
        if missing:
            raise ValueError(
                f"{len(missing)} of {len(paths)} media files to embed on {unit.key} "
                f"do not exist, e.g. {missing[0]}"
            )


def _check_recorded_model(dataset, records: dict, path: str, unit: _Unit, overwrite: bool) -> None:
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


# --- computing and writing ----------------------------------------------------------------


class _Reporter:
    """Turns items done into ``progress(fraction, label)`` calls."""

    def __init__(self, callback: Progress | None, total: int) -> None:
        self.callback, self.total, self.count = callback, max(total, 1), 0

    def advance(self, n: int, label: str) -> None:
        self.count += n
        if self.callback is not None:
            self.callback(min(0.99, self.count / self.total), label)

    def done(self, label: str) -> None:
        if self.callback is not None:
            self.callback(1.0, label)


class _ChunkWriter:
    """Collects id -> vector pairs and writes them with one bulk call per chunk."""

    def __init__(self, view, path: str, labels: bool) -> None:
        self.view, self.path, self.labels = view, path, labels
        self.pending: list = []
        self.dim: int | None = None

    def add(self, keys: Sequence, vectors: np.ndarray) -> None:
        self.dim = int(vectors.shape[1])
        self.pending.extend(zip(keys, vectors))
        if len(self.pending) >= _WRITE_CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        if self.labels:
            values = [{"sample_id": s, "label_id": lid, "value": v} for (s, lid), v in self.pending]
            self.view.set_label_values(self.path, values)
        else:
            self.view.set_values(self.path, dict(self.pending), key_field="id")
        self.pending = []


def _embed_images(
    unit: _Unit, embedder: ImageEmbedder, field_name: str, batch_size: int, report: _Reporter
) -> None:
    writer = _ChunkWriter(unit.view, field_name, labels=False)
    for start in range(0, len(unit.ids), batch_size):
        paths = unit.paths[start : start + batch_size]
        writer.add(
            unit.ids[start : start + batch_size], embedder.embed([read_rgb(p) for p in paths])
        )
        report.advance(len(paths), f"{unit.key}: {start + len(paths)}/{len(unit.ids)} images")
    writer.flush()
    unit.dim = writer.dim


def _embed_point_clouds(
    unit: _Unit, field_name: str, config: PointCloudDescriptorConfig, report: _Reporter
) -> None:
    writer = _ChunkWriter(unit.view, field_name, labels=False)
    for i, (sample_id, path) in enumerate(zip(unit.ids, unit.paths)):
        writer.add([sample_id], pointcloud_descriptor(read_point_cloud(path), config)[None])
        report.advance(1, f"{unit.key}: {i + 1}/{len(unit.ids)} point clouds")
    writer.flush()
    unit.dim = writer.dim


def _embed_patches(
    unit: _Unit, embedder: ImageEmbedder, path: str, batch_size: int, report: _Reporter
) -> None:
    writer = _ChunkWriter(unit.view, path, labels=True)
    crops: list[np.ndarray] = []
    keys: list[tuple[str, str]] = []
    total, done = unit.num_patches, 0

    def run(n: int) -> None:
        nonlocal crops, keys, done
        writer.add(keys[:n], embedder.embed(crops[:n]))
        crops, keys, done = crops[n:], keys[n:], done + n
        report.advance(n, f"{unit.key}: {done}/{total} objects")

    for sample_id, filepath, label_ids, boxes in unit.patch_samples:
        crops.extend(crop_patches(read_rgb(filepath), boxes, margin=PATCH_MARGIN, size=PATCH_SIZE))
        keys.extend((sample_id, label_id) for label_id in label_ids)
        while len(crops) >= batch_size:
            run(batch_size)
    if crops:
        run(len(crops))
    writer.flush()
    unit.patch_dim = writer.dim


def _declare_vector_field(dataset, path: str) -> None:
    if dataset.get_field(path) is None:
        dataset.add_sample_field(path, fo.VectorField)


def _record(dataset, path: str, key: str, model: str, dim: int | None, work: list, config) -> None:
    """Remember which model filled ``path`` on ``key`` (only when something was written)."""
    if not work:
        return
    info = dataset.info
    entry = {"model": model, "dim": dim}
    if config is not None and model == POINTCLOUD_DESCRIPTOR_NAME:
        entry["config"] = dataclasses.asdict(config)
    info.setdefault(INFO_KEY, {}).setdefault(path, {})[key] = entry
    dataset.info = info
    dataset.save()


def _embed_groups(
    collection, field_name: str, group_field: str, touched: set, overwrite: bool, report: _Reporter
) -> dict:
    """Compose and write scene embeddings for the groups that need them."""
    dataset = collection._dataset
    media_types = dataset.group_media_types
    composition = [s for s in dataset.group_slices if media_types[s] in (IMAGE, POINT_CLOUD)]
    group_id = f"{dataset.group_field}.id"
    needed = set(touched)
    for s in composition:
        view = collection.select_group_slices(s)
        if not overwrite and dataset.get_field(group_field) is not None:
            view = view.exists(group_field, False)
        needed.update(view.values(group_id))
    dims = {
        s: dataset.info.get(INFO_KEY, {}).get(field_name, {}).get(s, {}).get("dim")
        for s in composition
    }
    _declare_vector_field(dataset, group_field)

    needed = sorted(needed)
    written = incomplete = 0
    scale = 1.0 / math.sqrt(len(composition))
    for start in range(0, len(needed), _GROUP_CHUNK):
        chunk = needed[start : start + _GROUP_CHUNK]
        scenes = dataset.select_groups(chunk)
        members: dict[str, dict[str, tuple]] = {
            g: {} for g in chunk
        }  # group -> slice -> (id, vector)
        for s in composition:
            for sample_id, gid, vector in zip(
                *scenes.select_group_slices(s).values(["id", group_id, field_name])
            ):
                members[gid][s] = (sample_id, vector)
        values: dict[str, dict] = {s: {} for s in composition}
        for gid, by_slice in members.items():
            blocks = []
            for s in composition:
                if s not in by_slice:  # the scene has no sample on this slice
                    blocks.append(np.zeros(dims[s], np.float32) if dims[s] else None)
                else:
                    vector = by_slice[s][1]
                    ok = vector is not None and (dims[s] is None or len(vector) == dims[s])
                    blocks.append(l2_normalize(vector) if ok else None)
            if any(b is None for b in blocks):
                incomplete += 1
                continue
            scene_vector = np.concatenate(blocks).astype(np.float32) * scale
            for s, (sample_id, _) in by_slice.items():
                values[s][sample_id] = scene_vector
            written += 1
        for s in composition:
            if values[s]:
                dataset.select_group_slices(s).set_values(group_field, values[s], key_field="id")
        report.advance(0, f"scenes: {min(start + len(chunk), len(needed))}/{len(needed)}")
    return {"group_slices": composition, "groups_written": written, "groups_incomplete": incomplete}
