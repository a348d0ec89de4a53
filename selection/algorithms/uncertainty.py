"""Uncertainty of a detector's predictions: how much labeling one image would teach it.

The second targeting source of the planner (:func:`.planner.plan_batch` with
``targeting_source="uncertainty"``) needs no labels: it ranks unlabeled pool images by how
unsure the current model is about what it sees there. The score follows the active-learning
literature for object detection:

* **Per box: binary entropy of its confidence**, ``H(p) = -p log2 p - (1 - p) log2(1 - p)``
  in bits (0 for ``p`` of 0 or 1, 1 at ``p = 0.5``). A FiftyOne ``Detection`` keeps only the
  confidence of its winning class, not the full class distribution, so the box is treated as
  a one-vs-rest decision, as Brust et al. (2018, "Active Learning for Deep Object Detection")
  do with their 1-vs-2 margin: for a binary decision margin and entropy rank boxes alike.
* **Per image: the sum of the ``top_k`` largest box entropies** (default 10). Brust et al.
  compare sum and max aggregation: the sum prefers images holding several uncertain objects,
  and annotators label whole images, so such an image buys the most per label; max prefers
  the single most doubtful box, which Haussmann et al. (2020, "Scalable Active Learning for
  Object Detection") found the strongest single aggregation at scale. The top-k sum sits
  between them: it counts several uncertain objects, but a crowded image or a weak
  detector's hundred low-confidence boxes cannot outrank everything by sheer count (each box
  adds at most 1 bit, an image at most ``top_k``). ``top_k=1`` is max aggregation, ``None``
  the plain sum.

**An image with no detections scores 0**, deliberately. Predictions are stored after the
detector's confidence threshold, so an empty list says "nothing above threshold" and carries
no uncertainty to measure: it is as likely an empty road as a blind spot. Giving it a high
score would let a weak detector (which finds nothing on most images) fill the targeting
share with arbitrary images. Blind spots are instead the job of the coverage share, which
runs after targeting and seeks what neither the labels nor the targeted images cover; when
every score is 0 the planner gives the whole batch to coverage and says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

#: Boxes per image that count towards its score (the most uncertain ones).
DEFAULT_TOP_K = 10


def binary_entropy(confidences: ArrayLike) -> np.ndarray:
    """Binary entropy in bits of each confidence, 0 at 0 and 1, 1 at 0.5.

    Parameters
    ----------
    confidences : array-like of float
        Probabilities in [0, 1] (checked by :func:`detection_uncertainty`, not here).

    Returns
    -------
    ndarray of float64, the shape of ``confidences``

    Examples
    --------
    >>> binary_entropy([0.0, 0.5, 0.9, 1.0]).round(3).tolist()
    [0.0, 1.0, 0.469, 0.0]
    """
    p = np.asarray(confidences, dtype=np.float64)
    entropy = np.zeros_like(p)
    inside = (p > 0.0) & (p < 1.0)  # 0 log 0 is 0: the endpoints are certain
    q = p[inside]
    entropy[inside] = -(q * np.log2(q) + (1.0 - q) * np.log2(1.0 - q))
    return entropy


def detection_uncertainty(
    confidences: Sequence[ArrayLike], *, top_k: int | None = DEFAULT_TOP_K
) -> np.ndarray:
    """Uncertainty score per image: the sum of its ``top_k`` largest box entropies.

    See the module docstring for why this score.

    Parameters
    ----------
    confidences : sequence of array-like, length n
        Per image (row), the confidences of its detections; an empty row (no detections)
        scores 0.
    top_k : int or None, default=10
        Boxes per image that count, most uncertain first; 1 is max aggregation, None sums
        every box.

    Returns
    -------
    ndarray of shape (n,), float64
        Scores in ``[0, top_k]`` bits (``[0, boxes]`` with ``top_k=None``).

    Raises
    ------
    ValueError
        If ``top_k`` is not a positive integer or None, a row is not one-dimensional, or
        confidences are NaN / inf or outside [0, 1] (the message counts them and their rows).

    Examples
    --------
    A confident image, a doubtful one, one with two doubtful boxes and an empty one:

    >>> scores = detection_uncertainty([[0.99, 0.98], [0.5], [0.5, 0.5], []])
    >>> scores.round(3).tolist()
    [0.222, 1.0, 2.0, 0.0]
    >>> detection_uncertainty([[0.5, 0.5], [0.5]], top_k=1).tolist()
    [1.0, 1.0]
    """
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1
    ):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    rows = [np.asarray(row, dtype=np.float64) for row in confidences]
    flat_rows = [i for i, row in enumerate(rows) if row.ndim != 1]
    if flat_rows:
        raise ValueError(
            f"{len(flat_rows)} of {len(rows)} rows are not 1-D lists of confidences "
            f"(first: row {flat_rows[0]} with shape {rows[flat_rows[0]].shape})"
        )
    lengths = np.array([len(row) for row in rows], dtype=np.int64)
    flat = np.concatenate(rows) if rows else np.empty(0)
    owner = np.repeat(np.arange(len(rows)), lengths)
    bad = ~(np.isfinite(flat) & (flat >= 0.0) & (flat <= 1.0))
    if bad.any():
        raise ValueError(
            f"{int(np.count_nonzero(bad))} confidences in {len(np.unique(owner[bad]))} of "
            f"{len(rows)} rows are NaN, inf or outside [0, 1]"
        )
    entropy = binary_entropy(flat)
    if top_k is not None:
        # Most uncertain first within each row (owner is already sorted), then keep the
        # first top_k of each row: rank = position - position of the row's first box.
        order = np.lexsort((-entropy, owner))
        entropy, owner = entropy[order], owner[order]
        rank = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        keep = rank < top_k
        entropy, owner = entropy[keep], owner[keep]
    return np.bincount(owner, weights=entropy, minlength=len(rows)).astype(np.float64)
