"""Sharded autolabel runs: one run's images split by scene over delegated operations.

Labeling one image never depends on another, so a run splits by unit (scene on grouped
datasets, sample on flat ones; :mod:`...core.unit_shards`) into operations on FiftyOne's own
delegated queue, which every ``fiftyone delegated launch`` worker on the same MongoDB takes
as it frees up. All shards label under one run id and one run record:

1. :func:`start_sharded_autolabel` checks the call as a plain run would (nothing is queued
   on bad input), then records the run ``started`` with its shard plan (or finds the same
   unfinished run, keeping the shards already done) and queues the shards not done.
2. :func:`run_autolabel_shard`, on whichever worker took it, labels the shard's images not
   yet done under the shard's own liveness lock, and marks the shard done.
3. The shard that finds every shard done completes the run: summary over the whole slice,
   golden scoring when asked, exactly as a plain run.

Recovery is the run's own: labels land chunk by chunk with the run id on every sample, so a
killed shard re-run (``fiftyone delegated rerun <id>``, or the same form again) labels only
what it had not. A plain (unsharded) call with the same settings resumes the same record and
finishes whatever is left.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

from ...core.locks import dataset_lock, run_lock
from ...core.runs import Progress, now, process_identity
from ...core.unit_shards import shard_sizes, shard_view
from ..runs import STATUS_COMPLETED, STATUS_STARTED
from .run import (
    AUTOLABEL_RUN_KEY_PREFIX,
    Labeled,
    save_run,
    start_run,
    unfinished_run,
    autolabel_run,
    check_autolabel,
    complete_run,
    label_pending,
    run_summary,
)

__all__ = ["run_autolabel_shard", "start_sharded_autolabel"]

#: ``queue_shard(shard, run_id) -> operation id``: how a shard reaches the workers.
QueueShard = Callable[[int, str], str]


def start_sharded_autolabel(samples, *, shards: int, queue_shard: QueueShard, **settings) -> dict:
    """Check an autolabel call, record its sharded run and queue the shards not done.

    Parameters
    ----------
    samples : Dataset or DatasetView
        The target, as for :func:`.run.autolabel`.
    shards : int
        Number of shards (>= 2); shards without a scene to label are not queued.
    queue_shard : callable
        ``queue_shard(shard, run_id)`` schedules one shard and returns its operation id.
    **settings
        Keyword arguments of :func:`.run.autolabel` (``progress`` is ignored).

    Returns
    -------
    dict
        ``run_id``, ``run_key``, ``output_field``, ``shards``, ``units_per_shard``,
        ``queued`` (shard indices queued now), ``resumed`` (shards an earlier attempt
        finished) and ``operations``.

    Raises
    ------
    ValueError
        What :func:`.run.autolabel` would raise, or a bad ``shards``; nothing is recorded or
        queued then.
    """
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 2:
        raise ValueError(f"shards must be a whole number >= 2; got {shards!r}")
    settings.pop("progress", None)
    call = check_autolabel(samples, **settings)
    dataset, field = call.dataset, call.output_field
    sizes = shard_sizes(samples, shards)
    with run_lock(dataset, f"autolabel:{field}", "autolabel", f"autolabel into '{field}'"):
        dataset.reload()
        record = unfinished_run(dataset, field, call.fingerprint)
        with_work = [k for k in range(shards) if sizes[k]]
        if record is None:
            run_id = f"{call.params['model']}_{uuid.uuid4().hex[:10]}"
            record = start_run(dataset, run_id, call.fingerprint, call.label_field, call.params)
        sharding = record.get("sharding") or {}
        if sharding.get("n_shards") != shards:  # new, or re-planned: labels done stay done
            sharding = {"n_shards": shards, "expected": [], "done": {}, "operations": {}}
        # Shards that gained scenes since an earlier attempt are waited for too.
        sharding["expected"] = sorted(set(sharding["expected"]) | set(with_work))
        record = {**record, "sharding": sharding, "status": STATUS_STARTED, "error": None}
        save_run(dataset, record, new=False)
    done = record["sharding"]["done"]
    todo = [k for k in with_work if str(k) not in done]
    queued = {str(k): queue_shard(k, record["run_id"]) for k in todo}
    with dataset_lock(dataset, "autolabel"):
        dataset.reload()  # a shard may have finished since the queueing began
        record = autolabel_run(dataset, record["run_id"])
        record["sharding"]["operations"].update(queued)
        save_run(dataset, record, new=False)
    return {
        "run_id": record["run_id"],
        "run_key": AUTOLABEL_RUN_KEY_PREFIX + record["run_id"],
        "output_field": field,
        "shards": shards,
        "units_per_shard": sizes,
        "queued": todo,
        "resumed": sorted(int(k) for k in done),
        "operations": queued,
    }


def run_autolabel_shard(
    samples, *, run_id: str, shard: int, progress: Progress | None = None, **settings
) -> dict:
    """Label one shard of a sharded run; the last shard done completes the run.

    ``samples`` and ``settings`` are those the run was started with (the operator queues
    each shard with them); the run's record must be the unfinished sharded run ``run_id``.

    Returns
    -------
    dict
        The shard's ``shard``, ``n_shards``, ``n_labeled``, ``seconds``, ``host``, ``pid``
        and ``parent_pid``; ``completed`` (this shard completed the run) and, when it did,
        ``summary`` (the run's result, as :func:`.run.autolabel` returns it).

    Raises
    ------
    ValueError
        When ``run_id`` is not an unfinished sharded run of these settings (it completed,
        or other settings were given), or ``shard`` is out of range.
    """
    started = time.perf_counter()
    report = progress or (lambda fraction, message: None)
    call = check_autolabel(samples, **settings)
    dataset = call.dataset
    record = _active(dataset, run_id, call.fingerprint)
    n_shards = record["sharding"]["n_shards"]
    views = [shard_view(view, shard, n_shards) for view in call.views]  # checks the shard
    key = f"autolabel:{call.output_field}:shard:{shard}"
    with run_lock(dataset, key, "autolabel", f"shard {shard} of autolabel run {run_id}"):
        labeled = label_pending(call, views, run_id, record, report)
        done = {
            **process_identity(),
            "n_labeled": labeled.n_pending,
            "loop_seconds": round(labeled.loop_seconds, 3),
            "below_threshold": labeled.labeler.below_threshold,
            "device": labeled.device,
            "seconds": round(time.perf_counter() - started, 3),
            "finished_at": now(),
        }
        with dataset_lock(dataset, "autolabel"):
            record = _active(dataset, run_id, call.fingerprint)
            record["sharding"]["done"][str(shard)] = done
            save_run(dataset, record, new=False)
    result = {"run_id": run_id, "shard": shard, "n_shards": n_shards, **done}
    sharding = record["sharding"]
    if not set(map(str, sharding["expected"])) <= set(sharding["done"]):
        return {**result, "completed": False}
    summary = _run_summary(call, run_id, labeled, record)
    complete_run(dataset, record, summary, call.score_golden)
    report(1.0, f"run {run_id} completed by shard {shard + 1} of {n_shards}")
    return {**result, "completed": True, "summary": summary}


def _run_summary(call, run_id: str, last: Labeled, record: dict) -> dict:
    """The run's result as a plain run gives it, its counts summed over the shards."""
    shards = record["sharding"]["done"].values()
    labeled = Labeled(
        n_pending=sum(entry["n_labeled"] for entry in shards),
        record=None,
        labeler=last.labeler,
        loop_seconds=sum(entry["loop_seconds"] for entry in shards),
        device=last.device,
    )
    summary = run_summary(call, run_id, labeled, time.perf_counter(), resumed=True, n_target=call.n_target)
    # Seconds from the run's start, not from this shard's: the run is what finished.
    begun = datetime.fromisoformat(record["started_at"])
    summary.update(
        status=STATUS_COMPLETED,
        below_threshold=sum(entry["below_threshold"] for entry in shards),
        seconds=(datetime.now(timezone.utc) - begun).total_seconds(),
        shards={"n_shards": record["sharding"]["n_shards"], "done": record["sharding"]["done"]},
    )
    return summary


def _active(dataset, run_id: str, fingerprint: str) -> dict:
    """The record of the unfinished sharded run ``run_id`` with these settings."""
    dataset.reload()
    try:
        record = autolabel_run(dataset, run_id)
    except ValueError:
        record = None
    if record is None or not record.get("sharding"):
        raise ValueError(f"no sharded autolabel run {run_id!r} on dataset '{dataset.name}'")
    if record["status"] == STATUS_COMPLETED:  # a failed shard's run stays open to its re-run
        raise ValueError(
            f"autolabel run {run_id} is {record['status']}; this shard has nothing left to do"
        )
    if record["fingerprint"] != fingerprint:
        raise ValueError(
            f"this shard's settings differ from those autolabel run {run_id} was started with; "
            "start the sharded run again from the autolabel form"
        )
    return record
