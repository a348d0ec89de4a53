"""Frozen evaluation splits and label fingerprints.

:func:`select_splits` picks a frozen test set, a mining set and a golden set, disjoint, by
*group* (a
scene, so near-duplicate frames never straddle splits), stratified so every condition
(e.g. ``"night|rain"``) is represented in proportion. The pick depends only on the seed and
the group keys, never on row order, so re-running it on a re-ordered or re-loaded dataset
gives the same sets.

:func:`label_fingerprint` hashes labels canonically (sha256), so a later step can prove a
frozen test/golden label did not change; :func:`diff_fingerprints` lists what did.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = [
    "FingerprintDiff",
    "SplitResult",
    "diff_fingerprints",
    "fingerprint_samples",
    "label_fingerprint",
    "select_splits",
]


@dataclass(frozen=True)
class SplitResult:
    """Disjoint test, mining and golden selections.

    Attributes
    ----------
    test, mining, golden : ndarray of int64
        Sorted row indices (samples) of each set; all rows of a picked group are in it.
    test_groups, mining_groups, golden_groups : list
        Picked group keys, sorted.
    strata : dict[str, dict[str, int]]
        Per stratum: ``groups`` available, ``test``, ``mining`` and ``golden`` groups picked.
    """

    test: np.ndarray
    golden: np.ndarray
    test_groups: list
    golden_groups: list
    strata: dict
    mining: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mining_groups: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON form (row indices as lists)."""
        d = asdict(self)
        for name in ("test", "mining", "golden"):
            d[name] = getattr(self, name).tolist()
        return d


def _group_priority(keys, seed: int) -> np.ndarray:
    """Seeded pseudo-random rank per group key, from a hash of (seed, key) alone."""
    return np.array(
        [int.from_bytes(hashlib.sha256(f"{seed}\0{k}".encode()).digest()[:8], "big") for k in keys],
        dtype=np.uint64,
    )


def _allocate(
    weights: np.ndarray, caps: np.ndarray, k: int, at_least_one: np.ndarray
) -> np.ndarray:
    """Split ``k`` picks over strata in proportion to ``weights`` (largest remainder).

    No stratum gets more than its cap. Strata flagged ``at_least_one`` get one pick even
    when their share rounds to 0, which can make the total exceed ``k``.
    """
    quota = k * weights / max(weights.sum(), 1)
    floor = np.minimum(at_least_one.astype(np.int64), caps)
    alloc = np.clip(np.floor(quota).astype(np.int64), floor, caps)
    # Hand out the shortfall by largest remainder (ties to the lower stratum index),
    # cycling again if caps stop some strata.
    order = np.lexsort((np.arange(len(caps)), -(quota - alloc)))
    while alloc.sum() < k and (alloc < caps).any():
        for i in order:
            if alloc.sum() < k and alloc[i] < caps[i]:
                alloc[i] += 1
    # Take back a surplus (made by the floors) where it most exceeds the quota.
    order = np.lexsort((np.arange(len(caps)), -(alloc - quota)))
    for i in order:
        if alloc.sum() > k and alloc[i] > floor[i]:
            alloc[i] -= 1
    return alloc


def _count(request, n_groups: int, name: str) -> int:
    """A size request: a fraction in [0, 1) of the groups, or an int number of groups."""
    if isinstance(request, (bool, np.bool_)):
        raise ValueError(f"{name} must be a fraction in [0, 1) or a group count; got {request!r}")
    if isinstance(request, (int, np.integer)):
        if not 0 <= request <= n_groups:
            raise ValueError(f"{name}={request} groups requested but there are {n_groups}")
        return int(request)
    frac = float(request)
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"{name} as a fraction must be in [0, 1); got {frac}")
    return int(round(frac * n_groups))


def select_splits(
    groups,
    strata,
    *,
    test=0.1,
    golden=0.02,
    seed: int = 0,
    min_stratum_groups: int = 3,
    mining=0,
) -> SplitResult:
    """Pick a frozen test set, a mining set and a golden set by group, stratified, disjoint.

    Parameters
    ----------
    groups : array-like of shape (n,)
        Group (scene) key of each sample.
    strata : array-like of shape (n,)
        Stratum of each sample (e.g. ``"night|rain"``); constant within a group.
    test, golden : float or int
        A fraction in [0, 1) of all groups, or a number of groups. The golden set is
        picked from the groups left after the test and mining sets.
    seed : int, default 0
        Same seed and group keys give the same sets, whatever the row order.
    min_stratum_groups : int, default 3
        Strata with at least this many groups get at least one group in each set (so one
        is still left for training); smaller strata only get their proportional share.
        This floor can make a set slightly larger than requested.
    mining : float or int, default 0
        The mining (validation) set, picked after the test set: the labeled, frozen split
        whose model failures targeting may use, so the test set never feeds selection.

    Returns
    -------
    SplitResult

    Raises
    ------
    ValueError
        On mismatched lengths, a group spanning several strata, or sizes that do not fit.
    """
    groups = np.asarray(groups)
    strata = np.asarray(strata)
    if groups.ndim != 1 or strata.shape != groups.shape:
        raise ValueError(
            f"groups and strata must be 1-D of equal length; got {groups.shape} and {strata.shape}"
        )
    if min_stratum_groups < 1:
        raise ValueError(f"min_stratum_groups must be >= 1; got {min_stratum_groups}")
    keys, group_of_row = np.unique(groups, return_inverse=True)
    n_groups = len(keys)
    stratum_names, stratum_of_row = np.unique(strata, return_inverse=True)
    group_stratum = np.full(n_groups, -1)
    group_stratum[group_of_row] = stratum_of_row
    mixed = np.unique(group_of_row[stratum_of_row != group_stratum[group_of_row]])
    if mixed.size:
        raise ValueError(
            f"{mixed.size} of {n_groups} groups span several strata (e.g. {keys[mixed[0]]!r}); "
            "give each group one stratum"
        )
    n_test = _count(test, n_groups, "test")
    n_mining = _count(mining, n_groups, "mining")
    n_golden = _count(golden, n_groups, "golden")
    if n_test + n_mining + n_golden > n_groups:
        raise ValueError(
            f"test ({n_test}) + mining ({n_mining}) + golden ({n_golden}) groups exceed the "
            f"{n_groups} groups; ask for fewer test, mining or golden scenes"
        )

    sizes = np.bincount(group_stratum, minlength=len(stratum_names))
    big = sizes >= min_stratum_groups
    # Within a stratum, groups in priority order; a set takes a prefix of what is left.
    order = np.lexsort((_group_priority(keys.tolist(), seed), group_stratum))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    # Each set takes the next prefix of every stratum's ranked groups, in this order.
    wanted = {"test": n_test, "mining": n_mining, "golden": n_golden}
    left = sizes.copy()
    alloc = {}
    for name, count in wanted.items():
        alloc[name] = _allocate(sizes, left, count, big & (count > 0))
        left = left - alloc[name]

    picked = {name: [] for name in wanted}
    for s in range(len(stratum_names)):
        ranked = order[starts[s] : starts[s + 1]]
        begin = 0
        for name in wanted:
            picked[name].append(ranked[begin : begin + alloc[name][s]])
            begin += alloc[name][s]
    groups_of = {
        name: np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        for name, parts in picked.items()
    }

    return SplitResult(
        test=np.flatnonzero(np.isin(group_of_row, groups_of["test"])),
        golden=np.flatnonzero(np.isin(group_of_row, groups_of["golden"])),
        test_groups=keys[groups_of["test"]].tolist(),
        golden_groups=keys[groups_of["golden"]].tolist(),
        mining=np.flatnonzero(np.isin(group_of_row, groups_of["mining"])),
        mining_groups=keys[groups_of["mining"]].tolist(),
        strata={
            str(name): {"groups": int(sizes[s])}
            | {split: int(alloc[split][s]) for split in wanted}
            for s, name in enumerate(stratum_names)
        },
    )


def _canonical(obj, decimals: int, ignore: frozenset):
    """JSON-ready canonical form: rounded floats, str keys, unordered label lists sorted."""
    if isinstance(obj, dict):
        return {str(k): _canonical(v, decimals, ignore) for k, v in obj.items() if k not in ignore}
    if isinstance(obj, (list, tuple, np.ndarray)):
        items = [_canonical(v, decimals, ignore) for v in obj]
        # A list of dicts is a set of labels: its order carries no meaning.
        if items and all(isinstance(v, dict) for v in items):
            items.sort(key=lambda v: json.dumps(v, sort_keys=True))
        return items
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, float, np.integer, np.floating)):
        x = float(obj)
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "Infinity" if x > 0 else "-Infinity"
        return round(x, decimals) + 0.0  # + 0.0 folds -0.0 into 0.0
    if isinstance(obj, (_dt.date, _dt.datetime)):
        return obj.isoformat()
    return str(obj)


def label_fingerprint(records, *, decimals: int = 6, ignore_keys=("id", "_id")) -> str:
    """sha256 hex digest of labels in a canonical serialisation.

    Parameters
    ----------
    records : list of dict, or dict
        One sample's labels (e.g. ``[det.to_dict() for det in sample.gt.detections]``), or
        a mapping ``sample_id -> labels`` for a whole collection.
    decimals : int, default 6
        Numbers are compared after rounding to this many decimals; ints and floats of the
        same value hash alike.
    ignore_keys : iterable of str, default ("id", "_id")
        Dict keys left out everywhere (label ids change on re-import without the label
        changing).

    Notes
    -----
    Dict keys are sorted (so a collection is hashed in sample-id order) and a list whose
    items are all dicts is treated as an unordered set of labels; other lists (box
    coordinates) keep their order.
    """
    canon = _canonical(records, decimals, frozenset(ignore_keys))
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint_samples(labels_by_sample: dict, **kwargs) -> dict:
    """``{sample_id: label_fingerprint(labels)}``; keyword arguments go to it."""
    return {sid: label_fingerprint(labels, **kwargs) for sid, labels in labels_by_sample.items()}


@dataclass(frozen=True)
class FingerprintDiff:
    """Sample ids whose fingerprint changed, appeared or disappeared (sorted lists)."""

    changed: list
    added: list
    removed: list

    @property
    def unchanged(self) -> bool:
        return not (self.changed or self.added or self.removed)

    def to_dict(self) -> dict:
        return asdict(self)


def diff_fingerprints(old: dict, new: dict) -> FingerprintDiff:
    """Compare two ``{sample_id: fingerprint}`` maps (from :func:`fingerprint_samples`)."""
    return FingerprintDiff(
        changed=sorted(k for k in old.keys() & new.keys() if old[k] != new[k]),
        added=sorted(new.keys() - old.keys()),
        removed=sorted(old.keys() - new.keys()),
    )
