"""Failure regions: how often the model fails around an evaluated sample, not only on it.

A sample where the model misses everything may be a hard or mislabeled one-off; a sample
whose nearest evaluated neighbours fail as well sits in a region the training labels do not
cover (a rare time of day, a sensor setting, a class seen from an unusual angle). Labels
placed in such a region teach the model what it lacks; labels next to a one-off do not.
The *regional miss share* of a sample is the mean miss share (missed ground-truth objects
over all of them) of the sample and its nearest evaluated neighbours in embedding space: a
k-NN estimate of the model's local miss rate, the error-rate view of where to label next.
"""

from __future__ import annotations

import numpy as np

from .targeting import nearest_rows, validate_embeddings

__all__ = ["DEFAULT_REGION_SIZE", "regional_miss_share"]

#: Evaluated samples a regional estimate averages over (the sample and its 4 nearest).
DEFAULT_REGION_SIZE = 5


def regional_miss_share(
    embeddings: np.ndarray, miss_share: np.ndarray, *, region_size: int = DEFAULT_REGION_SIZE
) -> np.ndarray:
    """Mean miss share of each evaluated sample's region: itself and its nearest neighbours.

    Parameters
    ----------
    embeddings : ndarray of shape (m, dim)
        One embedding per evaluated sample.
    miss_share : ndarray of shape (m,)
        Each sample's share of ground-truth objects the model missed, in [0, 1] (0 for a
        sample without ground truth).
    region_size : int, default=DEFAULT_REGION_SIZE
        Samples per region, the sample included; clipped to ``m``. With ``region_size >= m``
        every sample's region is the whole set, so every estimate is the overall mean.

    Returns
    -------
    ndarray of shape (m,), float64

    Raises
    ------
    ValueError
        On embeddings that are not a finite 2-D array, a ``miss_share`` of another length or
        outside [0, 1], or ``region_size < 1``.

    Examples
    --------
    >>> import numpy as np
    >>> points = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    >>> share = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 1.0])  # one blind region, one one-off
    >>> regional_miss_share(points, share, region_size=3).round(2).tolist()
    [0.67, 0.67, 0.67, 0.33, 0.33, 0.33]
    """
    x = validate_embeddings("evaluated sample embeddings", embeddings)
    share = np.asarray(miss_share, dtype=np.float64)
    if share.shape != (len(x),):
        raise ValueError(
            f"miss_share must hold one value per embedding ({len(x)}), got shape {share.shape}"
        )
    if len(share) and not ((share >= 0) & (share <= 1)).all():
        raise ValueError("miss_share values must lie in [0, 1]")
    if region_size < 1:
        raise ValueError(f"region_size must be >= 1, got {region_size}")
    if len(x) == 0:
        return np.empty(0)
    k = min(region_size, len(x))
    if k == len(x):
        return np.full(len(x), share.mean())
    # Each sample is its own nearest row (distance 0), so the region includes it.
    neighbours, _ = nearest_rows(x, x, k)
    return share[neighbours].mean(axis=1)
