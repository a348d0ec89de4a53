"""Greedy k-center (farthest-point) coverage selection.

Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set Approach"
(ICLR 2018): repeatedly pick the row farthest (Euclidean) from its nearest centre. Rows that
are already labeled act as centres from the start but are never returned, so a batch covers
what the labeled set does not.

Cost: O(N * budget * dim) time, O(N) extra memory. A running vector holds each row's squared
distance to its nearest centre; each pick updates it with one chunked matrix-vector product,
so no N x N (or N x budget) matrix is ever formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .targeting import validate_embeddings

#: Upper bound on the elements of one (rows x centres) product block when seeding the
#: running distances from many already-labeled centres (64 MiB in float32).
_BLOCK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class KCenterResult:
    """Outcome of :func:`kcenter_greedy`.

    Attributes
    ----------
    indices : ndarray of shape (budget,), int64
        Picked rows, in selection order.
    distances : ndarray of shape (budget,), float64
        Each pick's Euclidean distance to its nearest centre at the moment it was picked
        (non-increasing). ``inf`` for a cold-start first pick, which has no centre to be
        near.
    """

    indices: np.ndarray
    distances: np.ndarray


def kcenter_greedy(
    embeddings: np.ndarray,
    budget: int,
    *,
    already_selected: np.ndarray | None = None,
    seed: int = 0,
    chunk_size: int = 65536,
) -> KCenterResult:
    """Pick ``budget`` rows by greedy farthest-point (k-center) coverage.

    Parameters
    ----------
    embeddings : array-like of shape (n_rows, dim)
        One row per candidate. float32 and float64 are used as given (distances are computed
        in that precision); other real dtypes are converted to float32 once.
    budget : int
        Number of rows to pick, ``0 <= budget <= n_rows - len(already_selected)``.
    already_selected : array-like of int, optional
        Rows that are centres already (e.g. labeled samples). They shape the coverage but are
        never returned. Repeats are ignored.
    seed : int, default=0
        Chooses the first centre on a cold start (no ``already_selected``); otherwise unused.
    chunk_size : int, default=65536
        Rows per distance chunk; bounds the temporary memory.

    Returns
    -------
    KCenterResult
        Picks in selection order and their distances at pick time.

    Raises
    ------
    ValueError
        On a non-2-D or non-finite ``embeddings``, an out-of-range or non-integer
        ``already_selected``, a negative ``budget``, a ``budget`` above the number of
        unselected rows, or ``chunk_size < 1``.

    Notes
    -----
    Distances use ``|x|^2 + |c|^2 - 2 x.c`` (clipped at 0) so each update is one BLAS
    matrix-vector product per chunk. Ties go to the lowest row index, so results are
    deterministic for a given ``seed``.
    """
    x = validate_embeddings("embeddings", embeddings)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    n_rows = len(x)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise ValueError(f"budget must be an integer, got {budget!r}")
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    labeled = _validate_rows("already_selected", already_selected, n_rows)
    available = n_rows - len(labeled)
    if budget > available:
        raise ValueError(
            f"budget={budget} exceeds the {available} selectable rows "
            f"({n_rows} rows, {len(labeled)} already selected)"
        )
    indices = np.empty(budget, dtype=np.int64)
    distances = np.empty(budget, dtype=np.float64)
    if budget == 0:
        return KCenterResult(indices, distances)

    sq_norms = np.empty(n_rows, dtype=x.dtype)
    for start in range(0, n_rows, chunk_size):
        part = x[start : start + chunk_size]
        np.einsum("ij,ij->i", part, part, out=sq_norms[start : start + chunk_size])

    # Squared distance to the nearest centre; -inf marks rows that are centres themselves,
    # so argmax never returns them even when duplicates leave every other row at 0.
    nearest = np.full(n_rows, np.inf, dtype=x.dtype)
    if len(labeled):
        _seed_from_centres(x, sq_norms, labeled, nearest, chunk_size)
        nearest[labeled] = -np.inf
        first = int(np.argmax(nearest))
    else:
        first = int(np.random.default_rng(seed).integers(n_rows))

    pick = first
    for step in range(budget):
        indices[step] = pick
        distances[step] = np.sqrt(max(float(nearest[pick]), 0.0))
        nearest[pick] = -np.inf
        if step + 1 < budget:
            _update_nearest(x, sq_norms, pick, nearest, chunk_size)
            pick = int(np.argmax(nearest))
    return KCenterResult(indices, distances)


def _validate_rows(name: str, rows: np.ndarray | None, n_rows: int) -> np.ndarray:
    """Sorted unique int64 row indices, checked against ``n_rows``."""
    if rows is None:
        return np.empty(0, dtype=np.int64)
    arr = np.asarray(rows)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{name} must be a 1-D array of row indices, got shape {arr.shape} "
            f"and dtype {arr.dtype}"
        )
    bad = int(np.count_nonzero((arr < 0) | (arr >= n_rows)))
    if bad:
        raise ValueError(f"{name} has {bad} indices outside [0, {n_rows})")
    return np.unique(arr.astype(np.int64))


def _update_nearest(
    x: np.ndarray, sq_norms: np.ndarray, centre: int, nearest: np.ndarray, chunk_size: int
) -> None:
    """Lower ``nearest`` (in place) with squared distances to the new ``centre``."""
    c = x[centre]
    for start in range(0, len(x), chunk_size):
        stop = min(start + chunk_size, len(x))
        d2 = x[start:stop] @ c
        d2 *= -2.0
        d2 += sq_norms[start:stop]
        d2 += sq_norms[centre]
        np.maximum(d2, 0.0, out=d2)  # rounding can push near-duplicates below zero
        np.minimum(nearest[start:stop], d2, out=nearest[start:stop])


def _seed_from_centres(
    x: np.ndarray, sq_norms: np.ndarray, centres: np.ndarray, nearest: np.ndarray, chunk_size: int
) -> None:
    """Set ``nearest`` to each row's squared distance to its nearest of ``centres``."""
    per_block = max(1, _BLOCK_ELEMENTS // chunk_size)
    for c0 in range(0, len(centres), per_block):
        block = centres[c0 : c0 + per_block]
        cx = x[block]
        for start in range(0, len(x), chunk_size):
            stop = min(start + chunk_size, len(x))
            d2 = x[start:stop] @ cx.T
            d2 *= -2.0
            d2 += sq_norms[start:stop, None]
            d2 += sq_norms[block][None, :]
            closest = np.maximum(d2.min(axis=1), 0.0)
            np.minimum(nearest[start:stop], closest, out=nearest[start:stop])
