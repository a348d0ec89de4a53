"""Plain, slow ZCore: one loop iteration per sample, full sort, written for clarity.

This follows the reference script (voxel51/zcore, ``core/coreset/zcore.py``) step by step and
serves as the ground truth for :mod:`.zcore` in tests and as the baseline in benchmarks.
Per sample it scans every row twice and sorts all N redundancy distances, O(N log N).

Its semantics are the reference's, with the choices :mod:`.zcore` documents made explicit:
ties resolve by the draws' tie-breaking order (rows are taken in ``draws.order`` and sorted
stably, where the reference's default ``argsort`` is unstable and favours early rows), a
single row gets no redundancy step (the reference raises ``IndexError``), and
penalties are computed in float64. As in the reference, coverage distances are float64 and
redundancy distances are in the embeddings' dtype, both summed with ``ndarray.sum`` over the
subspace (left to right for ``sample_dim < 8``, the order :mod:`.zcore` uses; numpy sums
longer rows pairwise, which can differ in the last bit).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .zcore import ZCoreDraws, ZCoreParams, combine_embeddings, draw_samples, finalize_scores


def reference_raw_scores(
    embeddings: np.ndarray | Sequence[np.ndarray],
    draws: ZCoreDraws,
    redund_nn: int = 1000,
    redund_exp: int = 4,
    *,
    sort_kind: str = "stable",
) -> np.ndarray:
    """Coverage credits minus redundancy penalties, one sample at a time.

    Parameters
    ----------
    embeddings : array-like of shape (n_rows, dim), or list/tuple of such arrays
    draws : ZCoreDraws
    redund_nn, redund_exp : int
        As in :class:`.zcore.ZCoreParams`.
    sort_kind : str, default="stable"
        ``numpy.argsort`` kind for the redundancy ranking. "stable" breaks ties by the
        tie-breaking order, as :mod:`.zcore` does; "quicksort" is the reference script's
        (faster, and the honest timing baseline), which agrees except among exactly tied
        distances.

    Returns
    -------
    ndarray of shape (n_rows,), float64
        Unnormalised scores, comparable to :func:`.zcore.coverage_redundancy_scores`.
    """
    x = combine_embeddings(embeddings)
    order = np.arange(len(x)) if draws.order is None else np.asarray(draws.order)
    x = x[order]  # ties go to the earliest row in tie-breaking order
    scores = np.zeros(len(x))
    for dims, point in zip(np.asarray(draws.dims), np.asarray(draws.points, dtype=np.float64)):
        # Coverage: the row nearest (L1) to the random point gets +1.
        to_point = np.abs(x[:, dims] - point).sum(axis=1)  # float64: point is float64
        cover = int(np.argmin(to_point))
        scores[cover] += 1

        # Redundancy: the cover row's nearest rows pay, by normalised inverse distance.
        to_cover = np.abs(x[:, dims] - x[cover, dims]).sum(axis=1)  # embeddings' dtype
        neighbours = np.argsort(to_cover, kind=sort_kind)[1:]  # [0] is the cover row itself
        if neighbours.size == 0:
            continue
        if to_cover[neighbours[0]] == 0:
            scores[neighbours[0]] -= 1
        else:
            neighbours = neighbours[:redund_nn]
            penalty = 1.0 / to_cover[neighbours].astype(np.float64) ** redund_exp
            scores[neighbours] -= penalty / penalty.sum()
    in_row_order = np.empty_like(scores)
    in_row_order[order] = scores
    return in_row_order


def reference_zcore_scores(
    embeddings: np.ndarray | Sequence[np.ndarray], params: ZCoreParams = ZCoreParams()
) -> np.ndarray:
    """Normalised ZCore scores from the slow loop, with the same draws and init noise as
    :func:`.zcore.zcore_scores` for ``params``."""
    x = combine_embeddings(embeddings)
    draws = draw_samples(x, params)
    if draws.dims.size == 0:
        return np.zeros(len(x))
    return finalize_scores(
        reference_raw_scores(x, draws, params.redund_nn, params.redund_exp), params
    )
