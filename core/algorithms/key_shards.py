"""Which shard a unit of work belongs to, decided by its key alone (pure: numpy only)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

__all__ = ["key_shards"]


def key_shards(keys: Sequence[str], n_shards: int) -> np.ndarray:
    """The shard, ``0 .. n_shards - 1``, of each key: its CRC-32 modulo ``n_shards``.

    A key's shard depends on nothing but the key, so samples added after a sharded run was
    planned never move the ones already planned to another shard, and every process that
    computes the split (the one queueing the shards, each worker running one) agrees.

    Examples
    --------
    >>> key_shards(["a", "b", "c", "d", "e"], 2).tolist()
    [1, 1, 1, 0, 0]
    """
    if isinstance(n_shards, bool) or not isinstance(n_shards, (int, np.integer)) or n_shards < 1:
        raise ValueError(f"n_shards must be a whole number >= 1; got {n_shards!r}")
    crc = np.fromiter((zlib.crc32(str(k).encode()) for k in keys), np.int64, len(keys))
    return crc % n_shards
