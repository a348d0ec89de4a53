"""Bring a sent batch back: through the schema gate into the label field, golden tasks scored.

:func:`load_batch` reads the send record of a batch (:mod:`.send`) and, per annotator queue:

1. loads the tool's labels with FiftyOne's ``load_annotations`` into the annotator's staging
   field (``incoming_<annotator>``), after clearing that field on the queue's samples;
2. stamps provenance on every label: ``annotator``, ``batch``, ``annotation_tool``,
   ``annotated_at`` (when annoloop loaded it; the backends do not hand over their own time);
3. gates the batch samples' labels with :func:`..quality.gate.gate_label_field` against the
   label field's schema: violating labels get ``qa:quarantine`` (label and sample tag) and
   a ``qa_violations`` record, and stay in the staging field where the App shows them;
4. merges the gate-passing labels into the label field (their ids kept, so a merged label
   can be traced to its staging copy);
5. scores the golden tasks against the golden labels (:func:`..quality.golden.score_rows`:
   recall, precision, box IoU, confusions per class) and appends the score to the
   annotator's history, over which :func:`..quality.algorithms.drift.detect_drift` raises
   per-annotator alarms.

Every loaded label is accounted for: ``merged``, ``quarantined`` (with its rules) or
``golden`` (scored, never merged: the golden labels are the reference). The histories live in
the results of the custom run ``annoloop_annotator_quality``; each load leaves a record
``annoloop_load_<batch>`` with the accounting and the alarms.

The phases: validate (the record, its runs, the schema and the golden labels) before
anything is read from the tool, then, under the dataset's write lock, load, gate, merge,
score and record.
"""

from __future__ import annotations

import fiftyone as fo
import numpy as np

from ..core.locks import dataset_lock
from ..core.names import QUARANTINE_TAG
from ..core.runs import Progress, load_record, load_results, now, save_record
from ..core.views import camera_slice, root_dataset
from ..quality.algorithms.drift import DriftRules, detect_drift
from ..quality.gate import DEFAULT_VIOLATIONS_FIELD, gate_label_field, resolve_schema
from ..quality.golden import score_rows
from ..quality.labels import read_detections
from ..selection.plan_record import view_name
from .send import PROVENANCE_ATTRIBUTES, batch_name, send_record

__all__ = [
    "LOAD_RUN_KEY_PREFIX",
    "LOAD_RUN_METHOD",
    "QUALITY_RUN_KEY",
    "annotator_history",
    "annotator_summary",
    "load_batch",
]

LOAD_RUN_METHOD = "annoloop.annotation_load"
LOAD_RUN_KEY_PREFIX = "annoloop_load_"
QUALITY_RUN_KEY = "annoloop_annotator_quality"
QUALITY_RUN_METHOD = "annoloop.annotator_quality"


def annotator_history(dataset: fo.Dataset) -> dict:
    """``{annotator: [golden score per batch, oldest first]}``; empty before any load."""
    results = load_results(root_dataset(dataset), QUALITY_RUN_KEY)
    return {} if results is None else dict(results.history)


def annotator_summary(dataset: fo.Dataset) -> list[dict]:
    """Each annotator's latest golden score and the alarms of that batch, for the panel.

    Returns
    -------
    list of dict
        Per annotator (sorted by name): ``annotator``, ``batches`` (scored so far),
        ``batch`` (the latest), ``recall``, ``precision``, ``mean_iou`` (overall, latest
        batch) and ``alarms`` (messages of the latest batch's drift alarms).
    """
    dataset = root_dataset(dataset)
    record = load_record(dataset, QUALITY_RUN_KEY) or {"alarms": []}
    rows = []
    for name, entries in sorted(annotator_history(dataset).items()):
        latest = entries[-1]
        rows.append({
            "annotator": name,
            "batches": len(entries),
            "batch": latest["batch"],
            **{k: latest["overall"][k] for k in ("recall", "precision", "mean_iou")},
            "alarms": [a["message"] for a in record["alarms"]
                       if a["annotator"] == name and a["batch"] == latest["batch"]],
        })
    return rows


def _flat(dataset: fo.Dataset, record: dict, ids):
    return camera_slice(dataset, record["slice"]).select(list(ids), ordered=True)


def _check(dataset: fo.Dataset, batch: str, record: dict | None) -> None:
    if record is None:
        raise ValueError(
            f"batch '{batch}' of dataset '{dataset.name}' was never sent to an annotation tool; "
            "send it with send_batch first"
        )
    missing = [q["anno_key"] for q in record["queues"]
               if q["anno_key"] not in dataset.list_annotation_runs()]
    if missing:
        raise ValueError(
            f"the annotation runs {missing} of batch '{batch}' are gone from dataset "
            f"'{dataset.name}'; their labels cannot be loaded. Send the batch again"
        )
    if load_record(dataset, LOAD_RUN_KEY_PREFIX + view_name(batch)) is not None:
        staging = [q["staging_field"] for q in record["queues"]]
        raise ValueError(
            f"batch '{batch}' was loaded before (a batch is loaded once): its gate-passing "
            f"labels are in '{record['label_field']}' and the rest stay quarantined in "
            f"{staging}; review them there"
        )
    schema = resolve_schema(dataset, record["label_field"])
    declared = {a["name"] if isinstance(a, dict) else a for a in schema.get("attributes") or []}
    absent = [a for a in PROVENANCE_ATTRIBUTES if a not in declared]
    if absent:
        raise ValueError(
            f"the label schema of '{record['label_field']}' does not declare the provenance "
            f"attributes {absent}; the gate would quarantine every merged label. Add them as "
            "read-only str attributes (send_batch does this)"
        )


def _stamp(view, field: str, values: dict) -> int:
    """Set provenance ``values`` on every label of ``field`` in ``view``; returns the count."""
    ids = view.values(f"{field}.detections.id")
    for name, value in values.items():
        view.set_values(
            f"{field}.detections.{name}", [[value] * len(d) if d else d for d in ids]
        )
    return sum(len(d) for d in ids if d)


def _accounting(view, field: str, violations_field: str) -> dict:
    """Per-label outcome on non-golden samples: merged (no quarantine tag) or quarantined."""
    labels, violations = view.values([f"{field}.detections", violations_field])
    rules: dict = {}
    for records in violations:
        for r in records or []:
            if r.field == field:
                rules.setdefault(r.label_id, []).append(r.rule)
    merged, quarantined = [], []
    for dets in labels:
        for d in dets or []:
            if QUARANTINE_TAG in (d.tags or []):
                quarantined.append({"label_id": d.id, "label": d.label,
                                    "rules": sorted(set(rules.get(d.id, [])))})
            else:
                merged.append(d.id)
    return {"merged": merged, "quarantined": quarantined}


def _merge(view, field: str, label_field: str) -> None:
    """Append the gate-passing labels of ``field`` to ``label_field``, in one bulk write."""
    incoming, existing = view.values([field, label_field])
    merged = []
    for inc, old in zip(incoming, existing):
        keep = [d for d in (inc.detections if inc else []) if QUARANTINE_TAG not in (d.tags or [])]
        if old is None and not keep:
            # Nothing passed: an empty Detections would mark the image "labeled, no objects".
            merged.append(None)
            continue
        merged.append(fo.Detections(detections=list(old.detections if old else []) + keep))
    view.set_values(label_field, merged)


def _score(dataset, record, queue, batch: str, iou: float) -> dict | None:
    if not queue["golden_sample_ids"]:
        return None
    view = _flat(dataset, record, queue["golden_sample_ids"])
    gt = read_detections(view, record["golden_field"], False)
    cand = read_detections(view, queue["staging_field"], False, attributes=["confidence"])
    scores = score_rows(gt, cand, np.ones(len(gt.sample_ids), bool), iou, batch)
    return {**scores, "iou_threshold": iou, "annotator": queue["annotator"]}


def load_batch(
    dataset: fo.Dataset,
    batch: str,
    *,
    iou: float = 0.5,
    rules: DriftRules | None = None,
    violations_field: str = DEFAULT_VIOLATIONS_FIELD,
    progress: Progress | None = None,
) -> dict:
    """Load a sent batch back through the schema gate; score and drift-check each annotator.

    Parameters
    ----------
    dataset : Dataset
        The dataset the batch was sent from (or a view of it).
    batch : str
        ``"batch:v3"`` or ``"v3"``.
    iou : float, default 0.5
        IoU of a golden match.
    rules : DriftRules, optional
        Drift thresholds of the per-annotator alarms.
    violations_field : str, default "qa_violations"
        Sample field of the gate's records.
    progress : callable, optional
        ``progress(fraction, message)``.

    Returns
    -------
    dict
        ``batch``, ``loaded_at``, ``per_annotator`` (``n_loaded``, ``n_merged``,
        ``n_quarantined``, ``n_golden``, ``quarantined`` (label id, class, rules),
        ``golden`` (the score, or None without golden tasks), ``alarms``), ``totals``
        (the same counts over all annotators) and ``alarms`` (each with its ``annotator``).

    Raises
    ------
    ValueError
        When the batch was never sent, its annotation runs are gone, it was loaded before,
        the label schema lacks the provenance attributes, or ``iou`` is not in (0, 1].
        Nothing is read from the tool or written then.
    """
    report = progress or (lambda fraction, message: None)
    dataset = root_dataset(dataset)
    batch = batch_name(batch)
    if isinstance(iou, bool) or not isinstance(iou, (int, float)) or not 0.0 < iou <= 1.0:
        raise ValueError(f"iou must be a number in (0, 1]; got {iou!r}")
    record = send_record(dataset, batch)
    _check(dataset, batch, record)
    label_field = record["label_field"]
    loaded_at = now()
    per_annotator = {}
    with dataset_lock(dataset, "load_batch"):
        for i, queue in enumerate(record["queues"]):
            name, staging = queue["annotator"], queue["staging_field"]
            report(0.8 * i / len(record["queues"]), f"loading {name}'s labels")
            view = _flat(dataset, record, queue["sample_ids"])
            if dataset.get_field(staging) is not None:
                view.set_values(staging, [None] * len(queue["sample_ids"]))
            dataset.load_annotations(queue["anno_key"], dest_field=staging, unexpected="keep")
            dataset.reload()
            provenance = {"annotator": name, "batch": batch,
                          "annotation_tool": record["backend"], "annotated_at": loaded_at}
            n_loaded = _stamp(view, staging, provenance)
            golden = set(queue["golden_sample_ids"])
            n_golden = sum(
                len(d) for d in _flat(dataset, record, golden).values(f"{staging}.detections") if d
            )
            work = _flat(dataset, record, [s for s in queue["sample_ids"] if s not in golden])
            gate_label_field(work, staging, schema=resolve_schema(dataset, label_field),
                             violations_field=violations_field)
            outcome = _accounting(work, staging, violations_field)
            _merge(work, staging, label_field)
            score = _score(dataset, record, queue, batch, iou)
            per_annotator[name] = {
                "n_loaded": n_loaded,
                "n_merged": len(outcome["merged"]),
                "n_quarantined": len(outcome["quarantined"]),
                "n_golden": n_golden,
                "quarantined": outcome["quarantined"],
                "golden": score,
            }
        report(0.9, "scoring annotators and saving the record")
        alarms = _update_history(dataset, batch, per_annotator, rules or DriftRules())
        totals = {k: sum(a[k] for a in per_annotator.values())
                  for k in ("n_loaded", "n_merged", "n_quarantined", "n_golden")}
        result = {"batch": batch, "loaded_at": loaded_at, "label_field": label_field,
                  "per_annotator": per_annotator, "totals": totals, "alarms": alarms}
        save_record(dataset, LOAD_RUN_KEY_PREFIX + view_name(batch), LOAD_RUN_METHOD,
                    {k: v for k, v in result.items() if k != "per_annotator"},
                    results={"per_annotator": per_annotator})
    report(1.0, f"{totals['n_merged']} merged, {totals['n_quarantined']} quarantined")
    return result


def _update_history(dataset, batch: str, per_annotator: dict, rules: DriftRules) -> list[dict]:
    """Append this batch's golden scores to each annotator's history; every annotator's alarms."""
    dataset.reload()
    history = annotator_history(dataset)
    for name, outcome in per_annotator.items():
        if outcome["golden"] is None:
            continue
        entries = [e for e in history.get(name, []) if e["batch"] != batch]
        history[name] = entries + [outcome["golden"]]
    alarms = []
    for name, entries in history.items():
        found = [{**a.to_dict(), "annotator": name} for a in detect_drift(entries, rules)]
        if name in per_annotator:
            per_annotator[name]["alarms"] = [a for a in found if a["batch"] == batch]
        alarms += found
    save_record(dataset, QUALITY_RUN_KEY, QUALITY_RUN_METHOD,
                {"updated_at": now(), "annotators": sorted(history), "alarms": alarms},
                results={"history": history})
    return [a for a in alarms if a["batch"] == batch]
