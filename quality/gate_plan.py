"""What the schema gate writes on one flat slice, worked out before anything is written (glue).

:func:`plan_slice` reads a slice's labels, sample tags and stored violation records in one
``values()`` call (:func:`.labels.read_detections`), runs the pure validator once
(:func:`.schema_rules.validate_labels`) and diffs the result against the stored state, so
:func:`.gate.gate_label_field` only writes what changed. Nothing here writes to the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fiftyone import ViewField as F

from ..core.names import QUARANTINE_TAG
from ..core.views import root_dataset
from .algorithms.schema_rules import SchemaReport, load_schema, validate_labels
from .labels import LabelRows, read_detections

__all__ = ["RECORD_KEYS", "SlicePlan", "plan_slice"]

#: Keys of one violation record, in the order the records field declares them.
RECORD_KEYS = ("field", "rule", "label", "label_id", "detail")


@dataclass
class SlicePlan:
    """Everything one slice's writes need, computed before anything is written."""

    view: object
    records: dict  # sample id -> list of record dicts (all fields) or None, changed only
    label_tags: list  # {"sample_id", "label_id", "value": new tags} of labels that change
    to_tag: list
    to_untag: list
    summary: dict
    quarantined: int


def plan_slice(
    view,
    is_3d: bool,
    label_field: str,
    spec: dict,
    violations_field: str,
    batch: tuple | None,
    allow_empty: bool,
    box_tolerance: float,
) -> SlicePlan:
    """Read one flat slice, validate it and work out its writes (writes nothing).

    ``batch`` is ``("groups", ids)`` (expected: samples of those groups) or ``("tag", tag)``
    (expected: samples with the tag), or None (no ``empty_sample`` check).
    """
    schema = load_schema(spec, label_type="cuboids" if is_3d else "detections")
    rows = _read_slice(view, is_3d, label_field, violations_field, batch)
    expected = _expected_samples(rows, batch, allow_empty)
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
    new = _new_records(report, rows, label_field)
    records, to_tag, to_untag, quarantined = _sample_changes(rows, new, label_field)
    summary = report.summary()
    summary["n_samples"] = len(rows.sample_ids)
    summary["n_expected_samples"] = None if expected is None else int(len(expected))
    return SlicePlan(
        view, records, _label_tag_changes(rows, report), to_tag, to_untag, summary, quarantined
    )


def _read_slice(view, is_3d: bool, label_field: str, violations_field: str, batch) -> LabelRows:
    """The labels plus sample tags, stored records and (batch by groups) group ids."""
    dataset = root_dataset(view)
    extra = {"tags": "tags"}
    if dataset.get_field(violations_field) is not None:
        extra["records"] = F(violations_field)  # stored dicts: no per-record conversion
    if batch is not None and batch[0] == "groups":
        extra["group"] = f"{dataset.group_field}.id"
    return read_detections(view, label_field, is_3d, extra=extra)


def _expected_samples(rows: LabelRows, batch, allow_empty: bool) -> np.ndarray | None:
    """Indices of the samples the batch expects to be labeled; None without a batch."""
    if batch is None:
        return None
    kind, key = batch
    if kind == "groups":
        member = (g in key for g in rows.extra["group"])
    else:
        member = (key in (t or []) for t in rows.extra["tags"])
    member = np.fromiter(member, bool, len(rows.sample_ids))
    if allow_empty:  # an empty label list is an answer; only unlabeled samples count
        member &= ~rows.present
    return np.flatnonzero(member)


def _new_records(report: SchemaReport, rows: LabelRows, label_field: str) -> dict[int, list]:
    """This field's new violation records, per sample index."""
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
    return new


def _records_key(records) -> tuple:
    return tuple(tuple(r.get(k) for k in RECORD_KEYS) for r in records)


def _sample_changes(rows: LabelRows, new: dict, label_field: str) -> tuple[dict, list, list, int]:
    """``(changed records, samples to tag, samples to untag, quarantined count)``.

    Records of other fields are kept; a sample is untagged only when it had records (the
    gate quarantined it) and none is left in any field.
    """
    n_samples = len(rows.sample_ids)
    old_all = rows.extra.get("records") or [None] * n_samples
    sample_tags = rows.extra["tags"]
    records, to_tag, to_untag = {}, [], []
    quarantined = 0
    for i, sid in enumerate(rows.sample_ids):
        old = [{k: r.get(k) for k in RECORD_KEYS} for r in (old_all[i] or [])]
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
    return records, to_tag, to_untag, quarantined


def _label_tag_changes(rows: LabelRows, report: SchemaReport) -> list[dict]:
    """``set_label_values`` entries of the labels whose quarantine tag must flip."""
    bad = np.zeros(len(rows.label_id), bool)
    bad[report.bad_rows()] = True
    has_tag = np.fromiter((QUARANTINE_TAG in (t or []) for t in rows.tags), bool, len(bad))
    return [
        {
            "sample_id": rows.sample_ids[rows.sample[r]],
            "label_id": rows.label_id[r],
            "value": [x for x in (rows.tags[r] or []) if x != QUARANTINE_TAG]
            + ([QUARANTINE_TAG] if bad[r] else []),
        }
        for r in np.flatnonzero(bad != has_tag).tolist()
    ]
