"""Zero-shot coreset scores (ZCore): coverage and redundancy in random embedding subspaces.

Griffin, Marks & Corso, "Zero-Shot Coreset Selection: Efficient Pruning for Unlabeled Data"
(arXiv 2411.15349, 2024; reference code: github.com/voxel51/zcore). Each of ``n_sample``
iterations

1. draws ``sample_dim`` distinct embedding dimensions (a random subspace) and, per dimension,
   a coordinate from the triangular distribution (min, median, max of that dimension);
2. credits +1 *coverage* to the row nearest that point (L1 in the subspace);
3. charges that row's ``redund_nn`` nearest rows (in the subspace) a *redundancy* penalty
   proportional to ``1 / distance ** redund_exp``, normalised to sum to 1; an exact duplicate
   (distance 0) of the covering row instead takes the whole penalty of 1.

Scores are then (optionally) offset by U(0, 1) noise and min-max normalised: high = the row
covers a sparse region, low = redundant. Several models' embeddings are combined the way the
reference does: concatenated along the feature axis, unscaled.

How the exact engine is fast is told in ``zcore_numpy.py``. Scores equal the reference
loop's for the same draws up to float summation order (see ``zcore_reference.py`` and the
tests).

Differences from the reference script, all deliberate
-----------------------------------------------------
* Random streams: draws come in blocks of 2048, each with an independent stream
  (``SeedSequence.spawn``); work is summed in a fixed order, so scores do not depend on
  ``n_workers``. The reference's forked workers inherit one global NumPy state and draw the
  *same* ``n_sample / num_workers`` samples each, so its distinct-sample count is divided
  by ``num_workers`` (and the U(0, 1) init noise weighs that much less).
* Constant dimensions (min == max) make ``numpy.random.triangular`` raise in the reference.
  They add the same 0 to every distance, so subspaces are drawn from the non-constant
  dimensions only; if fewer than ``sample_dim`` remain, ``sample_dim`` is lowered (with a
  warning); if none remain (all rows identical, or a single row) every score is 0.
* Ties are broken by the seed, not by row order (the reference's unstable ``argsort``
  favours early rows): rows are scored in a seeded random order (``ZCoreDraws.order``), and
  among rows at equal distance the one earlier in it covers, is the duplicate at distance 0
  that takes a penalty, or is kept at the ``redund_nn``-th neighbour. So permuting the
  input rows permutes the scores' distribution, and on tied data (quantised or duplicated
  embeddings) no row is favoured for coming first.
* Distances are computed in the embeddings' dtype (the reference upcasts the coverage
  distances to float64, so for float32 input near-ties may resolve differently), and
  penalties in float64, as ``(nearest / d) ** redund_exp`` normalised, which cannot overflow.

Just over ~400 lines, most of it this documentation of the method and of how it departs from
the reference; the kernel is in ``zcore_numpy.py``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Protocol
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .targeting import validate_embeddings
from .zcore_numpy import CHUNK_BYTES, NumpyEngine

#: Draws per random stream, per unit of work and per sweep over the rows.
_BLOCK = 2048


class ScoringEngine(Protocol):
    """What scores blocks of draws: the NumPy engine here, or the torch one beside it."""

    #: Whether blocks may be scored on ``params.n_workers`` parallel threads.
    parallel: bool

    def partial_scores(self, dims: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Coverage credits minus redundancy penalties of one block of draws, shape (N,)."""
        ...


#: ``engine(x, order, k_nn, redund_exp) -> ScoringEngine``, called once per scoring; the
#: engine scores the rows ``x[order]`` (ties to the earliest) and returns scores in that order.
EngineFactory = Callable[[np.ndarray, int, int], ScoringEngine]


@dataclass(frozen=True)
class ZCoreParams:
    """ZCore hyperparameters; names and defaults follow the reference implementation.

    Defaults are those of ``zeroshot_coreset_selection.py`` in voxel51/zcore (its argparse
    defaults, also the settings in its published result names ``1000Ks-2sd-ri-1000nn-4ex``).

    Attributes
    ----------
    n_sample : int, default=1_000_000
        Random subspace samples (iterations). Cost is linear in it.
    sample_dim : int, default=2
        Dimensions per random subspace.
    redund_nn : int, default=1000
        Neighbours of the covering row that are penalised per sample (capped at N - 1).
    redund_exp : int, default=4
        Exponent of the inverse-distance redundancy penalty.
    rand_init : bool, default=True
        Add U(0, 1) noise to the raw scores before normalising (the reference's default;
        ``--no_rand_init`` there), which breaks ties among rarely sampled rows at random.
    seed : int, default=0
        Seed for all random draws; results are deterministic for a seed.
    n_workers : int, default=1
        Threads sharing the work. Results do not depend on it.
    """

    n_sample: int = 1_000_000
    sample_dim: int = 2
    redund_nn: int = 1000
    redund_exp: int = 4
    rand_init: bool = True
    seed: int = 0
    n_workers: int = 1

    def __post_init__(self) -> None:
        for name in PARAM_RANGES:
            error = param_error(name, getattr(self, name))
            if error:
                raise ValueError(error)
        if not isinstance(self.rand_init, (bool, np.bool_)):
            raise ValueError(f"rand_init must be True or False, got {self.rand_init!r}")


#: The integer settings of :class:`ZCoreParams`: (smallest valid value, what it counts).
PARAM_RANGES = {
    "n_sample": (1, "random subspaces drawn"),
    "sample_dim": (1, "embedding dimensions in each random subspace"),
    "redund_nn": (1, "nearest neighbours that share a redundancy penalty"),
    "redund_exp": (0, "exponent of the inverse-distance redundancy penalty"),
    "seed": (0, "seed of every random draw"),
    "n_workers": (1, "threads sharing the work"),
}


def param_error(name: str, value) -> str | None:
    """Why ``value`` is not a valid ``name`` of :class:`ZCoreParams`, or None when it is.

    The message names the parameter, the value, the valid range and the default, so that
    forms can show the same text the SDK raises.
    """
    low, meaning = PARAM_RANGES[name]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low:
        return None
    default = ZCoreParams.__dataclass_fields__[name].default
    return (
        f"{name} must be an integer >= {low}, got {value!r} ({name}: {meaning}); pass a "
        f"whole number from {low} up, e.g. the default {default}"
    )


def check_sample_dim(sample_dim: int, n_dims: int) -> None:
    """Refuse subspaces of more dimensions than the embeddings have (before any scoring)."""
    if sample_dim > n_dims:
        raise ValueError(
            f"sample_dim={sample_dim} exceeds the {n_dims} embedding dimensions; pass "
            f"sample_dim between 1 and {n_dims}"
        )


@dataclass(frozen=True)
class ZCoreDraws:
    """The random part of ZCore, so different implementations can be fed the same draws.

    Attributes
    ----------
    dims : ndarray of shape (n_sample, sample_dim), int64
        Subspace dimensions of each sample, in summation order.
    points : ndarray of shape (n_sample, sample_dim), float64
        Random point of each sample, one coordinate per dimension in ``dims``.
    order : ndarray of shape (n_rows,), int64, optional
        Tie-breaking order: a permutation of the rows; among rows at equal distance the one
        earlier in it wins. None (e.g. for hand-made draws) means row order.
    """

    dims: np.ndarray
    points: np.ndarray
    order: np.ndarray | None = None


def combine_embeddings(embeddings: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Validate one embedding matrix, or concatenate several (one per model) along features.

    Parameters
    ----------
    embeddings : array-like of shape (n_rows, dim), or list/tuple of such arrays
        Each set must have the same number of rows. float32 and float64 are kept; other
        real dtypes become float32.

    Returns
    -------
    ndarray of shape (n_rows, total_dim)

    Raises
    ------
    ValueError
        On an empty list, a set that is not 2-D, non-finite values (the message counts the
        rows), mismatched row counts, or zero feature dimensions.
    """
    if isinstance(embeddings, (list, tuple)):
        if not embeddings:
            raise ValueError("embeddings is an empty list; pass at least one (rows, dim) array")
        sets = [validate_embeddings(f"embeddings[{i}]", e) for i, e in enumerate(embeddings)]
        rows = [len(s) for s in sets]
        if len(set(rows)) > 1:
            raise ValueError(f"embedding sets have different row counts {rows}; rows must align")
        x = sets[0] if len(sets) == 1 else np.concatenate(sets, axis=1)
    else:
        x = validate_embeddings("embeddings", embeddings)
    if x.shape[1] == 0:
        raise ValueError(f"embeddings have no feature dimensions (shape {x.shape})")
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def draw_samples(
    embeddings: np.ndarray | Sequence[np.ndarray], params: ZCoreParams = ZCoreParams()
) -> ZCoreDraws:
    """All random draws :func:`zcore_scores` makes for ``params`` (same seed, same order).

    Returns
    -------
    ZCoreDraws
        ``n_sample`` rows; empty (shape (0, 0)) when there is nothing to sample (no rows, or
        no non-constant dimension).
    """
    x = combine_embeddings(embeddings)
    return _draw_all(_SampleSpace.of(x, params.sample_dim), len(x), params)


def coverage_redundancy_scores(
    embeddings: np.ndarray | Sequence[np.ndarray],
    draws: ZCoreDraws,
    params: ZCoreParams = ZCoreParams(),
    *,
    engine: EngineFactory | None = None,
    chunk_rows: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Raw ZCore scores (coverage credits minus redundancy penalties) for given draws.

    Parameters
    ----------
    embeddings : array-like of shape (n_rows, dim), or list/tuple of such arrays
    draws : ZCoreDraws
        E.g. from :func:`draw_samples`.
    params : ZCoreParams
        Only ``redund_nn``, ``redund_exp`` and ``n_workers`` are used.
    engine, chunk_rows, progress
        See :func:`zcore_scores`.

    Returns
    -------
    ndarray of shape (n_rows,), float64
        Unnormalised; sums to ``n_sample`` minus the penalties (each sample's total penalty
        is 1, or 0 for a single row).
    """
    x = combine_embeddings(embeddings)
    dims, points, order = _validate_draws(draws, x.shape)
    return _raw_scores(x, dims, points, order, params, engine, chunk_rows, progress)


def zcore_scores(
    embeddings: np.ndarray | Sequence[np.ndarray],
    params: ZCoreParams = ZCoreParams(),
    *,
    engine: EngineFactory | None = None,
    chunk_rows: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """ZCore coverage scores in [0, 1]; keep the highest-scored rows for a coreset.

    Parameters
    ----------
    embeddings : array-like of shape (n_rows, dim), or list/tuple of such arrays
        One row per sample; several arrays (one per model, same rows) are concatenated.
    params : ZCoreParams
        Hyperparameters, seed and worker count.
    engine : callable, optional
        ``engine(x, order, k_nn, redund_exp)`` returning the object that scores blocks of
        draws (see :class:`ScoringEngine`); default the exact NumPy engine
        (:class:`.zcore_numpy.NumpyEngine`). ``annoloop.selection.zcore_torch.torch_engine``
        gives one on a torch device; it ignores ``n_workers`` and ``chunk_rows``.
    chunk_rows : int, optional
        Rows per transposed chunk (NumPy engine); default: as many as fit 256 MiB. When all
        rows fit one chunk, the transposed copy (rows in tie-breaking order) is made once;
        otherwise one chunk at a time is made once per block of 2048 samples (slower,
        bounded memory).
    progress : callable, optional
        Called with the fraction of samples done (0..1] after each block of 2048.

    Returns
    -------
    ndarray of shape (n_rows,), float64
        Min-max normalised scores; empty for no rows, all 0 when the rows are identical.

    Notes
    -----
    Extra memory: the transposed chunk (<= 256 MiB by default), one block's candidate rows,
    and O(N) vectors per worker; all draws are generated up front (32 bytes per sample at
    ``sample_dim=2``). Cost per sample is O(N * sample_dim) plus O(redund_nn) selection.

    Raises
    ------
    ValueError
        On invalid embeddings (see :func:`combine_embeddings`), ``sample_dim`` above the
        number of dimensions, or ``chunk_rows < 1``.
    """
    x = combine_embeddings(embeddings)
    partial = zcore_shard_scores(x, params, engine=engine, chunk_rows=chunk_rows, progress=progress)
    return np.zeros(len(x)) if partial is None else finalize_scores(partial, params)


def shard_count_error(n_shards, n_sample: int) -> str | None:
    """Why ``n_shards`` cannot split a run of ``n_sample`` draws, or None when it can.

    Shards are contiguous ranges of the run's blocks of 2048 draws, so a run has at most
    one shard per block.
    """
    blocks = -(-n_sample // _BLOCK)
    if isinstance(n_shards, (int, np.integer)) and not isinstance(n_shards, bool):
        if 1 <= n_shards <= blocks:
            return None
    return (
        f"shards must be a whole number from 1 to {blocks} (one per {_BLOCK:,} of the "
        f"{n_sample:,} random subspaces), got {n_shards!r}"
    )


def zcore_shard_scores(
    embeddings: np.ndarray | Sequence[np.ndarray],
    params: ZCoreParams = ZCoreParams(),
    shard: int = 0,
    n_shards: int = 1,
    *,
    engine: EngineFactory | None = None,
    chunk_rows: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Raw scores of one shard of a ZCore run, for :func:`combine_shard_scores`.

    A run's score is a sum over its draws, so it splits into ``n_shards`` independent
    parts: shard ``k`` scores the ``k``-th of ``n_shards`` contiguous ranges of the run's
    blocks of draws (in subspace order). Each shard draws the whole run from the seed and
    keeps its own range, so any process, on any machine, computes the same partial for the
    same ``(embeddings, params, shard, n_shards)``.

    Parameters
    ----------
    embeddings, params, engine, chunk_rows, progress
        As for :func:`zcore_scores`; ``progress`` reports the shard's own fraction.
    shard : int, default=0
        Which shard, ``0 <= shard < n_shards``.
    n_shards : int, default=1
        Shards of the run; see :func:`shard_count_error` for the valid range.

    Returns
    -------
    ndarray of shape (n_rows,), float64, or None
        Unnormalised coverage credits minus redundancy penalties of the shard's draws, in
        row order; None when there is nothing to sample (no rows, or no dimension varies),
        which :func:`combine_shard_scores` turns into all-zero scores.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    >>> params = ZCoreParams(n_sample=8192, redund_nn=10)
    >>> parts = [zcore_shard_scores(x, params, k, 2) for k in range(2)]
    >>> np.allclose(combine_shard_scores(parts, params), zcore_scores(x, params))
    True
    """
    error = shard_count_error(n_shards, params.n_sample)
    if error:
        raise ValueError(error)
    if not isinstance(shard, (int, np.integer)) or not 0 <= shard < n_shards:
        raise ValueError(f"shard must be a whole number from 0 to {n_shards - 1}, got {shard!r}")
    x = combine_embeddings(embeddings)
    space = _SampleSpace.of(x, params.sample_dim)
    if space is None:
        return None
    draws = _draw_all(space, len(x), params)
    blocks = np.array_split(np.arange(-(-len(draws.dims) // _BLOCK)), n_shards)[shard]
    return _raw_scores(
        x, draws.dims, draws.points, draws.order, params, engine, chunk_rows, progress,
        blocks=range(blocks[0], blocks[-1] + 1),
    )


def combine_shard_scores(
    partials: Sequence[np.ndarray | None], params: ZCoreParams = ZCoreParams(), n_rows: int = 0
) -> np.ndarray:
    """A sharded run's scores: its shards' raw scores summed in shard order, then finalised.

    The same shards give the same scores bit for bit, whichever process computed each;
    a different shard count changes only the summation order (differences ~1e-15). Shards
    with nothing to sample (None) give ``n_rows`` zeros, as :func:`zcore_scores` does.
    """
    if not len(partials):
        raise ValueError("no shard scores to combine; pass one array per shard, in order")
    if any(part is None for part in partials):
        return np.zeros(n_rows)
    total = np.array(partials[0], dtype=np.float64)
    for part in partials[1:]:
        if np.shape(part) != total.shape:
            raise ValueError(
                f"shard scores differ in shape: {np.shape(part)} and {total.shape}"
            )
        total += part
    return finalize_scores(total, params)


def finalize_scores(raw: np.ndarray, params: ZCoreParams = ZCoreParams()) -> np.ndarray:
    """Add the seeded U(0, 1) init noise (if ``params.rand_init``) and min-max normalise.

    A constant score vector (e.g. a single row) maps to all zeros, as scikit-learn's
    ``minmax_scale`` does.
    """
    scores = np.array(raw, dtype=np.float64)
    if params.rand_init:
        init_stream, _ = np.random.SeedSequence(params.seed).spawn(2)
        scores += np.random.default_rng(init_stream).uniform(0.0, 1.0, len(scores))
    if scores.size == 0:
        return scores
    low, high = scores.min(), scores.max()
    if high == low:
        return np.zeros_like(scores)
    return (scores - low) / (high - low)


# --- sampling --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SampleSpace:
    """Per-dimension (min, median, max) of the non-constant dimensions, and the subspace size."""

    dims: np.ndarray
    low: np.ndarray
    mode: np.ndarray
    high: np.ndarray
    sample_dim: int

    @classmethod
    def of(cls, x: np.ndarray, sample_dim: int) -> _SampleSpace | None:
        """None when there is nothing to sample: no rows or no non-constant dimension."""
        n_rows, n_dims = x.shape
        check_sample_dim(sample_dim, n_dims)
        if n_rows == 0:
            return None
        low, high = x.min(axis=0), x.max(axis=0)
        dims = np.flatnonzero(high > low)
        if dims.size == 0:
            return None
        if dims.size < sample_dim:
            warnings.warn(
                f"only {dims.size} of {n_dims} embedding dimensions vary; sampling "
                f"{dims.size}-dimensional subspaces instead of sample_dim={sample_dim}",
                stacklevel=3,
            )
        mode = _column_medians(x)[dims]
        return cls(dims, low[dims], mode, high[dims], min(sample_dim, dims.size))

    def draw(self, stream: np.random.SeedSequence, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` subspaces (distinct dims, uniformly) and triangular points in them."""
        rng = np.random.default_rng(stream)
        pick = np.empty((count, self.sample_dim), dtype=np.int64)
        for j in range(self.sample_dim):
            # Uniform over the dims not yet picked: draw among the n - j left, then step
            # past each earlier pick (in ascending order) at or below the draw.
            pos = rng.integers(0, self.dims.size - j, size=count)
            for taken in np.sort(pick[:, :j], axis=1).T:
                pos += pos >= taken
            pick[:, j] = pos
        points = rng.triangular(self.low[pick], self.mode[pick], self.high[pick])
        return self.dims[pick], points


def _column_medians(x: np.ndarray) -> np.ndarray:
    """Median of each column, float64.

    A block of columns at a time is copied to contiguous rows (bounded memory) and
    partitioned once at the middle; this is ~5x faster than ``np.median(x, axis=0)``.
    """
    n_rows, n_dims = x.shape
    middle = n_rows // 2
    step = max(1, (CHUNK_BYTES // 4) // (n_rows * x.itemsize))
    medians = np.empty(n_dims)
    for start in range(0, n_dims, step):
        block = np.partition(np.ascontiguousarray(x[:, start : start + step].T), middle, axis=1)
        upper = block[:, middle].astype(np.float64)
        lower = block[:, :middle].max(axis=1) if n_rows % 2 == 0 else upper
        medians[start : start + step] = (lower + upper) / 2
    return medians


def _draw_all(space: _SampleSpace | None, n_rows: int, params: ZCoreParams) -> ZCoreDraws:
    """``params.n_sample`` draws in blocks of ``_BLOCK``, each block with its own stream
    (child 1 of the seed's ``SeedSequence``; child 0 is the init noise, child 2 the
    tie-breaking order of the rows)."""
    if space is None:
        return ZCoreDraws(np.empty((0, 0), dtype=np.int64), np.empty((0, 0)))
    _, draws_root, order_stream = np.random.SeedSequence(params.seed).spawn(3)
    streams = draws_root.spawn(-(-params.n_sample // _BLOCK))
    blocks = [
        space.draw(stream, min(_BLOCK, params.n_sample - b * _BLOCK))
        for b, stream in enumerate(streams)
    ]
    return ZCoreDraws(
        np.concatenate([d for d, _ in blocks]),
        np.concatenate([p for _, p in blocks]),
        np.random.default_rng(order_stream).permutation(n_rows),
    )


def _validate_draws(
    draws: ZCoreDraws, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    (n_rows, n_dims), order = shape, draws.order
    order = np.arange(n_rows) if order is None else np.asarray(order)
    if order.shape != (n_rows,) or not np.array_equal(np.sort(order), np.arange(n_rows)):
        raise ValueError(
            f"draws.order must be a permutation of the {n_rows} rows; pass the draws "
            "draw_samples made for these embeddings, or order=None for row order"
        )
    dims, points = np.asarray(draws.dims), np.asarray(draws.points, dtype=np.float64)
    if dims.ndim != 2 or dims.shape != points.shape:
        raise ValueError(
            f"draws.dims and draws.points must be 2-D and equal in shape, got "
            f"{dims.shape} and {points.shape}"
        )
    if dims.size and not np.issubdtype(dims.dtype, np.integer):
        raise ValueError(f"draws.dims must hold integers, got dtype {dims.dtype}")
    out_of_range = int(np.count_nonzero((dims < 0) | (dims >= n_dims)))
    if out_of_range:
        raise ValueError(f"draws.dims has {out_of_range} entries outside [0, {n_dims})")
    bad = int(np.count_nonzero(~np.isfinite(points).all(axis=1)))
    if bad:
        raise ValueError(f"draws.points has {bad} samples containing NaN or inf")
    return dims.astype(np.int64), points, order.astype(np.int64)


# --- scoring engines ---------------------------------------------------------------------------


def _raw_scores(
    x: np.ndarray,
    dims: np.ndarray,
    points: np.ndarray,
    order: np.ndarray,
    params: ZCoreParams,
    engine: EngineFactory | None,
    chunk_rows: int | None,
    progress: Callable[[float], None] | None,
    blocks: range | None = None,
) -> np.ndarray:
    """Sum of per-block coverage credits minus redundancy penalties, shape (N,).

    ``blocks`` (default all) are the blocks of draws, in subspace order, to score. Engines
    see the rows in tie-breaking ``order`` and resolve ties to the earliest row.
    """
    if len(x) == 0 or len(dims) == 0:
        return np.zeros(len(x))
    k_nn = min(params.redund_nn, len(x) - 1)
    if engine is None:
        scorer: ScoringEngine = NumpyEngine(x, order, k_nn, params.redund_exp, chunk_rows)
    else:
        scorer = engine(x, order, k_nn, params.redund_exp)
    # Grouped by subspace (its set of dimensions): consecutive draws share both columns,
    # which then stay in cache.
    by_subspace = np.lexsort(np.sort(dims, axis=1).T[::-1])
    dims, points = dims[by_subspace], points[by_subspace]
    if blocks is None:
        blocks = range(-(-len(dims) // _BLOCK))

    def block(b: int) -> np.ndarray:
        part = slice(b * _BLOCK, (b + 1) * _BLOCK)
        return scorer.partial_scores(dims[part], points[part])

    # Blocks are summed in order, so the result does not depend on the worker count.
    total = np.zeros(len(x))
    n_workers = params.n_workers if scorer.parallel else 1
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        for done, partial in enumerate(pool.map(block, blocks), start=1):
            total += partial
            if progress is not None:
                progress(done / len(blocks))
    raw = np.empty_like(total)
    raw[order] = total  # back from tie-breaking order to row order
    return raw
