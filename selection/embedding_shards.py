"""Sharded embedding runs: one ``compute_embeddings`` split by unit into delegated operations.

Embedding one sample never depends on another, and a scene embedding only on its own
samples, so a run splits by unit (scene on grouped datasets, sample on flat ones) with
nothing to combine: each shard is ``compute_embeddings`` on the units whose key falls in it
(:mod:`..core.unit_shards`), writes its own vectors, and builds its
scenes' embeddings itself. Shards are operations on FiftyOne's own delegated queue, so every
``fiftyone delegated launch`` worker on the same MongoDB takes them as it frees up.

:func:`start_sharded_embeddings` checks the call once (a dry run: bad input fails before
anything is queued) and queues one operation per non-empty shard through ``queue_shard``,
which the operator supplies; :func:`..core.unit_shards.shard_view` is what a shard embeds. Recovery is the
embeddings' own: vectors are written in chunks and a re-run computes only what is missing,
so a killed shard is re-run (``fiftyone delegated rerun <id>``) or the whole sharded run
started again, and finished work is never redone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..core.catalog import unit_path
from ..core.unit_shards import shard_sizes
from ..core.views import root_dataset
from .embed import compute_embeddings

__all__ = ["start_sharded_embeddings"]


def start_sharded_embeddings(
    collection,
    shards: int,
    queue_shard: Callable[[int], str],
    **settings,
) -> dict:
    """Check a ``compute_embeddings`` call, then queue its shards.

    Parameters
    ----------
    collection : Dataset or DatasetView
    shards : int
        Number of shards (>= 2); empty shards are not queued.
    queue_shard : callable
        ``queue_shard(shard) -> operation id``: schedules one shard.
    **settings
        Keyword arguments of :func:`.embed.compute_embeddings`.

    Returns
    -------
    dict
        ``shards``, ``queued``, ``units_per_shard``, ``to_embed`` (samples without an
        embedding, per slice, as a dry run counts them), ``unit`` and ``operations``.

    Raises
    ------
    ValueError
        What :func:`.embed.compute_embeddings` would raise, or a bad ``shards``; nothing is
        queued then.
    """
    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 2:
        raise ValueError(f"shards must be a whole number >= 2; got {shards!r}")
    settings.pop("progress", None)
    work = compute_embeddings(collection, dry_run=True, **settings)
    counts = shard_sizes(collection, shards)
    operations = [queue_shard(k) for k in range(shards) if counts[k]]
    return {
        "shards": shards,
        "queued": len(operations),
        "units_per_shard": counts,
        "unit": "sample" if unit_path(root_dataset(collection)) == "id" else "scene",
        "to_embed": {key: entry["computed"] for key, entry in work["slices"].items()},
        "operations": operations,
    }
