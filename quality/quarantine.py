"""Violation records and quarantine tags, shared by every label check (glue).

Two checks quarantine labels: the schema gate (:mod:`.gate`) and the cross-sensor check
(:mod:`.linking`). Both leave the same marks, and each owns its own rules' records, so one
never erases what the other found:

- a per-sample list of records ``{field, rule, label, label_id, detail}`` (embedded
  documents, so the App's sidebar filters on ``qa_violations.rule``);
- ``qa:quarantine`` on every label that some record names and on every sample that holds a
  record.

A check reads a flat slice with :func:`read_slice`, works out its new records per sample,
and :func:`plan_changes` diffs them against what is stored (nothing is written);
:func:`write_plan` then writes the changes in bulk. Re-running a check after a fix clears
its own records, the label tags no record names any more, and the sample tag once the sample
holds no record of any check. A sample tag set by hand on a sample without records stays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import fiftyone as fo
from fiftyone import ViewField as F

from ..core.names import QUARANTINE_TAG
from ..core.views import root_dataset
from .labels import LabelRows, read_detections

__all__ = [
    "DEFAULT_VIOLATIONS_FIELD",
    "RECORD_KEYS",
    "SlicePlan",
    "check_violations_field",
    "declare_violations_field",
    "plan_changes",
    "read_slice",
    "write_plan",
]

#: Sample field holding the violation records (a shared name, owned here).
DEFAULT_VIOLATIONS_FIELD = "qa_violations"
#: Keys of one violation record, in the order the records field declares them.
RECORD_KEYS = ("field", "rule", "label", "label_id", "detail")

_RECORD_CLS = "DynamicEmbeddedDocument"


@dataclass
class SlicePlan:
    """Everything one slice's writes need, computed before anything is written."""

    view: object
    label_field: str
    records: dict  # sample id -> list of record dicts (all checks) or None, changed only
    label_tags: list  # {"sample_id", "label_id", "value": new tags} of labels that change
    to_tag: list
    to_untag: list
    summary: dict
    quarantined: int


def read_slice(view, is_3d: bool, label_field: str, violations_field: str, extra=None) -> LabelRows:
    """One flat slice's labels plus sample tags, stored records and the caller's ``extra``."""
    dataset = root_dataset(view)
    extra = {"tags": "tags", **(extra or {})}
    if dataset.get_field(violations_field) is not None:
        extra["records"] = F(violations_field)  # stored dicts: no per-record conversion
    return read_detections(view, label_field, is_3d, extra=extra)


def plan_changes(
    view,
    rows: LabelRows,
    label_field: str,
    new: dict[int, list],
    owns: Callable[[dict], bool],
    summary: dict,
) -> SlicePlan:
    """Diff a check's new records against the stored state of one slice (writes nothing).

    Parameters
    ----------
    view : flat SampleCollection
        The slice ``rows`` were read from (:func:`read_slice`).
    rows : LabelRows
    label_field : str
        The checked field; label tags are planned on its labels.
    new : dict
        ``{sample index: [record, ...]}``: the check's records now (records are dicts with
        :data:`RECORD_KEYS`).
    owns : callable
        Whether a stored record is this check's (replaced by ``new``); others are kept.
    summary : dict
        The check's counts for this slice, carried into the plan.
    """
    records, to_tag, to_untag, quarantined, named = _sample_changes(rows, new, owns, label_field)
    return SlicePlan(
        view,
        label_field,
        records,
        _label_tag_changes(rows, named),
        to_tag,
        to_untag,
        summary,
        quarantined,
    )


def _records_key(records) -> tuple:
    return tuple(tuple(r.get(k) for k in RECORD_KEYS) for r in records)


def _sample_changes(rows: LabelRows, new: dict, owns, label_field: str):
    """``(changed records, to tag, to untag, quarantined count, label ids named)``."""
    n_samples = len(rows.sample_ids)
    old_all = rows.extra.get("records") or [None] * n_samples
    sample_tags = rows.extra["tags"]
    records, to_tag, to_untag, named = {}, [], [], set()
    quarantined = 0
    for i, sid in enumerate(rows.sample_ids):
        old = [{k: r.get(k) for k in RECORD_KEYS} for r in (old_all[i] or [])]
        kept = [r for r in old if not owns(r)]
        mine_old = [r for r in old if owns(r)]
        mine_new = new.get(i, [])
        if _records_key(mine_old) != _records_key(mine_new):
            records[sid] = (kept + mine_new) or None
        named.update(r["label_id"] for r in kept + mine_new if r["field"] == label_field)
        tagged = QUARANTINE_TAG in (sample_tags[i] or [])
        if mine_new:
            quarantined += 1
        if (kept or mine_new) and not tagged:
            to_tag.append(sid)
        elif tagged and old and not (kept or mine_new):
            to_untag.append(sid)
    named.discard(None)
    return records, to_tag, to_untag, quarantined, named


def _label_tag_changes(rows: LabelRows, named: set) -> list[dict]:
    """``set_label_values`` entries of the labels whose quarantine tag must flip."""
    changes = []
    for r, (label_id, tags) in enumerate(zip(rows.label_id, rows.tags)):
        bad = label_id in named
        if bad != (QUARANTINE_TAG in (tags or [])):
            changes.append(
                {
                    "sample_id": rows.sample_ids[rows.sample[r]],
                    "label_id": label_id,
                    "value": [x for x in (tags or []) if x != QUARANTINE_TAG]
                    + ([QUARANTINE_TAG] if bad else []),
                }
            )
    return changes


def check_violations_field(dataset: fo.Dataset, violations_field: str, label_field: str) -> None:
    """Refuse a records field that is not a top-level list of records (or is the label field)."""
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


def declare_violations_field(dataset: fo.Dataset, violations_field: str) -> None:
    """Declare the records field and its keys (so the App can filter on them) once."""
    if dataset.get_field(violations_field) is None:
        dataset.add_sample_field(
            violations_field,
            fo.ListField,
            subfield=fo.EmbeddedDocumentField,
            embedded_doc_type=fo.DynamicEmbeddedDocument,
        )
    for key in RECORD_KEYS:
        if dataset.get_field(f"{violations_field}.{key}") is None:
            dataset.add_sample_field(f"{violations_field}.{key}", fo.StringField)


def write_plan(plan: SlicePlan, violations_field: str) -> None:
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
        plan.view.set_label_values(f"{plan.label_field}.detections.tags", plan.label_tags)
    if plan.to_tag:
        plan.view.select(plan.to_tag).tag_samples(QUARANTINE_TAG)
    if plan.to_untag:
        plan.view.select(plan.to_untag).untag_samples(QUARANTINE_TAG)
