"""The frozen splits' record and the checks that they stay frozen (FiftyOne glue).

:func:`.frozen.create_splits` records the splits as the FiftyOne custom run
``annoloop_frozen_splits`` (method ``annoloop.frozen_splits``): parameters and counts in its
config; in its results the member ids of each split (every slice) and per-sample label
fingerprints (:func:`snapshot`).

A fingerprint covers what an annotator owns (class, box, mask, confidence, index, attributes)
and ignores bookkeeping (:func:`bookkeeping_keys`): label ids and tags (quarantining a label
is not changing it), what ``evaluate_detections`` writes onto ground truth (``<key>``,
``<key>_id``, ``<key>_iou`` for every evaluation key) and computed vectors (patch
embeddings). So an ordinary evaluation leaves the splits frozen; moving a box does not.

:func:`check_frozen` compares the splits with the record: changed labels, and samples that
joined a split (tagged since), left it (untagged) or were deleted; it warns loudly (or raises
with ``strict=True``). :func:`require_frozen` is the guard that training, evaluation and
planning call first: it raises :class:`FrozenSplitError` on any change. :func:`frozen_sample_ids`
and :func:`frozen_fields` tell the label writers (autolabel, review, the simulated annotator)
what to leave alone. Without a record nothing is checked and nothing is frozen.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import fiftyone as fo
from bson import ObjectId
from fiftyone import ViewField as F

from ..core.names import (
    DEFAULT_EVAL_KEY,
    GOLDEN_SPLIT_TAG,
    MINING_EVAL_KEY,
    MINING_SPLIT_TAG,
    TEST_SPLIT_TAG,
)
from ..core.runs import load_record, load_results
from ..core.views import root_dataset, slice_views, tagged_groups
from .algorithms.splits import label_fingerprint

__all__ = [
    "FROZEN_RUN_KEY",
    "FROZEN_RUN_METHOD",
    "FrozenReport",
    "FrozenSplitError",
    "FrozenSplitWarning",
    "GOLDEN_VIEW",
    "MINING_VIEW",
    "SPLIT_TAGS",
    "SPLIT_VIEWS",
    "TEST_VIEW",
    "bookkeeping_keys",
    "check_frozen",
    "frozen_fields",
    "frozen_record",
    "frozen_sample_ids",
    "owned_fingerprint",
    "require_frozen",
    "snapshot",
]

logger = logging.getLogger(__name__)

FROZEN_RUN_KEY = "annoloop_frozen_splits"
FROZEN_RUN_METHOD = "annoloop.frozen_splits"
TEST_VIEW = "test_set"
MINING_VIEW = "mining_set"
GOLDEN_VIEW = "golden_set"
#: Split name -> sample tag.
SPLIT_TAGS = {"test": TEST_SPLIT_TAG, "mining": MINING_SPLIT_TAG, "golden": GOLDEN_SPLIT_TAG}
#: Split name -> saved view.
SPLIT_VIEWS = {"test": TEST_VIEW, "mining": MINING_VIEW, "golden": GOLDEN_VIEW}
#: Label keys left out of fingerprints: ids change on re-import, tags are workflow state.
FINGERPRINT_IGNORE = ("id", "_id", "tags")
#: What ``evaluate_detections(eval_key=k)`` writes on each object: ``k``, ``k_id``, ``k_iou``.
_EVAL_SUFFIXES = ("", "_id", "_iou")
_SHOWN_IDS = 10
_FIX = (
    "To restore them, re-tag the samples that left (e.g. "
    "dataset.select(ids).tag_samples('split:test')), untag the ones that joined and restore "
    "the changed labels; to re-draw the splits deliberately, call "
    "create_splits(dataset, ..., overwrite=True) (new frozen sets: earlier ledger rounds are "
    "then not comparable with later ones)."
)


class FrozenSplitError(ValueError):
    """A frozen split changed (raised by :func:`require_frozen` and ``check_frozen(strict=True)``)."""


class FrozenSplitWarning(UserWarning):
    """A frozen split changed (warned by ``check_frozen``)."""


def frozen_record(dataset: fo.Dataset) -> dict | None:
    """The recorded parameters and counts of the frozen splits, or None."""
    return load_record(dataset, FROZEN_RUN_KEY)


# ---------------------------------------------------------------------------- fingerprints


def bookkeeping_keys(dataset: fo.Dataset, fields: Iterable[str]) -> frozenset:
    """Label keys a fingerprint leaves out: not what an annotator owns.

    Ids and tags; ``<key>``, ``<key>_id`` and ``<key>_iou`` for every evaluation key of
    ``dataset`` and annoloop's own (``eval``, ``eval_mining``); and attributes of the labels
    in ``fields`` declared as vectors (patch embeddings).
    """
    keys = set(dataset.list_evaluations()) | {DEFAULT_EVAL_KEY, MINING_EVAL_KEY}
    ignore = set(FINGERPRINT_IGNORE) | {k + suffix for k in keys for suffix in _EVAL_SUFFIXES}
    prefixes = tuple(f"{f}." for f in fields)
    for path, declared in dataset.get_field_schema(flat=True).items():
        if path.startswith(prefixes) and isinstance(declared, fo.VectorField):
            ignore.add(path.rsplit(".", 1)[-1])
    return frozenset(ignore)


def owned_fingerprint(label, ignore_keys: Iterable[str]) -> str:
    """Digest of what an annotator owns in ``label`` (a FiftyOne label or None)."""
    return label_fingerprint(
        label.to_dict() if hasattr(label, "to_dict") else label, ignore_keys=ignore_keys
    )


def _read(dataset: fo.Dataset, tags: Sequence[str], fields: Sequence[str], ids=()) -> dict:
    """``{sample id: (tags, {field: label})}`` of the samples tagged with one of ``tags`` or
    listed in ``ids``, on every slice: one read per slice. A deleted field reads as None.

    Labels come back as their stored documents (``values()`` of an expression), which
    fingerprint exactly as ``label.to_dict()`` does but skip building label objects: that
    was ~90 % of a check's time, ~10 ms per frozen sample.
    """
    present = [f for f in fields if dataset.get_field(f) is not None]
    # A query, not an expression: an ``$expr`` ``$in`` of the members scans the whole list
    # for every sample (4 minutes at 10^6 samples with 11k members).
    match = {"tags": {"$in": list(tags)}}
    if ids:
        match = {"$or": [match, {"_id": {"$in": [ObjectId(i) for i in ids]}}]}
    rows = {}
    for view in slice_views(dataset).values():
        cols = view.match(match).values(["id", "tags", *(F(f) for f in present)])
        for i, sid in enumerate(cols[0]):
            labels = dict.fromkeys(fields)
            labels.update({f: col[i] for f, col in zip(present, cols[2:])})
            rows[sid] = (set(cols[1][i] or ()), labels)
    return rows


def snapshot(dataset: fo.Dataset, fields: Mapping[str, Sequence[str]]) -> dict:
    """What :func:`.frozen.create_splits` records of the tagged splits, read in one pass.

    Parameters
    ----------
    dataset : Dataset
    fields : mapping of split name to sequence of str
        The label fields to fingerprint per split (``{"test": ["oracle"], ...}``).

    Returns
    -------
    dict
        ``fingerprints`` (``{split: {field: {sample id: digest}}}``) and ``members``
        (``{split: sorted sample ids}``, every slice).
    """
    all_fields = list(dict.fromkeys(f for per in fields.values() for f in per))
    rows = _read(dataset, [SPLIT_TAGS[s] for s in fields], all_fields)
    ignore = bookkeeping_keys(dataset, all_fields)
    members = {
        split: sorted(sid for sid, (tags, _) in rows.items() if SPLIT_TAGS[split] in tags)
        for split in fields
    }
    prints = {
        split: {f: {sid: owned_fingerprint(rows[sid][1][f], ignore) for sid in members[split]}
                for f in per}
        for split, per in fields.items()
    }
    return {"fingerprints": prints, "members": members}


# ---------------------------------------------------------------------------------- report


@dataclass
class FrozenReport:
    """What changed in the frozen splits since :func:`create_splits`.

    Attributes
    ----------
    recorded : bool
        False when the dataset has no frozen splits recorded (nothing was checked).
    changed : dict[str, dict[str, list]]
        ``changed[split][field]``: sample ids whose labels in ``field`` differ.
    added : dict[str, list]
        Sample ids tagged with the split since it was frozen.
    removed : dict[str, list]
        Members whose split tag was removed (the samples still exist).
    deleted : dict[str, list]
        Members no longer in the dataset.
    created_at : str or None
        When the splits were frozen.
    """

    recorded: bool
    changed: dict = field(default_factory=dict)
    added: dict = field(default_factory=dict)
    removed: dict = field(default_factory=dict)
    deleted: dict = field(default_factory=dict)
    created_at: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing changed (or nothing was recorded)."""
        return not (
            any(ids for per in self.changed.values() for ids in per.values())
            or any(ids for table in (self.added, self.removed, self.deleted) for ids in table.values())
        )

    @property
    def message(self) -> str:
        """One line per problem, listing the sample ids (at most 10 each), then the fix."""
        if not self.recorded:
            return "no frozen splits are recorded on this dataset"
        if self.ok:
            return f"frozen splits unchanged since {self.created_at}"
        lines = [f"frozen splits changed since {self.created_at}:"]
        for split, per in self.changed.items():
            for f, ids in per.items():
                if ids:
                    lines.append(
                        f"  {split}: {len(ids)} samples with changed {f!r} labels: {_ids(ids)}"
                    )
        for what, table in (
            ("joined the split (tagged since)", self.added),
            ("left the split (tag removed)", self.removed),
            ("were deleted", self.deleted),
        ):
            for split, ids in table.items():
                if ids:
                    lines.append(f"  {split}: {len(ids)} samples {what}: {_ids(ids)}")
        lines.append(_FIX)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON form, with ``ok`` and ``message``."""
        return {**asdict(self), "ok": self.ok, "message": self.message}


def _ids(ids: list) -> str:
    shown = ", ".join(ids[:_SHOWN_IDS])
    return shown + (f", ... (+{len(ids) - _SHOWN_IDS})" if len(ids) > _SHOWN_IDS else "")


def _recorded(dataset: fo.Dataset) -> tuple[dict, dict, dict] | None:
    """``(record, {split: {field: {id: digest}}}, {split: member ids})`` or None."""
    record = frozen_record(dataset)
    if record is None:
        return None
    results = load_results(dataset, FROZEN_RUN_KEY)
    prints = results.fingerprints
    members = getattr(results, "members", None)
    if members is None:  # recorded before membership was: the fingerprints' keys imply it
        members = {s: sorted(set().union(*map(set, per.values()))) for s, per in prints.items()}
    return record, prints, members


def _compare(dataset: fo.Dataset, splits: Sequence[str]) -> FrozenReport:
    """The report of :func:`check_frozen`, neither warned nor raised."""
    unknown = [s for s in splits if s not in SPLIT_TAGS]
    if unknown:
        raise ValueError(f"unknown splits {unknown}; choose from {sorted(SPLIT_TAGS)}")
    recorded = _recorded(dataset)
    if recorded is None:
        return FrozenReport(recorded=False)
    record, stored, members = recorded
    splits = [s for s in splits if s in stored]  # a split the record predates is skipped
    fields = list(dict.fromkeys(f for s in splits for f in stored[s]))
    ids = sorted({sid for s in splits for sid in members.get(s, ())})
    rows = _read(dataset, [SPLIT_TAGS[s] for s in splits], fields, ids)
    ignore = bookkeeping_keys(dataset, fields)
    report = FrozenReport(recorded=True, created_at=record["created_at"])
    for split in splits:
        was = set(members.get(split, ()))
        now_in = {sid for sid, (tags, _) in rows.items() if SPLIT_TAGS[split] in tags}
        report.added[split] = sorted(now_in - was)
        report.removed[split] = sorted(sid for sid in was - now_in if sid in rows)
        report.deleted[split] = sorted(sid for sid in was if sid not in rows)
        report.changed[split] = {
            f: sorted(
                sid
                for sid, fp in per.items()
                if sid in rows and owned_fingerprint(rows[sid][1][f], ignore) != fp
            )
            for f, per in stored[split].items()
        }
    return report


def check_frozen(
    dataset, *, splits: Sequence[str] = tuple(SPLIT_TAGS), strict: bool = False
) -> FrozenReport:
    """Compare the frozen splits' labels and membership with the record.

    Parameters
    ----------
    dataset : Dataset or DatasetView
        Its dataset is checked.
    splits : sequence of {"test", "mining", "golden"}
        Which splits to check (a split the record predates is skipped).
    strict : bool, default False
        Raise :class:`FrozenSplitError` on a change instead of warning.

    Returns
    -------
    FrozenReport
        ``recorded`` is False (and nothing is checked) without frozen splits.

    Warns
    -----
    FrozenSplitWarning
        When anything changed (and ``strict`` is False); the message lists the samples.
    """
    report = _compare(root_dataset(dataset), splits)
    if not report.ok:
        if strict:
            raise FrozenSplitError(report.message)
        logger.warning(report.message)
        warnings.warn(report.message, FrozenSplitWarning, stacklevel=2)
    return report


def require_frozen(samples, action: str) -> None:
    """Refuse ``action`` unless every frozen split is as recorded (the guard of the loop).

    Training, evaluation and planning call it before any work: a test sample that lost its
    tag would otherwise be planned, labeled and trained on, and an edited test label would
    make every later score meaningless. One read of the frozen samples' label fields.

    Parameters
    ----------
    samples : Dataset or DatasetView
        Its dataset is checked; without a frozen-splits record nothing is.
    action : str
        What is refused, for the message (e.g. ``"train_detector"``).

    Raises
    ------
    FrozenSplitError
        Naming each split, what changed and (a few of) the sample ids, and how to restore
        the splits or re-draw them with ``create_splits(..., overwrite=True)``.
    """
    report = _compare(root_dataset(samples), tuple(SPLIT_TAGS))
    if not report.ok:
        raise FrozenSplitError(f"{action} refused: {report.message}")


# ------------------------------------------------------------------- what writers leave alone


def frozen_fields(dataset: fo.Dataset) -> set[str]:
    """The label fields the record fingerprints (test fields, golden field); empty without one."""
    record = frozen_record(dataset)
    if record is None:
        return set()
    params = record["params"]
    return {*params["test_fields"], params["golden_field"]}


def frozen_sample_ids(samples, splits: Sequence[str] = tuple(SPLIT_TAGS)) -> set[str]:
    """Ids of the samples, on every slice, that belong to the frozen ``splits``.

    A sample belongs when the record lists it as a member or its scene (group, on any
    slice) carries the split's tag: untagging a test scene does not make it writable.
    """
    dataset = root_dataset(samples)
    tags = [SPLIT_TAGS[s] for s in splits]
    recorded = _recorded(dataset)
    ids = {sid for s in splits for sid in recorded[2].get(s, ())} if recorded else set()
    if dataset.media_type == "group":
        groups = tagged_groups(dataset, tags)
        for view in slice_views(dataset.select_groups(groups)).values() if groups else ():
            ids.update(view.values("id"))
    else:
        ids.update(dataset.match_tags(tags).values("id"))
    return ids
