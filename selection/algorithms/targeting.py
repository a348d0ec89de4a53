"""Targeting: pick unlabeled pool rows that lie nearest to the current model's failures.

A failure query is an embedding of something the model got wrong on the evaluation split (a
missed object, a class confusion, a spurious detection) with a *kind* that says which. The
targeting share of a batch goes to pool rows near those queries, so the next round of labels
lands where the model fails.

Three rules keep the share useful:

* **False negatives weigh most.** Kinds carry weights (:data:`DEFAULT_KIND_WEIGHTS`:
  ``fn`` 3, ``confusion`` 2, ``fp`` 1). Misses expose gaps in the training distribution,
  confusions a blurred boundary, spurious detections usually the cheapest fix.
* **Picks are spread across failures.** Failures take turns by *stride scheduling*: a
  failure of weight ``w`` takes its ``t``-th pick at virtual time ``t / w``, earliest first
  (ties: heavier kind, then the caller's order of the failures). So with one FN and one FP
  the FN gets 3 picks for each FP pick, and a thousand failures each get one pick before any
  gets a second when the weights are equal. Each turn takes the failure's nearest row that
  nobody has picked yet.
* **Near-duplicate failures count once.** Queries whose nearest pool row is the same row are
  one *failure group* (e.g. 70 copies of one missed pedestrian) and share one turn sequence
  (weight of the heaviest member), so they cannot crowd out the other failures. A failure
  takes at most ``neighbors_per_query`` rows (its nearest ones); when every list runs dry the
  share comes back short and the caller fills the rest.

Distances are Euclidean (L2-normalise embeddings first for cosine behaviour). The neighbour
search is exact and runs on FAISS (``faiss.knn``, BLAS-tiled with a per-query heap in C++)
over the pool in chunks, merging a running top-k per query (``faiss.ResultHeap``), so it
costs O(n * q * d) time and O(q * k + chunk) memory; neither the n x q distance matrix nor a
copy of the pool (which a FAISS index would hold) ever exists. Only
the failures the schedule can reach are searched (about the share's size when failures
outnumber it), so q above is at most ~2 x the targeting share, not the number of failures.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

#: Default weight per failure kind: false negatives first, then confusions, then false positives.
DEFAULT_KIND_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"fn": 3.0, "confusion": 2.0, "fp": 1.0}
)
#: Elements (rows x dim) of one pool chunk handed to the neighbour search: 8 Mi = 32 MiB.
DEFAULT_BLOCK_ELEMENTS = 1 << 23
#: Lower bound of the default neighbour list length per failure.
MIN_NEIGHBORS_PER_QUERY = 16
# Rows per chunk when scanning an array for NaN / inf (bounds the boolean temporary).
_FINITE_CHECK_ROWS = 65536


@dataclass(frozen=True)
class TargetingResult:
    """Rows picked for the targeting share, in pick order.

    Attributes
    ----------
    indices : ndarray of shape (t,), int64
        Pool rows picked; ``t <= budget`` (shorter when the failures' neighbour lists run dry).
    query : ndarray of shape (t,), int64
        Index of the failure query each pick serves.
    distances : ndarray of shape (t,), float64
        Euclidean distance between each pick and its failure query.
    """

    indices: np.ndarray
    query: np.ndarray
    distances: np.ndarray

    @classmethod
    def empty(cls) -> TargetingResult:
        """No picks (no failures, or no targeting share)."""
        return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0))


def validate_embeddings(name: str, array: np.ndarray, *, dim: int | None = None) -> np.ndarray:
    """Return ``array`` as a 2-D real array after checking its shape and values.

    Parameters
    ----------
    name : str
        Used in error messages.
    array : array-like of shape (rows, dim)
        Embeddings; not copied when already an ndarray.
    dim : int or None, default=None
        Required second dimension (the pool's), if any.

    Raises
    ------
    ValueError
        If the array is not 2-D and real-valued, has the wrong dimension, or has rows with
        NaN / inf (the message gives how many).
    """
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (rows, dim) array, got shape {arr.shape}")
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(
            f"{name} has dimension {arr.shape[1]} but the pool embeddings have dimension {dim}"
        )
    if np.issubdtype(arr.dtype, np.floating) and arr.size:
        # NaN / inf propagate into row sums, and one BLAS product is ~10x faster than
        # isfinite over every element; only rows whose sum is not finite are checked exactly
        # (a sum can also overflow to inf from finite values).
        ones = np.ones(arr.shape[1], dtype=arr.dtype)
        bad = 0
        for start in range(0, len(arr), _FINITE_CHECK_ROWS):
            chunk = arr[start : start + _FINITE_CHECK_ROWS]
            with np.errstate(over="ignore", invalid="ignore"):
                suspect = chunk[~np.isfinite(chunk @ ones)]
            bad += int(np.count_nonzero(~np.isfinite(suspect).all(axis=1)))
        if bad:
            raise ValueError(f"{name} has {bad} of {len(arr)} rows containing NaN or inf")
    return arr


def failure_weights(
    kinds: Sequence[str], kind_weights: Mapping[str, float] | None = None
) -> np.ndarray:
    """Map each failure kind to its weight.

    Parameters
    ----------
    kinds : sequence of str
        One kind per failure query, e.g. ``"fn"``, ``"confusion"``, ``"fp"``.
    kind_weights : mapping or None, default=None
        Weight per kind; None means :data:`DEFAULT_KIND_WEIGHTS`. Weights must be > 0.

    Returns
    -------
    ndarray of shape (len(kinds),), float64

    Raises
    ------
    ValueError
        On a kind missing from ``kind_weights`` or a weight that is not a positive number.
    """
    weights = DEFAULT_KIND_WEIGHTS if kind_weights is None else kind_weights
    for kind, weight in weights.items():
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight > 0):
            raise ValueError(f"kind weight for {kind!r} must be a positive number, got {weight!r}")
    kinds = list(kinds)
    unknown = sorted({str(k) for k in kinds if k not in weights})
    if unknown:
        raise ValueError(
            f"unknown failure kind(s) {unknown} in {len(kinds)} failures; "
            f"expected one of {sorted(weights)}"
        )
    return np.array([float(weights[k]) for k in kinds], dtype=np.float64)


def nearest_rows(
    pool: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    candidates: np.ndarray | None = None,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> tuple[np.ndarray, np.ndarray]:
    """Find each query's ``k`` nearest pool rows (exact) without building the n x q distance
    matrix.

    The candidate rows are searched in chunks of ``block_elements // dim`` rows by FAISS's
    brute-force ``knn`` (float32 squared distances); each chunk's top-k merges into a running
    top-k per query.

    Parameters
    ----------
    pool : ndarray of shape (n, d)
    queries : ndarray of shape (q, d)
    k : int
        Neighbours per query, >= 1; clipped to the number of candidate rows.
    candidates : ndarray of int, optional
        Pool rows that may be returned (sorted or not); default all rows.
    block_elements : int, default=DEFAULT_BLOCK_ELEMENTS
        Elements (rows x dim) of one pool chunk; bounds the working memory (a chunk of
        candidate rows is gathered into one float32 copy).

    Returns
    -------
    indices : ndarray of shape (q, k), int64
        Pool rows, nearest first (ties by row index).
    distances : ndarray of shape (q, k), float32
        Their Euclidean distances (float32 precision).
    """
    pool = validate_embeddings("pool embeddings", pool)
    queries = validate_embeddings("failure embeddings", queries, dim=pool.shape[1])
    return _top_k(pool, queries, k, _candidate_rows(candidates, len(pool)), block_elements)


def _candidate_rows(candidates: np.ndarray | None, n_rows: int) -> np.ndarray | None:
    """Checked int64 candidate rows (None stays None: all rows)."""
    if candidates is None:
        return None
    rows = np.asarray(candidates, dtype=np.int64)
    if rows.size == 0:
        raise ValueError("no candidate pool rows to search")
    if rows.min() < 0 or rows.max() >= n_rows:
        raise ValueError(
            f"candidates must index the {n_rows} pool rows, got {rows.min()}..{rows.max()}"
        )
    return rows


def _top_k(
    pool: np.ndarray,
    queries: np.ndarray,
    k: int,
    candidates: np.ndarray | None,
    block_elements: int,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_rows` on validated inputs: exact L2 search by FAISS, chunk by chunk."""
    import faiss  # numpy in, numpy out; imported here because loading it takes ~1 s

    rows = np.arange(len(pool)) if candidates is None else candidates
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(rows) == 0:
        raise ValueError("no candidate pool rows to search")
    k = min(int(k), len(rows))
    query32 = np.ascontiguousarray(queries, dtype=np.float32)
    if len(queries) == 0:
        return np.full((0, k), -1, dtype=np.int64), np.full((0, k), np.inf, dtype=np.float32)
    # FAISS's own index would copy the pool (2 GiB at 1M x 512); instead each chunk of
    # candidate rows is searched brute-force in place and the running top-k merged in a heap.
    heap = faiss.ResultHeap(len(queries), k)
    step = max(k, block_elements // pool.shape[1])
    for start in range(0, len(rows), step):
        block_rows = rows[start : start + step]
        block = pool[start : start + step] if candidates is None else pool[block_rows]
        dist, local = faiss.knn(query32, np.ascontiguousarray(block, dtype=np.float32), k)
        heap.add_result(dist, np.where(local >= 0, block_rows[np.maximum(local, 0)], -1))
    heap.finalize()
    best_i, best_d = heap.I, heap.D
    order = np.lexsort((best_i, best_d), axis=-1)  # nearest first, ties by row index
    best_i = np.take_along_axis(best_i, order, axis=1)
    best_d = np.sqrt(np.maximum(np.take_along_axis(best_d, order, axis=1), 0.0))
    return best_i, best_d


def select_targets(
    pool: np.ndarray,
    queries: np.ndarray,
    weights: np.ndarray,
    budget: int,
    *,
    candidates: np.ndarray | None = None,
    neighbors_per_query: int | None = None,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> TargetingResult:
    """Pick up to ``budget`` pool rows near the failure queries, spread by weight.

    See the module docstring for the rules. Failures are searched in priority order and only
    as far as the schedule reaches: first ``budget`` of them, then twice as many, ... until
    the share is full and the next unsearched failure's first turn would come after the last
    pick. With 10,000 failures and a 700-row share this searches ~700-1,400 of them, not all.

    Parameters
    ----------
    pool : ndarray of shape (n, d)
    queries : ndarray of shape (q, d)
        Failure embeddings, in the caller's order of importance (it breaks ties between
        failures of equal weight, e.g. sort by detection confidence first).
    weights : ndarray of shape (q,)
        Positive weight per query (see :func:`failure_weights`).
    budget : int
        Maximum number of picks, >= 1.
    candidates : ndarray of int, optional
        Pool rows that may be picked; default all rows.
    neighbors_per_query : int or None, default=None
        Length of each failure's neighbour list, i.e. the most rows one failure can take.
        None: ``min(budget, max(16, ceil(4 * budget / q)))``, four times the largest fair
        share a query can get under the default weights, so collisions between neighbouring
        failures rarely leave the share short.
    block_elements : int, default=DEFAULT_BLOCK_ELEMENTS
        Pool chunk size for :func:`nearest_rows`.

    Returns
    -------
    TargetingResult
        Picks in order, with the query each serves and the exact (float64) distance.
    """
    if budget < 1:
        raise ValueError(f"targeting budget must be >= 1, got {budget}")
    pool = validate_embeddings("pool embeddings", pool)
    queries = validate_embeddings("failure embeddings", queries, dim=pool.shape[1])
    candidates = _candidate_rows(candidates, len(pool))
    n_queries = len(queries)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n_queries,):
        raise ValueError(f"weights has shape {weights.shape}, expected ({n_queries},)")
    if not (np.isfinite(weights).all() and (weights > 0).all()):
        raise ValueError("weights must be positive finite numbers")
    if n_queries == 0:
        return TargetingResult.empty()
    if neighbors_per_query is None:
        neighbors_per_query = min(
            budget, max(MIN_NEIGHBORS_PER_QUERY, math.ceil(4 * budget / n_queries))
        )
    # Priority: heavier kind first, then the caller's order. Rank r is the r-th failure.
    priority = np.lexsort((np.arange(n_queries), -weights))
    idx_parts, dist_parts = [], []
    n_searched = 0
    while True:
        batch = priority[n_searched : n_searched + max(budget, n_searched)]
        idx, dist = _top_k(
            pool, queries[batch], neighbors_per_query, candidates, block_elements
        )
        idx_parts.append(idx)
        dist_parts.append(dist)
        n_searched += len(batch)
        picks, served_rank, last_turn = _schedule(
            np.concatenate(idx_parts),
            np.concatenate(dist_parts),
            weights[priority[:n_searched]],
            budget,
        )
        if n_searched == n_queries:
            break
        next_first_turn = (1.0 / weights[priority[n_searched]], n_searched)
        if len(picks) == budget and last_turn < next_first_turn:
            break
    served = priority[served_rank]
    exact = np.linalg.norm(
        np.asarray(pool[picks], dtype=np.float64) - queries[served].astype(np.float64),
        axis=1,
    )
    return TargetingResult(picks, served, exact)


def _schedule(
    idx: np.ndarray, dist: np.ndarray, weights: np.ndarray, budget: int
) -> tuple[np.ndarray, np.ndarray, tuple[float, int]]:
    """Stride-schedule picks over failure groups, from searched failures in rank order.

    Returns the picked rows, the rank of the failure each serves, and the (time, group rank)
    key of the last turn taken ((inf, 0) when nothing was picked).
    """
    n_queries, k = idx.shape
    # Failure groups: queries sharing their nearest pool row are near-duplicates. A group
    # turns with its heaviest weight at the rank of its best member (ranks are weight-sorted).
    _, group = np.unique(idx[:, 0], return_inverse=True)
    group = group.ravel()
    n_groups = int(group.max()) + 1
    group_weight = np.zeros(n_groups)
    np.maximum.at(group_weight, group, weights)
    group_rank = np.full(n_groups, n_queries)
    np.minimum.at(group_rank, group, np.arange(n_queries))

    # One merged neighbour list per group: entries sorted by (group, distance, rank).
    flat_group = np.repeat(group, k)
    flat_rank = np.repeat(np.arange(n_queries), k)
    order = np.lexsort((flat_rank, dist.ravel(), flat_group))
    list_rows = idx.ravel()[order]
    list_rank = flat_rank[order]
    bounds = np.searchsorted(flat_group[order], np.arange(n_groups + 1))

    # Stride scheduling: group g takes its t-th pick at virtual time t / weight[g].
    heap = [(1.0 / group_weight[g], int(group_rank[g]), g) for g in range(n_groups)]
    heapq.heapify(heap)
    cursor = bounds[:-1].copy()
    turns = np.zeros(n_groups, dtype=np.int64)
    taken: set[int] = set()
    picks: list[int] = []
    served: list[int] = []
    last_turn = (math.inf, 0)
    while heap and len(picks) < budget:
        turn_time, rank, g = heapq.heappop(heap)
        pos, end = cursor[g], bounds[g + 1]
        while pos < end and int(list_rows[pos]) in taken:
            pos += 1
        if pos == end:
            continue  # this group's neighbours are all taken: it drops out
        row = int(list_rows[pos])
        taken.add(row)
        picks.append(row)
        served.append(int(list_rank[pos]))
        last_turn = (turn_time, rank)
        cursor[g] = pos + 1
        turns[g] += 1
        heapq.heappush(heap, ((turns[g] + 1) / group_weight[g], rank, g))
    return np.asarray(picks, dtype=np.int64), np.asarray(served, dtype=np.int64), last_turn
