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
computed, so an interrupted (even killed) run keeps its finished chunks and a plain re-run,
without ``overwrite``, embeds only the rest; a vector is written whole or not at all (one
document update). Which model produced each slice's embeddings is recorded in
``dataset.info["annoloop_embeddings"]``, before the field's first chunk is written; filling
a field from a different model than the one recorded needs ``overwrite=True``, so one field
never silently mixes two models, not even after a kill.

Everything is validated before anything is written: unknown or unsupported slices, fields of
the wrong type, missing media files, malformed boxes and empty collections raise a
``ValueError`` naming the problem and how many samples it affects.

Just over ~400 lines: the public ``compute_embeddings`` (half documentation) and its write
phase; what to embed is found and checked in ``embedding_units.py``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

import fiftyone as fo

from ..core.locks import dataset_lock
from ..core.runs import Progress
from .embedding_units import (
    IMAGE,
    EmbeddingUnit,
    check_args,
    check_detections_field,
    check_media,
    check_recorded_model,
    check_vector_field,
    find_work,
    select_units,
)
from .embeddings.models import ImageEmbedder, load_image_model, read_rgb
from .embeddings.patches import crop_patches
from .embeddings.pointcloud import (
    POINTCLOUD_DESCRIPTOR_NAME,
    PointCloudDescriptorConfig,
    pointcloud_descriptor,
    read_point_cloud,
)
from .scene_embeddings import embed_scenes

INFO_KEY = "annoloop_embeddings"
DEFAULT_EMBEDDINGS_FIELD = "embedding"
DEFAULT_GROUP_FIELD = "group_embedding"
#: Crop size and context margin of object patches (see :mod:`.embeddings.patches`).
PATCH_SIZE, PATCH_MARGIN = 96, 0.1
_WRITE_CHUNK = 1024  # samples or objects per bulk write


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
    dry_run: bool = False,
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
    dry_run : bool, default=False
        Check everything and count the work (``computed`` is then what a run would compute;
        the model is loaded), but write nothing.

    Returns
    -------
    dict
        JSON-ready summary: per slice ``computed`` / ``skipped`` / ``dim`` / ``model``, the
        patch and scene counts, the seconds taken and ``dry_run``.

    Raises
    ------
    ValueError
        On bad arguments or data (see the module docstring); nothing is written then.
    FileNotFoundError
        When the model's weights are not on disk.
    """
    started = time.perf_counter()
    embeddings_field = embeddings_field or DEFAULT_EMBEDDINGS_FIELD
    check_args(embeddings_field, patches_field, group_field, batch_size, progress)
    grouped = collection.media_type == "group"
    run = _Run(
        collection=collection,
        embeddings_field=embeddings_field,
        patches_field=patches_field,
        patch_path=f"{patches_field}.detections.{embeddings_field}" if patches_field else None,
        group_field=group_field if grouped else None,
        batch_size=batch_size,
        overwrite=overwrite,
        pointcloud_config=pointcloud_config or PointCloudDescriptorConfig(),
    )
    units = _plan(run, slices)
    embedder = _load_and_check_models(run, units, model, allow_download, device)
    # Validation is over: from here on, write.
    groups_summary = None if dry_run else _write(run, units, embedder, progress)
    return {
        **_summary(run, units, embedder, groups_summary),
        "seconds": round(time.perf_counter() - started, 3),
        "dry_run": bool(dry_run),
    }


@dataclass(frozen=True)
class _Run:
    """The settings of one :func:`compute_embeddings` call, validated."""

    collection: fo.core.collections.SampleCollection
    embeddings_field: str
    patches_field: str | None
    patch_path: str | None  # where patch embeddings go: <patches_field>.detections.<field>
    group_field: str | None  # None for a plain collection or when scenes are skipped
    batch_size: int
    overwrite: bool
    pointcloud_config: PointCloudDescriptorConfig

    @property
    def dataset(self) -> fo.Dataset:
        return self.collection._dataset


def _plan(run: _Run, slices: Sequence[str] | None) -> list[EmbeddingUnit]:
    """The units to embed with the work left in each; raises before anything is written."""
    dataset, grouped = run.dataset, run.collection.media_type == "group"
    units = select_units(run.collection, slices, grouped)
    if run.patches_field is not None and not any(u.media_type == IMAGE for u in units):
        raise ValueError(
            f"patches_field '{run.patches_field}' needs a camera slice, but the selected slices "
            f"are {[u.key for u in units]}"
        )
    check_vector_field(dataset, run.embeddings_field, "embeddings_field")
    if run.group_field:
        check_vector_field(dataset, run.group_field, "group_field")
    if run.patches_field is not None:
        check_detections_field(dataset, run.patches_field)
        check_vector_field(dataset, run.patch_path, "patch embeddings attribute")
    for unit in units:
        find_work(unit, dataset, run.embeddings_field, run.patches_field, grouped, run.overwrite)
    if sum(len(u.view) for u in units) == 0:
        raise ValueError(
            f"the collection has no samples in {[u.key for u in units]}; nothing to embed"
        )
    check_media(units)
    return units


def _load_and_check_models(
    run: _Run, units: list[EmbeddingUnit], model, allow_download: bool, device: str | None
) -> ImageEmbedder | None:
    """Load the image model (when a camera slice is embedded) and refuse to mix models."""
    embedder = None
    if any(u.media_type == IMAGE for u in units):
        embedder = (
            model
            if isinstance(model, ImageEmbedder)
            else load_image_model(model, allow_download=allow_download, device=device)
        )
    records = run.dataset.info.get(INFO_KEY, {})
    for unit in units:
        unit.model = embedder.name if unit.media_type == IMAGE else POINTCLOUD_DESCRIPTOR_NAME
        check_recorded_model(run.dataset, records, run.embeddings_field, unit, run.overwrite)
        if run.patch_path is not None and unit.media_type == IMAGE:
            check_recorded_model(run.dataset, records, run.patch_path, unit, run.overwrite)
    return embedder


def _write(
    run: _Run, units: list[EmbeddingUnit], embedder: ImageEmbedder | None, progress
) -> dict | None:
    """Embed and write every unit's work, then the scene embeddings; their summary or None."""
    dataset, field_name = run.dataset, run.embeddings_field
    report = _Reporter(progress, sum(len(u.ids) + u.num_patches for u in units))
    _declare_vector_field(dataset, field_name)
    if run.patch_path is not None:
        _declare_vector_field(dataset, run.patch_path)
    touched_groups: set[str] = set()
    for unit in units:
        writer = _writer(run, unit, field_name)
        if unit.media_type == IMAGE:
            _embed_images(unit, embedder, writer, run.batch_size, report)
        else:
            _embed_point_clouds(unit, writer, run.pointcloud_config, report)
        unit.dim = writer.dim
        touched_groups.update(unit.groups)
        if run.patch_path is not None and unit.media_type == IMAGE:
            writer = _writer(run, unit, run.patch_path)
            _embed_patches(unit, embedder, writer, run.batch_size, report)
            unit.patch_dim = writer.dim
    groups_summary = None
    if run.group_field:
        _declare_vector_field(dataset, run.group_field)
        recorded = dataset.info.get(INFO_KEY, {}).get(field_name, {})
        groups_summary = embed_scenes(
            run.collection, field_name, run.group_field, touched_groups, run.overwrite,
            {s: entry.get("dim") for s, entry in recorded.items()},
            lambda label: report.advance(0, label),
        )
    report.done("Embeddings computed")
    return groups_summary


def _summary(
    run: _Run, units: list[EmbeddingUnit], embedder: ImageEmbedder | None, groups: dict | None
) -> dict:
    records = run.dataset.info.get(INFO_KEY, {})
    field_name, patch_path = run.embeddings_field, run.patch_path
    camera_units = [u for u in units if u.media_type == IMAGE]
    return {
        "embeddings_field": field_name,
        "model": embedder.name if embedder else None,
        "slices": {
            u.key: {
                "media_type": u.media_type,
                "model": u.model,
                "computed": len(u.ids),
                "skipped": u.skipped,
                "dim": records.get(field_name, {}).get(u.key, {}).get("dim"),
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
        "group_field": run.group_field,
        **(groups or {"group_slices": None, "groups_written": 0, "groups_incomplete": 0}),
    }


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
    """Collects id -> vector pairs and writes them with one bulk call per chunk.

    ``record(dim)`` runs once, just before the first write: a field never holds vectors whose
    model is not recorded, even when the run is killed right after a write.
    """

    def __init__(self, view, path: str, labels: bool, record: Callable[[int], None]) -> None:
        self.view, self.path, self.labels, self.record = view, path, labels, record
        self.pending: list = []
        self.dim: int | None = None
        self.recorded = False

    def add(self, keys: Sequence, vectors: np.ndarray) -> None:
        self.dim = int(vectors.shape[1])
        self.pending.extend(zip(keys, vectors))
        if len(self.pending) >= _WRITE_CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        if not self.recorded:
            self.record(self.dim)
            self.recorded = True
        if self.labels:
            values = [{"sample_id": s, "label_id": lid, "value": v} for (s, lid), v in self.pending]
            self.view.set_label_values(self.path, values)
        else:
            self.view.set_values(self.path, dict(self.pending), key_field="id")
        self.pending = []


def _writer(run: _Run, unit: EmbeddingUnit, path: str) -> _ChunkWriter:
    """The chunk writer of ``unit``'s vectors at ``path`` (a sample field or patch attribute)."""
    patches = path == run.patch_path
    config = None if patches else run.pointcloud_config

    def record(dim: int) -> None:
        _record(run.dataset, path, unit.key, unit.model, dim, config, run.overwrite)

    return _ChunkWriter(unit.view, path, labels=patches, record=record)


def _embed_images(
    unit: EmbeddingUnit, embedder: ImageEmbedder, writer: _ChunkWriter, batch_size: int,
    report: _Reporter,
) -> None:
    for start in range(0, len(unit.ids), batch_size):
        paths = unit.paths[start : start + batch_size]
        writer.add(
            unit.ids[start : start + batch_size], embedder.embed([read_rgb(p) for p in paths])
        )
        report.advance(len(paths), f"{unit.key}: {start + len(paths)}/{len(unit.ids)} images")
    writer.flush()


def _embed_point_clouds(
    unit: EmbeddingUnit, writer: _ChunkWriter, config: PointCloudDescriptorConfig,
    report: _Reporter,
) -> None:
    for i, (sample_id, path) in enumerate(zip(unit.ids, unit.paths)):
        writer.add([sample_id], pointcloud_descriptor(read_point_cloud(path), config)[None])
        report.advance(1, f"{unit.key}: {i + 1}/{len(unit.ids)} point clouds")
    writer.flush()


def _embed_patches(
    unit: EmbeddingUnit, embedder: ImageEmbedder, writer: _ChunkWriter, batch_size: int,
    report: _Reporter,
) -> None:
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


def _declare_vector_field(dataset, path: str) -> None:
    with dataset_lock(dataset, "compute_embeddings"):
        dataset.reload()
        if dataset.get_field(path) is None:
            dataset.add_sample_field(path, fo.VectorField)


def _record(dataset, path: str, key: str, model: str, dim: int, config, overwrite: bool) -> None:
    """Remember which model fills ``path`` on ``key``, and the dimension.

    Under the dataset's lock, on a freshly read ``info``: a second run writing another field
    at the same time keeps its record, and one that recorded a different model for this very
    field since this run checked wins — this run stops before writing a vector.
    """
    with dataset_lock(dataset, "compute_embeddings"):
        dataset.reload()
        info = dataset.info
        recorded = info.get(INFO_KEY, {}).get(path, {}).get(key)
        if recorded and recorded["model"] != model and not overwrite:
            raise ValueError(
                f"another compute_embeddings filled '{path}' on {key} with {recorded['model']!r} "
                f"while this run ({model!r}) was computing; nothing of this run was written "
                "there — choose another embeddings_field or pass overwrite=True"
            )
        entry = {"model": model, "dim": dim}
        if config is not None and model == POINTCLOUD_DESCRIPTOR_NAME:
            entry["config"] = dataclasses.asdict(config)
        info.setdefault(INFO_KEY, {}).setdefault(path, {})[key] = entry
        dataset.info = info
        dataset.save()


