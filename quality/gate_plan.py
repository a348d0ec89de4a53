"""What the schema gate writes on one flat slice, worked out before anything is written (glue).

:func:`plan_slice` reads a slice's labels, sample tags and stored violation records in one
``values()`` call (:func:`.quarantine.read_slice`), runs the pure validator once
(:func:`.schema_rules.validate_labels`) and diffs the result against the stored state
(:func:`.quarantine.plan_changes`), so :func:`.gate.gate_label_field` only writes what changed.
The gate owns the records of its own rules on the checked field; the cross-sensor check's
(``link_*``) stay. Nothing here writes to the dataset.
"""

from __future__ import annotations

import numpy as np

from ..core.views import root_dataset
from .algorithms.linking import LINK_RULES
from .algorithms.schema_rules import SchemaReport, load_schema, validate_labels
from .labels import LabelRows
from .quarantine import SlicePlan, plan_changes, read_slice

__all__ = ["plan_slice"]


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
    extra = None
    if batch is not None and batch[0] == "groups":
        extra = {"group": f"{root_dataset(view).group_field}.id"}
    rows = read_slice(view, is_3d, label_field, violations_field, extra)
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
    summary = report.summary()
    summary["n_samples"] = len(rows.sample_ids)
    summary["n_expected_samples"] = None if expected is None else int(len(expected))
    return plan_changes(
        view,
        rows,
        label_field,
        _new_records(report, rows, label_field),
        lambda r: r["field"] == label_field and r["rule"] not in LINK_RULES,
        summary,
    )


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
