"""Training run records, stored on the dataset as FiftyOne custom runs.

A record is written *before* training starts (status ``started``) and rewritten once:
``completed`` with the weights path, parameters and metrics when training returned, or
``failed`` with the error when it raised. A record is never ``completed`` without weights,
so a crashed or failed training can never be mistaken for a finished one; a process killed
outright leaves ``started`` behind, which also does not look finished. Such a record is
*stale* once the run's liveness lock has expired (:func:`is_stale`): a re-run of the same
name replaces it without ``overwrite`` and first removes the folders the dead run wrote
(:func:`remove_dead_run_outputs`), so no orphan output folder is left behind.

Records are FiftyOne runs (``dataset.register_run`` / ``update_run_config``) with method
``annoloop.train`` under the key ``annoloop_train_<name>``: they live in the dataset's
documents in MongoDB, so a delegated worker or another machine on the same database sees
them, and ``dataset.list_runs()`` shows them next to evaluation and brain runs. Like every
FiftyOne run, they are read from the ``Dataset`` object's copy of its document: a process
holding the dataset while another one trains calls ``dataset.reload()`` to see the update.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import fiftyone as fo

from ..core import locks
from ..core.locks import RUN_LEASE_S, dataset_lock, run_lock
from ..core.runs import (
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_STARTED,
    load_record,
    now,
    record_keys,
    save_record,
    update_record,
)
from ..core.names import TRAIN_RUN_KEY_PREFIX, TRAIN_RUN_METHOD

__all__ = [
    "STATUS_COMPLETED",
    "STATUS_FAILED",
    "RUN_LEASE_S",
    "STATUS_STARTED",
    "RunRecord",
    "complete_run",
    "fail_run",
    "get_run",
    "is_stale",
    "list_runs",
    "dead_run_output_dir",
    "remove_dead_run_outputs",
    "run_is_alive",
    "run_key",
    "start_run",
    "training_run",
    "update_outputs",
]


_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


@dataclass(frozen=True)
class RunRecord:
    """One training run.

    Attributes
    ----------
    name : str
        Run name (letters, digits, underscores).
    status : str
        ``"started"``, ``"completed"`` or ``"failed"``.
    params : dict
        Parameters the run was started with (slice, label field, model, epochs, ...).
    started_at : str
        UTC ISO timestamp of the start.
    finished_at : str or None
        UTC ISO timestamp of completion or failure.
    weights : str or None
        Trained checkpoint; set only when completed.
    metrics : dict
        Metrics recorded on completion (e.g. Ultralytics' validation metrics).
    outputs : dict
        Other JSON results recorded on completion (e.g. the export summary).
    error : str or None
        Error message when failed.
    """

    name: str
    status: str
    params: dict = field(default_factory=dict)
    started_at: str = ""
    finished_at: str | None = None
    weights: str | None = None
    metrics: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def key(self) -> str:
        """The FiftyOne run key."""
        return run_key(self.name)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


def run_key(name: str) -> str:
    """FiftyOne run key of the training run ``name``; validates the name."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"run name must be 1-64 letters, digits or underscores; got {name!r}"
        )
    return TRAIN_RUN_KEY_PREFIX + name


def start_run(
    dataset: fo.Dataset, name: str, params: Mapping, *, overwrite: bool = False
) -> RunRecord:
    """Record that training run ``name`` has started.

    Parameters
    ----------
    dataset : Dataset
        Dataset the run trains on.
    name : str
        Run name; an existing run of that name is an error unless ``overwrite``.
    params : mapping
        JSON-serialisable parameters.
    overwrite : bool, default=False
        Replace an existing record of the same name.

    Returns
    -------
    RunRecord
    """
    key = run_key(name)
    # Claiming the name is check-then-write: under the dataset's lock, on a fresh copy of the
    # dataset document, so two processes can never both claim one name.
    with dataset_lock(dataset, "train_detector"):
        dataset.reload()
        if dataset.has_run(key) and not (overwrite or is_stale(dataset, name)):
            raise ValueError(
                f"training run '{name}' already exists on '{dataset.name}' (status "
                f"{get_run(dataset, name).status}); choose another name or overwrite it"
            )
        record = RunRecord(
            name=name, status=STATUS_STARTED, params=dict(params), started_at=now()
        )
        save_record(dataset, key, TRAIN_RUN_METHOD, record.to_dict(), overwrite=True)
    return record


def run_is_alive(dataset: fo.Dataset, name: str) -> bool:
    """Whether another process (or thread) is training run ``name`` now: it holds the run's lock.

    A ``started`` record that is not alive was left by a killed process: re-running the
    same name replaces it without ``overwrite``.
    """
    return locks.run_is_alive(dataset, run_key(name))


def is_stale(dataset: fo.Dataset, name: str) -> bool:
    """Whether run ``name`` is a leftover of a killed trainer: ``started``, and not alive."""
    return get_run(dataset, name).status == STATUS_STARTED and not run_is_alive(dataset, name)


#: Sub-folders of a run's ``output_dir`` that training writes: the YOLO export, Ultralytics' run.
_OUTPUT_PARTS = ("data", "train")


def dead_run_output_dir(dataset: fo.Dataset, name: str) -> str | None:
    """The ``output_dir`` of run ``name`` when its record is stale (a killed trainer's),
    else None."""
    if not dataset.has_run(run_key(name)) or not is_stale(dataset, name):
        return None
    return get_run(dataset, name).params.get("output_dir") or None


def remove_dead_run_outputs(dataset: fo.Dataset, name: str) -> list[str]:
    """Remove what a killed trainer of run ``name`` wrote, before a re-run replaces its record.

    Only a stale record's folders go (``<output_dir>/data`` and ``<output_dir>/train``, then
    ``output_dir`` itself if that leaves it empty); anything else in a user's ``output_dir``
    stays. A live, finished or absent run is left alone.

    Returns
    -------
    list of str
        The folders removed.
    """
    output_dir = dead_run_output_dir(dataset, name)
    if not output_dir or not os.path.isdir(output_dir):
        return []
    removed = []
    for part in _OUTPUT_PARTS:
        path = os.path.join(output_dir, part)
        if os.path.isdir(path):
            shutil.rmtree(path)
            removed.append(path)
    if not os.listdir(output_dir):
        os.rmdir(output_dir)
        removed.append(output_dir)
    return removed


def complete_run(
    dataset: fo.Dataset,
    name: str,
    *,
    weights: str,
    metrics: Mapping | None = None,
    outputs: Mapping | None = None,
) -> RunRecord:
    """Mark a started run completed with its weights, metrics and other outputs."""
    record = _started(dataset, name)
    if not weights:
        raise ValueError(f"run '{name}' cannot complete without a weights path")
    record = RunRecord(
        **{
            **record.to_dict(),
            "status": STATUS_COMPLETED,
            "finished_at": now(),
            "weights": str(weights),
            "metrics": dict(metrics or {}),
            "outputs": dict(outputs or {}),
        }
    )
    update_record(dataset, record.key, TRAIN_RUN_METHOD, record.to_dict())
    return record


def fail_run(dataset: fo.Dataset, name: str, error: BaseException | str) -> RunRecord:
    """Mark a started run failed with the error message."""
    record = _started(dataset, name)
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    record = RunRecord(
        **{**record.to_dict(), "status": STATUS_FAILED, "finished_at": now(), "error": message}
    )
    update_record(dataset, record.key, TRAIN_RUN_METHOD, record.to_dict())
    return record


def update_outputs(dataset: fo.Dataset, name: str, outputs: Mapping) -> RunRecord:
    """Merge ``outputs`` into a run's outputs (e.g. test-set metrics found later)."""
    record = get_run(dataset, name)
    record = RunRecord(**{**record.to_dict(), "outputs": {**record.outputs, **dict(outputs)}})
    update_record(dataset, record.key, TRAIN_RUN_METHOD, record.to_dict())
    return record


def get_run(dataset: fo.Dataset, name: str) -> RunRecord:
    """The record of training run ``name``."""
    key = run_key(name)
    stored = load_record(dataset, key)
    if stored is None:
        known = [r.name for r in list_runs(dataset)]
        raise ValueError(f"no training run '{name}' on '{dataset.name}'; runs: {known}")
    return RunRecord(**{k: v for k, v in stored.items() if k in RunRecord.__dataclass_fields__})


def list_runs(dataset: fo.Dataset, status: str | None = None) -> list[RunRecord]:
    """Training run records, oldest start first; only those with ``status`` when given."""
    records = [
        get_run(dataset, key[len(TRAIN_RUN_KEY_PREFIX) :])
        for key in record_keys(dataset, TRAIN_RUN_METHOD)
    ]
    records.sort(key=lambda r: r.started_at)
    return [r for r in records if status is None or r.status == status]


@contextmanager
def training_run(
    dataset: fo.Dataset, name: str, params: Mapping, *, overwrite: bool = False
) -> Iterator[RunRecord]:
    """Start a run record; mark it failed if the body raises, then re-raise.

    The body completes the run itself with :func:`complete_run` once it has weights; a
    body that returns without doing so leaves the run failed, never looking finished.
    """
    # Held while training: it tells a later re-run that this record is not a leftover, and
    # refuses a second process training the same name at the same time.
    what = f"training run '{name}' of '{dataset.name}'"
    with run_lock(dataset, run_key(name), "train_detector", what):
        # A killed trainer's folders go before its record is replaced, never orphaned.
        remove_dead_run_outputs(dataset, name)
        record = start_run(dataset, name, params, overwrite=overwrite)
        try:
            yield record
        except BaseException as err:
            fail_run(dataset, name, err)
            raise
        if get_run(dataset, name).status != STATUS_COMPLETED:
            fail_run(dataset, name, "training ended without recording weights")


def _started(dataset: fo.Dataset, name: str) -> RunRecord:
    record = get_run(dataset, name)
    if record.status != STATUS_STARTED:
        raise ValueError(f"training run '{name}' is {record.status}, not {STATUS_STARTED}")
    return record


