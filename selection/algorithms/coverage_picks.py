"""The picking steps the batch planner (:mod:`.planner`) is built from: coverage relative to
what is labeled or targeted (k-center, typical clusters, ZCore scores or random), and the
score-weighted farthest-point greedy that ZCore coverage and uncertainty targeting share.

**k-center and typical coverage above** :data:`COVERAGE_SAMPLE_ROWS` **candidates run on a
seeded uniform sample** of that many candidate rows (a documented approximation, so time and
memory stay bounded at 10^6 rows and more: each k-center step is one pass over the rows it
considers, ~0.1 GiB here instead of 2 GiB at 10^6 x 512). Its guarantee for k-center: greedy
farthest-point is a 2-approximation of the optimal k-center radius on the sample S (Gonzalez
1985), which is at most the optimal radius over all rows; and any region holding a fraction
``eps`` of the candidates contains a sampled row with probability at least ``1 - exp(-eps *
m)`` (m = sample size; with m = 50,000 and eps = 2 x 10^-4, i.e. 200 rows of a 10^6 pool,
that is 1 - 4.5e-5). So every such region lies within the sample's covering radius plus its
own diameter of a centre; only regions sparser than ``eps`` (outliers) can be missed, the
k-center-with-outliers view of coverage (Ding, Yu & Wang, "Greedy strategy works for
k-center clustering with outliers and coreset construction", ESA 2019). Typical coverage
looks for dense regions, and a uniform sample keeps each region's share of the rows in
expectation.
"""

from __future__ import annotations

import numpy as np

from . import kcenter, typical
from .targeting import nearest_rows

__all__ = ["COVERAGE_SAMPLE_ROWS", "coverage_picks", "score_weighted_picks"]

#: Candidate rows k-center and typical coverage consider at most; above it, a seeded uniform
#: sample.
COVERAGE_SAMPLE_ROWS = 50_000


def coverage_picks(
    pool: np.ndarray,
    selectable: np.ndarray,
    labeled: np.ndarray,
    targeted: np.ndarray,
    n_picks: int,
    *,
    method: str,
    scores: np.ndarray | None,
    candidate_factor: int,
    seed: int,
    chunk_size: int,
    sample_rows: int = COVERAGE_SAMPLE_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Coverage rows (never targeted ones) and their scores, relative to labeled + targeted rows.

    k-center and typical coverage consider at most ``sample_rows`` candidates (a uniform
    sample drawn with ``seed``; see the module docstring for the guarantee).
    """
    if n_picks == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    candidates = np.setdiff1d(selectable, targeted, assume_unique=True)
    if method == "random":
        rows = np.random.default_rng(seed).choice(candidates, size=n_picks, replace=False)
        return rows.astype(np.int64), np.full(n_picks, np.nan)
    anchors = np.concatenate([labeled, pool[targeted]], axis=0, dtype=np.float32)
    if method == "zcore":
        return score_weighted_picks(
            pool, candidates, anchors, scores, n_picks, candidate_factor, offset=True
        )
    if len(candidates) > max(sample_rows, n_picks):
        rng = np.random.default_rng(seed)
        candidates = np.sort(rng.choice(candidates, size=max(sample_rows, n_picks), replace=False))
    embeddings = _anchors_then(anchors, pool, candidates, chunk_size)
    if method == "typical":
        result = typical.typical_picks(embeddings, n_picks, n_anchors=len(anchors), seed=seed)
        return candidates[result.indices - len(anchors)], result.typicality
    result = kcenter.kcenter_greedy(
        embeddings,
        n_picks,
        already_selected=np.arange(len(anchors)) if len(anchors) else None,
        seed=seed,
        chunk_size=chunk_size,
    )
    rows = candidates[np.asarray(result.indices, dtype=np.int64) - len(anchors)]
    return rows, np.asarray(result.distances, dtype=np.float64)


def _anchors_then(
    anchors: np.ndarray, pool: np.ndarray, candidates: np.ndarray, chunk_size: int
) -> np.ndarray:
    """The anchor rows followed by the candidate pool rows, as one float32 matrix."""
    if len(anchors) == 0 and len(candidates) == len(pool):
        return pool  # nothing to prepend: avoid copying a possibly huge pool
    # One float32 copy, filled in place: concatenating pool[candidates] would hold two.
    embeddings = np.empty((len(anchors) + len(candidates), pool.shape[1]), dtype=np.float32)
    embeddings[: len(anchors)] = anchors
    for start in range(0, len(candidates), chunk_size):
        part = candidates[start : start + chunk_size]
        embeddings[len(anchors) + start : len(anchors) + start + len(part)] = pool[part]
    return embeddings


def score_weighted_picks(
    pool: np.ndarray,
    candidates: np.ndarray,
    anchors: np.ndarray,
    scores: np.ndarray,
    n_picks: int,
    candidate_factor: int,
    *,
    offset: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Score-weighted farthest-point picks among the ``candidate_factor * n_picks``
    best-scored candidates (ZCore coverage and uncertainty targeting).

    Each step picks the shortlisted row maximising ``weight * distance``: ``distance`` to the
    nearest anchor (e.g. a labeled or targeted row) or earlier pick, ``weight`` the row's
    score, minus the lowest candidate score when ``offset`` (ZCore: any offset or positive
    scale of the scores gives the same picks; all ones when the scores are constant). Without
    ``offset`` the score itself weighs, as an uncertainty of 0 means "nothing to learn". With
    no anchors the first pick is the best score; a near-duplicate of anything already covered
    has distance ~0, so it waits.
    """
    if n_picks == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    candidate_scores = scores[candidates]
    order = np.argsort(-candidate_scores, kind="stable")[: candidate_factor * n_picks]
    shortlist = candidates[order]
    points = np.asarray(pool[shortlist], dtype=np.float64)
    weight = candidate_scores[order] - (candidate_scores.min() if offset else 0.0)
    if not weight.any():
        weight = np.ones(len(shortlist))
    picks = []
    if len(anchors):
        _, nearest = nearest_rows(anchors, points, 1)
        distance = nearest[:, 0].astype(np.float64)
    else:  # cold start: the best score opens and the others are measured from it
        picks.append(0)
        distance = np.linalg.norm(points - points[0], axis=1)
    taken = np.zeros(len(shortlist), dtype=bool)
    taken[picks] = True
    while len(picks) < n_picks:
        value = weight * distance
        value[taken] = -np.inf
        pick = int(np.argmax(value))  # ties go to the better score (earlier in the list)
        picks.append(pick)
        taken[pick] = True
        np.minimum(distance, np.linalg.norm(points - points[pick], axis=1), out=distance)
    rows = shortlist[picks]
    return rows, scores[rows]
