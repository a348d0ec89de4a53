"""The schema gate on a FiftyOne collection (glue): quarantine labels that break the schema.

:func:`gate_label_field` checks one ``Detections`` field of a collection against the
field's label schema, FiftyOne's own ``dataset.label_schemas[field]`` (the schema the App's
annotation UI enforces) or one passed explicitly, with :func:`.schema_rules.validate_labels`.
Camera slices are checked as 2D boxes and point-cloud / 3D slices as cuboids, each slice
with one bulk read, one call of the pure validator and one bulk write per kind of result.

What it leaves on the dataset (nothing in the label field itself changes except label tags):

- ``qa:quarantine`` on every violating label (a label tag) and on every sample with a
  violation in any gated field (a sample tag), so ``match_tags`` / ``match_labels`` and
  the training views find them;
- a per-sample list ``qa_violations`` of ``{field, rule, label, label_id, detail}``
  records (embedded documents, so the App's sidebar filters on ``qa_violations.rule``);
- the run's summary (counts by rule and by class, per slice and in total) as a FiftyOne
  custom run ``annoloop_gate_<field>`` (method ``annoloop.gate``) in its config.

Re-running after a label was fixed clears that label's tag and records, and the sample tag
once the sample has no violation left in any field. The gate only removes the sample tag
from samples it had quarantined itself (samples with records), so a tag set by hand on a
sample without records stays.

:func:`checkable_slice_views` and :func:`read_detections` are shared with the golden-set and frozen
split glue: they turn a (grouped) collection into flat per-slice views and a ``Detections``
field into flat per-label arrays.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain

import fiftyone as fo
import numpy as np
from fiftyone import ViewField as F

from ..core.runs import Progress, load_record, now, save_record
from ..core.names import QUARANTINE_TAG
from ..core.views import root_dataset, slice_views, tagged_groups
from .algorithms.schema_rules import load_schema, validate_labels

__all__ = [
    "DEFAULT_VIOLATIONS_FIELD",
    "GATE_RUN_KEY_PREFIX",
    "GATE_RUN_METHOD",
    "LabelRows",
    "detections_field",
    "gate_label_field",
    "gate_record",
    "gate_run_key",
    "read_detections",
    "resolve_schema",
    "checkable_slice_views",
]

#: Sample field holding the gate's violation records (new shared name, owned here).
DEFAULT_VIOLATIONS_FIELD = "qa_violations"
#: FiftyOne custom-run method and key prefix of the gate's summaries.
GATE_RUN_METHOD = "annoloop.gate"
GATE_RUN_KEY_PREFIX = "annoloop_gate_"

#: Media types whose ``Detections`` hold 3D cuboids.
MEDIA_3D = ("point-cloud", "3d")
_CHECKED_MEDIA = ("image", *MEDIA_3D)
_GEOMETRY_KEYS = ("bounding_box", "location", "dimensions", "rotation")
# Stored label keys that are not attributes to check ("mask" is binary image data).
_RAW_SKIP = frozenset({"_id", "_cls", "label", "tags", "attributes", "mask", *_GEOMETRY_KEYS})
_RECORD_KEYS = ("field", "rule", "label", "label_id", "detail")
_RECORD_CLS = "DynamicEmbeddedDocument"


# --------------------------------------------------------------------------- shared reads


def checkable_slice_views(samples, slices: Sequence[str] | None = None) -> dict:
    """``{slice name: (flat view, is_3d)}`` of the slices whose labels can be checked.

    Parameters
    ----------
    samples : Dataset or DatasetView
        Grouped or flat. For a grouped collection every chosen slice of every group in it is
        returned as its own flat view (:func:`annoloop.core.views.slice_views`). A flat
        dataset gives one entry keyed ``None``.
    slices : sequence of str, optional
        Slices to keep; default every image, point-cloud and 3D slice present.

    Raises
    ------
    ValueError
        On slices of a flat dataset, unknown slices, or slices of another media type.
    """
    views = slice_views(samples, slices, media=_CHECKED_MEDIA)
    dataset = root_dataset(samples)
    if dataset.media_type != "group":
        if samples.media_type not in _CHECKED_MEDIA:
            raise ValueError(
                f"dataset '{dataset.name}' holds {samples.media_type} samples; "
                f"only {list(_CHECKED_MEDIA)} are supported"
            )
        return {None: (samples, samples.media_type in MEDIA_3D)}
    media = dataset.group_media_types
    wrong = [s for s in views if media[s] not in _CHECKED_MEDIA]
    if wrong:
        raise ValueError(
            f"slices {wrong} hold {[media[s] for s in wrong]} samples; "
            f"only {list(_CHECKED_MEDIA)} are supported"
        )
    if not views:
        raise ValueError(
            "the collection has no image or point-cloud slice "
            f"(slices: {list(slice_views(samples))})"
        )
    return {s: (view, media[s] in MEDIA_3D) for s, view in views.items()}


def detections_field(samples, field_name: str, what: str = "label field") -> None:
    """Raise ``ValueError`` unless ``field_name`` is a ``Detections`` field of ``samples``."""
    if not isinstance(field_name, str) or not field_name:
        raise ValueError(f"{what} must be a field name; got {field_name!r}")
    dataset = root_dataset(samples)
    field_ = dataset.get_field(field_name)
    if field_ is None:
        labels = sorted(dataset.get_field_schema(embedded_doc_type=fo.Detections))
        raise ValueError(
            f"{what} {field_name!r} does not exist on dataset '{dataset.name}'; "
            f"its Detections fields are {labels}"
        )
    doc_type = getattr(field_, "document_type", None)
    if doc_type is not fo.Detections:
        kind = doc_type.__name__ if doc_type is not None else type(field_).__name__
        raise ValueError(
            f"{what} {field_name!r} holds {kind}, not Detections; only Detections fields "
            "(2D boxes and 3D cuboids) are supported"
        )


@dataclass
class LabelRows:
    """One ``Detections`` field of a flat view as per-label arrays.

    Attributes
    ----------
    sample_ids : list of str
        Sample ids in read order.
    present : ndarray of bool, shape (n_samples,)
        Whether the sample's field holds a ``Detections`` (possibly empty) rather than None.
    sample : ndarray of int64, shape (n,)
        Row -> index into ``sample_ids``; rows follow each sample's label-list order.
    label_id, label, tags : ndarray of object, shape (n,)
        Label id, class and tag list (as stored; ``None`` possible).
    geometry : ndarray of float64, shape (n, 4) or (n, 9)
        ``[x, y, w, h]``, or ``location + dimensions + rotation`` for 3D; NaN where a value
        is missing or malformed (a missing rotation counts as zero).
    kind : ndarray of object, shape (n,)
        ``"detection"`` (has a box), ``"cuboid"`` (has a location or dimensions but no box),
        or the expected kind when neither or both are present.
    attributes : dict[str, ndarray of object]
        Other label attributes, ``None`` where a label lacks one.
    extra : dict[str, list]
        Other per-sample values read in the same call, by the caller's names.
    """

    sample_ids: list
    present: np.ndarray
    sample: np.ndarray
    label_id: np.ndarray
    label: np.ndarray
    tags: np.ndarray
    geometry: np.ndarray
    kind: np.ndarray
    attributes: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def _matrix(column: np.ndarray, width: int, fill: float = np.nan) -> np.ndarray:
    """``(n, width)`` floats from a column of lists; ``fill`` where missing or malformed."""
    out = np.full((len(column), width), fill)
    ok = np.fromiter(
        (isinstance(v, (list, tuple)) and len(v) == width for v in column), bool, len(column)
    )
    if ok.any():
        try:
            out[ok] = np.array(column[ok].tolist(), dtype=np.float64)
        except (TypeError, ValueError):  # a non-numeric entry somewhere: go row by row
            for i in np.flatnonzero(ok):
                try:
                    out[i] = np.array(column[i], dtype=np.float64)
                except (TypeError, ValueError):
                    out[i] = np.nan
    return out


def _non_empty_list(column: np.ndarray) -> np.ndarray:
    # FiftyOne stores a cuboid's unused ``bounding_box`` as [], so "has a box" means non-empty.
    return np.fromiter((isinstance(v, list) and len(v) > 0 for v in column), bool, len(column))


def read_detections(
    view,
    field_name: str,
    is_3d: bool,
    *,
    attributes: Iterable[str] | None = None,
    extra: Mapping | None = None,
) -> LabelRows:
    """Read a ``Detections`` field of a flat view into :class:`LabelRows`, in one call.

    The labels come back as stored (one ``values()`` of the label list as an expression),
    which skips FiftyOne's per-value conversion and shows every attribute a label carries,
    declared in the dataset's schema or not.

    Parameters
    ----------
    view : flat SampleCollection
    field_name : str
        A ``Detections`` field.
    is_3d : bool
        Read cuboids (location, dimensions, rotation) instead of 2D boxes as the geometry.
        The other representation is still looked at, so a wrong label type shows.
    attributes : iterable of str, optional
        Label attributes to return; default every attribute present on some label.
    extra : dict, optional
        ``{name: path or expression}`` of per-sample values to read in the same
        ``values()`` call (e.g. ``{"tags": "tags"}``); returned under ``extra[name]``.
    """
    extra = dict(extra or {})
    values = view.values(["id", *extra.values(), F(f"{field_name}.detections")])
    sample_ids, per_sample = values[0], values[-1]
    extra = dict(zip(extra, values[1:-1]))
    n_samples = len(sample_ids)
    present = np.fromiter((v is not None for v in per_sample), bool, n_samples)
    counts = np.fromiter((len(v) if v else 0 for v in per_sample), np.int64, n_samples)
    docs = list(chain.from_iterable(labels for labels in per_sample if labels))
    n = len(docs)
    keys = set(chain.from_iterable(docs))  # every key of every label

    def column(key: str) -> np.ndarray:
        out = np.empty(n, dtype=object)
        if key in keys:  # an absent key stays None without a pass over the labels
            out[:] = [d.get(key) for d in docs]
        return out

    if attributes is None:
        attributes = sorted(keys - _RAW_SKIP)
    has_box = _non_empty_list(column("bounding_box"))
    has_3d = _non_empty_list(column("location")) | _non_empty_list(column("dimensions"))
    kind = np.full(n, "cuboid" if is_3d else "detection", dtype=object)
    kind[has_box & ~has_3d] = "detection"
    kind[has_3d & ~has_box] = "cuboid"
    if is_3d:
        geometry = np.hstack(
            [
                _matrix(column("location"), 3),
                _matrix(column("dimensions"), 3),
                _matrix(column("rotation"), 3, fill=0.0),
            ]
        )
    else:
        geometry = _matrix(column("bounding_box"), 4)
    return LabelRows(
        sample_ids=list(sample_ids),
        present=present,
        sample=np.repeat(np.arange(n_samples), counts),
        label_id=np.array([str(d.get("_id")) for d in docs], dtype=object),
        label=column("label"),
        tags=column("tags"),
        geometry=geometry,
        kind=kind,
        attributes={a: column(a) for a in attributes},
        extra=extra,
    )


# ----------------------------------------------------------------------------- the gate


def gate_run_key(label_field: str) -> str:
    """FiftyOne run key of the gate's summary for ``label_field``."""
    return GATE_RUN_KEY_PREFIX + label_field.replace(".", "__")



def gate_record(dataset: fo.Dataset, label_field: str) -> dict | None:
    """The stored summary of the last gate run on ``label_field`` (as returned), or None."""
    return load_record(dataset, gate_run_key(label_field))


def resolve_schema(dataset: fo.Dataset, label_field: str, schema=None) -> dict:
    """The label-schema spec to check ``label_field`` against.

    Parameters
    ----------
    dataset : Dataset
    label_field : str
    schema : dict or str, optional
        An explicit spec (see :func:`.schema_rules.load_schema`), as a dict or JSON text;
        ``{label_field: spec}`` is unwrapped. Default: ``dataset.label_schemas[label_field]``.

    Raises
    ------
    ValueError
        When no schema is given and the dataset has none for the field, or the given one is
        not a JSON object.
    """
    if schema is None or (isinstance(schema, str) and not schema.strip()):
        stored = dataset.label_schemas.get(label_field)
        if not stored:
            raise ValueError(
                f"field {label_field!r} of dataset '{dataset.name}' has no label schema: set "
                "one with dataset.set_label_schemas() (dataset.generate_label_schemas() drafts "
                "it) or pass a schema"
            )
        return stored
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as e:
            raise ValueError(f"schema is not valid JSON: {e}") from None
    if not isinstance(schema, Mapping):
        raise ValueError(f"schema must be a JSON object; got {type(schema).__name__}")
    schema = dict(schema)
    if set(schema) == {label_field} and isinstance(schema[label_field], Mapping):
        schema = dict(schema[label_field])
    return schema


def _records_key(records) -> tuple:
    return tuple(tuple(r.get(k) for k in _RECORD_KEYS) for r in records)


def _as_dict(record: dict) -> dict:
    return {k: record.get(k) for k in _RECORD_KEYS}


@dataclass
class _SlicePlan:
    """Everything one slice's writes need, computed before anything is written."""

    view: object
    records: dict  # sample id -> list of record dicts (all fields) or None, changed only
    label_tags: list  # {"sample_id", "label_id", "value": new tags} of labels that change
    to_tag: list
    to_untag: list
    summary: dict
    quarantined: int


def _plan_slice(
    view,
    is_3d: bool,
    label_field: str,
    spec: dict,
    violations_field: str,
    batch: tuple | None,
    allow_empty: bool,
    box_tolerance: float,
) -> _SlicePlan:
    """Read one flat slice, validate it and work out its writes (writes nothing).

    ``batch`` is ``("groups", ids)`` (expected: samples of those groups) or ``("tag", tag)``
    (expected: samples with the tag), or None (no ``empty_sample`` check).
    """
    schema = load_schema(spec, label_type="cuboids" if is_3d else "detections")
    dataset = root_dataset(view)
    extra = {"tags": "tags"}
    if dataset.get_field(violations_field) is not None:
        extra["records"] = F(violations_field)  # stored dicts: no per-record conversion
    if batch is not None and batch[0] == "groups":
        extra["group"] = f"{dataset.group_field}.id"
    rows = read_detections(view, label_field, is_3d, extra=extra)

    n_samples = len(rows.sample_ids)
    expected = None
    if batch is not None:
        kind, key = batch
        if kind == "groups":
            member = (g in key for g in rows.extra["group"])
        else:
            member = (key in (t or []) for t in rows.extra["tags"])
        member = np.fromiter(member, bool, n_samples)
        if allow_empty:  # an empty label list is an answer; only unlabeled samples count
            member &= ~rows.present
        expected = np.flatnonzero(member)
    report = validate_labels(
        schema,
        rows.sample,
        rows.label,
        rows.geometry,
        rows.attributes,
        kind=rows.kind,
        expected_samples=expected,
        box_tolerance=box_tolerance,
    )

    # New records of this field, per sample index.
    new: dict[int, list] = {}
    for row, s, rule, label, detail in zip(
        report.row.tolist(),
        report.sample.tolist(),
        report.rule.tolist(),
        report.label.tolist(),
        report.detail.tolist(),
    ):
        new.setdefault(s, []).append(
            {
                "field": label_field,
                "rule": rule,
                "label": label if isinstance(label, str) or label is None else repr(label),
                "label_id": rows.label_id[row] if row >= 0 else None,
                "detail": detail,
            }
        )

    old_all = rows.extra.get("records") or [None] * n_samples
    sample_tags = rows.extra["tags"]
    records, to_tag, to_untag = {}, [], []
    quarantined = 0
    for i, sid in enumerate(rows.sample_ids):
        old = [_as_dict(r) for r in (old_all[i] or [])]
        kept = [r for r in old if r["field"] != label_field]
        mine_old = [r for r in old if r["field"] == label_field]
        mine_new = new.get(i, [])
        if _records_key(mine_old) != _records_key(mine_new):
            records[sid] = (kept + mine_new) or None
        tagged = QUARANTINE_TAG in (sample_tags[i] or [])
        if mine_new:
            quarantined += 1
        if (kept or mine_new) and not tagged:
            to_tag.append(sid)
        elif tagged and old and not (kept or mine_new):
            to_untag.append(sid)

    bad = np.zeros(len(rows.label_id), bool)
    bad[report.bad_rows()] = True
    has_tag = np.fromiter((QUARANTINE_TAG in (t or []) for t in rows.tags), bool, len(bad))
    label_tags = [
        {
            "sample_id": rows.sample_ids[rows.sample[r]],
            "label_id": rows.label_id[r],
            "value": [x for x in (rows.tags[r] or []) if x != QUARANTINE_TAG]
            + ([QUARANTINE_TAG] if bad[r] else []),
        }
        for r in np.flatnonzero(bad != has_tag).tolist()
    ]

    summary = report.summary()
    summary["n_samples"] = n_samples
    summary["n_expected_samples"] = None if expected is None else int(len(expected))
    return _SlicePlan(view, records, label_tags, to_tag, to_untag, summary, quarantined)


def _declare_violations_field(dataset: fo.Dataset, violations_field: str) -> None:
    """Declare the records field and its keys (so the App can filter on them) once."""
    if dataset.get_field(violations_field) is None:
        dataset.add_sample_field(
            violations_field,
            fo.ListField,
            subfield=fo.EmbeddedDocumentField,
            embedded_doc_type=fo.DynamicEmbeddedDocument,
        )
    for key in _RECORD_KEYS:
        if dataset.get_field(f"{violations_field}.{key}") is None:
            dataset.add_sample_field(f"{violations_field}.{key}", fo.StringField)


def _write_plan(plan: _SlicePlan, label_field: str, violations_field: str) -> None:
    """One bulk write per kind of change; samples whose state is unchanged are not touched."""
    if plan.records:
        # Records go in as stored documents: the field and its keys are declared, and
        # building a document object per record would cost more than the write itself.
        plan.view.set_values(
            violations_field,
            {
                sid: None if recs is None else [{"_cls": _RECORD_CLS, **r} for r in recs]
                for sid, recs in plan.records.items()
            },
            key_field="id",
            expand_schema=False,
            validate=False,
        )
    if plan.label_tags:
        plan.view.set_label_values(f"{label_field}.detections.tags", plan.label_tags)
    if plan.to_tag:
        plan.view.select(plan.to_tag).tag_samples(QUARANTINE_TAG)
    if plan.to_untag:
        plan.view.select(plan.to_untag).untag_samples(QUARANTINE_TAG)


def _merge_summaries(summaries: Iterable[dict]) -> dict:
    """Totals of several :meth:`SchemaReport.summary` dicts."""
    total: dict = {"by_rule": {}, "by_class": {}, "by_rule_and_class": {}}
    for s in summaries:
        for key in ("n_labels", "n_violations", "n_bad_labels", "n_bad_samples", "n_samples"):
            total[key] = total.get(key, 0) + s[key]
        for rule, n in s["by_rule"].items():
            total["by_rule"][rule] = total["by_rule"].get(rule, 0) + n
        for cls, n in s["by_class"].items():
            total["by_class"][cls] = total["by_class"].get(cls, 0) + n
        for rule, per in s["by_rule_and_class"].items():
            dest = total["by_rule_and_class"].setdefault(rule, {})
            for cls, n in per.items():
                dest[cls] = dest.get(cls, 0) + n
    for key in ("by_rule", "by_class"):
        total[key] = dict(sorted(total[key].items()))
    total["by_rule_and_class"] = {
        r: dict(sorted(p.items())) for r, p in sorted(total["by_rule_and_class"].items())
    }
    return total


def _check_violations_field(dataset: fo.Dataset, violations_field: str, label_field: str) -> None:
    if not isinstance(violations_field, str) or not violations_field or "." in violations_field:
        raise ValueError(
            f"violations_field must be a top-level field name; got {violations_field!r}"
        )
    if violations_field == label_field:
        raise ValueError("violations_field must differ from the label field")
    existing = dataset.get_field(violations_field)
    if existing is None:
        return
    inner = getattr(existing, "field", None)
    if not (
        isinstance(existing, fo.ListField)
        and isinstance(inner, fo.EmbeddedDocumentField)
        and issubclass(inner.document_type, fo.DynamicEmbeddedDocument)
    ):
        raise ValueError(
            f"field {violations_field!r} exists and is not a list of violation records "
            f"({existing}); choose another violations_field"
        )


def gate_label_field(
    samples,
    label_field: str,
    *,
    schema=None,
    slices: Sequence[str] | None = None,
    batch_tag: str | None = None,
    allow_empty: bool = False,
    violations_field: str = DEFAULT_VIOLATIONS_FIELD,
    box_tolerance: float = 1e-3,
    progress: Progress | None = None,
) -> dict:
    """Check ``label_field`` of ``samples`` against its label schema; quarantine violations.

    Parameters
    ----------
    samples : Dataset or DatasetView
        The samples to check (grouped or flat). Samples outside it keep their state.
    label_field : str
        A ``Detections`` field (2D boxes on image slices, cuboids on point-cloud slices).
    schema : dict or str, optional
        Explicit spec; default ``dataset.label_schemas[label_field]`` (see
        :func:`resolve_schema`).
    slices : sequence of str, optional
        Slices of a grouped collection to check; default all image / point-cloud slices.
    batch_tag : str, optional
        Samples of groups where any sample has this tag are expected to be labeled; those
        without a label are reported as ``empty_sample``.
    allow_empty : bool, default False
        Accept an empty label list (``Detections()``: "nothing to label here") in a batch;
        only samples whose field is unset (None) are then ``empty_sample``.
    violations_field : str, default "qa_violations"
        Sample field of the violation records.
    box_tolerance : float, default 1e-3
        Slack of ``box_out_of_bounds``.
    progress : callable, optional
        ``progress(fraction, message)``.

    Returns
    -------
    dict
        ``label_field``, ``run_key``, ``checked_at``, ``total`` (summary: ``n_labels``,
        ``n_violations``, ``n_bad_labels``, ``n_bad_samples``, ``n_samples``, ``by_rule``,
        ``by_class``, ``by_rule_and_class``), ``per_slice`` (the same per slice),
        ``quarantined`` (samples with a violation in this field now), ``newly_tagged``
        and ``released`` (samples whose ``qa:quarantine`` tag was added / removed).

    Raises
    ------
    ValueError
        On a missing or non-Detections field, no schema, a malformed schema, unknown slices
        or a batch tag no sample has. Nothing is written then.
    """
    report = progress or (lambda fraction, message: None)
    dataset = root_dataset(samples)
    detections_field(samples, label_field)
    _check_violations_field(dataset, violations_field, label_field)
    if not box_tolerance >= 0:
        raise ValueError(f"box_tolerance must be >= 0; got {box_tolerance}")
    spec = resolve_schema(dataset, label_field, schema)
    load_schema(spec)  # a malformed schema fails here, before anything is read
    views = checkable_slice_views(samples, slices)

    batch = None
    if batch_tag:
        if dataset.media_type == "group":
            batch = ("groups", set(tagged_groups(dataset, [batch_tag])))
            found = bool(batch[1])
        else:
            batch = ("tag", batch_tag)
            found = bool(dataset.match_tags(batch_tag).count())
        if not found:
            raise ValueError(
                f"no sample of dataset '{dataset.name}' has the batch tag {batch_tag!r}"
            )

    plans = {}
    for i, (name, (view, is_3d)) in enumerate(views.items()):
        report(0.8 * i / len(views), f"checking {name or 'samples'}")
        plans[name] = _plan_slice(
            view, is_3d, label_field, spec, violations_field, batch, allow_empty, box_tolerance
        )

    report(0.8, "writing quarantine tags and records")
    _declare_violations_field(dataset, violations_field)
    for plan in plans.values():
        _write_plan(plan, label_field, violations_field)

    summary = {
        "label_field": label_field,
        "run_key": gate_run_key(label_field),
        "checked_at": now(),
        "violations_field": violations_field,
        "batch_tag": batch_tag or None,
        "allow_empty": bool(allow_empty),
        "total": _merge_summaries(p.summary for p in plans.values()),
        "per_slice": {str(name): p.summary for name, p in plans.items()},
        "quarantined": sum(p.quarantined for p in plans.values()),
        "newly_tagged": sum(len(p.to_tag) for p in plans.values()),
        "released": sum(len(p.to_untag) for p in plans.values()),
    }
    save_record(dataset, summary["run_key"], GATE_RUN_METHOD, {"schema": spec, **summary})
    report(1.0, f"{summary['total']['n_violations']} violations")
    return summary
