"""Sharded ZCore runs: one run split into delegated operations that any worker may take.

A ZCore score is a sum over independent random draws (:func:`.zcore.zcore_shard_scores`),
so a run splits into ``n_shards`` parts with no communication between them. This is the
glue that spreads them over FiftyOne's own delegated-operation queue: every
``fiftyone delegated launch`` process on the same MongoDB (one machine or several) takes
shards as it frees up, and no scheduler of annoloop's own is involved.

The run's lifecycle, all of it in the dataset's run record ``annoloop_zcore_<field>``:

1. :func:`start_sharded_zcore` checks everything a plain run checks, reads the embeddings
   once (their fingerprint goes into the record), records the run ``started`` with its
   shard plan and queues one operation per shard (through ``queue_shard``, which the
   operator supplies).
2. :func:`run_zcore_shard`, on whichever worker took the shard, re-reads the embeddings
   (refusing if they changed since the plan), scores its shard under the shard's liveness
   lock, stores the partial scores in FiftyOne's database (:mod:`..core.shared_arrays`) and
   marks the shard done, naming its host and process.
3. The shard that finds every shard done combines them in shard order, writes the scores
   and the ``completed`` record exactly as a plain run does, and deletes the partials.

Recovery: a shard that was killed or failed is run again with FiftyOne's own re-run
(``fiftyone delegated rerun <id>``), or by starting the same run again (same fields,
settings and shard count, embeddings unchanged): then only the shards not done are queued,
and the finished ones' partials are kept. The same seed and shard count give the same
scores bit for bit however many workers took part.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence

import fiftyone as fo
import numpy as np

from ..core.locks import dataset_lock, run_lock
from ..core.names import ZCORE_FIELD
from ..core.runs import STATUS_STARTED, Progress, load_record, now, process_identity, save_record
from ..core.shared_arrays import delete_arrays, load_arrays, save_arrays
from .algorithms.zcore import (
    ZCoreParams,
    combine_shard_scores,
    shard_count_error,
    zcore_shard_scores,
)
from .scoring import (
    ZCORE_RUN_METHOD,
    PreparedRun,
    prepare_run,
    resolve_backend,
    shard_lock_key,
    unfinished_record,
    write_run,
    zcore_run_key,
)
from .zcore_torch import torch_engine

__all__ = ["run_zcore_shard", "start_sharded_zcore"]

#: ``queue_shard(shard, run_id) -> operation id``: how a shard reaches the workers.
QueueShard = Callable[[int, str], str]


def start_sharded_zcore(
    collection: fo.core.collections.SampleCollection,
    *,
    shards: int,
    queue_shard: QueueShard,
    embeddings_fields: str | Sequence[str] | None = None,
    score_field: str = ZCORE_FIELD,
    group_score: bool = True,
    params: ZCoreParams | None = None,
    backend: str = "auto",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Plan a sharded ZCore run and queue its shards.

    Parameters
    ----------
    collection, embeddings_fields, score_field, group_score, params, overwrite
        As for :func:`.scoring.compute_zcore`.
    shards : int
        Parts to split the draws into (see :func:`.zcore.shard_count_error`).
    queue_shard : callable
        ``queue_shard(shard, run_id)`` queues shard ``shard`` of run ``run_id`` as a
        delegated operation and returns its id.
    backend : {"auto", "numpy", "torch"}, default="auto"
        Resolved by each shard on its own worker (a worker with a GPU uses it).

    Returns
    -------
    dict
        ``score_field``, ``run_key``, ``run_id``, ``shards``, ``queued`` (shard indices
        queued now), ``resumed`` (shards kept from an earlier attempt) and ``operations``.

    Raises
    ------
    ValueError
        On bad arguments or data, as a plain run; nothing is recorded or queued then.
    """
    report = progress or (lambda fraction, label: None)
    params = ZCoreParams() if params is None else params
    run = prepare_run(collection, embeddings_fields, score_field, group_score, params, overwrite)
    error = shard_count_error(shards, params.n_sample)
    if error:
        raise ValueError(error)
    resolve_backend(backend)  # a bad name fails here, not on every worker
    report(0.0, "reading embeddings")
    run = run.read(report)
    plan = {
        "n_shards": int(shards),
        "per_group": run.per_group,
        "backend": backend,
        "fingerprint": _fingerprint(run),
    }
    dataset = run.dataset
    with dataset_lock(dataset, "compute_zcore"):
        dataset.reload()
        earlier = load_record(dataset, run.key) or {}
        resume = _resumable(earlier, run, plan)
        if resume:
            sharding = earlier["sharding"]
        else:
            prepare_run(collection, run.fields, score_field, group_score, params, overwrite)
            delete_arrays(dataset, _arrays_prefix(score_field))
            sharding = {**plan, "run_id": uuid.uuid4().hex, "done": {}, "operations": {}}
        record = {
            **unfinished_record(score_field, run.fields, params, now(), STATUS_STARTED),
            **({"created_at": earlier["created_at"]} if resume else {}),
            "sharding": sharding,
        }
        save_record(dataset, run.key, ZCORE_RUN_METHOD, record)
    todo = [k for k in range(shards) if str(k) not in sharding["done"]]
    queued = {str(k): queue_shard(k, sharding["run_id"]) for k in todo}
    with dataset_lock(dataset, "compute_zcore"):
        dataset.reload()
        record = load_record(dataset, run.key)
        record["sharding"]["operations"].update(queued)
        save_record(dataset, run.key, ZCORE_RUN_METHOD, record)
    report(1.0, f"{len(todo)} ZCore shards queued")
    return {
        "score_field": score_field,
        "run_key": run.key,
        "run_id": sharding["run_id"],
        "shards": int(shards),
        "queued": todo,
        "resumed": sorted(int(k) for k in sharding["done"]),
        "operations": queued,
    }


def run_zcore_shard(
    collection: fo.core.collections.SampleCollection,
    *,
    score_field: str,
    run_id: str,
    shard: int,
    progress: Progress | None = None,
) -> dict:
    """Score one shard of a planned run; the last shard done writes the run's scores.

    Returns
    -------
    dict
        ``shard``, ``n_shards``, ``host``, ``pid``, ``parent_pid``, ``backend``, ``device``, ``seconds``,
        ``reused`` (its partial was already stored by an earlier attempt) and
        ``completed`` (this shard combined the run and wrote its scores).

    Raises
    ------
    ValueError
        When the run is not a planned, unfinished sharded run with this ``run_id`` (it
        completed, or a newer run replaced it), the shard is out of range, or the
        embeddings changed since the run was planned.
    """
    started = time.perf_counter()
    report = progress or (lambda fraction, label: None)
    dataset = collection._dataset
    key = zcore_run_key(score_field)
    record = _active_record(dataset, key, run_id)
    sharding = record["sharding"]
    n_shards = sharding["n_shards"]
    if not isinstance(shard, int) or not 0 <= shard < n_shards:
        raise ValueError(f"shard must be a whole number from 0 to {n_shards - 1}, got {shard!r}")
    params = ZCoreParams(**record["params"])
    report(0.0, "reading embeddings")
    run = PreparedRun(
        collection, score_field, record["embeddings_fields"], sharding["per_group"], params, False
    ).read()
    if _fingerprint(run) != sharding["fingerprint"]:
        raise ValueError(
            f"the embeddings {run.fields} changed since the sharded ZCore run of "
            f"'{score_field}' was planned ({record['created_at']}); start compute_zcore again "
            "to score the new embeddings"
        )
    backend, device = resolve_backend(sharding["backend"])
    engine = torch_engine(device) if backend == "torch" else None
    name = f"{_arrays_prefix(score_field)}{run_id}/{shard}"
    with run_lock(dataset, shard_lock_key(key, shard), "compute_zcore_shard", f"shard {shard} of {key}"):
        stored = load_arrays(dataset, name)
        reused = stored is not None
        if not reused:
            stored = {}
            for i, x in enumerate(run.matrices):
                partial = zcore_shard_scores(
                    x, params, shard, n_shards, engine=engine,
                    progress=lambda f, i=i: report(
                        0.05 + 0.85 * (i + f) / len(run.matrices), f"scoring shard {shard + 1}"
                    ),
                )
                if partial is not None:
                    stored[f"matrix_{i}"] = partial
            save_arrays(dataset, name, stored)
        done = {
            **process_identity(),
            "backend": backend,
            "device": device,
            "seconds": round(time.perf_counter() - started, 3),
            "finished_at": now(),
        }
        with dataset_lock(dataset, "compute_zcore_shard"):
            record = _active_record(dataset, key, run_id)
            record["sharding"]["done"][str(shard)] = done
            save_record(dataset, key, ZCORE_RUN_METHOD, record)
            last = len(record["sharding"]["done"]) == n_shards
    result = {"shard": shard, "n_shards": n_shards, **done, "reused": reused}
    if last:
        _combine(run, record, report)
    return {**result, "completed": last}


def _combine(run: PreparedRun, record: dict, report: Progress) -> None:
    """Sum the shards' partials in shard order and write the run (the last shard's job)."""
    dataset, sharding = run.dataset, record["sharding"]
    prefix = f"{_arrays_prefix(run.score_field)}{sharding['run_id']}/"
    parts = [load_arrays(dataset, f"{prefix}{k}") for k in range(sharding["n_shards"])]
    scores = [
        combine_shard_scores(
            [part.get(f"matrix_{i}") for part in parts], run.params, n_rows=len(x)
        )
        for i, x in enumerate(run.matrices)
    ]
    created = datetime.datetime.fromisoformat(record["created_at"])
    elapsed = (datetime.datetime.now(datetime.timezone.utc) - created).total_seconds()
    shards = {"n_shards": sharding["n_shards"], "done": sharding["done"]}
    extra = {
        "backend": sharding["backend"],
        "device": None,
        "scoring_seconds": round(sum(d["seconds"] for d in sharding["done"].values()), 3),
        "shards": shards,
    }
    key = run.key
    with run_lock(dataset, key, "compute_zcore", run.what):
        write_run(
            run, scores, extra, time.perf_counter() - elapsed, report,
            started_at=record["created_at"],
        )
    delete_arrays(dataset, prefix)
    report(1.0, f"ZCore scores written to '{run.score_field}' ({sharding['n_shards']} shards)")


def _active_record(dataset: fo.Dataset, key: str, run_id: str) -> dict:
    dataset.reload()
    record = load_record(dataset, key)
    sharding = (record or {}).get("sharding") or {}
    if sharding.get("run_id") != run_id or record.get("status") != STATUS_STARTED:
        state = (
            "completed" if sharding.get("run_id") == run_id else "was replaced by a newer run"
        )
        raise ValueError(
            f"the sharded ZCore run {run_id} of '{key}' on '{dataset.name}' {state}; "
            "this shard has nothing left to do"
        )
    return record


def _resumable(earlier: dict, run: PreparedRun, plan: dict) -> bool:
    """Whether an unfinished sharded run is this same run, so its finished shards count."""
    sharding = earlier.get("sharding")
    return bool(
        sharding
        and not run.overwrite
        and earlier.get("status") == STATUS_STARTED
        and earlier.get("embeddings_fields") == run.fields
        and earlier.get("params") == dataclasses.asdict(run.params)
        and all(sharding.get(k) == v for k, v in plan.items())
    )


def _fingerprint(run: PreparedRun) -> str:
    """A digest of what a shard scores: the unit, and each matrix's shape and values."""
    digest = hashlib.blake2b(run.unit.encode(), digest_size=16)
    for x in run.matrices:
        digest.update(repr(x.shape).encode())
        digest.update(np.ascontiguousarray(x))
    return digest.hexdigest()


def _arrays_prefix(score_field: str) -> str:
    return f"zcore/{score_field}/"
