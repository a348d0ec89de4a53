"""The batch planner: which unlabeled rows to label next, and why each one.

A batch of ``budget`` rows has two shares (sizes from :mod:`.split_schedule`: all coverage at
cold start, moving to 30 % coverage / 70 % targeting):

* **targeting**, from one of two sources (``targeting_source``):

  - ``"failures"`` (default, :mod:`.targeting`): rows nearest to the current model's
    failures, false negatives weighted most, spread across failures;
  - ``"uncertainty"`` (:mod:`.uncertainty`): the rows the model is least sure about, from
    per-row ``uncertainty_scores`` of its predictions on the pool (no labels needed), with
    the same score-weighted farthest-point redundancy control as ZCore coverage (below),
    measured between the picks only: uncertainty already reflects what the model learned
    from the labels, so an uncertain row next to a labeled one is still worth labeling.
    Rows scoring 0 (confident, or nothing detected) are never targeted;
* **coverage**: rows that cover the embedding space *relative to what is already labeled*,
  so batch 2 does not re-cover batch 1. The methods:

  - ``"typical"`` (default; :mod:`.typical`, TypiClust): k-means into as many clusters as
    labeled rows plus the share, then the most typical (densest) row of each largest
    cluster that holds no labeled or targeted row: the low-budget choice, where k-center's
    first picks are outliers;
  - ``"kcenter"``: k-center greedy with every labeled row as an existing centre (this and
    typical coverage run on a seeded uniform sample of the candidates above
    :data:`.coverage_picks.COVERAGE_SAMPLE_ROWS`, with the guarantee given in
    :mod:`.coverage_picks`);
  - ``"zcore"``: the highest precomputed coverage scores (e.g. ZCore), with redundancy
    control: among the ``zcore_candidate_factor * share`` best-scored rows, a score-weighted
    farthest-point greedy (score x distance to the nearest labeled, targeted or picked row),
    so a near-duplicate of a labeled row or of an earlier pick waits its turn;

  - ``"random"``: uniformly random rows (seeded) — the frequency-following baseline that
    every other strategy is measured against; it ignores labeled rows by design.

  The default is k-center: on real data (``benchmarks/bench_planner_digits.py``, sklearn
  digits, 10 seeds, two rounds of 45 labels) it beat ZCore coverage in every arm, e.g. test
  accuracy after a 30/70 second round 0.919 +/- 0.011 vs 0.906 +/- 0.019.

**Order: targeting first, then coverage.** Coverage treats the targeting picks as centres
too, so it spends its share on regions that neither the labels nor the targeted rows cover.
No row is picked twice; the shares sum exactly to the budget. When the targeting share
cannot be filled (the failures' neighbour lists run dry, or fewer rows than the share have
an uncertainty score above 0) coverage fills the rest, and ``fallback_reason`` says so.
Coverage can always fill its share because the budget may not exceed the selectable pool.

**Exclusion is enforced here**, not only by the caller: rows flagged in ``excluded`` (test,
golden, quarantined, already batched, ...) are never picked by either share.

Everything is reproducible: the same inputs and ``seed`` give the same plan (the seed only
matters for the first k-center centre when nothing is labeled or targeted yet).

The picking steps live in :mod:`.coverage_picks`; this module stays near 570 lines because
most of it is the documented result (:class:`BatchPlan`), the keyword API and the input
validation the planner owns.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .coverage_picks import coverage_picks, score_weighted_picks
from .split_schedule import decide_split
from .targeting import TargetingResult, failure_weights, select_targets, validate_embeddings

COVERAGE_METHODS = ("typical", "kcenter", "zcore", "random")
#: Where the targeting share comes from: failure queries, or per-row uncertainty scores.
TARGETING_SOURCES = ("failures", "uncertainty")
#: Coverage method used when none is given: ahead of k-center on digits and in the demo loop
#: (README, "The loop" and "Coverage on real data").
DEFAULT_COVERAGE_METHOD = "typical"
#: With ``coverage_method="zcore"``, redundancy control looks at this many times the coverage
#: share of best-scored rows: room to skip near-duplicates, few enough to stay score-driven.
DEFAULT_ZCORE_CANDIDATE_FACTOR = 10


@dataclass(frozen=True)
class BatchPlan:
    """A planned batch: the picked pool rows, in pick order, each with its reason.

    Attributes
    ----------
    indices : ndarray of shape (budget,), int64
        Rows of the pool embeddings to label; targeting picks first, then coverage.
    source : tuple of str
        ``"targeting"`` or ``"coverage"`` per pick.
    score : ndarray of shape (budget,), float64
        Why the pick ranked: for failure targeting the similarity
        ``1 / (1 + distance_to_failure)``; for uncertainty targeting the row's uncertainty
        score; for k-center coverage the distance to the nearest labeled-or-picked row when picked
        (``inf`` for a cold-start first pick); for ZCore coverage the row's coverage score.
        :meth:`to_records` names the kind (``score_kind``) and writes non-finite values as
        None.
    near_failure : tuple of (str or None)
        Id of the failure a targeting pick serves; None for coverage picks.
    near_failure_kind : tuple of (str or None)
        Its kind (``"fn"``, ``"confusion"``, ``"fp"``, ...); None for coverage picks.
    distance_to_failure : ndarray of shape (budget,), float64
        Euclidean distance to that failure; NaN for coverage picks.
    coverage_fraction : float
        Coverage fraction the split used (after the no-failure fallback).
    coverage_method : str
        One of :data:`COVERAGE_METHODS`.
    round : int
        Loop round the plan was made for.
    seed : int
    fallback_reason : str or None
        Why the plan deviates from the scheduled / requested split, if it does.
    n_coverage, n_targeting : int
        Picks per share (sum to the budget).
    targeting_source : str, default="failures"
        ``"failures"`` or ``"uncertainty"``: what the targeting picks were chosen by.
    """

    indices: np.ndarray
    source: tuple[str, ...]
    score: np.ndarray
    near_failure: tuple[str | None, ...]
    near_failure_kind: tuple[str | None, ...]
    distance_to_failure: np.ndarray
    coverage_fraction: float
    coverage_method: str
    round: int
    seed: int
    fallback_reason: str | None
    n_coverage: int
    n_targeting: int
    targeting_source: str = "failures"

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-serialisable dict per pick: index, rank, source, score and its reason."""
        score_kind = {
            "targeting": {"uncertainty": "uncertainty"}.get(
                self.targeting_source, "failure_similarity"
            ),
            "coverage": {
                "zcore": "zcore_score",
                "random": "random",
                "typical": "typicality",
            }.get(self.coverage_method, "kcenter_distance"),
        }
        return [
            {
                "index": int(self.indices[rank]),
                "rank": rank,
                "source": self.source[rank],
                "score": _json_float(self.score[rank]),
                "score_kind": score_kind[self.source[rank]],
                "near_failure": self.near_failure[rank],
                "near_failure_kind": self.near_failure_kind[rank],
                "distance_to_failure": _json_float(self.distance_to_failure[rank]),
            }
            for rank in range(len(self.indices))
        ]

    def summary(self) -> dict[str, Any]:
        """Plan-level facts as a JSON-serialisable dict (for a run record)."""
        return {
            "budget": len(self.indices),
            "n_coverage": self.n_coverage,
            "n_targeting": self.n_targeting,
            "targeting_source": self.targeting_source,
            "coverage_fraction": self.coverage_fraction,
            "coverage_method": self.coverage_method,
            "round": self.round,
            "seed": self.seed,
            "fallback_reason": self.fallback_reason,
        }


@dataclass(frozen=True)
class PlanSettings:
    """How to plan a batch, apart from the data: see :func:`plan_batch` for each setting."""

    budget: int
    coverage_fraction: float | None = None
    round_index: int = 0
    coverage_method: str = DEFAULT_COVERAGE_METHOD
    targeting_source: str = "failures"
    kind_weights: Mapping[str, float] | None = None
    neighbors_per_failure: int | None = None
    zcore_candidate_factor: int = DEFAULT_ZCORE_CANDIDATE_FACTOR
    seed: int = 0


def plan_batch(
    pool_embeddings: np.ndarray,
    budget: int,
    *,
    labeled_embeddings: np.ndarray | None = None,
    excluded: np.ndarray | None = None,
    failure_embeddings: np.ndarray | None = None,
    failure_kinds: Sequence[str] | None = None,
    failure_ids: Sequence[str] | None = None,
    targeting_source: str = "failures",
    uncertainty_scores: np.ndarray | None = None,
    coverage_scores: np.ndarray | None = None,
    coverage_fraction: float | None = None,
    round_index: int = 0,
    coverage_method: str = DEFAULT_COVERAGE_METHOD,
    kind_weights: Mapping[str, float] | None = None,
    neighbors_per_failure: int | None = None,
    zcore_candidate_factor: int = DEFAULT_ZCORE_CANDIDATE_FACTOR,
    seed: int = 0,
    chunk_size: int = 65536,
) -> BatchPlan:
    """Plan the next batch of ``budget`` pool rows to label.

    Parameters
    ----------
    pool_embeddings : ndarray of shape (n, d)
        Embeddings of the candidate (unlabeled) rows; float32 keeps 1M x 512 at 2 GiB.
    budget : int
        Rows to pick, 1 <= budget <= number of rows not excluded.
    labeled_embeddings : ndarray of shape (m, d), optional
        Rows already labeled; coverage is measured relative to them.
    excluded : ndarray, optional
        Rows that must never be picked: a boolean mask of shape (n,) or integer row indices.
    failure_embeddings : ndarray of shape (q, d), optional
        Failure queries (e.g. embeddings of missed objects on the evaluation split), most
        important first: among failures of the same kind, earlier ones are served first.
    failure_kinds : sequence of str, length q
        Kind per failure: ``"fn"``, ``"confusion"``, ``"fp"`` (or keys of ``kind_weights``).
    failure_ids : sequence of str, length q
        Id per failure (sample or object id), reported with each targeting pick.
    targeting_source : {"failures", "uncertainty"}, default="failures"
        What fills the targeting share: the failure queries above, or ``uncertainty_scores``.
    uncertainty_scores : ndarray of shape (n,), optional
        Per-row uncertainty of the model's predictions (>= 0, e.g. from
        :func:`.uncertainty.detection_uncertainty`); only with ``"uncertainty"``. Rows scoring
        0 are never targeted; with none above 0 (or no scores) the batch is all coverage.
    coverage_scores : ndarray of shape (n,), optional
        Precomputed per-row coverage scores (e.g. ZCore); required for ``"zcore"``.
    coverage_fraction : float or None, default=None
        Coverage share in [0, 1]; None follows the round schedule
        (:func:`.split_schedule.scheduled_coverage_fraction`).
    round_index : int, default=0
        Loop round (0 = cold start).
    coverage_method : {"typical", "kcenter", "zcore", "random"}, default="typical"
    kind_weights : mapping, optional
        Weight per failure kind; default :data:`.targeting.DEFAULT_KIND_WEIGHTS`
        (fn 3, confusion 2, fp 1).
    neighbors_per_failure : int, optional
        Most rows one failure can take (its neighbour list length); see
        :func:`.targeting.select_targets` for the default.
    zcore_candidate_factor : int, default=10
        Redundancy control (ZCore coverage, uncertainty targeting) works over this many times
        the share of best-scored rows.
    seed : int, default=0
    chunk_size : int, default=65536
        Rows per chunk in the k-center distance updates.

    Returns
    -------
    BatchPlan

    Raises
    ------
    ValueError
        If the budget is not positive or exceeds the selectable rows (the message gives the
        pool size and the largest budget possible); on NaN / inf embeddings (with the row
        count), dimension mismatches, misaligned failure kinds / ids, an unknown kind or
        coverage method or targeting source, bad exclusions, ``"zcore"`` without
        ``coverage_scores``, negative / NaN scores, or targeting inputs of the other source
        (failures with ``"uncertainty"``, ``uncertainty_scores`` with ``"failures"``).
    """
    settings = PlanSettings(
        budget=budget,
        coverage_fraction=coverage_fraction,
        round_index=round_index,
        coverage_method=coverage_method,
        targeting_source=targeting_source,
        kind_weights=kind_weights,
        neighbors_per_failure=neighbors_per_failure,
        zcore_candidate_factor=zcore_candidate_factor,
        seed=seed,
    )
    return plan(
        pool_embeddings,
        settings,
        labeled_embeddings=labeled_embeddings,
        excluded=excluded,
        failure_embeddings=failure_embeddings,
        failure_kinds=failure_kinds,
        failure_ids=failure_ids,
        uncertainty_scores=uncertainty_scores,
        coverage_scores=coverage_scores,
        chunk_size=chunk_size,
    )


def plan(
    pool_embeddings: np.ndarray,
    settings: PlanSettings,
    *,
    labeled_embeddings: np.ndarray | None = None,
    excluded: np.ndarray | None = None,
    failure_embeddings: np.ndarray | None = None,
    failure_kinds: Sequence[str] | None = None,
    failure_ids: Sequence[str] | None = None,
    uncertainty_scores: np.ndarray | None = None,
    coverage_scores: np.ndarray | None = None,
    chunk_size: int = 65536,
) -> BatchPlan:
    """Plan the next batch with ``settings``: validate, split the budget, target, cover.

    The inputs, result and errors are :func:`plan_batch`'s.
    """
    rows = _validate_inputs(
        pool_embeddings,
        settings,
        labeled_embeddings,
        excluded,
        (failure_embeddings, failure_kinds, failure_ids),
        uncertainty_scores,
        coverage_scores,
    )
    split = _decide_split(rows, settings)
    targets = _target(rows, settings, split)
    n_targeted = len(targets.rows)
    coverage_rows, coverage_score = coverage_picks(
        rows.pool,
        rows.selectable,
        rows.labeled,
        targets.rows,
        split.n_coverage + split.n_targeting - n_targeted,
        method=settings.coverage_method,
        scores=rows.coverage_scores,
        candidate_factor=settings.zcore_candidate_factor,
        seed=settings.seed,
        chunk_size=chunk_size,
    )
    n_coverage = len(coverage_rows)
    result = BatchPlan(
        indices=np.concatenate([targets.rows, coverage_rows]).astype(np.int64),
        source=("targeting",) * n_targeted + ("coverage",) * n_coverage,
        score=np.concatenate([targets.score, coverage_score]),
        near_failure=targets.near_failure + (None,) * n_coverage,
        near_failure_kind=targets.near_kind + (None,) * n_coverage,
        distance_to_failure=np.concatenate([targets.distance, np.full(n_coverage, np.nan)]),
        coverage_fraction=split.coverage_fraction,
        coverage_method=settings.coverage_method,
        round=settings.round_index,
        seed=settings.seed,
        fallback_reason=targets.fallback_reason,
        n_coverage=n_coverage,
        n_targeting=n_targeted,
        targeting_source=settings.targeting_source,
    )
    for array in (result.indices, result.score, result.distance_to_failure):
        array.setflags(write=False)
    return result


@dataclass(frozen=True)
class _Rows:
    """Validated planner inputs."""

    pool: np.ndarray
    labeled: np.ndarray
    selectable: np.ndarray
    queries: np.ndarray
    kinds: list
    ids: list
    weights: np.ndarray
    uncertain: np.ndarray | None  # uncertainty scores; None for failure targeting
    coverage_scores: np.ndarray | None

    @property
    def n_targets(self) -> int:
        """Failure queries, or selectable rows with an uncertainty above 0."""
        if self.uncertain is None:
            return len(self.queries)
        return int(np.count_nonzero(self.uncertain[self.selectable] > 0))


def _validate_inputs(
    pool_embeddings, settings, labeled_embeddings, excluded, failures, uncertainty, coverage
) -> _Rows:
    pool = validate_embeddings("pool embeddings", pool_embeddings)
    n_rows, dim = pool.shape
    labeled = (
        np.empty((0, dim), dtype=np.float32)
        if labeled_embeddings is None
        else validate_embeddings("labeled embeddings", labeled_embeddings, dim=dim)
    )
    queries, kinds, ids = _validate_failures(*failures, dim)
    weights = failure_weights(kinds, settings.kind_weights)
    if settings.coverage_method not in COVERAGE_METHODS:
        raise ValueError(
            f"coverage_method must be one of {COVERAGE_METHODS}, got {settings.coverage_method!r}"
        )
    if coverage is not None:
        coverage = _validate_scores("coverage_scores", coverage, n_rows)
    uncertain = _validate_uncertainty(settings.targeting_source, uncertainty, len(queries), n_rows)
    if settings.zcore_candidate_factor < 1:
        raise ValueError(
            f"zcore_candidate_factor must be >= 1, got {settings.zcore_candidate_factor}"
        )
    selectable = _selectable_rows(excluded, n_rows)
    return _Rows(pool, labeled, selectable, queries, kinds, ids, weights, uncertain, coverage)


def _decide_split(rows: _Rows, settings: PlanSettings):
    """The shares of the budget, checked against the selectable rows."""
    split = decide_split(
        settings.budget,
        round_index=settings.round_index,
        n_failures=rows.n_targets,
        coverage_fraction=settings.coverage_fraction,
    )
    budget, n_rows, n_selectable = split.n_coverage + split.n_targeting, len(rows.pool), len(rows.selectable)
    if budget > n_selectable:
        raise ValueError(
            f"budget {budget} exceeds the {n_selectable} selectable pool rows "
            f"({n_rows} rows, {n_rows - n_selectable} excluded); ask for at most "
            f"{n_selectable}"
        )
    if settings.coverage_method == "zcore" and rows.coverage_scores is None and split.n_coverage:
        raise ValueError(
            "coverage_method='zcore' needs coverage_scores (e.g. from zcore.zcore_scores)"
        )
    return split


@dataclass(frozen=True)
class _Targets:
    rows: np.ndarray
    score: np.ndarray
    near_failure: tuple
    near_kind: tuple
    distance: np.ndarray
    fallback_reason: str | None


def _target(rows: _Rows, settings: PlanSettings, split) -> _Targets:
    """The targeting picks of either source, and why the plan deviates, if it does."""
    fallback_reason = split.fallback_reason
    if rows.uncertain is None:
        targets = (
            select_targets(
                rows.pool,
                rows.queries,
                rows.weights,
                split.n_targeting,
                candidates=rows.selectable,
                neighbors_per_query=settings.neighbors_per_failure,
            )
            if split.n_targeting > 0
            else TargetingResult.empty()
        )
        served = targets.query.tolist()
        picked = _Targets(
            targets.indices,
            1.0 / (1.0 + targets.distances),
            tuple(rows.ids[q] for q in served),
            tuple(rows.kinds[q] for q in served),
            targets.distances,
            fallback_reason,
        )
        ran_out = "the failures' nearest rows ran out; raise neighbors_per_failure for more"
    else:
        if fallback_reason:
            fallback_reason = (
                f"no selectable pool row has an uncertainty score above 0 (the model is "
                f"confident, or detects nothing, everywhere): all "
                f"{split.n_coverage + split.n_targeting} picks are coverage"
            )
        # Uncertainty already reflects what the model learned from the labels, so only the
        # picks themselves are anchors: the share is not spent on near-duplicates.
        target_rows, target_score = score_weighted_picks(
            rows.pool,
            rows.selectable[rows.uncertain[rows.selectable] > 0],
            np.empty((0, rows.pool.shape[1]), dtype=np.float32),
            rows.uncertain,
            min(split.n_targeting, rows.n_targets),
            settings.zcore_candidate_factor,
            offset=False,
        )
        none = (None,) * len(target_rows)
        picked = _Targets(
            target_rows, target_score, none, none, np.full(len(target_rows), np.nan),
            fallback_reason,
        )
        ran_out = f"only {rows.n_targets} selectable rows have an uncertainty score above 0"
    n_targeted = len(picked.rows)
    if n_targeted < split.n_targeting:
        return dataclasses.replace(
            picked,
            fallback_reason=(
                f"targeting filled {n_targeted} of {split.n_targeting} picks ({ran_out}); "
                f"coverage filled the other {split.n_targeting - n_targeted}"
            ),
        )
    return picked


def _json_float(value: float) -> float | None:
    """``value`` as a float, or None where JSON has no number (NaN, or the inf distance of a
    cold-start first k-center pick, which has no centre to be far from)."""
    return float(value) if math.isfinite(value) else None


def _validate_failures(
    embeddings: np.ndarray | None,
    kinds: Sequence[str] | None,
    ids: Sequence[str] | None,
    dim: int,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Check that failure embeddings, kinds and ids are present together and aligned."""
    if embeddings is None:
        if kinds is not None and len(kinds) or ids is not None and len(ids):
            raise ValueError("failure_kinds / failure_ids given without failure_embeddings")
        return np.empty((0, dim), dtype=np.float32), [], []
    queries = validate_embeddings("failure embeddings", embeddings, dim=dim)
    if kinds is None or ids is None:
        raise ValueError("failure_embeddings need failure_kinds and failure_ids (one per row)")
    kinds, ids = [str(k) for k in kinds], [str(i) for i in ids]
    if not len(kinds) == len(ids) == len(queries):
        raise ValueError(
            f"{len(queries)} failure embeddings but {len(kinds)} kinds and {len(ids)} ids"
        )
    return queries, kinds, ids


def _validate_scores(name: str, scores: np.ndarray, n_rows: int) -> np.ndarray:
    """``scores`` as float64 of shape (n_rows,) with finite values."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (n_rows,):
        raise ValueError(f"{name} has shape {scores.shape}, expected ({n_rows},)")
    if not np.isfinite(scores).all():
        bad = int(np.count_nonzero(~np.isfinite(scores)))
        raise ValueError(f"{name} has {bad} NaN or inf values")
    return scores


def _validate_uncertainty(
    source: str, scores: np.ndarray | None, n_failures: int, n_rows: int
) -> np.ndarray | None:
    """Checked uncertainty scores for ``"uncertainty"`` targeting (zeros when none were
    given); None for ``"failures"``. Inputs of the other source are refused, not ignored."""
    if source not in TARGETING_SOURCES:
        raise ValueError(f"targeting_source must be one of {TARGETING_SOURCES}, got {source!r}")
    if source == "failures":
        if scores is not None:
            raise ValueError("uncertainty_scores given, but targeting_source is 'failures'")
        return None
    if n_failures:
        raise ValueError(
            f"{n_failures} failure embeddings given, but targeting_source is 'uncertainty'"
        )
    if scores is None:
        return np.zeros(n_rows)
    scores = _validate_scores("uncertainty_scores", scores, n_rows)
    negative = int(np.count_nonzero(scores < 0))
    if negative:
        raise ValueError(f"uncertainty_scores has {negative} negative values (0 = certain)")
    return scores


def _selectable_rows(excluded: np.ndarray | None, n_rows: int) -> np.ndarray:
    """Sorted pool rows that may be picked, from a boolean mask or excluded row indices."""
    if excluded is None:
        return np.arange(n_rows, dtype=np.int64)
    excluded = np.asarray(excluded)
    if excluded.dtype == bool:
        if excluded.shape != (n_rows,):
            raise ValueError(f"excluded mask has shape {excluded.shape}, expected ({n_rows},)")
        return np.flatnonzero(~excluded).astype(np.int64)
    if excluded.size and not np.issubdtype(excluded.dtype, np.integer):
        raise ValueError(f"excluded must be a boolean mask or integer rows, got {excluded.dtype}")
    excluded = excluded.astype(np.int64).ravel()
    out_of_range = np.count_nonzero((excluded < 0) | (excluded >= n_rows))
    if out_of_range:
        raise ValueError(f"{out_of_range} excluded indices lie outside the {n_rows} pool rows")
    mask = np.ones(n_rows, dtype=bool)
    mask[excluded] = False
    return np.flatnonzero(mask).astype(np.int64)
