"""Incoming-data drift (glue): does a newly arrived batch look like the pool, and what is new?

``check_incoming`` reads the embeddings of a batch (a tag such as ``incoming:week-2``, or a
view) and of the reference pool (every other unit of the dataset except the frozen splits,
which are held out of everything), runs :func:`.algorithms.incoming_drift.detect_incoming_drift`
and writes, under the dataset's lock: the novel units tagged ``drift:novel`` (on every
slice; a re-check of the same batch replaces its tags), a saved view of them, and a run
record. Each novel cluster is named by the dominant values of descriptive fields the user
picks (the demo's ``weather`` and ``time_of_day``), and the result says how to plan
coverage over the novel units with ``plan_batch``. Units are scenes (groups) on grouped
datasets, samples on flat ones.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import fiftyone as fo
import numpy as np

from ..core.catalog import tagged_units, unit_path
from ..core.locks import dataset_lock
from ..core.names import FROZEN_SPLIT_TAGS, INCOMING_TAG_PREFIX, NOVEL_TAG
from ..core.runs import Progress, now, save_record
from ..core.vector_reads import read_vectors
from ..core.views import (
    default_embeddings_field,
    embedding_slice,
    root_dataset,
    slice_views,
    unique_values,
    units_view,
)
from .algorithms import incoming_drift as idr

__all__ = ["INCOMING_RUN_METHOD", "check_incoming", "incoming_run_key"]

INCOMING_RUN_METHOD = "annoloop.incoming_drift"


def incoming_run_key(name: str) -> str:
    """Run key (and saved-view suffix) of a batch's check: a valid FiftyOne key."""
    return "annoloop_incoming_" + re.sub(r"\W", "_", name)


def check_incoming(
    dataset: fo.Dataset,
    batch: str | fo.core.collections.SampleCollection,
    *,
    embeddings_field: str | None = None,
    describe_by: Sequence[str] = (),
    name: str | None = None,
    slice_name: str | None = None,
    k: int = 5,
    tail: float = 0.02,
    alpha: float = 0.01,
    fdr: float = 0.1,
    n_permutations: int = 999,
    seed: int = 0,
    scale: str = "l2",
    progress: Progress | None = None,
) -> dict:
    """Compare a new batch's embeddings with the pool's; tag, view and name what is novel.

    Parameters
    ----------
    dataset : Dataset
    batch : str or DatasetView
        A sample tag (e.g. ``"incoming:week-2"`` from :func:`..demo.dataset.add_demo_scenes`)
        or a view of ``dataset``: its units are the batch.
    embeddings_field : str, optional
        Vector field to compare; default ``group_embedding`` (grouped) or ``embedding``.
    describe_by : sequence of str
        Sample fields whose dominant values name each novel cluster (e.g. ``weather``).
    name : str, optional
        Name of this check (run key ``annoloop_incoming_<name>``, saved view
        ``drift_novel_<name>``); default the tag without ``incoming:``. Required for a view.
    slice_name : str, optional
        Grouped datasets: the slice whose samples carry the embeddings; default the first
        slice that has the field.
    k, tail, alpha, fdr, n_permutations, seed, scale
        See :func:`.algorithms.incoming_drift.detect_incoming_drift`.
    progress : callable, optional
        Called as ``progress(fraction, label)``.

    Returns
    -------
    dict
        JSON-ready: the batch test (``p_value``, ``alarm``), ``n_novel``, the ``clusters``
        (name, size, units, per-field dominant value with its share in the cluster and in the
        pool), the tag and saved view written, the run key, and ``next_step``.

    Raises
    ------
    ValueError
        On bad parameters, an empty batch or reference, or units without embeddings;
        nothing has been written then.
    """
    report = progress or (lambda fraction, label: None)
    if not isinstance(dataset, fo.Dataset):
        raise ValueError("dataset must be a FiftyOne Dataset (pass the dataset, and the batch)")
    batch_units, name = _batch_units(dataset, batch, name)
    field = embeddings_field or default_embeddings_field(dataset)
    slice_name, view = embedding_slice(dataset, field, slice_name)
    describe_by = list(describe_by)
    schema = view.get_field_schema()
    unknown = [f for f in describe_by if f not in schema]
    if unknown:
        raise ValueError(f"describe_by fields {unknown} do not exist; the samples have {sorted(schema)}")
    idr.check_params(k=k, tail=tail, alpha=alpha, fdr=fdr, n_permutations=n_permutations, seed=seed, scale=scale)

    report(0.05, f"reading '{field}'")
    path = unit_path(dataset)
    frozen = tagged_units(dataset, FROZEN_SPLIT_TAGS)
    read = read_vectors(view, path, field, extra_fields=describe_by)
    units = list(read.row)
    in_batch = np.array([u in batch_units for u in units])
    in_reference = np.array([u not in batch_units and u not in frozen for u in units])
    for what, rows in (("batch", in_batch), ("reference", in_reference)):
        if not rows.any():
            raise ValueError(
                f"the {what} is empty: " + (
                    "the batch matches no unit of the dataset" if what == "batch"
                    else "every other unit is in the batch or a frozen split; add pool data"
                )
            )
        missing = int((read.missing & rows).sum())
        if missing:
            raise ValueError(
                f"{missing} units of the {what} have no '{field}'; run compute_embeddings "
                "first (it embeds only what is missing)"
            )

    report(0.2, "testing the batch against the pool")
    drift = idr.detect_incoming_drift(
        read.vectors[in_reference], read.vectors[in_batch],
        k=k, tail=tail, alpha=alpha, fdr=fdr, n_permutations=n_permutations, seed=seed,
        scale=scale,
    )
    batch_ids = [u for u, b in zip(units, in_batch) if b]
    novel_ids = [u for u, flag in zip(batch_ids, drift.novel) if flag]
    clusters = _describe(drift, batch_ids, describe_by, read.extras, in_batch, in_reference)

    key = incoming_run_key(name)
    view_name = "drift_novel_" + re.sub(r"\W", "_", name)
    result = {
        "run_key": key,
        "checked_at": now(),
        "batch": batch if isinstance(batch, str) else f"view ({len(batch_ids)} units)",
        "embeddings_field": field,
        "slice": slice_name,
        "n_batch": len(batch_ids),
        "n_reference": int(in_reference.sum()),
        "n_frozen_left_out": len(frozen),
        "p_value": drift.test.p_value,
        "alarm": drift.alarm,
        "test": {
            "statistic": drift.test.statistic,
            "null_mean": drift.test.null_mean,
            "null_std": drift.test.null_std,
            "n_permutations": drift.test.n_permutations,
            "alpha": alpha,
            "k": k,
            "tail": tail,
            "scale": scale,
            "seed": seed,
        },
        "fdr": fdr,
        "n_novel": len(novel_ids),
        "novel_tag": NOVEL_TAG,
        "saved_view": view_name if novel_ids else None,
        "clusters": clusters,
        "next_step": (
            f"plan coverage over the novel units: plan_batch(dataset.load_saved_view("
            f"'{view_name}'), budget, embeddings_field='{field}', coverage_fraction=1.0)"
            if novel_ids else "nothing novel to plan for"
        ),
    }

    report(0.9, "tagging the novel units")
    with dataset_lock(dataset, "check_incoming_drift"):
        dataset.reload()
        for flat in slice_views(units_view(dataset, batch_ids)).values():
            flat.untag_samples(NOVEL_TAG)
        if novel_ids:
            for flat in slice_views(units_view(dataset, novel_ids)).values():
                flat.tag_samples(NOVEL_TAG)
            dataset.save_view(
                view_name,
                units_view(dataset, novel_ids),
                description=f"novel units of {result['batch']} (annoloop incoming-drift check)",
                overwrite=True,
            )
        elif dataset.has_saved_view(view_name):
            dataset.delete_saved_view(view_name)
        save_record(
            dataset, key, INCOMING_RUN_METHOD,
            {k: v for k, v in result.items() if k != "clusters"},
            results={"clusters": clusters, "novel_units": novel_ids,
                     "scores": drift.scores.score.tolist(), "batch_units": batch_ids},
        )
    report(1.0, f"p = {drift.test.p_value:.3g}; {len(novel_ids)} novel units")
    return result


def _batch_units(dataset: fo.Dataset, batch, name: str | None) -> tuple[set[str], str]:
    """The batch's unit ids and the check's name."""
    if isinstance(batch, str):
        units = tagged_units(dataset, [batch])
        if not units:
            raise ValueError(
                f"no sample is tagged {batch!r}; pass the tag of the new batch (e.g. "
                "'incoming:<name>' from add_demo_scenes) or a view of it"
            )
        default = batch[len(INCOMING_TAG_PREFIX):] if batch.startswith(INCOMING_TAG_PREFIX) else batch
        name = name or default
    elif isinstance(batch, fo.core.collections.SampleCollection):
        if root_dataset(batch).name != dataset.name:
            raise ValueError(f"the batch view belongs to dataset {batch.dataset_name!r}, not {dataset.name!r}")
        if not name:
            raise ValueError("a batch given as a view needs a name= for its run record and saved view")
        path = unit_path(dataset)
        units = {u for flat in slice_views(batch).values() for u in unique_values(flat, path)}
        if not units:
            raise ValueError("the batch view is empty; select the new samples first")
    else:
        raise ValueError(f"batch must be a tag (str) or a view; got {type(batch).__name__}")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string; got {name!r}")
    return units, name


def _describe(drift, batch_ids, describe_by, extras, in_batch, in_reference) -> list[dict]:
    """Each novel cluster: its units, mean score and the dominant value of each field."""
    out = []
    for c, rows in enumerate(drift.clusters):
        fields = {}
        for field, column in zip(describe_by, extras):
            column = np.array(column, dtype=object)
            batch_values = column[in_batch][rows]
            value, count = Counter(map(str, batch_values)).most_common(1)[0]
            pool = column[in_reference]
            fields[field] = {
                "value": value,
                "share": round(count / len(rows), 3),
                "pool_share": round(float(np.mean([str(v) == value for v in pool])), 3),
            }
        out.append(
            {
                "cluster": c,
                "name": ", ".join(f"{f}={d['value']}" for f, d in fields.items()) or f"cluster {c}",
                "size": len(rows),
                "mean_score": round(float(drift.scores.score[rows].mean()), 4),
                "units": [batch_ids[r] for r in rows],
                "fields": fields,
            }
        )
    return out
