"""What the App panels show, read from a dataset's stored state into plain dicts.

The panels render these dicts and nothing else, so their render code stays thin and every
number on screen can be tested against a real dataset. Each reader looks where the loop
keeps that part of its state:

==================  ===================================================================
ledger, plateau     ``dataset.info["annoloop_ledger"]`` (:mod:`..training.ledger`)
random baseline     ``dataset.info["annoloop_ledger_random"]``: a ledger in the same
                    format, of the same loop run with ``coverage_method="random"``
                    (optional; the plot shows it when present)
batch composition   plan records (``annoloop.plan`` runs) and the per-sample pick
                    reasons in ``annoloop_pick`` (:mod:`..selection.batches`)
golden history      ``annoloop.golden_qa`` runs (:mod:`..quality.golden`)
quarantine          ``qa:quarantine`` sample and label tags; ``annoloop.gate`` runs
==================  ===================================================================

Counts are per *unit*: the scene (group) of a grouped dataset, else the sample, read from
the unit catalog (:mod:`..core.catalog`) that the batch planner decides its pool by; a scene
counts once whichever of its slices carries the tag or the label.

The ``*_view`` functions turn what the user clicked (a ledger row, a share of a batch, a
golden batch, the quarantine count) into the matching units, or None when none matches.

It stays one module (over the house's ~400 lines) because each function is one panel
section's read model and they share the unit helpers; splitting by section is the next step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import fiftyone as fo
import numpy as np
from fiftyone import ViewField as F

from ..core.catalog import (
    labeled_units,
    quarantined_units,
    read_catalog,
    tagged_units,
    unit_path,
    units_where,
)
from ..core.runs import load_records
from ..quality.gate import GATE_RUN_METHOD
from ..quality.golden import DEFAULT_BATCH_ATTRIBUTE, GOLDEN_RUN_METHOD, golden_history
from ..quality.linking import LINK_RUN_METHOD
from ..selection.plan_record import PICK_FIELD, plan_record, planned_batches
from ..core.names import (
    BASELINE_LEDGER_INFO_KEY,
    DEFAULT_GT_FIELD,
    GOLDEN_SPLIT_TAG,
    QUARANTINE_TAG,
    SOURCE_TAG_PREFIX,
    TEST_SPLIT_TAG,
)
from ..training.algorithms.ledger import ledger_from_json, load_ledger, plateau_signal
from ..core.views import root_dataset, slice_views, units_view
from .steps import OPERATOR_URI_PREFIX
from .widgets import round_label

__all__ = [
    "BASELINE_LEDGER_INFO_KEY",
    "OPERATOR_URI_PREFIX",
    "batch_composition",
    "batch_view",
    "embedding_points",
    "explain_batch",
    "golden_batch_view",
    "golden_state",
    "ledger_state",
    "loop_overview",
    "preview_summary",
    "quarantine_state",
    "quarantine_view",
    "units_view",
]


FAILURE_KINDS = ("fn", "confusion", "fp")
_FAILURE_WORDS = {"fn": "missed objects", "confusion": "class confusions", "fp": "false positives"}
_COVERAGE_WORDS = {
    "kcenter": "k-center greedy, the farthest from everything labeled or queued",
    "typical": "the most typical scene of each dense cluster that nothing labeled covers",
    "zcore": "the highest ZCore scores, sparse and non-redundant regions of the embeddings",
    "random": "uniformly at random, the baseline every strategy is measured against",
}


# --- units --------------------------------------------------------------------------------


def _grouped(dataset: fo.Dataset) -> bool:
    return dataset.media_type == "group"


def _units_with_label_attribute(dataset, label_field: str, attribute: str, value) -> set[str]:
    """Units holding a ``label_field`` detection whose ``attribute`` equals ``value``."""
    if label_field not in dataset.get_field_schema(embedded_doc_type=fo.Detections):
        return set()
    has_value = F(f"{label_field}.detections").filter(F(attribute) == value).length() > 0
    return units_where(dataset, lambda view: view.match(has_value))


def _view_or_none(dataset: fo.Dataset, units: set[str]):
    return units_view(dataset, sorted(units)) if units else None


# --- overview -----------------------------------------------------------------------------


def loop_overview(dataset: fo.Dataset, label_field: str = DEFAULT_GT_FIELD) -> dict:
    """Where the dataset's units stand in the loop.

    Returns
    -------
    dict
        ``unit`` ("scene" or "sample"), ``units`` (all of them), ``labeled`` (``label_field``
        set on a sample of the unit), ``batched`` (tagged ``batch:*``), ``test`` and
        ``golden`` (the frozen splits) and ``quarantined`` (a sample or a label tagged
        ``qa:quarantine``).
    """
    catalog = read_catalog(dataset, label_field)
    return {
        "unit": "scene" if catalog.grouped else "sample",
        "units": len(catalog.units),
        "labeled": len(catalog.labeled),
        "batched": len(catalog.batched),
        "test": len(catalog.splits[TEST_SPLIT_TAG]),
        "golden": len(catalog.splits[GOLDEN_SPLIT_TAG]),
        "quarantined": len(catalog.quarantined),
    }


# --- ledger -------------------------------------------------------------------------------


def ledger_state(dataset: fo.Dataset) -> dict:
    """The ledger of rounds, the random baseline and the plateau signal.

    Returns
    -------
    dict
        ``rounds``: one dict per round, oldest first (the stored round plus
        ``weakest_class`` / ``weakest_recall``, the class the model finds least, or None);
        ``baseline``: the random-baseline rounds in the same form (empty when none is
        stored); ``plateau``: :func:`..training.ledger.plateau_signal` as a dict.
    """
    dataset = root_dataset(dataset)
    rounds = load_ledger(dataset)
    baseline = ledger_from_json(dataset.info.get(BASELINE_LEDGER_INFO_KEY))
    return {
        "rounds": [_round_row(r) for r in rounds],
        "baseline": [_round_row(r) for r in baseline],
        "plateau": plateau_signal(rounds).to_dict(),
    }


def _round_row(entry) -> dict:
    # Field by field rather than ``to_dict()``: a ledger read from a reloaded dataset can
    # hold MongoDB's dict type, which ``dataclasses.asdict`` cannot copy.
    row = {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)}
    recall = row["per_class_recall"] = {str(k): float(v) for k, v in entry.per_class_recall.items()}
    weakest = min(recall, key=recall.get) if recall else None
    row["weakest_class"] = weakest
    row["weakest_recall"] = recall[weakest] if weakest is not None else None
    return row


# --- batch composition --------------------------------------------------------------------


def batch_composition(dataset: fo.Dataset, batch: str | None = None) -> dict | None:
    """How a planned batch splits into coverage and targeting, and why.

    Parameters
    ----------
    dataset : Dataset
    batch : str, optional
        A planned batch (``batch:v3``); default the latest one.

    Returns
    -------
    dict or None
        None when no batch was planned. Else ``batch``, ``round``, ``created_at``,
        ``budget``, ``n_coverage``, ``n_targeting``, ``coverage_fraction``,
        ``coverage_method``, ``scheduled`` (the share followed the round schedule),
        ``eval_key``, ``fallback_reason``, ``failures`` (failures mined from the
        evaluation, by kind), ``targets`` (targeting picks by the kind of failure they
        neighbour), ``pool``, ``excluded``, ``counts`` (``view``, ``pool``, ``selectable``:
        units planned over, unlabeled among them, not held back among those), ``labeled``
        (picks labeled so far), ``unit``, ``view`` (the saved view) and ``reasons``
        (:func:`explain_batch`). ``round`` is 0-based as stored; the panels show it from 1.
    """
    dataset = root_dataset(dataset)
    batches = planned_batches(dataset)
    if not batches:
        return None
    batch = batch or batches[-1]
    record = plan_record(dataset, batch)
    plan, params, counts = record["plan"], record["params"], record["counts"]
    picked = tagged_units(dataset, [batch])
    label_field = params.get("label_field") or DEFAULT_GT_FIELD
    reference = dataset.select_group_slices(params["slice"]) if params.get("slice") else dataset
    targeted = reference.match(F(f"{PICK_FIELD}.batch") == batch).match(
        F(f"{PICK_FIELD}.source") == "targeting"
    )
    kinds = targeted.count_values(f"{PICK_FIELD}.near_failure_kind") if len(targeted) else {}
    failures = counts.get("failures", {})
    composition = {
        "batch": batch,
        "round": plan["round"],
        "created_at": record["created_at"],
        "budget": plan["budget"],
        "n_coverage": plan["n_coverage"],
        "n_targeting": plan["n_targeting"],
        "coverage_fraction": plan["coverage_fraction"],
        "coverage_method": plan["coverage_method"],
        "scheduled": params.get("coverage_fraction") is None,
        "eval_key": params.get("eval_key"),
        "fallback_reason": record["fallback_reason"],
        "failures": {k: int(failures.get(k, 0)) for k in FAILURE_KINDS},
        "targets": {k: int(kinds.get(k, 0)) for k in FAILURE_KINDS},
        "pool": counts.get("pool"),
        "excluded": counts.get("excluded", {}),
        "counts": _pool_counts(counts),
        "labeled": len(picked & labeled_units(dataset, label_field)),
        "unit": "scene" if _grouped(dataset) else "sample",
        "view": record["view"],
    }
    composition["reasons"] = explain_batch(composition)
    return composition


def _pool_counts(counts: dict) -> dict:
    """The plan's unit counts that add up (``view`` = labeled + ``pool``; ``pool`` =
    held back + ``selectable``), as the panels show them."""
    return {k: counts[k] for k in ("view", "pool", "selectable") if counts.get(k) is not None}


def explain_batch(composition: dict) -> list[str]:
    """Sentences saying why a batch is made the way it is (see :func:`batch_composition`)."""
    c = composition
    noun = c["unit"] + ("s" if c["budget"] != 1 else "")
    share = f"{c['coverage_fraction']:.0%} coverage, {1 - c['coverage_fraction']:.0%} targeting"
    if c["scheduled"]:
        reasons = [
            f"{round_label(c['round']).capitalize()} follows the schedule: {share} of "
            f"{c['budget']} {noun}."
        ]
    else:
        reasons = [f"Share set by hand: {share} of {c['budget']} {noun}."]
    if c["fallback_reason"]:
        reasons.append(f"All coverage: {c['fallback_reason']}.")
    if c["n_targeting"]:
        where = f" of evaluation '{c['eval_key']}'" if c["eval_key"] else ""
        near = ", ".join(f"{n} near {_FAILURE_WORDS[k]}" for k, n in c["targets"].items() if n)
        reasons.append(
            f"Targeting ({c['n_targeting']}): neighbours of the model's failures{where}"
            + (f": {near}." if near else ".")
        )
    if c["n_coverage"]:
        method = _COVERAGE_WORDS.get(c["coverage_method"], c["coverage_method"])
        reasons.append(f"Coverage ({c['n_coverage']}): {method}.")
    return reasons


def preview_summary(result: dict, scheduled: bool) -> dict:
    """A dry run of :func:`..selection.batches.plan_batch` in the shape of
    :func:`batch_composition` (without ``created_at``, ``labeled`` and ``view``).

    Parameters
    ----------
    result : dict
        What ``plan_batch(..., dry_run=True)`` returned.
    scheduled : bool
        Whether the coverage share followed the round schedule.
    """
    kinds = [p.get("near_failure_kind") for p in result["picks"] if p["source"] == "targeting"]
    failures = result["counts"].get("failures", {})
    summary = {
        "batch": result["batch"],
        "round": result["round"],
        "budget": len(result["ids"]),
        "n_coverage": result["n_coverage"],
        "n_targeting": result["n_targeting"],
        "coverage_fraction": result["coverage_fraction"],
        "coverage_method": result["coverage_method"],
        "scheduled": bool(scheduled),
        "eval_key": result["eval_key"],
        "fallback_reason": result["fallback_reason"],
        "failures": {k: int(failures.get(k, 0)) for k in FAILURE_KINDS},
        "targets": {k: kinds.count(k) for k in FAILURE_KINDS},
        "pool": result["counts"].get("pool"),
        "excluded": result["counts"].get("excluded", {}),
        "counts": _pool_counts(result["counts"]),
        "unit": "scene" if result["unit"] == "group" else result["unit"],
    }
    summary["reasons"] = explain_batch(summary)
    return summary


def batch_view(
    dataset: fo.Dataset,
    batch: str,
    source: str | None = None,
    label_field: str = DEFAULT_GT_FIELD,
):
    """The units of ``batch``, optionally only its ``source`` share ("coverage" /
    "targeting"), or None.

    A batch is found by its tag (``batch:v3``, written by the planner) or, failing that, by
    the ``batch`` attribute of the labels in ``label_field`` (written by annotators), which
    is how the ledger names batches labeled outside the planner.
    """
    dataset = root_dataset(dataset)
    units = tagged_units(dataset, [batch])
    if not units and source is None:
        units = _units_with_label_attribute(dataset, label_field, DEFAULT_BATCH_ATTRIBUTE, batch)
    if source is not None:
        units &= tagged_units(dataset, [SOURCE_TAG_PREFIX + source])
    return _view_or_none(dataset, units)


# --- golden set ---------------------------------------------------------------------------


def golden_state(dataset: fo.Dataset, candidate_field: str | None = None) -> dict | None:
    """The golden-set QA history of one candidate field, per batch and slice, with alarms.

    Parameters
    ----------
    dataset : Dataset
    candidate_field : str, optional
        Field whose history to read; default the one checked most recently.

    Returns
    -------
    dict or None
        None when no golden check ran. Else ``candidate_field``, ``candidate_fields`` (all
        with a history), ``iou``, ``batches`` and ``slices`` (in history order),
        ``classes`` (golden classes), ``rows`` (one per batch and slice: ``batch``,
        ``slice``, ``n_samples``, ``precision``, ``recall``, ``f1``, ``mean_iou``,
        ``recall_per_class``, ``alarms``: the messages of its alarms) and ``alarms`` (every
        alarm: ``batch``, ``slice``, ``class``, ``rule``, ``message``).
    """
    dataset = root_dataset(dataset)
    configs = {r["candidate_field"]: r for r in load_records(dataset, GOLDEN_RUN_METHOD)}
    if not configs:
        return None
    if candidate_field is None:
        candidate_field = max(configs, key=lambda f: configs[f]["updated_at"])
    elif candidate_field not in configs:
        raise ValueError(
            f"no golden-set history for {candidate_field!r}; histories: {sorted(configs)}"
        )
    config = configs[candidate_field]
    history = golden_history(dataset, candidate_field)
    alarms = [
        {k: a.get(k) for k in ("batch", "slice", "class", "rule", "message")} for a in config["alarms"]
    ]
    rows = []
    for entry in history:
        overall = entry["overall"]
        rows.append(
            {
                "batch": str(entry["batch"]),
                "slice": entry["slice"],
                "n_samples": entry["n_samples"],
                **{k: overall[k] for k in ("precision", "recall", "f1", "mean_iou")},
                "recall_per_class": {
                    c: s["recall"] for c, s in entry["per_class"].items() if s["n_gt"]
                },
                "alarms": [
                    a["message"]
                    for a in alarms
                    if str(a["batch"]) == str(entry["batch"]) and a["slice"] == entry["slice"]
                ],
            }
        )
    return {
        "candidate_field": candidate_field,
        "candidate_fields": sorted(configs),
        "iou": config["iou"],
        "batches": list(dict.fromkeys(r["batch"] for r in rows)),
        "slices": list(dict.fromkeys(r["slice"] for r in rows)),
        "classes": sorted({c for r in rows for c in r["recall_per_class"]}),
        "rows": rows,
        "alarms": alarms,
    }


def golden_batch_view(dataset: fo.Dataset, candidate_field: str, batch: str):
    """The golden units of one batch of a golden-QA history, or None."""
    dataset = root_dataset(dataset)
    config = next(
        (
            r
            for r in load_records(dataset, GOLDEN_RUN_METHOD)
            if r["candidate_field"] == candidate_field
        ),
        None,
    )
    if config is None:
        raise ValueError(f"no golden-set history for {candidate_field!r}")
    golden = tagged_units(dataset, [GOLDEN_SPLIT_TAG])
    if config["batch_by"] == "tag":
        units = tagged_units(dataset, [config["batch_tag_prefix"] + batch])
    elif config["batch_by"] == "attribute":
        units = _units_with_label_attribute(dataset, candidate_field, config["batch_attribute"], batch)
    else:  # one name for the whole golden set
        units = golden
    return _view_or_none(dataset, units & golden)


# --- quarantine ---------------------------------------------------------------------------


def quarantine_state(dataset: fo.Dataset) -> dict:
    """What the schema gate and the cross-sensor check hold back.

    Returns
    -------
    dict
        ``unit``, ``units`` (units with a quarantined sample or label), ``samples`` and
        ``labels`` (tagged ``qa:quarantine``, all slices), ``per_slice`` (``{slice:
        {"samples": n, "labels": n}}``; key None for a flat dataset) and ``by_rule``
        (violations per rule of the gate and the cross-sensor check, summed over the
        checked label fields).
    """
    dataset = root_dataset(dataset)
    per_slice = {}
    for name, view in slice_views(dataset).items():
        per_slice[name] = {
            "samples": view.match_tags(QUARANTINE_TAG).count(),
            "labels": int(view.count_label_tags().get(QUARANTINE_TAG, 0)),
        }
    by_rule: dict[str, int] = {}
    for method in (GATE_RUN_METHOD, LINK_RUN_METHOD):
        for record in load_records(dataset, method):
            for rule, n in (record["total"].get("by_rule") or {}).items():
                if n:
                    by_rule[rule] = by_rule.get(rule, 0) + int(n)
    return {
        "unit": "scene" if _grouped(dataset) else "sample",
        "units": len(quarantined_units(dataset)),
        "samples": sum(s["samples"] for s in per_slice.values()),
        "labels": sum(s["labels"] for s in per_slice.values()),
        "per_slice": per_slice,
        "by_rule": dict(sorted(by_rule.items(), key=lambda kv: -kv[1])),
    }


def quarantine_view(dataset: fo.Dataset):
    """The units with a quarantined sample or label, or None."""
    dataset = root_dataset(dataset)
    return _view_or_none(dataset, quarantined_units(dataset))


# --- embeddings layout --------------------------------------------------------------------


def embedding_points(
    dataset: fo.Dataset,
    embeddings_field: str | None = None,
    keep: Iterable[str] = (),
    max_points: int = 5000,
    seed: int = 0,
) -> dict | None:
    """The 2D points of the latest sample-level embeddings visualization, per unit.

    Parameters
    ----------
    dataset : Dataset
    embeddings_field : str, optional
        Prefer a visualization of this embeddings field when one exists.
    keep : iterable of str
        Units always returned (e.g. the picks of a plan), whatever ``max_points`` says.
    max_points : int, default=5000
        At most this many other points, drawn at random (seeded): a browser plot of a
        million points helps nobody.
    seed : int, default=0

    Returns
    -------
    dict or None
        None when the dataset has no sample-level visualization. Else ``brain_key``,
        ``x``, ``y`` and ``unit`` (lists of one length; one point per sample of the
        visualized slice, its unit id) and ``total`` (points in the visualization).
    """
    dataset = root_dataset(dataset)
    keys = dataset.list_brain_runs(type="visualization", patches_field=None)
    if not keys:
        return None
    infos = {k: dataset.get_brain_info(k) for k in keys}
    preferred = [k for k in keys if infos[k].config.embeddings_field == embeddings_field]
    brain_key = max(preferred or keys, key=lambda k: infos[k].timestamp)
    results = dataset.load_brain_results(brain_key)
    points = np.asarray(results.points, dtype=float)
    sample_ids = np.asarray(results.sample_ids)
    samples = dataset.select_group_slices(_allow_mixed=True) if _grouped(dataset) else dataset
    ids, units = samples.select(sample_ids.tolist()).values(["id", unit_path(dataset)])
    unit_of = dict(zip(ids, units))
    unit = np.array([unit_of.get(i) for i in sample_ids.tolist()], dtype=object)
    keep = set(keep)
    kept = np.fromiter((u in keep for u in unit), bool, len(unit))
    others = np.flatnonzero(~kept & (unit != None))  # noqa: E711 (elementwise on objects)
    if len(others) > max_points:
        others = np.random.default_rng(seed).choice(others, size=max_points, replace=False)
    rows = np.sort(np.concatenate([np.flatnonzero(kept), others]))
    return {
        "brain_key": brain_key,
        "x": points[rows, 0].tolist(),
        "y": points[rows, 1].tolist(),
        "unit": unit[rows].tolist(),
        "total": int(len(points)),
    }
