"""Typical-cluster coverage: label the most typical row of each dense region nothing covers.

Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite Strategies Suit High and
Low Budgets" (ICML 2022, *TypiClust*): when only a few labels per class exist, the labels
that teach most are typical examples of dense regions, not the outliers that farthest-point
(k-center) coverage reaches first. The rows are clustered by k-means into
``n_anchors + n_picks`` clusters (anchors: labeled or targeted rows), so at least
``n_picks`` clusters hold no anchor; each pick takes the largest such cluster's most typical
row. *Typicality* is the inverse of the mean distance to the row's ``k_neighbors`` nearest
cluster members (a k-NN density estimate).

Beyond one pick per uncovered cluster (more picks than uncovered clusters, or clusters capped
at :data:`MAX_CLUSTERS`), the next pick goes to the cluster with the fewest anchors and picks
per member, largest first: the same rule, under-covered dense regions first.

Cost: k-means++ seeding on a seeded sample of at most 2,048 rows, Lloyd's iterations (50
at most) on one of at most ``max(5,000, 32 x clusters)`` rows, one pass assigning every row
to its nearest centre, and a k-NN search inside each cluster against at most
:data:`TYPICALITY_REFERENCE_ROWS` of its members (a seeded sample of a larger cluster, so a
cluster of 10^5 rows costs 10^5 x 4,096 distances, not 10^10). The caller bounds ``n`` (the
planner samples at most :data:`.coverage_picks.COVERAGE_SAMPLE_ROWS` candidates).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

import numpy as np

from .targeting import nearest_rows, validate_embeddings

__all__ = ["MAX_CLUSTERS", "TYPICALITY_REFERENCE_ROWS", "TypicalResult", "typical_picks"]

#: Most k-means clusters, however many rows are labeled (bounds the clustering's cost).
MAX_CLUSTERS = 512
#: Members of one cluster that a row's typicality is measured against at most.
TYPICALITY_REFERENCE_ROWS = 4096
# k-means fits on a sample of at most max(_FIT_ROWS, _FIT_ROWS_PER_CLUSTER x clusters) rows
# (FAISS's k-means samples 256 per centre), for at most _MAX_ITER Lloyd iterations, from
# k-means++ seeds drawn among at most _INIT_ROWS of them (>= 4 per cluster).
_FIT_ROWS = 5_000
_FIT_ROWS_PER_CLUSTER = 32
_INIT_ROWS = 2_048
_MAX_ITER = 50


@dataclass(frozen=True)
class TypicalResult:
    """Outcome of :func:`typical_picks`.

    Attributes
    ----------
    indices : ndarray of shape (n_picks,), int64
        Picked rows (all >= ``n_anchors``), in pick order.
    typicality : ndarray of shape (n_picks,), float64
        Each pick's typicality: 1 / mean distance to its nearest cluster members (``inf``
        for a row with exact duplicates only, 0 for a cluster of one row).
    """

    indices: np.ndarray
    typicality: np.ndarray


def typical_picks(
    points: np.ndarray,
    n_picks: int,
    *,
    n_anchors: int = 0,
    k_neighbors: int = 20,
    seed: int = 0,
) -> TypicalResult:
    """Pick ``n_picks`` rows, each the most typical row of a dense region without anchors.

    Parameters
    ----------
    points : ndarray of shape (n_rows, dim)
        Anchors first (rows ``0 .. n_anchors - 1``: labeled or already picked; they cover
        their clusters but are never returned), then the candidates.
    n_picks : int
        Rows to pick, ``0 <= n_picks <= n_rows - n_anchors``.
    n_anchors : int, default=0
    k_neighbors : int, default=20
        Neighbours in the typicality estimate (the paper's 20); fewer in smaller clusters.
    seed : int, default=0
        Seeds k-means and the typicality reference sample.

    Returns
    -------
    TypicalResult

    Raises
    ------
    ValueError
        On non-finite or non-2-D ``points``, a negative or too large ``n_picks``, an
        ``n_anchors`` outside ``[0, n_rows]`` or ``k_neighbors < 1``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> dense = rng.normal(0.0, 0.1, size=(50, 2))  # a dense blob around the origin
    >>> outlier = np.array([[5.0, 5.0]])
    >>> picks = typical_picks(np.vstack([dense, outlier]), 1, seed=0)
    >>> bool(picks.indices[0] < 50)  # k-center would open with the outlier; this does not
    True
    """
    x = validate_embeddings("embeddings", points)
    n_rows = len(x)
    if not 0 <= n_anchors <= n_rows:
        raise ValueError(f"n_anchors must lie in [0, {n_rows}], got {n_anchors}")
    if not 0 <= n_picks <= n_rows - n_anchors:
        raise ValueError(
            f"n_picks must lie in [0, {n_rows - n_anchors}] (candidate rows), got {n_picks}"
        )
    if k_neighbors < 1:
        raise ValueError(f"k_neighbors must be >= 1, got {k_neighbors}")
    if n_picks == 0:
        return TypicalResult(np.empty(0, dtype=np.int64), np.empty(0))
    x = np.ascontiguousarray(x, dtype=np.float32)
    n_clusters = min(n_rows, max(n_picks, min(n_anchors + n_picks, MAX_CLUSTERS)))
    labels = _cluster(x, n_clusters, seed)
    return _pick(x, labels, n_clusters, n_picks, n_anchors, k_neighbors, seed)


def _cluster(x: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """k-means cluster label per row: k-means++ seeds from a seeded sample of at most
    ``_INIT_ROWS`` rows, Lloyd's iterations on one of at most
    ``max(_FIT_ROWS, _FIT_ROWS_PER_CLUSTER * n_clusters)`` rows, then every row assigned to
    its nearest centre (one pass)."""
    from sklearn.cluster import KMeans, kmeans_plusplus

    if n_clusters == 1:
        return np.zeros(len(x), dtype=np.int64)
    rng = np.random.default_rng(seed)
    sample = _sample_rows(x, max(_FIT_ROWS, _FIT_ROWS_PER_CLUSTER * n_clusters), rng)
    # k-means++ takes one pass over its rows per centre, so it gets fewer rows than Lloyd's
    # iterations, and float64 ones: on float32 scikit-learn computes those distances in small
    # upcast chunks, ~6x slower.
    seeding = _sample_rows(sample, _INIT_ROWS, rng)
    centres, _ = kmeans_plusplus(seeding.astype(np.float64), n_clusters, random_state=seed)
    model = KMeans(n_clusters, init=centres.astype(np.float32), n_init=1, max_iter=_MAX_ITER)
    return model.fit(sample).predict(x).astype(np.int64)


def _sample_rows(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``n`` rows of ``x`` (a seeded sample, in row order; all rows when fewer)."""
    if len(x) <= n:
        return x
    return x[np.sort(rng.choice(len(x), size=n, replace=False))]


def _pick(x, labels, n_clusters, n_picks, n_anchors, k_neighbors, seed) -> TypicalResult:
    """Greedy picks: least covered cluster per member first, largest first, its most typical
    remaining candidate."""
    rng = np.random.default_rng(seed)
    sizes = np.bincount(labels, minlength=n_clusters)
    covered = np.bincount(labels[:n_anchors], minlength=n_clusters)
    queues: dict[int, deque] = {}  # cluster -> candidate rows, most typical first
    typicality: dict[int, float] = {}
    heap = []
    for c in np.unique(labels[n_anchors:]):
        heap.append((covered[c] / sizes[c], -sizes[c], int(c)))
    heapq.heapify(heap)
    picks: list[int] = []
    while len(picks) < n_picks:
        _, _, c = heapq.heappop(heap)
        if c not in queues:
            queues[c] = _ranked_candidates(x, labels, c, n_anchors, k_neighbors, rng, typicality)
        row = queues[c].popleft()
        picks.append(row)
        covered[c] += 1
        if queues[c]:
            heapq.heappush(heap, (covered[c] / sizes[c], -sizes[c], c))
    rows = np.asarray(picks, dtype=np.int64)
    return TypicalResult(rows, np.array([typicality[r] for r in picks], dtype=np.float64))


def _ranked_candidates(x, labels, cluster, n_anchors, k_neighbors, rng, typicality) -> deque:
    """The cluster's candidate rows, most typical first (ties by row); fills ``typicality``."""
    members = np.flatnonzero(labels == cluster)
    candidates = members[members >= n_anchors]
    reference = members
    if len(members) > TYPICALITY_REFERENCE_ROWS:
        reference = np.sort(rng.choice(members, size=TYPICALITY_REFERENCE_ROWS, replace=False))
    k = min(k_neighbors + 1, len(reference))
    if len(reference) == 1:
        scores = np.zeros(len(candidates))
    else:
        local, dist = nearest_rows(x[reference], x[candidates], k)
        neighbour = reference[local]
        keep = neighbour != candidates[:, None]  # a row is not its own neighbour
        keep &= np.cumsum(keep, axis=1) <= k_neighbors
        mean = (dist.astype(np.float64) * keep).sum(axis=1) / np.maximum(keep.sum(axis=1), 1)
        with np.errstate(divide="ignore"):
            scores = 1.0 / mean
    for row, score in zip(candidates, scores):
        typicality[int(row)] = float(score)
    order = np.lexsort((candidates, -scores))
    return deque(int(r) for r in candidates[order])
