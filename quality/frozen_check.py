"""The frozen splits' record and the check that they stay frozen (FiftyOne glue).

:func:`.frozen.create_splits` records the splits as the FiftyOne custom run
``annoloop_frozen_splits`` (method ``annoloop.frozen_splits``): parameters and counts in its
config, per-sample label fingerprints (:func:`fingerprints`) in its results.

:func:`check_frozen` recomputes the fingerprints and reports every frozen sample whose
labels changed, and every sample that joined or left a split since; it warns loudly (or
raises with ``strict=True``). Label tags are ignored: quarantining a label is not changing it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import fiftyone as fo

from ..core.names import GOLDEN_SPLIT_TAG, MINING_SPLIT_TAG, TEST_SPLIT_TAG
from ..core.runs import load_record, load_results
from ..core.views import root_dataset, slice_views
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
    "check_frozen",
    "fingerprints",
    "frozen_record",
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
_SHOWN_IDS = 10


class FrozenSplitError(ValueError):
    """A frozen label changed (raised by ``check_frozen(..., strict=True)``)."""


class FrozenSplitWarning(UserWarning):
    """A frozen label changed (warned by ``check_frozen``)."""


def frozen_record(dataset: fo.Dataset) -> dict | None:
    """The recorded parameters and counts of the frozen splits, or None."""
    return load_record(dataset, FROZEN_RUN_KEY)


def fingerprints(dataset: fo.Dataset, split: str, fields: Sequence[str]) -> tuple[dict, set]:
    """``({field: {sample id: digest}}, member ids)`` of the samples tagged with ``split``.

    Parameters
    ----------
    dataset : Dataset
    split : {"test", "mining", "golden"}
    fields : sequence of str
        Label fields to fingerprint, sample by sample, on every slice.
    """
    out = {f: {} for f in fields}
    members = set()
    for view in slice_views(dataset).values():
        cols = view.match_tags(SPLIT_TAGS[split]).values(["id", *fields])
        members.update(cols[0])
        for f, labels in zip(fields, cols[1:]):
            for sid, label in zip(cols[0], labels):
                out[f][sid] = label_fingerprint(
                    label.to_dict() if hasattr(label, "to_dict") else label,
                    ignore_keys=FINGERPRINT_IGNORE,
                )
    return out, members


@dataclass
class FrozenReport:
    """What changed in the frozen splits since :func:`create_splits`.

    Attributes
    ----------
    recorded : bool
        False when the dataset has no frozen splits recorded (nothing was checked).
    changed : dict[str, dict[str, list]]
        ``changed[split][field]``: sample ids whose labels in ``field`` differ.
    added, removed : dict[str, list]
        Sample ids that joined the split (tagged since) or left it (untagged or deleted).
    created_at : str or None
        When the splits were frozen.
    """

    recorded: bool
    changed: dict = field(default_factory=dict)
    added: dict = field(default_factory=dict)
    removed: dict = field(default_factory=dict)
    created_at: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing changed (or nothing was recorded)."""
        return not (
            any(ids for per in self.changed.values() for ids in per.values())
            or any(self.added.values())
            or any(self.removed.values())
        )

    @property
    def message(self) -> str:
        """One line per problem, listing the sample ids (at most 10 each)."""
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
        for what, table in (("joined", self.added), ("left", self.removed)):
            for split, ids in table.items():
                if ids:
                    lines.append(f"  {split}: {len(ids)} samples {what} the split: {_ids(ids)}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON form, with ``ok`` and ``message``."""
        return {**asdict(self), "ok": self.ok, "message": self.message}


def _ids(ids: list) -> str:
    shown = ", ".join(ids[:_SHOWN_IDS])
    return shown + (f", ... (+{len(ids) - _SHOWN_IDS})" if len(ids) > _SHOWN_IDS else "")


def check_frozen(
    dataset, *, splits: Sequence[str] = tuple(SPLIT_TAGS), strict: bool = False
) -> FrozenReport:
    """Compare the frozen splits' labels and membership with their recorded fingerprints.

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
    dataset = root_dataset(dataset)
    unknown = [s for s in splits if s not in SPLIT_TAGS]
    if unknown:
        raise ValueError(f"unknown splits {unknown}; choose from {sorted(SPLIT_TAGS)}")
    record = frozen_record(dataset)
    if record is None:
        return FrozenReport(recorded=False)
    stored = load_results(dataset, FROZEN_RUN_KEY).fingerprints
    report = FrozenReport(recorded=True, created_at=record["created_at"])
    for split in splits:
        if split not in stored:
            continue  # frozen before this split existed
        old = stored[split]
        fields = list(old)
        new, members = fingerprints(dataset, split, fields)
        recorded_ids = set().union(*(set(v) for v in old.values())) if old else set()
        report.added[split] = sorted(members - recorded_ids)
        report.removed[split] = sorted(recorded_ids - members)
        report.changed[split] = {
            f: sorted(sid for sid, fp in old[f].items() if sid in new[f] and new[f][sid] != fp)
            for f in fields
        }
    if not report.ok:
        if strict:
            raise FrozenSplitError(report.message)
        logger.warning(report.message)
        warnings.warn(report.message, FrozenSplitWarning, stacklevel=2)
    return report
