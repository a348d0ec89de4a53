"""Intermediate arrays that several processes hand to each other, kept in FiftyOne's MongoDB.

A job split across workers (for example the shards of a ZCore run) leaves each part's
result where every worker on the same database finds it: a GridFS bucket of FiftyOne's own
database, one file per ``(dataset, name)``. A document's 16 MB limit would not hold the
partial scores of a million-row pool; GridFS streams any size. Nothing here is a product of
a run: the job that combines the parts deletes them.
"""

from __future__ import annotations

import io
import re

import fiftyone as fo
import fiftyone.core.odm as fod
import gridfs
import numpy as np

__all__ = ["delete_arrays", "load_arrays", "save_arrays"]

_BUCKET = "annoloop_arrays"


def _bucket() -> gridfs.GridFSBucket:
    return gridfs.GridFSBucket(fod.get_db_conn(), bucket_name=_BUCKET)


def _filename(dataset: fo.Dataset, name: str) -> str:
    return f"{dataset._doc.id}/{name}"


def save_arrays(dataset: fo.Dataset, name: str, arrays: dict[str, np.ndarray]) -> None:
    """Store ``arrays`` under ``name`` for ``dataset``, replacing an earlier copy.

    The new file is written in full before the old one is deleted, so a reader never sees
    a partial file; a process killed mid-write leaves the old copy (or none).
    """
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    bucket, filename = _bucket(), _filename(dataset, name)
    old = [f._id for f in bucket.find({"filename": filename})]
    bucket.upload_from_stream(filename, buffer.getvalue())
    for file_id in old:
        bucket.delete(file_id)


def load_arrays(dataset: fo.Dataset, name: str) -> dict[str, np.ndarray] | None:
    """The arrays stored under ``name`` for ``dataset`` (the newest copy), or None."""
    try:
        data = _bucket().open_download_stream_by_name(_filename(dataset, name)).read()
    except gridfs.errors.NoFile:
        return None
    with np.load(io.BytesIO(data)) as stored:
        return {key: stored[key] for key in stored.files}


def delete_arrays(dataset: fo.Dataset, prefix: str) -> int:
    """Delete every array file of ``dataset`` whose name starts with ``prefix``; how many."""
    bucket = _bucket()
    pattern = "^" + re.escape(_filename(dataset, prefix))
    files = [f._id for f in bucket.find({"filename": {"$regex": pattern}})]
    for file_id in files:
        bucket.delete(file_id)
    return len(files)

