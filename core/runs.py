"""Run records: how every stage leaves a durable account of what it did.

A record is a FiftyOne custom run on the dataset (``register_run`` with a config built by
``init_run``), keyed ``annoloop_<stage>_<name>`` with method ``annoloop.<stage>``. It lives in
the dataset's document in MongoDB, so a delegated worker or a second machine on the same
database sees it, and ``dataset.list_runs()`` shows it beside evaluations and brain runs.
Large payloads (fingerprints, histories) go to the run's results, which FiftyOne stores in
GridFS rather than in the dataset document.

A process that holds a ``Dataset`` while another writes a record calls ``dataset.reload()``
first: FiftyOne reads runs from its in-memory copy of the dataset document.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

import fiftyone as fo

from .locks import dataset_lock

__all__ = [
    "STATUS_COMPLETED",
    "STATUS_FAILED",
    "STATUS_STARTED",
    "Progress",
    "load_record",
    "load_records",
    "load_results",
    "now",
    "process_identity",
    "record_keys",
    "save_record",
    "update_record",
]

#: Status of a record written when its run starts: ``started`` until the run completes or
#: fails; one left ``started`` by a run that is no longer alive was left by a killed process.
STATUS_STARTED = "started"
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"

#: ``progress(fraction, message)``: every long-running core function reports through one.
Progress = Callable[[float, str], None]

# Keys FiftyOne adds to every run config; they are bookkeeping, not the record.
_BOOKKEEPING = ("cls", "type", "method")


def now() -> str:
    """The current UTC time, ISO 8601 with milliseconds: the timestamp of every record."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def process_identity() -> dict:
    """Where this code runs: ``host``, ``pid`` and ``parent_pid`` (on a monitored worker,
    each operation runs in a child process, so the parent is the worker)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "parent_pid": os.getppid()}


def save_record(
    dataset: fo.Dataset,
    key: str,
    method: str,
    record: Mapping[str, Any],
    *,
    results: Mapping[str, Any] | None = None,
    overwrite: bool = True,
) -> None:
    """Register run ``key`` holding ``record`` (JSON-like values), with optional ``results``.

    With ``overwrite=False`` an existing record of the same key makes FiftyOne raise.
    FiftyOne saves the dataset document's whole map of runs, so the record is registered
    under the dataset's lock on a fresh copy: a record another process saved meanwhile stays.
    """
    with dataset_lock(dataset, f"record {key}"):
        dataset.reload()
        dataset.register_run(key, dataset.init_run(method=method, **record), overwrite=overwrite)
    if results is not None:
        dataset.save_run_results(key, dataset.init_run_results(key, **results), cache=False)


def update_record(dataset: fo.Dataset, key: str, method: str, record: Mapping[str, Any]) -> None:
    """Replace the fields of the existing record ``key`` (its results are kept)."""
    dataset.update_run_config(key, dataset.init_run(method=method, **record))


def load_record(dataset: fo.Dataset, key: str) -> dict | None:
    """Record ``key`` as plain JSON (no FiftyOne bookkeeping keys), or None when absent."""
    if not dataset.has_run(key):
        return None
    config = dataset.get_run_info(key).config.serialize()
    # A JSON round trip turns the OrderedDicts FiftyOne deserialises into plain dicts.
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in _BOOKKEEPING}))


def load_records(dataset: fo.Dataset, method: str) -> list[dict]:
    """Every record written by ``method``, as :func:`load_record` returns them."""
    return [load_record(dataset, key) for key in record_keys(dataset, method)]


def load_results(dataset: fo.Dataset, key: str) -> Any | None:
    """The results stored with record ``key`` (attributes as saved), or None when absent."""
    if not dataset.has_run(key):
        return None
    return dataset.load_run_results(key, cache=False)


def record_keys(dataset: fo.Dataset, method: str) -> list[str]:
    """Keys of the records written by ``method``."""
    return list(dataset.list_runs(method=method))
