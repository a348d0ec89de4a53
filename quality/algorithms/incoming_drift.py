"""Incoming-data drift: is a newly arrived batch of samples drawn from the pool's distribution?

Given the embeddings of a *reference* (the pool the loop already knows) and of a new *batch*,
three questions are answered, each by its own public function and all at once by
:func:`detect_incoming_drift`:

1. **Which samples are novel?** (:func:`novelty_scores`) A batch sample's score is the
   distance to its ``k``-th nearest reference sample. The reference's own leave-one-out
   ``k``-th neighbour distances calibrate it into a conformal p-value,
   ``(1 + #{reference scores >= score}) / (n + 1)``: the share of the pool at least as
   isolated as the sample. Samples are flagged by Benjamini-Hochberg over these p-values
   (:func:`flag_novel`), which bounds the expected share of false flags by ``fdr``.
2. **Has the batch drifted as a whole?** (:func:`batch_test`) A two-sample permutation test:
   the statistic is the share of the batch that is *far* from the reference (its ``k``-NN
   distance to the reference above the ``1 - tail`` quantile, default 98 %, of the
   leave-one-out ``k``-NN distances of reference and batch together); the null distribution
   comes from random re-splits of reference + batch into a "batch" of the same size and a
   "reference" of the rest. A new domain that is a minority of the batch moves this share
   much more than it moves a mean distance. The ``k``-th neighbour (not the first) keeps the
   test honest on data with near-duplicates: a duplicate pair split by a permutation shortens one
   distance to its twin, but not the ``k``-th one.
3. **What is novel?** (:func:`cluster_novel`) The flagged samples are grouped by average-
   linkage agglomerative clustering, cut at the width of the reference (the distance within
   which 99 % of its pairs lie): a new domain no more spread out than the pool makes one
   cluster, and two domains farther apart than that make two.

The embeddings are compared after ``scale``: ``"l2"`` (default) puts every row on the unit
sphere (cosine geometry, what image embeddings are usually compared with), ``"standardize"``
z-scores each dimension with the reference's mean and spread, ``"none"`` keeps them as given.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> pool = rng.normal(size=(300, 8))
>>> batch = np.vstack([rng.normal(size=(45, 8)), rng.normal(6.0, 1.0, size=(5, 8))])
>>> drift = detect_incoming_drift(pool, batch, scale="none", seed=0)
>>> bool(drift.alarm), int(drift.novel[45:].sum()), len(drift.clusters)
(True, 5, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors

__all__ = [
    "SCALES",
    "BatchTest",
    "IncomingDrift",
    "NoveltyScores",
    "batch_test",
    "check_params",
    "cluster_novel",
    "detect_incoming_drift",
    "flag_novel",
    "novelty_scores",
]

#: Ways to put the embeddings on a common scale before distances are taken.
SCALES = ("l2", "standardize", "none")


@dataclass(frozen=True)
class NoveltyScores:
    """Per-sample novelty of a batch against a reference (see :func:`novelty_scores`)."""

    score: np.ndarray  # (m,) distance of each batch sample to its k-th nearest reference sample
    p_value: np.ndarray  # (m,) conformal p-value of each score, in (0, 1]
    reference_score: np.ndarray  # (n,) leave-one-out k-th neighbour distance in the reference
    k: int


@dataclass(frozen=True)
class BatchTest:
    """A permutation two-sample test of a batch against a reference (see :func:`batch_test`)."""

    statistic: float  # share of the batch whose k-NN distance to the reference is "far"
    p_value: float  # (1 + #{null >= statistic}) / (n_permutations + 1)
    null_mean: float
    null_std: float
    n_permutations: int
    reference_used: int  # reference rows in the test (a seeded subsample above max_reference)


@dataclass(frozen=True)
class IncomingDrift:
    """Everything :func:`detect_incoming_drift` found about a batch."""

    scores: NoveltyScores
    test: BatchTest
    novel: np.ndarray  # (m,) bool, flagged by Benjamini-Hochberg at ``fdr``
    cluster: np.ndarray  # (m,) int, the novel sample's cluster (0 = largest), -1 if not novel
    alarm: bool  # test.p_value < alpha
    alpha: float
    fdr: float

    @property
    def clusters(self) -> list[np.ndarray]:
        """Batch rows of each novel cluster, largest first."""
        return [np.flatnonzero(self.cluster == c) for c in range(int(self.cluster.max()) + 1)]


def novelty_scores(
    reference: np.ndarray, batch: np.ndarray, *, k: int = 5, scale: str = "l2"
) -> NoveltyScores:
    """Score each batch sample by its ``k``-NN distance to the reference, with a p-value.

    Parameters
    ----------
    reference : array-like of shape (n, d)
        Embeddings of the pool, ``n > k``.
    batch : array-like of shape (m, d)
        Embeddings of the new batch, ``m >= 1``.
    k : int, default=5
        Which neighbour's distance is the score.
    scale : {"l2", "standardize", "none"}, default="l2"
        How both sets are scaled first (see the module docstring).

    Returns
    -------
    NoveltyScores

    Raises
    ------
    ValueError
        On arrays that are not 2-D, finite and of one width, or a ``k`` out of range.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = novelty_scores(rng.normal(size=(200, 4)), [[0.0, 0, 0, 0], [9.0, 9, 9, 9]],
    ...                    scale="none")
    >>> bool(s.p_value[0] > 0.5), float(s.p_value[1]) == 1 / 201
    (True, True)
    """
    reference, batch, k = _prepare(reference, batch, k, scale)
    return _novelty(reference, batch, k)


def batch_test(
    reference: np.ndarray,
    batch: np.ndarray,
    *,
    k: int = 5,
    tail: float = 0.02,
    n_permutations: int = 999,
    seed: int = 0,
    max_reference: int = 2000,
    scale: str = "l2",
) -> BatchTest:
    """Permutation test of "the batch is drawn like the reference" on its share of far samples.

    Parameters
    ----------
    reference, batch : array-like of shape (n, d) and (m, d)
        As in :func:`novelty_scores`.
    k : int, default=5
    tail : float, default=0.02
        A sample is far when its ``k``-NN distance exceeds the ``1 - tail`` quantile of
        the combined set's leave-one-out ``k``-NN distances; in (0, 1].
    n_permutations : int, default=999
        Random re-splits; the smallest possible p-value is ``1 / (n_permutations + 1)``.
    seed : int, default=0
        Seeds the permutations and the reference subsample: same seed, same p-value.
    max_reference : int, default=2000
        Above this many reference rows, a seeded subsample of this size enters the test
        (its cost grows with ``(n + m)**2``).
    scale : {"l2", "standardize", "none"}, default="l2"

    Returns
    -------
    BatchTest

    Raises
    ------
    ValueError
        On bad arrays or parameters (naming them).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> test = batch_test(rng.normal(size=(200, 4)), rng.normal(3.0, 1.0, size=(20, 4)),
    ...                   scale="none", n_permutations=199)
    >>> test.p_value
    0.005
    """
    reference, batch, k = _prepare(
        reference, batch, k, scale,
        tail=tail, n_permutations=n_permutations, seed=seed, max_reference=max_reference,
    )
    return _permutation_test(reference, batch, k, tail, n_permutations, max_reference, seed)


def flag_novel(p_value: np.ndarray, *, fdr: float = 0.1) -> np.ndarray:
    """Benjamini-Hochberg: flag the samples whose p-values survive a false discovery rate.

    Parameters
    ----------
    p_value : array-like of shape (m,)
        Per-sample p-values in (0, 1].
    fdr : float, default=0.1
        The expected share of flagged samples that are not novel, in (0, 1).

    Returns
    -------
    ndarray of shape (m,), bool

    Examples
    --------
    >>> flag_novel([0.001, 0.002, 0.5, 0.9], fdr=0.1).tolist()
    [True, True, False, False]
    """
    p = np.asarray(p_value, dtype=float)
    if p.ndim != 1 or not np.all((p > 0) & (p <= 1)):
        raise ValueError("p_value must be a 1-D array of p-values in (0, 1]")
    return _benjamini_hochberg(p, _check_fraction("fdr", fdr))


def cluster_novel(
    batch: np.ndarray,
    novel: np.ndarray,
    *,
    distance_threshold: float,
) -> np.ndarray:
    """Group the novel batch samples into clusters (average linkage, cut at a distance).

    Parameters
    ----------
    batch : array-like of shape (m, d)
        The (scaled) batch embeddings.
    novel : array-like of shape (m,), bool
        Which samples to group.
    distance_threshold : float
        Clusters whose average pairwise distance exceeds this stay apart; > 0.

    Returns
    -------
    ndarray of shape (m,), int
        Cluster of each novel sample, numbered by size (0 = largest; ties by first row);
        -1 for samples that are not novel.

    Examples
    --------
    >>> x = np.array([[0.0, 0], [0.1, 0], [5, 5], [5.1, 5], [2, 2]])
    >>> cluster_novel(x, [True, True, True, True, False], distance_threshold=1.0).tolist()
    [0, 0, 1, 1, -1]
    """
    batch = _check_matrix("batch", batch)
    novel = np.asarray(novel)
    if novel.dtype != bool or novel.shape != (len(batch),):
        raise ValueError(f"novel must be a bool array of length {len(batch)} (one per batch row)")
    threshold = float(distance_threshold)
    if not np.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"distance_threshold must be a positive number; got {distance_threshold}")
    return _clusters(batch, novel, threshold)


def detect_incoming_drift(
    reference: np.ndarray,
    batch: np.ndarray,
    *,
    k: int = 5,
    tail: float = 0.02,
    alpha: float = 0.01,
    fdr: float = 0.1,
    n_permutations: int = 999,
    seed: int = 0,
    max_reference: int = 2000,
    scale: str = "l2",
) -> IncomingDrift:
    """Per-sample novelty, a batch-level permutation test and the novel clusters, in one call.

    Parameters
    ----------
    reference, batch : array-like of shape (n, d) and (m, d)
        Embeddings of the pool and of the new batch.
    k : int, default=5
        The neighbour whose distance scores a sample.
    tail : float, default=0.02
        What counts as far in the batch test (see :func:`batch_test`).
    alpha : float, default=0.01
        The batch alarms when the test's p-value is below it.
    fdr : float, default=0.1
        False discovery rate of the per-sample flags (Benjamini-Hochberg).
    n_permutations, seed, max_reference : see :func:`batch_test`.
    scale : {"l2", "standardize", "none"}, default="l2"

    Returns
    -------
    IncomingDrift

    Raises
    ------
    ValueError
        On bad arrays or parameters, before any work.

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> pool = rng.normal(size=(300, 8))
    >>> same = detect_incoming_drift(pool, rng.normal(size=(40, 8)), scale="none")
    >>> bool(same.alarm), int(same.novel.sum())
    (False, 0)
    """
    reference, batch, k = _prepare(
        reference, batch, k, scale, tail=tail, alpha=alpha, fdr=fdr,
        n_permutations=n_permutations, seed=seed, max_reference=max_reference,
    )

    scores = _novelty(reference, batch, k)
    test = _permutation_test(reference, batch, k, tail, n_permutations, max_reference, seed)
    novel = _benjamini_hochberg(scores.p_value, fdr)
    cluster = _clusters(batch, novel, _pool_width(reference, seed))
    return IncomingDrift(
        scores=scores,
        test=test,
        novel=novel,
        cluster=cluster,
        alarm=bool(test.p_value < alpha),
        alpha=alpha,
        fdr=fdr,
    )


def check_params(
    *,
    k: int = 5,
    tail: float = 0.02,
    alpha: float = 0.01,
    fdr: float = 0.1,
    n_permutations: int = 999,
    seed: int = 0,
    max_reference: int = 2000,
    scale: str = "l2",
) -> None:
    """Raise ``ValueError`` naming the first bad parameter of :func:`detect_incoming_drift`.

    The check needs no data (``k`` against the reference size is checked with the data), so
    callers can validate before they read anything.

    Examples
    --------
    >>> check_params(fdr=1.5)
    Traceback (most recent call last):
    ...
    ValueError: fdr must be a number in (0, 1); got 1.5
    """
    k = _check_positive_int("k", k)
    if isinstance(tail, bool) or not isinstance(tail, (int, float, np.floating)) or not 0 < tail <= 1:
        raise ValueError(f"tail must be a number in (0, 1]; got {tail!r}")
    _check_fraction("alpha", alpha)
    _check_fraction("fdr", fdr)
    _check_positive_int("n_permutations", n_permutations)
    if _check_positive_int("max_reference", max_reference) <= k:
        raise ValueError(f"max_reference must exceed k={k}; got {max_reference}")
    _check_seed(seed)
    _check_scale(scale)


# --- validation ---------------------------------------------------------------------------


def _check_matrix(name: str, x) -> np.ndarray:
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 2-D array of numbers") from None
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (rows x dims); got shape {x.shape}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{name} has {int(bad.sum())} rows with NaN or inf (first: row "
            f"{int(np.flatnonzero(bad)[0])}); recompute or drop those embeddings"
        )
    return x


def _prepare(reference, batch, k, scale, **params) -> tuple[np.ndarray, np.ndarray, int]:
    """Validated, scaled arrays and ``k``: every parameter is checked before any work."""
    reference, batch = _check_pair(reference, batch)
    check_params(k=k, scale=scale, **params)
    k = _check_k(k, len(reference))
    reference, batch = _scaled(reference, batch, scale)
    return reference, batch, k


def _check_pair(reference, batch) -> tuple[np.ndarray, np.ndarray]:
    reference, batch = _check_matrix("reference", reference), _check_matrix("batch", batch)
    if reference.shape[1] != batch.shape[1]:
        raise ValueError(
            f"reference and batch must have the same width; got {reference.shape[1]} and "
            f"{batch.shape[1]} (embeddings of two different models?)"
        )
    return reference, batch


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


def _check_k(k, n_reference: int) -> int:
    k = _check_positive_int("k", k)
    if k >= n_reference:
        raise ValueError(
            f"k={k} needs a reference of more than {k} samples; got {n_reference} "
            "(lower k or add samples to the reference)"
        )
    return k


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise ValueError(f"{name} must be a number in (0, 1); got {value!r}")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1); got {value}")
    return float(value)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    return int(seed)


def _check_scale(scale) -> str:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}; got {scale!r}")
    return scale


# --- kernels ------------------------------------------------------------------------------


def _scaled(reference: np.ndarray, batch: np.ndarray, scale: str) -> tuple[np.ndarray, np.ndarray]:
    if scale == "l2":
        def unit(x):
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            return x / np.where(norm > 0, norm, 1.0)  # a zero vector stays at the origin

        return unit(reference), unit(batch)
    if scale == "standardize":
        mean, std = reference.mean(axis=0), reference.std(axis=0)
        std = np.where(std > 0, std, 1.0)  # a constant dimension carries no distance
        return (reference - mean) / std, (batch - mean) / std
    return reference, batch


def _novelty(reference: np.ndarray, batch: np.ndarray, k: int) -> NoveltyScores:
    index = NearestNeighbors(n_neighbors=k).fit(reference)
    # kneighbors() without a query leaves each reference point out of its own neighbours.
    reference_score = index.kneighbors()[0][:, k - 1]
    score = index.kneighbors(batch, n_neighbors=k)[0][:, k - 1]
    ordered = np.sort(reference_score)
    at_least = len(ordered) - np.searchsorted(ordered, score, side="left")
    p_value = (1.0 + at_least) / (len(ordered) + 1.0)
    return NoveltyScores(score=score, p_value=p_value, reference_score=reference_score, k=k)


def _permutation_test(
    reference: np.ndarray,
    batch: np.ndarray,
    k: int,
    tail: float,
    n_permutations: int,
    max_reference: int,
    seed: int,
) -> BatchTest:
    rng = np.random.default_rng(seed)
    if len(reference) > max_reference:
        reference = reference[np.sort(rng.choice(len(reference), max_reference, replace=False))]
    m = len(batch)
    combined = np.vstack([batch, reference])
    distances = pairwise_distances(combined)
    # "Far" is decided on the combined set, the same for every split, so the statistic is a
    # function of the split alone: what makes the permutation p-value exact.
    loo = distances.copy()
    np.fill_diagonal(loo, np.inf)
    far = np.quantile(np.partition(loo, k - 1, axis=1)[:, k - 1], 1.0 - tail)

    def statistic(rows: np.ndarray) -> float:
        # k-th nearest distance from each "batch" row to the rows outside it.
        block = distances[rows]
        block[:, rows] = np.inf
        kth = np.partition(block, k - 1, axis=1)[:, k - 1]
        return float(np.mean(kth > far))

    observed = statistic(np.arange(m))
    null = np.array(
        [statistic(rng.permutation(len(combined))[:m]) for _ in range(n_permutations)]
    )
    return BatchTest(
        statistic=observed,
        p_value=float((1 + np.sum(null >= observed)) / (n_permutations + 1)),
        null_mean=float(null.mean()),
        null_std=float(null.std()),
        n_permutations=n_permutations,
        reference_used=len(reference),
    )


def _benjamini_hochberg(p: np.ndarray, fdr: float) -> np.ndarray:
    m = len(p)
    order = np.argsort(p, kind="stable")
    passed = p[order] <= fdr * np.arange(1, m + 1) / m
    flagged = np.zeros(m, dtype=bool)
    if passed.any():
        flagged[order[: np.flatnonzero(passed)[-1] + 1]] = True
    return flagged


def _pool_width(reference: np.ndarray, seed: int, sample: int = 1000) -> float:
    """The distance within which 99 % of pairs of reference samples lie (seeded subsample)."""
    rng = np.random.default_rng(seed)
    if len(reference) > sample:
        reference = reference[rng.choice(len(reference), sample, replace=False)]
    d = pairwise_distances(reference)
    width = float(np.quantile(d[np.triu_indices(len(reference), 1)], 0.99))
    return width if width > 0 else 1.0  # an all-identical reference: any gap is novel


def _clusters(batch: np.ndarray, novel: np.ndarray, threshold: float) -> np.ndarray:
    out = np.full(len(batch), -1, dtype=np.int64)
    rows = np.flatnonzero(novel)
    if len(rows) == 0:
        return out
    if len(rows) == 1:
        out[rows] = 0
        return out
    labels = AgglomerativeClustering(
        n_clusters=None, distance_threshold=threshold, linkage="average"
    ).fit_predict(batch[rows])
    # Number clusters by size, largest first, ties by their first row: stable names.
    sizes = np.bincount(labels)
    first = np.array([np.flatnonzero(labels == c)[0] for c in range(len(sizes))])
    rank = np.lexsort((first, -sizes))
    renumber = np.empty_like(rank)
    renumber[rank] = np.arange(len(rank))
    out[rows] = renumber[labels]
    return out
