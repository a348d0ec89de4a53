"""The shared label reader (FiftyOne glue): per-slice flat views and ``Detections`` as arrays.

The gate, the frozen splits, golden-set QA and autolabeling all read labels the same way:

- :func:`checkable_slice_views` flattens a (grouped) collection into one flat view per
  image / point-cloud slice with :func:`annoloop.core.views.slice_views` (the one flattener)
  and says which slices hold cuboids;
- :func:`detections_field` refuses a field that is missing or not ``Detections``;
- :func:`read_detections` turns a ``Detections`` field of a flat view into per-label arrays
  (:class:`LabelRows`) with one ``values()`` call, for the pure algorithms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain

import fiftyone as fo
import numpy as np
from fiftyone import ViewField as F

from ..core.views import root_dataset, slice_views

__all__ = [
    "MEDIA_3D",
    "LabelRows",
    "checkable_slice_views",
    "detections_field",
    "on_slice",
    "read_detections",
]

#: Media types whose ``Detections`` hold 3D cuboids.
MEDIA_3D = ("point-cloud", "3d")
_CHECKED_MEDIA = ("image", *MEDIA_3D)
_GEOMETRY_KEYS = ("bounding_box", "location", "dimensions", "rotation")
# Stored label keys that are not attributes to check ("mask" is binary image data).
_RAW_SKIP = frozenset({"_id", "_cls", "label", "tags", "attributes", "mask", *_GEOMETRY_KEYS})


def checkable_slice_views(samples, slices: Sequence[str] | None = None) -> dict:
    """``{slice name: (flat view, is_3d)}`` of the slices whose labels can be checked.

    Parameters
    ----------
    samples : Dataset or DatasetView
        Grouped or flat. For a grouped collection every chosen slice of every group in it is
        returned as its own flat view (:func:`annoloop.core.views.slice_views`). A flat
        dataset gives one entry keyed ``None``.
    slices : sequence of str, optional
        Slices to keep; default every image, point-cloud and 3D slice present.

    Raises
    ------
    ValueError
        On slices of a flat dataset, unknown slices, or slices of another media type.
    """
    views = slice_views(samples, slices, media=_CHECKED_MEDIA)
    dataset = root_dataset(samples)
    if dataset.media_type != "group":
        if samples.media_type not in _CHECKED_MEDIA:
            raise ValueError(
                f"dataset '{dataset.name}' holds {samples.media_type} samples; "
                f"only {list(_CHECKED_MEDIA)} are supported"
            )
        return {None: (samples, samples.media_type in MEDIA_3D)}
    media = dataset.group_media_types
    wrong = [s for s in views if media[s] not in _CHECKED_MEDIA]
    if wrong:
        raise ValueError(
            f"slices {wrong} hold {[media[s] for s in wrong]} samples; "
            f"only {list(_CHECKED_MEDIA)} are supported"
        )
    if not views:
        raise ValueError(
            "the collection has no image or point-cloud slice "
            f"(slices: {list(slice_views(samples))})"
        )
    return {s: (view, media[s] in MEDIA_3D) for s, view in views.items()}


def detections_field(samples, field_name: str, what: str = "label field") -> None:
    """Raise ``ValueError`` unless ``field_name`` is a ``Detections`` field of ``samples``."""
    if not isinstance(field_name, str) or not field_name:
        raise ValueError(f"{what} must be a field name; got {field_name!r}")
    dataset = root_dataset(samples)
    field_ = dataset.get_field(field_name)
    labels = sorted(dataset.get_field_schema(embedded_doc_type=fo.Detections))
    if field_ is None:
        raise ValueError(
            f"{what} {field_name!r} does not exist on dataset '{dataset.name}'; "
            f"its Detections fields are {labels}"
        )
    doc_type = getattr(field_, "document_type", None)
    if doc_type is not fo.Detections:
        kind = doc_type.__name__ if doc_type is not None else type(field_).__name__
        raise ValueError(
            f"{what} {field_name!r} holds {kind}, not Detections; only Detections fields "
            f"(2D boxes and 3D cuboids) are supported: choose one of {labels}"
        )


@dataclass
class LabelRows:
    """One ``Detections`` field of a flat view as per-label arrays.

    Attributes
    ----------
    sample_ids : list of str
        Sample ids in read order.
    present : ndarray of bool, shape (n_samples,)
        Whether the sample's field holds a ``Detections`` (possibly empty) rather than None.
    sample : ndarray of int64, shape (n,)
        Row -> index into ``sample_ids``; rows follow each sample's label-list order.
    label_id, label, tags : ndarray of object, shape (n,)
        Label id, class and tag list (as stored; ``None`` possible).
    geometry : ndarray of float64, shape (n, 4) or (n, 9)
        ``[x, y, w, h]``, or ``location + dimensions + rotation`` for 3D; NaN where a value
        is missing or malformed (a missing rotation counts as zero).
    kind : ndarray of object, shape (n,)
        ``"detection"`` (has a box), ``"cuboid"`` (has a location or dimensions but no box),
        or the expected kind when neither or both are present.
    attributes : dict[str, ndarray of object]
        Other label attributes, ``None`` where a label lacks one.
    extra : dict[str, list]
        Other per-sample values read in the same call, by the caller's names.
    """

    sample_ids: list
    present: np.ndarray
    sample: np.ndarray
    label_id: np.ndarray
    label: np.ndarray
    tags: np.ndarray
    geometry: np.ndarray
    kind: np.ndarray
    attributes: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def _matrix(column: np.ndarray, width: int, fill: float = np.nan) -> np.ndarray:
    """``(n, width)`` floats from a column of lists; ``fill`` where missing or malformed."""
    out = np.full((len(column), width), fill)
    ok = np.fromiter(
        (isinstance(v, (list, tuple)) and len(v) == width for v in column), bool, len(column)
    )
    if ok.any():
        try:
            out[ok] = np.array(column[ok].tolist(), dtype=np.float64)
        except (TypeError, ValueError):  # a non-numeric entry somewhere: go row by row
            for i in np.flatnonzero(ok):
                try:
                    out[i] = np.array(column[i], dtype=np.float64)
                except (TypeError, ValueError):
                    out[i] = np.nan
    return out


def _non_empty_list(column: np.ndarray) -> np.ndarray:
    # FiftyOne stores a cuboid's unused ``bounding_box`` as [], so "has a box" means non-empty.
    return np.fromiter((isinstance(v, list) and len(v) > 0 for v in column), bool, len(column))


def read_detections(
    view,
    field_name: str,
    is_3d: bool,
    *,
    attributes: Iterable[str] | None = None,
    extra: Mapping | None = None,
) -> LabelRows:
    """Read a ``Detections`` field of a flat view into :class:`LabelRows`, in one call.

    The labels come back as stored (one ``values()`` of the label list as an expression),
    which skips FiftyOne's per-value conversion and shows every attribute a label carries,
    declared in the dataset's schema or not.

    Parameters
    ----------
    view : flat SampleCollection
    field_name : str
        A ``Detections`` field.
    is_3d : bool
        Read cuboids (location, dimensions, rotation) instead of 2D boxes as the geometry.
        The other representation is still looked at, so a wrong label type shows.
    attributes : iterable of str, optional
        Label attributes to return; default every attribute present on some label.
    extra : dict, optional
        ``{name: path or expression}`` of per-sample values to read in the same
        ``values()`` call (e.g. ``{"tags": "tags"}``); returned under ``extra[name]``.
    """
    extra = dict(extra or {})
    values = view.values(["id", *extra.values(), F(f"{field_name}.detections")])
    sample_ids, per_sample = values[0], values[-1]
    n_samples = len(sample_ids)
    counts = np.fromiter((len(v) if v else 0 for v in per_sample), np.int64, n_samples)
    column = _Columns(list(chain.from_iterable(labels for labels in per_sample if labels)))
    if attributes is None:
        attributes = sorted(column.keys - _RAW_SKIP)
    return LabelRows(
        sample_ids=list(sample_ids),
        present=np.fromiter((v is not None for v in per_sample), bool, n_samples),
        sample=np.repeat(np.arange(n_samples), counts),
        label_id=np.array([str(d.get("_id")) for d in column.docs], dtype=object),
        label=column("label"),
        tags=column("tags"),
        geometry=_geometry(column, is_3d),
        kind=_kind(column, is_3d),
        attributes={a: column(a) for a in attributes},
        extra=dict(zip(extra, values[1:-1])),
    )


class _Columns:
    """Per-label columns of stored label documents: ``column(key)`` is one object array."""

    def __init__(self, docs: list):
        self.docs = docs
        self.keys = set(chain.from_iterable(docs))  # every key of every label

    def __call__(self, key: str) -> np.ndarray:
        out = np.empty(len(self.docs), dtype=object)
        if key in self.keys:  # an absent key stays None without a pass over the labels
            out[:] = [d.get(key) for d in self.docs]
        return out


def _kind(column: _Columns, is_3d: bool) -> np.ndarray:
    """``"detection"`` / ``"cuboid"`` per label, by the geometry it carries."""
    has_box = _non_empty_list(column("bounding_box"))
    has_3d = _non_empty_list(column("location")) | _non_empty_list(column("dimensions"))
    kind = np.full(len(column.docs), "cuboid" if is_3d else "detection", dtype=object)
    kind[has_box & ~has_3d] = "detection"
    kind[has_3d & ~has_box] = "cuboid"
    return kind


def _geometry(column: _Columns, is_3d: bool) -> np.ndarray:
    """``[x, y, w, h]`` or ``location + dimensions + rotation`` per label (NaN if malformed)."""
    if not is_3d:
        return _matrix(column("bounding_box"), 4)
    return np.hstack(
        [
            _matrix(column("location"), 3),
            _matrix(column("dimensions"), 3),
            _matrix(column("rotation"), 3, fill=0.0),
        ]
    )


def on_slice(slice_name) -> str:
    """`` on slice 'x'`` for messages about a slice; empty for a flat dataset."""
    return f" on slice '{slice_name}'" if slice_name else ""
