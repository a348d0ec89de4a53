"""Label efficiency: how many labels a strategy needs to reach a baseline's result.

Pure numpy. A learning curve is (labels spent, score) per round, labels increasing. The
curve is read by linear interpolation between rounds and from the origin before the first
round (a detector trained on no labels scores 0), and never extrapolated past the last round.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["label_efficiency", "labels_to_reach", "mean_sd"]


def _curve(labels: Sequence[float], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(labels, dtype=np.float64)
    y = np.asarray(scores, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise ValueError(
            f"labels and scores must be 1-D, non-empty and of equal length; got {x.shape} and "
            f"{y.shape}"
        )
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("labels and scores must be finite")
    if x[0] <= 0 or np.any(np.diff(x) <= 0):
        raise ValueError(f"labels must be positive and strictly increasing; got {x.tolist()}")
    return np.concatenate([[0.0], x]), np.concatenate([[0.0], y])


def labels_to_reach(labels: Sequence[float], scores: Sequence[float], target: float) -> float | None:
    """Labels at which the curve first reaches ``target``, or None if it never does.

    Parameters
    ----------
    labels : sequence of float
        Labels spent after each round, positive and strictly increasing.
    scores : sequence of float
        Score (e.g. test mAP) after each round.
    target : float
        Score to reach, > 0.

    Returns
    -------
    float or None

    Examples
    --------
    >>> labels_to_reach([30, 60, 90], [0.1, 0.2, 0.3], 0.15)
    45.0
    >>> labels_to_reach([30, 60], [0.1, 0.2], 0.5) is None
    True
    """
    if not np.isfinite(target) or target <= 0:
        raise ValueError(f"target must be a finite score > 0; got {target!r}")
    x, y = _curve(labels, scores)
    reached = np.flatnonzero(y >= target)
    if not reached.size:
        return None
    i = int(reached[0])  # >= 1: the origin scores 0 < target
    fraction = (target - y[i - 1]) / (y[i] - y[i - 1])
    return float(x[i - 1] + fraction * (x[i] - x[i - 1]))


def label_efficiency(
    labels: Sequence[float],
    scores: Sequence[float],
    baseline_labels: Sequence[float],
    baseline_scores: Sequence[float],
) -> float | None:
    """Share of the baseline's labels a strategy needs to reach the baseline's final score.

    Parameters
    ----------
    labels, scores : sequence of float
        The strategy's curve.
    baseline_labels, baseline_scores : sequence of float
        The baseline's curve (e.g. random selection).

    Returns
    -------
    float or None
        ``labels_to_reach(strategy, baseline final score) / baseline final labels``: 0.7
        means 70 % of the baseline's labels buy the baseline's result. None when the
        strategy never reaches it or the baseline's final score is not above 0.

    Examples
    --------
    >>> label_efficiency([30, 60, 90], [0.2, 0.3, 0.4], [30, 60, 90], [0.1, 0.2, 0.3])
    0.6666666666666666
    """
    _curve(baseline_labels, baseline_scores)
    target = float(baseline_scores[-1])
    if target <= 0:
        return None
    reached = labels_to_reach(labels, scores, target)
    return None if reached is None else reached / float(baseline_labels[-1])


def mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample standard deviation of the values that are not None, and their count.

    Examples
    --------
    >>> mean_sd([1.0, 3.0, None])
    (2.0, 1.4142135623730951, 2)
    """
    kept = np.array([v for v in values if v is not None], dtype=np.float64)
    if not kept.size:
        return None, None, 0
    sd = float(kept.std(ddof=1)) if kept.size > 1 else 0.0
    return float(kept.mean()), sd, int(kept.size)
