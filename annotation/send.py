"""Send a planned batch to an annotation tool, with golden scenes hidden in every queue.

:func:`send_batch` takes a batch that ``plan_batch`` made (tag ``batch:vN``, saved view
``batch_vN``), deals its scenes out to the named annotators and adds to each annotator's
queue a share of golden scenes (:func:`.algorithms.queues.plan_queues`), then uploads each
queue through FiftyOne's annotation API (``view.annotate``) as one annotation run. The
label schema is the dataset's own ``label_schemas[label_field]`` (classes), so annotators
can draw only what the schema allows.

Golden tasks carry no mark the annotator can see: the runs annotate a field no sample has
yet (:data:`INCOMING_FIELD`), so no task arrives pre-filled; no tag or field is written on
the samples; the tasks are uploaded in a shuffled order and named from the media files as
every other task is. Which units were golden is recorded on the dataset only.

The record (custom run ``annoloop_send_<batch>``, method ``annoloop.annotation_send``)
says which batch went where: backend, URL, time, and per annotator its annotation key,
staging field, sample ids and golden sample ids. :func:`.load.load_batch` reads it.

The phases: validate everything (the batch, its frozen samples, the schema, the golden set,
the annotators, earlier sends), plan the queues, then, under the dataset's write lock,
upload each queue and write the record.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import fiftyone as fo

from ..core.locks import dataset_lock
from ..core.names import (
    BATCH_TAG_PREFIX,
    DEFAULT_GT_FIELD,
    GOLDEN_SPLIT_TAG,
    MINING_SPLIT_TAG,
    TEST_SPLIT_TAG,
)
from ..core.runs import Progress, load_record, load_records, now, save_record
from ..core.views import camera_slice, default_camera_slice, root_dataset, tagged_groups
from ..quality.frozen import DEFAULT_GOLDEN_FIELD
from ..quality.gate import resolve_schema
from ..selection.plan_record import view_name
from .algorithms.queues import plan_queues

__all__ = [
    "DEFAULT_GOLDEN_SHARE",
    "INCOMING_FIELD",
    "PROVENANCE_ATTRIBUTES",
    "SEND_RUN_KEY_PREFIX",
    "SEND_RUN_METHOD",
    "batch_name",
    "send_batch",
    "send_record",
    "send_run_key",
    "staging_field",
]

SEND_RUN_METHOD = "annoloop.annotation_send"
SEND_RUN_KEY_PREFIX = "annoloop_send_"
#: Share of each annotator's task list that is golden (the 5–10 % providers use).
DEFAULT_GOLDEN_SHARE = 0.08
#: The field the annotation runs annotate: new on every sample, so no task is pre-filled.
INCOMING_FIELD = "incoming"
#: Label attributes that say who drew a label, in which batch, with which tool, when. The
#: gate reports attributes a schema does not declare, so send_batch declares the missing
#: ones in the label field's schema, read-only (the App shows them; nobody edits them).
PROVENANCE_ATTRIBUTES = ("annotator", "batch", "annotation_tool", "annotated_at")
_NAME = re.compile(r"^[A-Za-z0-9_]{1,40}$")


def send_run_key(batch: str) -> str:
    """Run key of the send record of ``batch`` (``batch:v3`` -> ``annoloop_send_batch_v3``)."""
    return SEND_RUN_KEY_PREFIX + view_name(batch)


def send_record(dataset: fo.Dataset, batch: str) -> dict | None:
    """The stored send record of ``batch``, or None when it was never sent."""
    return load_record(root_dataset(dataset), send_run_key(batch))


def staging_field(annotator: str) -> str:
    """Sample field where ``annotator``'s labels land before the gate (``incoming_<name>``)."""
    return f"{INCOMING_FIELD}_{annotator}"


def _declare_provenance(dataset: fo.Dataset, label_field: str, schema: dict) -> None:
    """Add the missing :data:`PROVENANCE_ATTRIBUTES` to ``label_field``'s label schema."""
    attributes = list(schema.get("attributes") or [])
    declared = {a["name"] if isinstance(a, dict) else a for a in attributes}
    absent = [a for a in PROVENANCE_ATTRIBUTES if a not in declared]
    if not absent:
        return
    path = f"{label_field}.detections" if dataset.get_field(label_field) else None
    for name in absent:
        # FiftyOne accepts schema attributes only for fields declared on the label type.
        if path and dataset.get_field(f"{path}.{name}") is None:
            dataset.add_sample_field(f"{path}.{name}", fo.StringField)
        attributes.append({"name": name, "type": "str", "component": "text", "read_only": True})
    dataset.set_label_schemas({**dataset.label_schemas, label_field: {**schema, "attributes": attributes}})


def batch_name(batch: str) -> str:
    """The batch's tag: ``"v3"`` and ``"batch:v3"`` both name ``batch:v3``."""
    batch = batch.strip()
    return batch if batch.startswith(BATCH_TAG_PREFIX) else BATCH_TAG_PREFIX + batch


def _units(dataset: fo.Dataset, view) -> list[str]:
    """Scene ids (grouped) or sample ids (flat) of ``view``."""
    if dataset.media_type == "group":
        return sorted(set(view.values(f"{dataset.group_field}.id")))
    return sorted(view.values("id"))


def _check_annotators(annotators) -> list[str]:
    if isinstance(annotators, str):
        annotators = [a.strip() for a in annotators.split(",") if a.strip()]
    annotators = list(annotators or [])
    if not annotators:
        raise ValueError("name at least one annotator (letters, digits, '_'), e.g. ['alice']")
    bad = [a for a in annotators if not isinstance(a, str) or not _NAME.match(a)]
    if bad:
        raise ValueError(
            f"annotator names must be 1-40 letters, digits or '_' (they name a field); got {bad}"
        )
    if len(set(annotators)) != len(annotators):
        raise ValueError(f"annotator names must be unique; got {annotators}")
    return annotators


def _refuse_frozen(dataset: fo.Dataset, batch: str, units: list[str]) -> None:
    for tag, what in ((TEST_SPLIT_TAG, "test"), (MINING_SPLIT_TAG, "mining"),
                      (GOLDEN_SPLIT_TAG, "golden")):
        if dataset.media_type == "group":
            frozen = set(tagged_groups(dataset, [tag])) & set(units)
        else:
            frozen = set(dataset.match_tags(tag).values("id")) & set(units)
        if frozen:
            raise ValueError(
                f"batch '{batch}' holds {len(frozen)} scenes of the frozen {what} split (e.g. "
                f"{min(frozen)}); frozen scenes are never sent to annotators. Remove them from "
                f"the batch or plan a new one with plan_batch"
            )


def _golden_units(dataset: fo.Dataset, golden_field: str, share: float) -> list[str]:
    if share == 0:
        return []
    if dataset.media_type == "group":
        units = tagged_groups(dataset, [GOLDEN_SPLIT_TAG])
    else:
        units = sorted(dataset.match_tags(GOLDEN_SPLIT_TAG).values("id"))
    if not units or dataset.get_field(golden_field) is None:
        raise ValueError(
            f"dataset '{dataset.name}' has no golden set with labels in {golden_field!r}: run "
            "create_splits with a golden share first, or pass golden_share=0 to send no "
            "golden scenes"
        )
    return units


def _golden_uses(dataset: fo.Dataset) -> dict:
    """``{annotator: {golden unit: times sent}}`` over every earlier send."""
    uses: dict = {}
    for record in load_records(dataset, SEND_RUN_METHOD):
        for queue in record["queues"]:
            seen = uses.setdefault(queue["annotator"], {})
            for unit in queue["golden_units"]:
                seen[unit] = seen.get(unit, 0) + 1
    return uses


def _queue_view(dataset: fo.Dataset, slice_name: str | None, units: Sequence[str]):
    """The camera samples of ``units``, in ``units`` order (the upload order)."""
    flat = camera_slice(dataset, slice_name)
    if dataset.media_type != "group":
        return flat.select(list(units), ordered=True)
    by_unit = dict(zip(*flat.values([f"{dataset.group_field}.id", "id"])))
    return flat.select([by_unit[u] for u in units], ordered=True)


def send_batch(
    dataset: fo.Dataset,
    batch: str,
    annotators: Sequence[str],
    *,
    backend: str = "labelstudio",
    url: str | None = None,
    api_key: str | None = None,
    label_field: str = DEFAULT_GT_FIELD,
    slice_name: str | None = None,
    golden_share: float = DEFAULT_GOLDEN_SHARE,
    golden_field: str = DEFAULT_GOLDEN_FIELD,
    seed: int = 0,
    progress: Progress | None = None,
    **backend_kwargs,
) -> dict:
    """Send ``batch`` to an annotation tool, one queue per annotator, golden scenes hidden.

    Parameters
    ----------
    dataset : Dataset
        A dataset (or a view of it) with the planned batch.
    batch : str
        The batch, ``"batch:v3"`` or ``"v3"`` (its saved view ``batch_v3`` must exist).
    annotators : sequence of str
        One queue (annotation run) per name; the batch is split between them and every
        queue gets its own golden scenes. Names are letters, digits and ``_``.
    backend : str, default "labelstudio"
        A FiftyOne annotation backend: ``"labelstudio"``, ``"cvat"``, ``"labelbox"``.
    url, api_key : str, optional
        The tool's server; default FiftyOne's annotation config
        (``FIFTYONE_LABELSTUDIO_URL`` / ``FIFTYONE_LABELSTUDIO_API_KEY``, ``FIFTYONE_CVAT_*``).
    label_field : str, default "ground_truth"
        The field whose label schema (classes) annotators draw with, and that the gate-passing
        labels of :func:`.load.load_batch` merge into.
    slice_name : str, optional
        Camera slice of a grouped dataset; default its default camera slice.
    golden_share : float, default 0.08
        Share of each queue that is golden, in [0, 0.5]; 0 sends no golden scene.
    golden_field : str, default "golden"
        Field of the golden labels.
    seed : int, default 0
        Seed of the split between annotators and of the golden draw.
    progress : callable, optional
        ``progress(fraction, message)``.
    **backend_kwargs
        Passed to ``annotate`` (e.g. CVAT's ``task_assignee``, Label Studio's
        ``project_name``).

    Returns
    -------
    dict
        ``batch``, ``run_key``, ``backend``, ``url``, ``sent_at``, ``n_batch`` (scenes of the
        batch), ``queues`` (per annotator: ``annotator``, ``anno_key``, ``staging_field``,
        ``n_tasks``, ``n_golden``, ``sample_ids``, ``golden_sample_ids``, ``golden_units``).

    Raises
    ------
    ValueError
        On an unknown batch, a batch with frozen (test, mining or golden) scenes, a label
        field without a label schema, no golden set (with a share above 0), a share outside
        [0, 0.5], bad or duplicate annotator names, or a batch sent before. Nothing is sent or
        written then.
    """
    report = progress or (lambda fraction, message: None)
    dataset = root_dataset(dataset)
    batch = batch_name(batch)
    annotators = _check_annotators(annotators)
    if isinstance(golden_share, bool) or not 0.0 <= float(golden_share) <= 0.5:
        raise ValueError(f"golden_share must be a number in [0, 0.5]; got {golden_share!r}")
    golden_share = float(golden_share)
    if not dataset.has_saved_view(view_name(batch)):
        raise ValueError(
            f"dataset '{dataset.name}' has no batch '{batch}' (no saved view "
            f"'{view_name(batch)}'); plan one with plan_batch first"
        )
    schema = resolve_schema(dataset, label_field)
    classes = list(schema.get("classes") or [])
    if not classes:
        raise ValueError(
            f"the label schema of {label_field!r} lists no classes; annotators could draw "
            "nothing. Set classes with dataset.set_label_schemas()"
        )
    if dataset.media_type == "group" and slice_name is None:
        slice_name = default_camera_slice(dataset)
    batch_units = _units(dataset, dataset.load_saved_view(view_name(batch)))
    if not batch_units:
        raise ValueError(f"batch '{batch}' is empty; plan a new one with plan_batch")
    _refuse_frozen(dataset, batch, batch_units)
    golden_pool = _golden_units(dataset, golden_field, golden_share)
    earlier = send_record(dataset, batch)
    if earlier is not None:
        raise ValueError(
            f"batch '{batch}' was sent to {earlier['backend']} at {earlier['sent_at']} "
            f"(annotation runs {[q['anno_key'] for q in earlier['queues']]}); load it with "
            "load_batch, or delete those runs and the record to send it again"
        )
    anno_keys = {a: f"{view_name(batch)}_{a}" for a in annotators}
    taken = sorted(set(anno_keys.values()) & set(dataset.list_annotation_runs()))
    if taken:
        raise ValueError(f"annotation runs {taken} exist already; delete them or rename annotators")

    queues = plan_queues(
        batch_units, golden_pool, annotators, golden_share, seed, _golden_uses(dataset)
    )
    credentials = {k: v for k, v in (("url", url), ("api_key", api_key)) if v}
    record = {
        "batch": batch,
        "backend": backend,
        "url": url,
        "label_field": label_field,
        "slice": slice_name,
        "classes": classes,
        "golden_share": golden_share,
        "golden_field": golden_field,
        "seed": int(seed),
        "queues": [],
    }
    # Uploading creates FiftyOne annotation runs on the dataset: under its write lock, with
    # the record written once every queue is out, so a failed upload leaves no record.
    with dataset_lock(dataset, "send_batch"):
        dataset.reload()
        _declare_provenance(dataset, label_field, schema)
        for i, queue in enumerate(queues):
            report(i / len(queues), f"sending {queue.annotator}'s {len(queue.units)} tasks")
            view = _queue_view(dataset, slice_name, queue.units)
            golden_view = _queue_view(dataset, slice_name, queue.golden)
            view.annotate(
                anno_keys[queue.annotator],
                backend=backend,
                label_schema={INCOMING_FIELD: {"type": "detections", "classes": classes}},
                **credentials,
                **backend_kwargs,
            )
            record["queues"].append(
                {
                    "annotator": queue.annotator,
                    "anno_key": anno_keys[queue.annotator],
                    "staging_field": staging_field(queue.annotator),
                    "n_tasks": len(queue.units),
                    "n_golden": len(queue.golden),
                    "sample_ids": view.values("id"),
                    "golden_sample_ids": golden_view.values("id"),
                    "golden_units": list(queue.golden),
                }
            )
        record["sent_at"] = now()
        save_record(dataset, send_run_key(batch), SEND_RUN_METHOD, record)
    report(1.0, f"sent {sum(q['n_tasks'] for q in record['queues'])} tasks")
    return {"run_key": send_run_key(batch), "n_batch": len(batch_units), **record}
