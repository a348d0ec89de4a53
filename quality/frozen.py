"""Frozen test, mining and golden splits on a FiftyOne dataset (glue), and the check that
they stay frozen.

The three splits have one job each: the **test** set only reports (the ledger's numbers);
the **mining** set is the labeled validation split whose model failures the planner targets,
so choosing what to label never looks at the test set; the **golden** set scores annotators.

:func:`create_splits` picks the sets with :func:`.splits.select_splits`: by scene (a group of
a grouped dataset, or a scene field), with near-duplicate scenes kept together, seeded and
stratified by scene attributes. It then

- tags every sample of the chosen scenes, on every slice, ``split:test``,
  ``split:mining`` or ``split:golden`` and saves the views ``test_set``, ``mining_set`` and
  ``golden_set`` (``match_tags``);
- copies the golden set's trusted labels (e.g. ``oracle``) into their own field
  (``golden``), new label ids, so annotators can overwrite their field freely;
- fingerprints the frozen labels (the test and mining sets' label fields, the golden field) sample by
  sample and records everything as the FiftyOne custom run ``annoloop_frozen_splits``
  (method ``annoloop.frozen_splits``): parameters, counts and strata in the run config, the
  per-sample fingerprints in the run results.

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

from ..core.runs import Progress, load_record, load_results, now, save_record
from ..core.names import GOLDEN_SPLIT_TAG, MINING_SPLIT_TAG, TEST_SPLIT_TAG
from ..core.views import root_dataset, slice_views
from .gate import detections_field
from .algorithms.splits import label_fingerprint, select_splits

__all__ = [
    "DEFAULT_GOLDEN_FIELD",
    "FROZEN_RUN_KEY",
    "FROZEN_RUN_METHOD",
    "FrozenReport",
    "FrozenSplitError",
    "FrozenSplitWarning",
    "GOLDEN_VIEW",
    "MINING_VIEW",
    "SPLIT_TAGS",
    "TEST_VIEW",
    "check_frozen",
    "create_splits",
    "frozen_record",
    "split_defaults",
]

logger = logging.getLogger(__name__)

FROZEN_RUN_KEY = "annoloop_frozen_splits"
FROZEN_RUN_METHOD = "annoloop.frozen_splits"
TEST_VIEW = "test_set"
MINING_VIEW = "mining_set"
GOLDEN_VIEW = "golden_set"
DEFAULT_GOLDEN_FIELD = "golden"
#: Split name -> sample tag.
SPLIT_TAGS = {"test": TEST_SPLIT_TAG, "mining": MINING_SPLIT_TAG, "golden": GOLDEN_SPLIT_TAG}
#: Split name -> saved view.
SPLIT_VIEWS = {"test": TEST_VIEW, "mining": MINING_VIEW, "golden": GOLDEN_VIEW}
#: Label keys left out of fingerprints: ids change on re-import, tags are workflow state.
FINGERPRINT_IGNORE = ("id", "_id", "tags")
# Conventions the defaults look for (the demo dataset follows them).
_SCENE_FIELD = "scene_id"
_DUPLICATE_FIELD = "near_duplicate_of"
_SOURCE_FIELD = "oracle"
_MAX_STRATUM_VALUES = 12
_RESERVED = {"id", "filepath", "tags", "metadata", "created_at", "last_modified_at"}
_SHOWN_IDS = 10


class FrozenSplitError(ValueError):
    """A frozen label changed (raised by ``check_frozen(..., strict=True)``)."""


class FrozenSplitWarning(UserWarning):
    """A frozen label changed (warned by ``check_frozen``)."""



def _first_slice(dataset: fo.Dataset):
    return next(iter(slice_views(dataset).values()))


def split_defaults(dataset: fo.Dataset) -> dict:
    """Defaults of :func:`create_splits` for ``dataset``.

    - ``scene_field``: ``scene_id`` when the dataset has it, else the group (grouped) or the
      sample (flat);
    - ``duplicate_field``: ``near_duplicate_of`` when present with a scene field;
    - ``strata_fields``: top-level string / bool sample fields with 2-12 distinct values
      (scene attributes such as ``time_of_day``, ``weather``);
    - ``source_field``: ``oracle`` when it is a Detections field, else ``ground_truth``.
    """
    schema = dataset.get_field_schema()
    scene_field = _SCENE_FIELD if _SCENE_FIELD in schema else None
    duplicate_field = _DUPLICATE_FIELD if scene_field and _DUPLICATE_FIELD in schema else None
    skip = _RESERVED | {scene_field, duplicate_field, getattr(dataset, "group_field", None)}
    first = _first_slice(dataset)
    strata = [
        name
        for name, f in schema.items()
        if name not in skip
        and not name.startswith("_")
        and isinstance(f, (fo.StringField, fo.BooleanField))
        and 2 <= len(first.distinct(name)) <= _MAX_STRATUM_VALUES
    ]
    detections = dataset.get_field_schema(embedded_doc_type=fo.Detections)
    source = _SOURCE_FIELD if _SOURCE_FIELD in detections else "ground_truth"
    return {
        "scene_field": scene_field,
        "duplicate_field": duplicate_field,
        "strata_fields": strata,
        "source_field": source,
    }


def frozen_record(dataset: fo.Dataset) -> dict | None:
    """The recorded parameters and counts of the frozen splits, or None."""
    return load_record(dataset, FROZEN_RUN_KEY)


def _scene_components(scenes: list, links: list) -> dict:
    """Scene -> representative of its near-duplicate component (the smallest key in it)."""
    parent = {s: s for s in scenes}

    def find(s):
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for s, other in zip(scenes, links):
        if other is None or other not in parent:
            continue  # a duplicate of a scene outside the dataset links nothing
        a, b = sorted((find(s), find(other)), key=str)
        if a != b:
            parent[b] = a
    return {s: find(s) for s in parent}


def _check_fraction_or_count(name: str, value) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"{name} must be a fraction in [0, 1) or a number of scenes; got {value!r}"
        )
    if isinstance(value, float) and value >= 1:
        if value != int(value):
            raise ValueError(
                f"{name} must be a fraction in [0, 1) or a whole number of scenes; got {value}"
            )
        return int(value)
    return value


def _existing_splits(dataset: fo.Dataset) -> dict:
    counts = {
        split: sum(v.match_tags(tag).count() for v in slice_views(dataset).values())
        for split, tag in SPLIT_TAGS.items()
    }
    views = [v for v in SPLIT_VIEWS.values() if dataset.has_saved_view(v)]
    return {"tagged": counts, "views": views, "run": dataset.has_run(FROZEN_RUN_KEY)}


def create_splits(
    dataset: fo.Dataset,
    *,
    test=0.1,
    golden=0.02,
    mining=0.1,
    seed: int = 0,
    strata_fields: Sequence[str] | None = None,
    scene_field: str | None = None,
    duplicate_field: str | None = None,
    source_field: str | None = None,
    golden_field: str = DEFAULT_GOLDEN_FIELD,
    test_fields: Sequence[str] | None = None,
    min_stratum_groups: int = 3,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Pick, tag and fingerprint a frozen test set, a mining set and a golden set.

    Parameters
    ----------
    dataset : Dataset
        Grouped or flat (a view is resolved to its dataset: splits are dataset-wide).
    test, golden : float or int
        A fraction in [0, 1) of the scenes, or a number of scenes. The golden set comes
        from the scenes left after the test and mining sets.
    mining : float or int, default 0.1
        The mining (validation) set, same form: labeled like the test set (its labels are
        fingerprinted with ``test_fields``), never trained on, and the only split whose
        evaluation the planner may target. 0 leaves it out.
    seed : int
        Same seed and scene keys give the same sets.
    strata_fields : sequence of str, optional
        Scene attributes to stratify by (their value combination is the stratum); default
        from :func:`split_defaults`; ``[]`` for no stratification.
    scene_field : str, optional
        Field naming the scene; samples sharing it (and, grouped, every slice of their
        groups) are split together. Default from :func:`split_defaults`.
    duplicate_field : str, optional
        Field holding the ``scene_field`` value of the scene a sample nearly duplicates;
        linked scenes land in the same split, stratified as the original. Default from
        :func:`split_defaults`; ``""`` for none.
    source_field : str, optional
        Detections field whose labels the golden set trusts (copied to ``golden_field``).
    golden_field : str, default "golden"
        New field for the golden labels; an existing field is refused unless an earlier
        ``create_splits`` wrote it.
    test_fields : sequence of str, optional
        Label fields of the test set to fingerprint; default ``[source_field]``.
    min_stratum_groups : int, default 3
        See :func:`.splits.select_splits`.
    overwrite : bool, default False
        Replace existing splits (tags, views, golden field, record). Without it, existing
        splits are an error.
    progress : callable, optional
        ``progress(fraction, message)``.

    Returns
    -------
    dict
        The record: parameters, ``counts`` (scenes and samples per split), ``strata``,
        ``fingerprints`` (one digest per split and field) and ``created_at``.

    Raises
    ------
    ValueError
        On existing splits without ``overwrite``, unknown fields, bad sizes, a scene that
        spans several strata, or golden samples without source labels. Nothing is written
        then.
    """
    report = progress or (lambda fraction, message: None)
    dataset = root_dataset(dataset)
    defaults = split_defaults(dataset)
    scene_field = scene_field or defaults["scene_field"]
    if duplicate_field is None:
        duplicate_field = defaults["duplicate_field"]
    duplicate_field = duplicate_field or None  # "" turns the near-duplicate links off
    strata_fields = list(defaults["strata_fields"] if strata_fields is None else strata_fields)
    source_field = source_field or defaults["source_field"]
    test_fields = list(test_fields) if test_fields else [source_field]
    test = _check_fraction_or_count("test", test)
    golden = _check_fraction_or_count("golden", golden)
    mining = _check_fraction_or_count("mining", mining)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int; got {seed!r}")

    schema = dataset.get_field_schema()
    for name, value in (("scene_field", scene_field), ("duplicate_field", duplicate_field)):
        if value is not None and dataset.get_field(value) is None:
            raise ValueError(f"{name} {value!r} is not a field of dataset '{dataset.name}'")
    if duplicate_field and not scene_field:
        raise ValueError("duplicate_field needs a scene_field whose values it refers to")
    missing = [f for f in strata_fields if f not in schema]
    if missing:
        raise ValueError(f"strata fields {missing} are not fields of dataset '{dataset.name}'")
    detections_field(dataset, source_field, "source_field")
    missing = [f for f in test_fields if f not in schema]
    if missing:
        raise ValueError(f"test_fields {missing} are not fields of dataset '{dataset.name}'")
    if not isinstance(golden_field, str) or not golden_field.isidentifier():
        raise ValueError(f"golden_field must be a plain field name; got {golden_field!r}")
    if golden_field == source_field or golden_field in test_fields or golden_field in _RESERVED:
        raise ValueError(
            f"golden_field {golden_field!r} must be a new field, not a source or test field"
        )

    existing = _existing_splits(dataset)
    previous = frozen_record(dataset)
    if any(existing["tagged"].values()) or existing["views"] or existing["run"]:
        if not overwrite:
            raise ValueError(
                f"dataset '{dataset.name}' already has frozen splits "
                f"({existing['tagged']['test']} test and {existing['tagged']['golden']} golden "
                f"samples tagged, saved views {existing['views']}); pass overwrite=True to "
                "re-draw them (this changes which samples are frozen)"
            )
    ours = previous["params"]["golden_field"] if previous else None
    if golden_field in schema and golden_field != ours:
        raise ValueError(
            f"field {golden_field!r} already exists and was not written by create_splits; "
            "choose another golden_field"
        )

    # Read: one row per sample, on every slice.
    report(0.0, "reading scenes")
    slices = slice_views(dataset)
    group_path = f"{dataset.group_field}.id" if dataset.media_type == "group" else "id"
    scene_path = scene_field or group_path
    paths = ["id", scene_path] + ([duplicate_field] if duplicate_field else []) + strata_fields
    rows = []  # (slice, sample id, scene, link, stratum)
    for name, view in slices.items():
        cols = view.values(paths)
        ids, scenes = cols[0], cols[1]
        links = cols[2] if duplicate_field else [None] * len(ids)
        strata_cols = cols[2 + bool(duplicate_field) :]
        for i, sid in enumerate(ids):
            stratum = "|".join(str(col[i]) for col in strata_cols)
            rows.append((name, sid, scenes[i], links[i], stratum))
    if not rows:
        raise ValueError(f"dataset '{dataset.name}' has no samples")
    no_scene = sum(r[2] is None for r in rows)
    if no_scene:
        raise ValueError(
            f"{no_scene} samples have no {scene_path!r} value; every sample needs a scene"
        )

    scene_strata: dict = {}
    scene_link: dict = {}
    for _, _, scene, link, stratum in rows:
        scene_strata.setdefault(scene, set()).add(stratum)
        if link is not None:
            scene_link.setdefault(scene, link)
    mixed = [s for s, v in scene_strata.items() if len(v) > 1]
    if mixed:
        raise ValueError(
            f"{len(mixed)} scenes have different {strata_fields} values on different samples "
            f"(e.g. {mixed[0]!r}: {sorted(scene_strata[mixed[0]])}); "
            "strata must be scene attributes"
        )
    scenes = sorted(scene_strata, key=str)
    component = _scene_components(scenes, [scene_link.get(s) for s in scenes])
    # A near-duplicate goes with, and is stratified as, the original (a scene with no link).
    component_stratum: dict = {}
    for s in scenes:
        if s not in scene_link or scene_link[s] not in component:
            component_stratum.setdefault(component[s], next(iter(scene_strata[s])))
    for s in scenes:
        component_stratum.setdefault(component[s], next(iter(scene_strata[s])))

    result = select_splits(
        [str(component[r[2]]) for r in rows],
        [component_stratum[component[r[2]]] for r in rows],
        test=test,
        golden=golden,
        mining=mining,
        seed=seed,
        min_stratum_groups=min_stratum_groups,
    )
    picked = {split: [rows[i] for i in getattr(result, split).tolist()] for split in SPLIT_TAGS}
    if not picked["golden"]:
        raise ValueError("the golden set would be empty; ask for more golden scenes")
    by_slice = {
        split: {name: [r[1] for r in members if r[0] == name] for name in slices}
        for split, members in picked.items()
    }

    # Golden labels: read and check before anything is written.
    golden_labels = {}
    for name, view in slices.items():
        ids = by_slice["golden"][name]
        if not ids:
            continue
        got_ids, labels = view.select(ids).values(["id", source_field])
        empty = [sid for sid, lab in zip(got_ids, labels) if lab is None]
        if empty:
            raise ValueError(
                f"{len(empty)} of {len(ids)} golden samples{on_slice(name)} have no "
                f"{source_field!r} labels (e.g. {empty[0]}); label them or choose another "
                "source_field"
            )
        golden_labels[name] = {sid: lab.copy() for sid, lab in zip(got_ids, labels)}

    # Write.
    report(0.3, "tagging the splits")
    if any(existing["tagged"].values()) or existing["views"] or existing["run"]:
        _clear_splits(dataset, slices, ours)
    for split, tag in SPLIT_TAGS.items():
        for name, view in slices.items():
            if by_slice[split][name]:
                view.select(by_slice[split][name]).tag_samples(tag)
    for name, labels in golden_labels.items():
        slices[name].set_values(golden_field, labels, key_field="id")
    for split, view_name in SPLIT_VIEWS.items():
        if picked[split]:
            dataset.save_view(view_name, dataset.match_tags(SPLIT_TAGS[split]), overwrite=True)

    report(0.7, "fingerprinting the frozen labels")
    fields = {"test": test_fields, "mining": test_fields, "golden": [golden_field]}
    fingerprints = {split: _fingerprints(dataset, split, fields[split])[0] for split in SPLIT_TAGS}
    record = {
        "created_at": now(),
        "params": {
            "test": test,
            "mining": mining,
            "golden": golden,
            "seed": seed,
            "strata_fields": strata_fields,
            "scene_field": scene_path,
            "duplicate_field": duplicate_field,
            "source_field": source_field,
            "golden_field": golden_field,
            "test_fields": test_fields,
            "min_stratum_groups": min_stratum_groups,
        },
        "counts": {
            split: {"scenes": len(getattr(result, f"{split}_groups")), "samples": len(members)}
            for split, members in picked.items()
        },
        "strata": result.strata,
        "fingerprints": {
            split: {f: label_fingerprint(per) for f, per in fps.items()}
            for split, fps in fingerprints.items()
        },
        "tags": dict(SPLIT_TAGS),
        "views": {split: SPLIT_VIEWS[split] for split in SPLIT_TAGS if picked[split]},
    }
    scenes = {split: getattr(result, f"{split}_groups") for split in SPLIT_TAGS}
    save_record(
        dataset, FROZEN_RUN_KEY, FROZEN_RUN_METHOD, record,
        results={"fingerprints": fingerprints, "scenes": scenes},
    )
    report(1.0, "splits frozen")
    return record


def on_slice(slice_name) -> str:
    """`` on slice 'x'`` for messages about a slice; empty for a flat dataset."""
    return f" on slice '{slice_name}'" if slice_name else ""


def _clear_splits(dataset: fo.Dataset, slices: dict, golden_field: str | None) -> None:
    """Remove split tags, saved views, the golden field written earlier and the record."""
    for view in slices.values():
        view.untag_samples(list(SPLIT_TAGS.values()))
        if golden_field and dataset.get_field(golden_field) is not None:
            view.clear_sample_field(golden_field)
    for name in SPLIT_VIEWS.values():
        if dataset.has_saved_view(name):
            dataset.delete_saved_view(name)
    if dataset.has_run(FROZEN_RUN_KEY):
        dataset.delete_run(FROZEN_RUN_KEY)


def _fingerprints(dataset: fo.Dataset, split: str, fields: Sequence[str]) -> tuple[dict, set]:
    """``({field: {sample id: digest}}, member ids)`` of the samples tagged with ``split``."""
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
        new, members = _fingerprints(dataset, split, fields)
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
