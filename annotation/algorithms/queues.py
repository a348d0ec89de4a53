"""Task lists for annotators: a batch split between annotators, golden scenes hidden in each.

A labeling provider scores each annotator against golden tasks that look like any other
task. :func:`plan_queues` gives every annotator a share of the batch plus a few golden
scenes, shuffled together so that neither position nor order gives a golden task away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Queue", "golden_count", "plan_queues"]


@dataclass(frozen=True)
class Queue:
    """One annotator's tasks: ``units`` in upload order, ``golden`` the hidden golden ones."""

    annotator: str
    units: tuple[str, ...]
    golden: tuple[str, ...]


def golden_count(n_batch: int, share: float) -> int:
    """Golden scenes to add to ``n_batch`` batch scenes so they are ``share`` of the list.

    At least one as soon as ``share`` is positive: a queue without a golden task cannot be
    scored.
    """
    if share <= 0 or n_batch == 0:
        return 0
    return max(1, int(round(share * n_batch / (1.0 - share))))


def plan_queues(
    batch_units: Sequence[str],
    golden_units: Sequence[str],
    annotators: Sequence[str],
    share: float,
    seed: int,
    golden_uses: Mapping[str, Mapping[str, int]] | None = None,
) -> list[Queue]:
    """Split ``batch_units`` between ``annotators`` and hide golden units in every queue.

    Parameters
    ----------
    batch_units : sequence of str
        The batch (scene or sample ids); each goes to exactly one annotator.
    golden_units : sequence of str
        The golden set to draw from.
    annotators : sequence of str
        Queue owners, in order; the batch is dealt out round-robin after a seeded shuffle.
    share : float
        Share of each queue that is golden, in [0, 1).
    seed : int
        Seed of the shuffles and draws.
    golden_uses : mapping, optional
        ``{annotator: {golden unit: times sent before}}``: the least-used golden units are
        drawn first, so an annotator sees a golden scene again only once all were used.

    Returns
    -------
    list of Queue
        One per annotator, in ``annotators`` order.

    Raises
    ------
    ValueError
        When ``share`` is outside [0, 1), a golden unit is also in the batch, or the golden
        set is smaller than one queue's golden count.
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"golden share must be in [0, 1); got {share}")
    overlap = set(batch_units) & set(golden_units)
    if overlap:
        raise ValueError(f"{len(overlap)} golden units are also in the batch (e.g. {min(overlap)})")
    rng = np.random.default_rng(seed)
    batch = [batch_units[i] for i in rng.permutation(len(batch_units))]
    golden_pool = sorted(golden_units)
    uses = golden_uses or {}
    queues = []
    for k, annotator in enumerate(annotators):
        own = batch[k :: len(annotators)]
        n_golden = golden_count(len(own), share)
        if n_golden > len(golden_pool):
            raise ValueError(
                f"a queue of {len(own)} scenes needs {n_golden} golden scenes at share {share}; "
                f"the golden set has {len(golden_pool)}"
            )
        seen = uses.get(annotator, {})
        # Least-used first, ties broken at random.
        order = sorted(rng.permutation(len(golden_pool)), key=lambda i: seen.get(golden_pool[i], 0))
        golden = tuple(golden_pool[i] for i in order[:n_golden])
        units = own + list(golden)
        queues.append(
            Queue(annotator, tuple(units[i] for i in rng.permutation(len(units))), golden)
        )
    return queues
