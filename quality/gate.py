"""The schema gate on a FiftyOne collection (glue): quarantine labels that break the schema.

:func:`gate_label_field` checks one ``Detections`` field of a collection against the
field's label schema, FiftyOne's own ``dataset.label_schemas[field]`` (the schema the App's
annotation UI enforces) or one passed explicitly, with :func:`.schema_rules.validate_labels`.
Camera slices are checked as 2D boxes and point-cloud / 3D slices as cuboids, each slice
with one bulk read, one call of the pure validator and one bulk write per kind of result.

What it leaves on the dataset (nothing in the label field itself changes except label tags),
the marks every label check shares (:mod:`.quarantine`):

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

The phases: validate every parameter (nothing read yet), then, under the dataset's write
lock, plan each slice (:func:`.gate_plan.plan_slice`: read, validate, diff; nothing written),
write every slice's changes in bulk and record the summary. The gate owns its own rules'
records; the cross-sensor check's (:mod:`.linking`, rules ``link_*``) are kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

import fiftyone as fo

from ..core.locks import dataset_lock
from ..core.runs import Progress, load_record, now, save_record
from ..core.views import root_dataset, tagged_groups
from .algorithms.schema_rules import load_schema
from .gate_plan import plan_slice
from .labels import checkable_slice_views, detections_field
from .quarantine import (
    DEFAULT_VIOLATIONS_FIELD,
    check_violations_field,
    declare_violations_field,
    write_plan,
)

__all__ = [
    "DEFAULT_VIOLATIONS_FIELD",
    "GATE_RUN_KEY_PREFIX",
    "GATE_RUN_METHOD",
    "gate_label_field",
    "gate_record",
    "gate_run_key",
    "resolve_schema",
]

#: FiftyOne custom-run method and key prefix of the gate's summaries.
GATE_RUN_METHOD = "annoloop.gate"
GATE_RUN_KEY_PREFIX = "annoloop_gate_"


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
    spec, views, batch = _validate(
        samples, label_field, schema, slices, batch_tag, violations_field, box_tolerance
    )
    # A plan is a diff against the stored tags and records, so planning and writing are one
    # step: under the dataset's write lock, on a fresh copy of the dataset, so two gates
    # never leave a mix of their results (or a record that does not match the tags).
    with dataset_lock(dataset, "validate_labels"):
        dataset.reload()
        plans = {}
        for i, (name, (view, is_3d)) in enumerate(views.items()):
            report(0.8 * i / len(views), f"checking {name or 'samples'}")
            plans[name] = plan_slice(
                view, is_3d, label_field, spec, violations_field, batch, allow_empty, box_tolerance
            )

        report(0.8, "writing quarantine tags and records")
        declare_violations_field(dataset, violations_field)
        for plan in plans.values():
            write_plan(plan, violations_field)
        summary = {
            "label_field": label_field,
            "run_key": gate_run_key(label_field),
            "checked_at": now(),
            "violations_field": violations_field,
            "batch_tag": batch_tag or None,
            "allow_empty": bool(allow_empty),
            **_totals(plans),
        }
        save_record(dataset, summary["run_key"], GATE_RUN_METHOD, {"schema": spec, **summary})
    report(1.0, f"{summary['total']['n_violations']} violations")
    return summary


def _validate(samples, label_field, schema, slices, batch_tag, violations_field, box_tolerance):
    """``(schema spec, slice views, batch)`` once every parameter checks out; reads no labels."""
    dataset = root_dataset(samples)
    detections_field(samples, label_field)
    check_violations_field(dataset, violations_field, label_field)
    if not box_tolerance >= 0:
        raise ValueError(f"box_tolerance must be >= 0; got {box_tolerance}")
    spec = resolve_schema(dataset, label_field, schema)
    load_schema(spec)  # a malformed schema fails here, before anything is read
    views = checkable_slice_views(samples, slices)
    return spec, views, _batch(dataset, batch_tag)


def _batch(dataset: fo.Dataset, batch_tag: str | None) -> tuple | None:
    """``("groups", ids)`` (grouped) or ``("tag", tag)`` (flat) of the batch; None without."""
    if not batch_tag:
        return None
    if dataset.media_type == "group":
        batch = ("groups", set(tagged_groups(dataset, [batch_tag])))
        found = bool(batch[1])
    else:
        batch = ("tag", batch_tag)
        found = bool(dataset.match_tags(batch_tag).count())
    if not found:
        raise ValueError(f"no sample of dataset '{dataset.name}' has the batch tag {batch_tag!r}")
    return batch


def _totals(plans: dict) -> dict:
    """The summary's counts: in total, per slice, and of the samples tagged or released."""
    return {
        "total": _merge_summaries(p.summary for p in plans.values()),
        "per_slice": {str(name): p.summary for name, p in plans.items()},
        "quarantined": sum(p.quarantined for p in plans.values()),
        "newly_tagged": sum(len(p.to_tag) for p in plans.values()),
        "released": sum(len(p.to_untag) for p in plans.values()),
    }
