"""What a plan leaves on the dataset: batch names, the plan record's run key, the tags, the
per-pick reasons, the saved view and the plan record, and reading them back.

Outputs of a plan (none for a dry run), written after everything was validated and planned,
in bulk:

* tags ``batch:vN`` and ``source:coverage`` / ``source:targeting`` on every slice of each
  picked unit;
* the embedded document field ``annoloop_pick`` on every picked sample (see
  :data:`PICK_SCHEMA`): batch, round, rank, source, score and what the score means, and for
  failure-targeting picks the failure served (id, kind, its sample) and the distance to it;
* the saved view ``batch_vN`` (the picks, in pick order);
* the custom run ``annoloop_plan_batch_vN`` (method ``annoloop.plan``): parameters, the
  plan's summary, counts and the fallback reason (:func:`plan_record` reads it back).
"""

from __future__ import annotations

import re

import fiftyone as fo

from ..core.catalog import unit_path
from ..core.names import BATCH_TAG_PREFIX, FROZEN_SPLIT_TAGS, SOURCE_TAG_PREFIX
from ..core.runs import load_record, load_records, now, record_keys, save_record
from ..core.views import slice_views, units_view

__all__ = [
    "PICK_FIELD",
    "PICK_SCHEMA",
    "PLAN_RUN_METHOD",
    "check_batch_name",
    "check_pick_field",
    "default_round",
    "next_batch_name",
    "plan_record",
    "plan_run_key",
    "planned_batches",
    "save_plan_record",
    "view_name",
    "write_picks",
]

#: Embedded document on every picked sample saying why it was picked.
PICK_FIELD = "annoloop_pick"
#: Attributes of :data:`PICK_FIELD` and their FiftyOne field types.
PICK_SCHEMA = {
    "batch": fo.StringField,
    "round": fo.IntField,
    "rank": fo.IntField,
    "source": fo.StringField,
    "score": fo.FloatField,
    "score_kind": fo.StringField,
    "near_failure": fo.StringField,
    "near_failure_kind": fo.StringField,
    "near_failure_sample": fo.StringField,
    "distance_to_failure": fo.FloatField,
    "eval_key": fo.StringField,
}
#: FiftyOne custom-run method and key prefix of plan records.
PLAN_RUN_METHOD = "annoloop.plan"
PLAN_RUN_KEY_PREFIX = "annoloop_plan_"
_RECORD_KEYS = ("batch", "created_at", "params", "plan", "counts", "fallback_reason", "view", "tags")

_BATCH_NAME = re.compile(rf"^{re.escape(BATCH_TAG_PREFIX)}[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}$")
_NUMBERED_BATCH = re.compile(rf"^{re.escape(BATCH_TAG_PREFIX)}v(\d+)$")


# --- names --------------------------------------------------------------------------------


def next_batch_name(dataset: fo.Dataset) -> str:
    """``batch:v<N+1>``, N the highest number among existing batch tags and plan records."""
    numbers = [0]
    for tag in _distinct_tags(dataset):
        match = _NUMBERED_BATCH.match(tag)
        if match:
            numbers.append(int(match.group(1)))
    for key in record_keys(dataset, PLAN_RUN_METHOD):
        match = _NUMBERED_BATCH.match(load_record(dataset, key)["batch"])
        if match:
            numbers.append(int(match.group(1)))
    return f"{BATCH_TAG_PREFIX}v{max(numbers) + 1}"


def plan_run_key(batch_name: str) -> str:
    """FiftyOne run key of the plan record of ``batch_name`` (``batch:v3`` ->
    ``annoloop_plan_batch_v3``)."""
    return PLAN_RUN_KEY_PREFIX + re.sub(r"\W", "_", batch_name)


def view_name(batch_name: str) -> str:
    """Name of the saved view of ``batch_name`` (``batch:v3`` -> ``batch_v3``)."""
    return re.sub(r"\W", "_", batch_name)


def default_round(dataset: fo.Dataset, has_evaluation: bool) -> int:
    """The loop round the next batch belongs to, derived from the batches that exist.

    It is the number of batches already planned (distinct ``batch:*`` tags outside the
    frozen splits, where golden QA may reuse batch names), and at least 1 once an evaluation
    is used: an evaluated model means the cold start is over even when the first labels
    came from elsewhere.
    """
    batches = set()
    for view in slice_views(dataset).values():
        batches.update(
            t
            for t in view.match_tags(list(FROZEN_SPLIT_TAGS), bool=False).distinct("tags")
            if t.startswith(BATCH_TAG_PREFIX)
        )
    return max(len(batches), 1 if has_evaluation else 0)


def check_batch_name(dataset: fo.Dataset, name: str | None) -> str:
    """``name``, or :func:`next_batch_name` when None, after checking it is well formed and new.

    Raises
    ------
    ValueError
        On a malformed name, or one whose tag, saved view or plan record exists.
    """
    if name is None:
        return next_batch_name(dataset)
    if not isinstance(name, str) or not _BATCH_NAME.match(name):
        raise ValueError(
            f"batch name must be '{BATCH_TAG_PREFIX}' followed by 1-64 letters, digits, '_', "
            f"'.' or '-' (e.g. '{BATCH_TAG_PREFIX}v3'), got {name!r}"
        )
    where = []
    if name in _distinct_tags(dataset):
        where.append("samples carry its tag")
    if dataset.has_saved_view(view_name(name)):
        where.append(f"saved view '{view_name(name)}' exists")
    if dataset.has_run(plan_run_key(name)):
        where.append(f"run '{plan_run_key(name)}' exists")
    if where:
        raise ValueError(
            f"batch '{name}' already exists on '{dataset.name}' ({'; '.join(where)}); "
            f"choose another name, e.g. {next_batch_name(dataset)}"
        )
    return name


def check_pick_field(dataset: fo.Dataset) -> None:
    """Refuse a :data:`PICK_FIELD` of another type than the embedded document it must be."""
    field = dataset.get_field(PICK_FIELD)
    if field is not None and not (
        isinstance(field, fo.EmbeddedDocumentField)
        and issubclass(field.document_type, fo.DynamicEmbeddedDocument)
    ):
        raise ValueError(
            f"field '{PICK_FIELD}' exists as a {type(field).__name__}; the planner records "
            "picks there as an embedded document: rename or delete that field"
        )


def _distinct_tags(dataset: fo.Dataset) -> set[str]:
    return {t for view in slice_views(dataset).values() for t in view.distinct("tags")}


# --- writing ------------------------------------------------------------------------------


def write_picks(dataset: fo.Dataset, result: dict) -> None:
    """Tags, pick records and the saved view of a planned ``result`` (see
    :func:`.batches.plan_batch`), each as bulk calls per slice."""
    batch_name, picks = result["batch"], result["picks"]
    for source in sorted({p["source"] for p in picks}):
        units = [p["id"] for p in picks if p["source"] == source]
        for view in slice_views(units_view(dataset, units)).values():
            view.tag_samples([batch_name, SOURCE_TAG_PREFIX + source])

    _declare_pick_field(dataset)
    by_unit = {p["id"]: p for p in picks}
    picked = units_view(dataset, list(by_unit))
    for view in slice_views(picked).values():
        sample_ids, units = view.values(["id", unit_path(dataset)])
        docs = {
            sample_id: fo.DynamicEmbeddedDocument(
                batch=batch_name,
                round=result["round"],
                eval_key=result["eval_key"],
                **{k: by_unit[unit][k] for k in PICK_SCHEMA if k in by_unit[unit]},
            )
            for sample_id, unit in zip(sample_ids, units)
        }
        view.set_values(PICK_FIELD, docs, key_field="id")

    dataset.save_view(
        view_name(batch_name),
        picked.sort_by(f"{PICK_FIELD}.rank"),  # pick order
        description=(
            f"{batch_name}: {result['n_targeting']} targeting + {result['n_coverage']} coverage "
            f"{result['unit']}s, round {result['round']}, planned by annoloop"
        ),
    )


def _declare_pick_field(dataset: fo.Dataset) -> None:
    if dataset.get_field(PICK_FIELD) is None:
        dataset.add_sample_field(
            PICK_FIELD, fo.EmbeddedDocumentField, embedded_doc_type=fo.DynamicEmbeddedDocument
        )
    for name, ftype in PICK_SCHEMA.items():
        if dataset.get_field(f"{PICK_FIELD}.{name}") is None:
            dataset.add_sample_field(f"{PICK_FIELD}.{name}", ftype)


# --- the plan record ----------------------------------------------------------------------


def save_plan_record(dataset: fo.Dataset, result: dict, *, params: dict, summary: dict) -> None:
    """Store the plan record of a written ``result`` under ``result["run_key"]``."""
    record = {
        "batch": result["batch"],
        "created_at": now(),
        "params": params,
        "plan": summary,
        "counts": result["counts"],
        "fallback_reason": result["fallback_reason"],
        "view": result["view"],
        "tags": result["tags"],
    }
    save_record(dataset, result["run_key"], PLAN_RUN_METHOD, record, overwrite=False)


def plan_record(dataset: fo.Dataset, batch_name: str) -> dict:
    """The plan record of ``batch_name`` as a plain dict (see the module docstring)."""
    record = load_record(dataset, plan_run_key(batch_name))
    if record is None:
        raise ValueError(f"no plan record for batch '{batch_name}' on '{dataset.name}'")
    return {k: record[k] for k in _RECORD_KEYS}


def planned_batches(dataset: fo.Dataset) -> list[str]:
    """Names of the batches with a plan record, oldest plan first."""
    records = sorted(load_records(dataset, PLAN_RUN_METHOD), key=lambda r: r["created_at"])
    return [r["batch"] for r in records]
