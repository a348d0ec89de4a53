"""2D layouts of stored embeddings for the App's Embeddings panel (FiftyOne Brain).

:func:`compute_embedding_visualization` validates a slice, a vector field (of the samples or
of a Detections field's objects) and a brain key, then runs
``fiftyone.brain.compute_visualization`` so the panel can plot the points and colour them by
any field, e.g. ``zcore``. :func:`vector_fields` and :func:`embeddable_slices` say what there
is to lay out.
"""

from __future__ import annotations

import importlib.util
import re

import fiftyone as fo
import numpy as np

from ..core.locks import dataset_lock
from .embed import DEFAULT_EMBEDDINGS_FIELD
from .embedding_units import IMAGE, POINT_CLOUD

__all__ = [
    "VIZ_METHODS",
    "available_methods",
    "compute_embedding_visualization",
    "default_brain_key",
    "default_embeddings",
    "default_slice",
    "embeddable_slices",
    "vector_fields",
]

VIZ_METHODS = ("pca", "tsne", "umap")


def available_methods() -> list[str]:
    """Dimensionality reductions usable here: UMAP only with umap-learn installed."""
    return [m for m in VIZ_METHODS if m != "umap" or importlib.util.find_spec("umap") is not None]


def embeddable_slices(dataset: fo.Dataset) -> list[str]:
    """The image and point-cloud slices of a grouped dataset (empty for a flat one)."""
    if dataset.media_type != "group":
        return []
    media_types = dataset.group_media_types
    return [s for s in dataset.group_slices if media_types[s] in (IMAGE, POINT_CLOUD)]


def default_slice(dataset: fo.Dataset, *preferred: str | None) -> str | None:
    """The slice laid out when none is named: the first of ``preferred`` (e.g. the App's
    current slice) that can be laid out, else the first such slice; None for a flat dataset."""
    slices = embeddable_slices(dataset)
    return next((s for s in preferred if s in slices), slices[0] if slices else None)


def default_embeddings(
    collection: fo.core.collections.SampleCollection, patches_field: str | None = None
) -> str | None:
    """The vector field laid out when none is named: ``embedding`` when it is one of
    :func:`vector_fields`, else the first of them; None when there is none."""
    candidates = vector_fields(collection, patches_field)
    if DEFAULT_EMBEDDINGS_FIELD in candidates:
        return DEFAULT_EMBEDDINGS_FIELD
    return candidates[0] if candidates else None


def vector_fields(
    collection: fo.core.collections.SampleCollection, patches_field: str | None = None
) -> list[str]:
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
    """``viz_<slice>_<patches>_<field>_<method>`` (absent parts left out) made an identifier."""
    parts = ["viz", slice_name, patches_field, embeddings, method]
    return re.sub(r"\W", "_", "_".join(p for p in parts if p))


def _layout_collection(collection, slice_name: str | None):
    """The flat collection a layout is computed on: one slice of a grouped collection."""
    if collection.media_type == "group":
        slices = embeddable_slices(collection._dataset)
        if slice_name not in slices:
            raise ValueError(
                f"slice must be one of {slices} for a grouped dataset, got {slice_name!r}"
            )
        return collection.select_group_slices(slice_name)
    if slice_name:
        raise ValueError(f"slice {slice_name!r} given, but the collection is not grouped")
    return collection


def _embeddings_path(
    collection, dataset: fo.Dataset, embeddings: str, patches_field: str | None, slice_name
) -> str:
    """The validated path of the embeddings to lay out: at least two stored, all finite."""
    if patches_field is not None and patches_field not in dataset.get_field_schema(
        embedded_doc_type=fo.Detections
    ):
        raise ValueError(
            f"patches_field '{patches_field}' is not a Detections field of '{dataset.name}'"
        )
    candidates = vector_fields(collection, patches_field)
    if embeddings not in candidates:
        where = f"on the detections of '{patches_field}'" if patches_field else "on the samples"
        raise ValueError(
            f"embeddings '{embeddings}' is not a vector field {where}; found {candidates}"
        )
    path = f"{patches_field}.detections.{embeddings}" if patches_field else embeddings
    count = collection.count(path)
    if count < 2:
        raise ValueError(f"'{path}' has {count} embeddings in this view; a layout needs at least 2")
    _check_finite(collection, path, patches_field is not None, slice_name)
    return path


def _check_finite(collection, path: str, per_object: bool, slice_name: str | None) -> None:
    """Refuse NaN / inf vectors (the layout would fail inside scikit-learn), with counts."""
    values = collection.values(path)
    if per_object:
        per_sample = [[v for v in (vs or []) if v is not None] for vs in values]
    else:
        per_sample = [[] if v is None else [v] for v in values]
    bad = [sum(not np.isfinite(np.asarray(v, dtype=float)).all() for v in vs) for vs in per_sample]
    samples = sum(b > 0 for b in bad)
    if samples:
        objects = f" ({sum(bad)} objects)" if per_object else ""
        where = f" on slice '{slice_name}'" if slice_name else ""
        raise ValueError(
            f"'{path}' holds NaN or inf values on {samples} of {len(values)} samples{objects}"
            f"{where}; recompute those embeddings (compute_embeddings with overwrite=True) or "
            "lay out a view without them"
        )


def _free_brain_key(dataset: fo.Dataset, brain_key: str, overwrite: bool) -> None:
    """Refuse an invalid or taken brain key; with ``overwrite``, delete the run holding it."""
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


def compute_embedding_visualization(
    collection: fo.core.collections.SampleCollection,
    *,
    embeddings: str | None = None,
    slice_name: str | None = None,
    patches_field: str | None = None,
    method: str = "pca",
    brain_key: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Validate, then run ``fiftyone.brain.compute_visualization`` on stored embeddings.

    Parameters
    ----------
    collection : SampleCollection
        The samples to lay out (a dataset or view, grouped or flat).
    embeddings : str, optional
        Vector field of the samples, or attribute of ``patches_field``'s detections;
        default :func:`default_embeddings` (what the operator's form preselects).
    slice_name : str, optional
        Required for grouped collections (a layout is per slice; the form preselects
        :func:`default_slice`); refused for flat ones.
    patches_field : str, optional
        A Detections field: one point per object instead of one per sample.
    method : str
        One of :func:`available_methods`.
    brain_key : str, optional
        Where the run is stored on the dataset (default: :func:`default_brain_key`).
    overwrite : bool
        Replace an existing brain run of that key.

    Returns
    -------
    dict
        ``brain_key``, ``num_points``, ``method`` and ``embeddings`` (the path laid out).
    """
    import fiftyone.brain as fob

    dataset = collection._dataset
    collection = _layout_collection(collection, slice_name)
    methods = available_methods()
    if method not in methods:
        raise ValueError(f"method must be one of {methods} here, got {method!r}")
    if embeddings is None:
        embeddings = default_embeddings(collection, patches_field)
    path = _embeddings_path(collection, dataset, embeddings, patches_field, slice_name)
    brain_key = brain_key or default_brain_key(slice_name, embeddings, patches_field, method)
    # Freeing the key and registering the run are check-then-write: under the dataset's write
    # lock, on a fresh copy of its document, so two calls never both take one brain key.
    with dataset_lock(dataset, "compute_visualization"):
        dataset.reload()
        _free_brain_key(dataset, brain_key, overwrite)
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
