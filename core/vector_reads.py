"""Bulk reads of an embeddings field from MongoDB into one preallocated float32 matrix.

``collection.values(field)`` on a ``VectorField`` deserialises every vector with
``np.load`` into its own array: at 10^6 x 512 that is ~2.2 GiB of small arrays before
stacking them into the 2 GiB matrix the planner needs, and most of the time goes into
``np.load``'s header parsing. Here the field is read in one pass of stored values (the
zlib-compressed ``.npy`` bytes), block by block, each vector decoded straight into its row
of the matrix. The ``.npy`` header is parsed once; a vector whose
header differs (another dtype or shape) is decoded by numpy in full, so every stored form
reads right. Lists of numbers (a ``ListField``) are read as they come. A whole dataset or
slice is read through :mod:`.vector_cache`, which asks MongoDB only for what changed.
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
from .vector_cache import cache_for

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

    A dataset or one slice of it is read through the local cache of :mod:`.vector_cache`
    when no ``extra_fields`` are asked for: only the samples written since the last read
    come from MongoDB.

    Parameters
    ----------
    collection : SampleCollection
        One sample per unit (a flat dataset, or one slice of a grouped one).
    unit_path : str
        Path of each sample's unit id (``"id"`` or ``"<group field>.id"``).
    field : str or None
        The embeddings field: a ``VectorField`` or a list of numbers; None reads only which
        units have a sample (``row``; every row is then flagged missing).
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
    cache = None if extra_fields else cache_for(collection, unit_path, field)
    if cache is None:
        table = _Table(order, len(extra_fields))
        _stream_into(table, collection, unit_path, field, extra_fields, chunk_rows)
        return table.read()
    as_of, table, stored = cache.read_started(), _Table(order, 0), cache.load()
    if stored is not None:
        table.put_cached(stored, chunk_rows)
        try:
            changes = _stream_into(
                table, cache.changed_since(stored), unit_path, field, (), chunk_rows
            )
        except _MixedLengths:
            changes = None  # the field was rewritten in another length: read it again
        if changes is None or table.sample_count() != cache.count():
            stored = None  # samples were deleted (or moved): nothing says which
    if stored is None:
        table = _Table(order, 0)
        changes = _stream_into(table, collection, unit_path, field, (), chunk_rows)
    if changes:
        cache.save(*table.stored(), as_of)
    return table.read()


def _stream_into(
    table: _Table, collection, unit_path: str, field: str, extra_fields, chunk_rows: int
) -> int:
    """Read the samples of ``collection`` into ``table``; how many there were.

    One pass over the collection: each block's vectors are decompressed on a second thread
    (zlib releases the GIL) while the next block comes from MongoDB.
    """
    paths = ["id", unit_path, *([field] if field else []), *extra_fields]
    count = 0
    with ThreadPoolExecutor(max_workers=1) as decoder:
        pending = None
        for samples, units, *columns in stream_columns(collection, paths, chunk_rows):
            raws, extras = (columns[0], columns[1:]) if field else ([None] * len(units), columns)
            rows = table.rows_of(units)
            job = decoder.submit(_decode, raws)
            if pending is not None:
                table.put(*pending[0], pending[1].result(), field)
            pending = ((rows, samples, units, extras), job)
            count += len(rows)
        if pending is not None:
            table.put(*pending[0], pending[1].result(), field)
    return count


class _MixedLengths(ValueError):
    pass


class _Table:
    """The matrix :func:`read_vectors` fills, grown as units beyond ``order`` arrive, with
    each row's sample id (what the cache stores)."""

    def __init__(self, order: Sequence[str], n_extras: int):
        self.row = {u: i for i, u in enumerate(order)}
        n_rows = len(self.row)
        self.vectors, self.lengths = None, set()
        self.missing = np.ones(n_rows, dtype=bool)
        self.samples = np.zeros((n_rows, 12), np.uint8)
        self.units = np.zeros((n_rows, 12), np.uint8)
        self.extras = [[None] * n_rows for _ in range(n_extras)]

    def rows_of(self, units) -> list:
        """Rows of ``units`` (ids or their hex strings), new rows for new units."""
        row = self.row
        return [row.setdefault(str(u), len(row)) for u in units]

    def put(
        self, rows: list, samples: list, units: list, extras: list, decoded: list, field: str
    ) -> None:
        self.lengths.update(len(v) for v in decoded if v is not None)
        if len(self.lengths) > 1:
            raise _MixedLengths(
                f"'{field}' holds vectors of {len(self.lengths)} different lengths "
                f"{sorted(self.lengths)}; one field must hold one embedding space"
            )
        self._grow(max(rows, default=-1) + 1)
        if self.vectors is None and self.lengths:
            self._allocate(next(iter(self.lengths)))
        for r, vector in zip(rows, decoded):
            if self.vectors is not None:
                self.vectors[r] = 0.0 if vector is None else vector
            self.missing[r] = vector is None
        if rows:
            self.samples[rows] = _id_bytes(samples)
            self.units[rows] = _id_bytes(units)
        for column, values in zip(self.extras, extras):
            for r, value in zip(rows, values):
                column[r] = value

    def put_cached(self, stored, block_rows: int) -> None:
        """Fill the rows of a cached read (see :class:`.vector_cache.CachedVectors`); its
        rows without a sample (units of an earlier ``order`` that had none) are skipped."""
        kept = stored.samples.any(axis=1)
        hexes = stored.units[kept].tobytes().hex()
        rows = np.full(len(kept), -1, np.int64)
        rows[kept] = self.rows_of(hexes[i : i + 24] for i in range(0, len(hexes), 24))
        self._grow(int(rows.max(initial=-1)) + 1)
        self.lengths.add(stored.dim)
        self._allocate(stored.dim)
        for start, block in stored.blocks(block_rows):
            into = rows[start : start + len(block)]
            self.vectors[into[into >= 0]] = block[into >= 0]
        self.missing[rows[kept]] = stored.missing[kept]
        self.samples[rows[kept]] = stored.samples[kept]
        self.units[rows[kept]] = stored.units[kept]

    def sample_count(self) -> int:
        return int(np.count_nonzero(self.samples.any(axis=1)))

    def stored(self) -> tuple:
        """What the cache keeps: sample ids, unit ids, vectors and missing flags by row."""
        n = len(self.row)
        vectors = self.vectors if self.vectors is not None else np.zeros((n, 1), np.float32)
        return self.samples[:n], self.units[:n], vectors[:n], self.missing[:n]

    def _allocate(self, dim: int) -> None:
        if self.vectors is None:
            self.vectors = np.zeros((len(self.missing), dim), np.float32)

    def _grow(self, n_rows: int) -> None:
        if n_rows <= len(self.missing):
            return
        size = max(n_rows, len(self.missing) + len(self.missing) // 2)  # amortised doubling
        extra = size - len(self.missing)
        self.missing = np.concatenate([self.missing, np.ones(extra, bool)])
        self.samples = np.concatenate([self.samples, np.zeros((extra, 12), np.uint8)])
        self.units = np.concatenate([self.units, np.zeros((extra, 12), np.uint8)])
        if self.vectors is not None:
            grown = np.zeros((size, self.vectors.shape[1]), np.float32)
            grown[: len(self.vectors)] = self.vectors
            self.vectors = grown
        for column in self.extras:
            column.extend([None] * extra)

    def read(self) -> VectorRead:
        n = len(self.row)
        self._grow(n)
        vectors = self.vectors if self.vectors is not None else np.zeros((len(self.missing), 1), np.float32)
        return VectorRead(self.row, vectors[:n], self.missing[:n], [c[:n] for c in self.extras])


def _id_bytes(ids: list) -> np.ndarray:
    """``ObjectId``s as a (n, 12) uint8 array."""
    return np.frombuffer(b"".join(i.binary for i in ids), np.uint8).reshape(-1, 12)


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
