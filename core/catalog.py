"""The unit catalog: where each unit of a dataset stands in the loop.

A *unit* is what the loop budgets in: the scene (group) of a grouped dataset, else the
sample. A unit counts as tagged or labeled when any of its samples, on any slice, is: the
right camera image of a test scene is nearly its left one.

The batch planner decides its pool from this catalog and the panels count from it, so a
state means one thing everywhere:

* *labeled*: the label field is set on a sample of the unit (not None: an empty
  ``Detections`` is an image someone labeled as empty);
* *batched*: a sample carries a ``batch:*`` tag (planned, maybe not labeled yet);
* *frozen*: a sample carries a frozen split tag (test, mining, golden);
* *quarantined*: a sample carries ``qa:quarantine``, or any label of any label field does.
  The whole unit is held back whichever field the schema gate (or a person) flagged:
  planning next to a broken label would send it back to be labeled on top of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import fiftyone as fo

from .names import BATCH_TAG_PREFIX, DEFAULT_GT_FIELD, FROZEN_SPLIT_TAGS, QUARANTINE_TAG
from .raw_reads import stream_columns
from .vector_reads import read_vectors
from .views import root_dataset, slice_views, unique_values

__all__ = [
    "UnitCatalog",
    "label_tagged",
    "labeled_units",
    "quarantined_units",
    "read_catalog",
    "tagged_units",
    "unit_path",
    "units_where",
]


#: Samples per block of the catalog's read of the samples that carry a state.
_BLOCK_ROWS = 100_000


def unit_path(dataset: fo.Dataset) -> str:
    """The field path of a sample's unit id: ``<group field>.id`` (grouped) or ``id``."""
    return f"{dataset.group_field}.id" if dataset.media_type == "group" else "id"


def units_where(samples: fo.core.collections.SampleCollection, narrow: Callable | None = None) -> set[str]:
    """Units of ``samples`` (a dataset or any view) in which a sample of any slice is in
    ``narrow(flat slice view)``; every unit of ``samples`` when ``narrow`` is None."""
    path = unit_path(root_dataset(samples))
    return {
        u
        for view in slice_views(samples).values()
        for u in unique_values(view if narrow is None else narrow(view), path)
    }


def tagged_units(dataset: fo.Dataset, tags: Iterable[str]) -> set[str]:
    """Units in which a sample of any slice carries one of ``tags`` (none for no tags)."""
    tags = list(tags)
    return units_where(dataset, lambda view: view.match_tags(tags)) if tags else set()


def labeled_units(dataset: fo.Dataset, label_field: str = DEFAULT_GT_FIELD) -> set[str]:
    """Units with ``label_field`` set on a sample (none when the field does not exist)."""
    if dataset.get_field(label_field) is None:
        return set()
    return units_where(dataset, lambda view: view.exists(label_field))


def quarantined_units(dataset: fo.Dataset) -> set[str]:
    """Units with a ``qa:quarantine`` tag on a sample, or on any label of any field."""
    return tagged_units(dataset, [QUARANTINE_TAG]) | _label_quarantined_units(dataset)


def _label_quarantined_units(dataset: fo.Dataset) -> set[str]:
    return units_where(
        dataset, lambda view: view.mongo([{"$match": {"$expr": label_tagged(view, QUARANTINE_TAG)}}])
    )


def label_tagged(view: fo.core.collections.SampleCollection, tag: str) -> dict:
    """A MongoDB expression, per sample of the flat ``view``: whether any label of any of
    its (sample-level) label fields carries ``tag``. The catalog evaluates it in the same
    scan as the tags; ``match_labels(tags=...)`` would be a scan of its own."""
    anywhere = []
    for name in view._get_label_fields():
        path = "$" + view._handle_db_field(name)
        label_list = getattr(view.get_field(name).document_type, "_LABEL_LIST_FIELD", None)
        if label_list is None:
            anywhere.append({"$in": [tag, {"$ifNull": [f"{path}.tags", []]}]})
        else:
            anywhere.append(
                {
                    "$anyElementTrue": [
                        {
                            "$map": {
                                "input": {"$ifNull": [f"{path}.{label_list}", []]},
                                "in": {"$in": [tag, {"$ifNull": ["$$this.tags", []]}]},
                            }
                        }
                    ]
                }
            )
    return {"$or": anywhere} if anywhere else {"$literal": False}


@dataclass(frozen=True)
class UnitCatalog:
    """Which units of a dataset are where, as sets of unit ids (see the module docstring).

    Attributes
    ----------
    grouped : bool
        Units are scenes (groups) rather than samples.
    units, labeled, batched, quarantined : frozenset of str
    splits : dict
        Frozen split tag -> its units.
    """

    grouped: bool
    units: frozenset
    labeled: frozenset
    batched: frozenset
    splits: dict
    quarantined: frozenset

    @property
    def noun(self) -> str:
        """``"group"`` or ``"sample"``."""
        return "group" if self.grouped else "sample"

    @property
    def frozen(self) -> frozenset:
        """Units of any frozen split."""
        return frozenset().union(*self.splits.values())

    @property
    def excluded(self) -> frozenset:
        """Units the planner never picks: frozen, quarantined or already batched."""
        return self.frozen | self.quarantined | self.batched

    @property
    def covered(self) -> frozenset:
        """Units coverage measures against: labeled or queued for labeling, not frozen."""
        return (self.labeled | self.batched) - self.frozen

    def excluded_counts(self, units: Sequence[str]) -> dict:
        """How many of ``units`` are frozen, quarantined and batched (a unit may be several)."""
        chosen = set(units)
        return {
            "frozen": len(chosen & self.frozen),
            "quarantined": len(chosen & self.quarantined),
            "batched": len(chosen & self.batched),
        }


def read_catalog(dataset: fo.Dataset, label_field: str = DEFAULT_GT_FIELD) -> UnitCatalog:
    """The catalog of the whole ``dataset`` (a view's dataset: never trust a view for this).

    ``label_field`` may be absent from the dataset: then nothing counts as labeled.
    """
    dataset = root_dataset(dataset)
    units: set[str] = set()
    states = {"batched": set(), "labeled": set(), "quarantined": set()}
    splits: dict[str, set[str]] = {tag: set() for tag in FROZEN_SPLIT_TAGS}
    path = unit_path(dataset)
    for view in slice_views(dataset).values():
        # Every unit, from the local cache of unit lists when it is fresh: returning 10^6
        # documents costs MongoDB and pymongo ~10 s, scanning them for the few that carry
        # a state ~1.5 s.
        units.update(read_vectors(view, path, None).row)
        flagged = label_tagged(view, QUARANTINE_TAG)
        computed = {"_annoloop_quarantined": flagged}
        anything = [{"tags.0": {"$exists": True}}, {"$expr": flagged}]
        if view.get_field(label_field) is not None:
            # "Set" means not None (an empty Detections is labeled), as exists() means.
            db_field = view._handle_db_field(label_field)
            computed["_annoloop_labeled"] = {"$gt": ["$" + db_field, None]}
            anything.append({db_field: {"$ne": None}})
        with_state = view.mongo([{"$match": {"$or": anything}}])
        for block_units, block_tags, quarantined, *labeled in stream_columns(
            with_state, [path, "tags"], _BLOCK_ROWS, computed
        ):
            for i, (unit, tags) in enumerate(zip(map(str, block_units), block_tags)):
                tags = tags or ()
                if any(t.startswith(BATCH_TAG_PREFIX) for t in tags):
                    states["batched"].add(unit)
                if quarantined[i] or QUARANTINE_TAG in tags:
                    states["quarantined"].add(unit)
                if labeled and labeled[0][i]:
                    states["labeled"].add(unit)
                for tag in tags:
                    if tag in splits:
                        splits[tag].add(unit)
    return UnitCatalog(
        grouped=dataset.media_type == "group",
        units=frozenset(units),
        splits={tag: frozenset(s) for tag, s in splits.items()},
        **{state: frozenset(members) for state, members in states.items()},
    )
