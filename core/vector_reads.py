"""Bulk reads of an embeddings field from MongoDB into one preallocated float32 matrix.

``collection.values(field)`` on a ``VectorField`` deserialises every vector with
``np.load`` into its own array: at 10^6 x 512 that is ~2.2 GiB of small arrays before
stacking them into the 2 GiB matrix the planner needs, and most of the time goes into
``np.load``'s header parsing. Here the field is read in chunks of raw values (FiftyOne's
``values(..., _raw=True)``: the stored bytes, zlib-compressed ``.npy``), each decoded
straight into its row of the matrix. The ``.npy`` header is parsed once; a vector whose
header differs (another dtype or shape) is decoded by numpy in full, so every stored form
reads right. Lists of numbers (a ``ListField``) are read as they come.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

import fiftyone as fo

__all__ = ["VectorRead", "is_vector_field", "read_vectors"]

#: Samples per chunk: bounds the raw values held at once (~130 MiB at d = 512).
CHUNK_ROWS = 65536


@dataclass
class VectorRead:
    """What :func:`read_vectors` read: one row per unit, ``order`` first."""

    row: dict  # unit id -> row
    vectors: np.ndarray  # (units, dim) float32, zeros where missing
    missing: np.ndarray  # (units,) bool
    extras: list  # per extra field, a list of its raw values by row (None where missing)


def is_vector_field(field) -> bool:
    """Whether a schema field can hold embeddings: a ``VectorField`` or a list of numbers."""
    return isinstance(field, fo.VectorField) or (
        isinstance(field, fo.ListField) and isinstance(field.field, (fo.FloatField, fo.IntField))
    )


def read_vectors(
    collection: fo.core.collections.SampleCollection,
    unit_path: str,
    field: str,
    *,
    order: Sequence[str] = (),
    extra_fields: Sequence[str] = (),
    chunk_rows: int = CHUNK_ROWS,
) -> VectorRead:
    """Read ``field`` (and ``extra_fields``) of every sample of ``collection``.

    Parameters
    ----------
    collection : SampleCollection
        One sample per unit (a flat dataset, or one slice of a grouped one).
    unit_path : str
        Path of each sample's unit id (``"id"`` or ``"<group field>.id"``).
    field : str
        The embeddings field: a ``VectorField`` or a list of numbers.
    order : sequence of str, optional
        Units whose rows come first, in this order (e.g. the planner's pool, so that its
        matrix is a view of the table's, not a 2 GiB copy); the other units follow in read
        order. A unit of ``order`` without a sample keeps a zero row flagged missing.
    extra_fields : sequence of str, optional
        Scalar fields read along (e.g. ZCore scores).
    chunk_rows : int, default=CHUNK_ROWS

    Raises
    ------
    ValueError
        When the field holds vectors of different lengths (naming them).
    """
    row = {u: i for i, u in enumerate(order)}
    for unit in collection.values(unit_path):
        row.setdefault(unit, len(row))
    missing = np.ones(len(row), dtype=bool)
    extras = [[None] * len(row) for _ in extra_fields]
    vectors, lengths = None, set()
    paths = [unit_path, field, *extra_fields]
    for start in range(0, collection.count(), chunk_rows):
        chunk = collection.skip(start).limit(chunk_rows).values(paths, _raw=True)
        rows = np.array([row[str(u)] for u in chunk[0]], dtype=np.int64)
        decoded = _decode(chunk[1])
        lengths.update(len(v) for v in decoded if v is not None)
        if len(lengths) > 1:
            raise ValueError(
                f"'{field}' holds vectors of {len(lengths)} different lengths "
                f"{sorted(lengths)}; one field must hold one embedding space"
            )
        if vectors is None and lengths:
            vectors = np.zeros((len(row), next(iter(lengths))), dtype=np.float32)
        for r, vector in zip(rows.tolist(), decoded):
            if vector is not None:
                vectors[r] = vector
                missing[r] = False
        for column, values in zip(extras, chunk[2:]):
            for r, value in zip(rows.tolist(), values):
                column[r] = value
    if vectors is None:
        vectors = np.zeros((len(row), 1), dtype=np.float32)
    return VectorRead(row, vectors, missing, extras)


def _decode(raws: list) -> list:
    """Each raw stored vector as a 1-D array (None stays None)."""
    out, header = [], None
    for raw in raws:
        if raw is None or isinstance(raw, list):
            out.append(None if raw is None else np.asarray(raw, dtype=np.float32))
            continue
        buffer = zlib.decompress(raw)
        if header is None or buffer[: len(header[0])] != header[0]:
            array = np.load(io.BytesIO(buffer), allow_pickle=False)
            header = (buffer[: len(buffer) - array.nbytes], array.dtype)
            out.append(array.ravel())
        else:
            out.append(np.frombuffer(buffer, dtype=header[1], offset=len(header[0])))
    return out
