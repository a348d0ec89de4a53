"""Bulk reads of an embeddings field from MongoDB into one preallocated float32 matrix.

``collection.values(field)`` on a ``VectorField`` deserialises every vector with
``np.load`` into its own array: at 10^6 x 512 that is ~2.2 GiB of small arrays before
stacking them into the 2 GiB matrix the planner needs, and most of the time goes into
``np.load``'s header parsing. Here the field is read in one pass of stored values (the
zlib-compressed ``.npy`` bytes), block by block, each vector decoded straight into its row
of the matrix. The ``.npy`` header is parsed once; a vector whose
header differs (another dtype or shape) is decoded by numpy in full, so every stored form
reads right. Lists of numbers (a ``ListField``) are read as they come.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

import fiftyone as fo

from .raw_reads import stream_columns

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
        Samples decoded per block.

    Raises
    ------
    ValueError
        When the field holds vectors of different lengths (naming them).
    """
    row = {u: i for i, u in enumerate(order)}
    table = _Table(len(row), len(extra_fields))
    paths = [unit_path, field, *extra_fields]
    # One pass over the collection: each block's vectors are decompressed on a second
    # thread (zlib releases the GIL) while the next block comes from MongoDB.
    with ThreadPoolExecutor(max_workers=1) as decoder:
        pending = None
        for units, raws, *extras in stream_columns(collection, paths, chunk_rows):
            rows = [row.setdefault(str(u), len(row)) for u in units]
            job = decoder.submit(_decode, raws)
            if pending is not None:
                table.put(*pending[0], pending[1].result(), field)
            pending = ((rows, extras), job)
        if pending is not None:
            table.put(*pending[0], pending[1].result(), field)
    return table.read(row)


class _Table:
    """The matrix :func:`read_vectors` fills, grown as units beyond ``order`` arrive."""

    def __init__(self, n_rows: int, n_extras: int):
        self.vectors, self.lengths = None, set()
        self.missing = np.ones(n_rows, dtype=bool)
        self.extras = [[None] * n_rows for _ in range(n_extras)]

    def put(self, rows: list, extras: list, decoded: list, field: str) -> None:
        self.lengths.update(len(v) for v in decoded if v is not None)
        if len(self.lengths) > 1:
            raise ValueError(
                f"'{field}' holds vectors of {len(self.lengths)} different lengths "
                f"{sorted(self.lengths)}; one field must hold one embedding space"
            )
        self._grow(max(rows, default=-1) + 1)
        if self.vectors is None and self.lengths:
            self.vectors = np.zeros((len(self.missing), next(iter(self.lengths))), np.float32)
        for r, vector in zip(rows, decoded):
            if vector is not None:
                self.vectors[r] = vector
                self.missing[r] = False
        for column, values in zip(self.extras, extras):
            for r, value in zip(rows, values):
                column[r] = value

    def _grow(self, n_rows: int) -> None:
        if n_rows <= len(self.missing):
            return
        size = max(n_rows, len(self.missing) + len(self.missing) // 2)  # amortised doubling
        self.missing = np.concatenate([self.missing, np.ones(size - len(self.missing), bool)])
        if self.vectors is not None:
            grown = np.zeros((size, self.vectors.shape[1]), np.float32)
            grown[: len(self.vectors)] = self.vectors
            self.vectors = grown
        for column in self.extras:
            column.extend([None] * (size - len(column)))

    def read(self, row: dict) -> VectorRead:
        n = len(row)
        self._grow(n)
        vectors = self.vectors if self.vectors is not None else np.zeros((len(self.missing), 1), np.float32)
        return VectorRead(row, vectors[:n], self.missing[:n], [c[:n] for c in self.extras])


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
