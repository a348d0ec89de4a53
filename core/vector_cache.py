"""A local, uncompressed copy of an embeddings field, refreshed from what changed since.

FiftyOne stores each vector as a zlib-compressed ``.npy`` inside its sample's document: a
read of 10^6 x 512 spends ~26 s inflating and ~16 s decoding documents, every time the
planner runs, although between two rounds only the samples of one batch changed. This
cache keeps the last read matrix as raw float32 on local disk with each row's sample id,
and re-reads from MongoDB only the samples whose ``last_modified_at`` (indexed, and moved
by every FiftyOne write: ``set_values``, ``save``, tags, field renames and deletions) is
not older than the previous read's start. A deleted sample shows as a count that no longer
adds up, and then the whole field is read again.

The cache trusts FiftyOne's stamps: writes that bypass FiftyOne (raw MongoDB updates), or a
single write call still running :data:`CLOCK_MARGIN` after a read began, may go unseen.
Set ``ANNOLOOP_VECTOR_CACHE=off`` to read MongoDB every time, or to a folder to keep the
cache there (default ``$XDG_CACHE_HOME/annoloop/vectors``, one folder per database); its
files take 4 bytes per value of every cached field (2 GB for 10^6 x 512), and a deleted
dataset's files go the next time a cache of its database is saved.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

import fiftyone as fo
import fiftyone.core.odm as foo

__all__ = ["CLOCK_MARGIN", "CachedVectors", "VectorCache", "cache_for"]

#: How long before the previous read began changes are looked for again: stamps come
#: from the writers' clocks, and one write call stamps all its samples when it starts.
CLOCK_MARGIN = timedelta(minutes=2)

_ENV = "ANNOLOOP_VECTOR_CACHE"


def cache_root() -> Path | None:
    """Where caches live, or None when ``ANNOLOOP_VECTOR_CACHE=off``."""
    setting = os.environ.get(_ENV, "")
    if setting.lower() == "off":
        return None
    if setting:
        return Path(setting)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "annoloop" / "vectors"


@dataclass(frozen=True)
class CachedVectors:
    """One stored read: row ``i`` holds the vector of sample ``samples[i]`` of unit
    ``units[i]`` (ids as 12 raw bytes; a zero sample id is a row without a sample)."""

    samples: np.ndarray  # (rows, 12) uint8
    units: np.ndarray  # (rows, 12) uint8
    missing: np.ndarray  # (rows,) bool
    dim: int
    as_of: datetime
    matrix: object  # the open file of the (rows, dim) float32 matrix

    def blocks(self, block_rows: int):
        """``(first row, float32 block)`` over the stored matrix, read with plain file reads
        (a memory map would count the whole file in the reader's resident memory)."""
        rows = len(self.samples)
        with self.matrix as f:
            for start in range(0, rows, block_rows):
                count = min(block_rows, rows - start) * self.dim
                block = np.fromfile(f, dtype=np.float32, count=count)
                yield start, block.reshape(-1, self.dim)


class VectorCache:
    """The cache of one field of one collection (a dataset, or one slice of a grouped one)."""

    def __init__(
        self, collection: fo.core.collections.SampleCollection, slice_name: str | None, folder: Path
    ):
        self.collection = collection
        self.slice_name = slice_name
        self.folder = folder

    def count(self) -> int:
        """The collection's exact sample count from an index (FiftyOne's own count of a
        dataset is MongoDB's estimate; of a slice, a scan of every sample)."""
        dataset = self.collection._dataset
        if self.slice_name is None:
            return dataset._sample_collection.count_documents({}, hint="_id_")
        return dataset._sample_collection.count_documents({f"{dataset.group_field}.name": self.slice_name})

    def read_started(self) -> datetime:
        """The database server's clock, taken as a read begins: what the next read looks
        for is what was stamped after it (less :data:`CLOCK_MARGIN`)."""
        return foo.get_db_conn().command("hello")["localTime"]

    def load(self) -> CachedVectors | None:
        """The stored read, or None when there is none (or it cannot be read)."""
        if not self.folder.is_dir():
            return None
        # Opened under the lock: a save that replaces this version cannot delete it first.
        with self._locked(fcntl.LOCK_SH):
            try:
                meta = json.loads((self.folder / "current.json").read_text())
                with np.load(self.folder / f"{meta['version']}.npz") as ids:
                    samples, units, missing = ids["samples"], ids["units"], ids["missing"]
                matrix = open(self.folder / f"{meta['version']}.f32", "rb")
            except (OSError, ValueError, KeyError):
                return None
        return CachedVectors(
            samples, units, missing, meta["dim"], datetime.fromisoformat(meta["as_of"]), matrix
        )

    def changed_since(self, stored: CachedVectors):
        """The samples of the collection written since ``stored`` was read (see CLOCK_MARGIN)."""
        since = stored.as_of - CLOCK_MARGIN
        return self.collection.mongo([{"$match": {"last_modified_at": {"$gte": since}}}])

    def save(
        self, samples: np.ndarray, units: np.ndarray, vectors: np.ndarray, missing: np.ndarray,
        as_of: datetime,
    ) -> None:
        """Store a read as a new version; readers of the old one keep their open files."""
        self.folder.mkdir(parents=True, exist_ok=True)
        version = uuid.uuid4().hex
        np.savez(self.folder / f"{version}.npz", samples=samples, units=units, missing=missing)
        vectors.astype(np.float32, copy=False).tofile(self.folder / f"{version}.f32")
        meta = {"version": version, "dim": int(vectors.shape[1]), "as_of": as_of.isoformat()}
        pending = self.folder / f"{version}.json"
        pending.write_text(json.dumps(meta))
        with self._locked(fcntl.LOCK_EX):
            os.replace(pending, self.folder / "current.json")  # the switch is one rename
            for old in self.folder.iterdir():
                if old.suffix in (".npz", ".f32") and old.stem != version:
                    old.unlink(missing_ok=True)
        _forget_deleted_datasets(self.folder.parent.parent)

    @contextmanager
    def _locked(self, mode: int):
        with open(self.folder / "lock", "a") as lock:
            fcntl.flock(lock, mode)
            yield


def cache_for(
    collection: fo.core.collections.SampleCollection, unit_path: str, field: str | None
) -> VectorCache | None:
    """The cache of ``field`` (None: of the units alone) of ``collection``, or None when
    caching is off or the collection is not a whole dataset or one whole slice of it (a
    filtered view's samples change with the filter, not with their stamps)."""
    root = cache_root()
    stages = getattr(collection, "_stages", [])
    if root is None or len(stages) > 1:
        return None
    dataset = collection._dataset
    if stages:
        if not (isinstance(stages[0], fo.core.stages.SelectGroupSlices) and isinstance(stages[0].slices, str)):
            return None
        slice_name = stages[0].slices
    else:
        slice_name = collection.group_slice if dataset.media_type == "group" else None
    key = json.dumps([dataset._doc.id, slice_name, unit_path, field], default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    database = root / fo.config.database_name
    return VectorCache(collection, slice_name, database / str(dataset._doc.id) / digest)


def _forget_deleted_datasets(database: Path) -> None:
    """Remove the caches of datasets that no longer exist in this database."""
    alive = {str(i) for i in foo.get_db_conn().datasets.distinct("_id")}
    for folder in database.iterdir():
        if folder.is_dir() and folder.name not in alive and len(folder.name) == 24:
            shutil.rmtree(folder, ignore_errors=True)
