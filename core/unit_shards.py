"""Which units (scenes, or samples of a flat dataset) each shard of a sharded run works on.

Work that never depends on another unit (embedding, autolabeling) splits by unit: a unit's
shard is decided by its id alone (:func:`.algorithms.key_shards.key_shards`), so the process
queueing a run and every worker running one of its shards agree, and units added later
never move the planned ones.
"""

from __future__ import annotations

import numpy as np

from .algorithms.key_shards import key_shards
from .catalog import units_where
from .views import units_view

__all__ = ["shard_sizes", "shard_units", "shard_view"]


def _units(collection) -> np.ndarray:
    return np.array(sorted(units_where(collection)), dtype=object)


def shard_sizes(collection, n_shards: int) -> list[int]:
    """How many units of ``collection`` fall in each of ``n_shards`` shards."""
    return np.bincount(key_shards(_units(collection), n_shards), minlength=n_shards).tolist()


def shard_units(collection, shard: int, n_shards: int) -> list[str]:
    """The unit ids of ``collection`` in shard ``shard`` of ``n_shards``."""
    units = _units(collection)
    of_unit = key_shards(units, n_shards)  # checks n_shards
    if isinstance(shard, bool) or not isinstance(shard, (int, np.integer)) or not 0 <= shard < n_shards:
        raise ValueError(f"shard must be a whole number in [0, {n_shards}); got {shard!r}")
    return units[of_unit == shard].tolist()


def shard_view(collection, shard: int, n_shards: int):
    """The samples of ``collection`` (every slice of each scene) in shard ``shard``."""
    return units_view(collection, shard_units(collection, shard, n_shards))
