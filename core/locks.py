"""Per-dataset write locks: one writer at a time, and a dead writer's lock expires.

Two annoloop writes to one dataset at the same instant (two planners both claiming
``batch:v1``, two ``create_splits`` merging their draws) must not interleave. A lock is one
document in annoloop's own collection of FiftyOne's MongoDB database, keyed by dataset: it
is taken atomically (an upsert that only matches a free or expired lock, so a second taker
hits the unique ``_id``), names its owner (host, pid, action) and carries a lease. The holder
renews the lease from a background thread while it works; a killed holder stops renewing,
so its lock expires after one lease and the next caller takes it — no manual clean-up.

Every process that reaches the same database (the App, a delegated worker, an SDK script
on another machine) sees the same locks. The same mechanism, keyed by name, marks a long
job as alive (:func:`run_lock`, :func:`run_is_alive`): a run record (a training run, a ZCore
run) left ``started`` whose run lock nobody holds is the leftover of a killed worker, and a
re-run replaces it without ``overwrite``.

A thread that already holds a lock takes it again at once (nested writes in one call never
deadlock on themselves).
"""

from __future__ import annotations

import datetime
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import fiftyone as fo
import fiftyone.core.odm.database as fod
from pymongo.errors import DuplicateKeyError

__all__ = [
    "DEFAULT_LEASE_S",
    "DEFAULT_WAIT_S",
    "RUN_LEASE_S",
    "DatasetLocked",
    "dataset_lock",
    "held_lock",
    "holds_lock",
    "lock_holder",
    "named_lock",
    "run_is_alive",
    "run_lock",
]

_COLLECTION = "annoloop_locks"
#: Seconds a lock outlives its last renewal: how long a killed writer blocks others.
DEFAULT_LEASE_S = 60.0
#: Seconds a caller waits for a busy dataset before it gives up with :class:`DatasetLocked`.
DEFAULT_WAIT_S = 10.0
#: Lease of a run's liveness lock: a killed run's record is replaceable this long after it died.
RUN_LEASE_S = 15.0


class DatasetLocked(RuntimeError):
    """Another writer holds the dataset's lock (the message says who, since when)."""


def _locks():
    return fod.get_db_conn()[_COLLECTION]


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def held_lock(key: str) -> dict | None:
    """The live lock ``key`` (``owner``, ``action``, ``since``, ``expires_at``), or None."""
    doc = _locks().find_one({"_id": key, "expires_at": {"$gt": _utcnow()}})
    return None if doc is None else {k: doc[k] for k in ("owner", "action", "since", "expires_at")}


def holds_lock(key: str) -> bool:
    """Whether the calling thread holds the lock ``key``."""
    return key in getattr(_HELD, "keys", ())


def lock_holder(dataset: fo.Dataset) -> dict | None:
    """The live write lock on ``dataset``, as :func:`held_lock` gives it, or None."""
    return held_lock(dataset.name)


def _try_take(key: str, token: str, owner: str, action: str, lease_s: float) -> bool:
    now = _utcnow()
    try:
        _locks().update_one(
            {"_id": key, "$or": [{"expires_at": {"$lte": now}}, {"token": token}]},
            {
                "$set": {
                    "token": token,
                    "owner": owner,
                    "action": action,
                    "since": now,
                    "expires_at": now + datetime.timedelta(seconds=lease_s),
                }
            },
            upsert=True,
        )
    except DuplicateKeyError:  # held by someone else, and not expired
        return False
    return True


def _renew(key: str, token: str, lease_s: float) -> bool:
    expires = _utcnow() + datetime.timedelta(seconds=lease_s)
    done = _locks().update_one({"_id": key, "token": token}, {"$set": {"expires_at": expires}})
    return done.matched_count == 1


#: Keys of the locks each thread of this process holds.
_HELD = threading.local()


@contextmanager
def dataset_lock(
    dataset: fo.Dataset,
    action: str,
    *,
    wait_s: float = DEFAULT_WAIT_S,
    lease_s: float = DEFAULT_LEASE_S,
) -> Iterator[None]:
    """Hold ``dataset``'s write lock for the duration of the ``with`` block.

    Parameters
    ----------
    dataset : Dataset
        The dataset to write (locks are per dataset name, across processes and machines).
    action : str
        What the holder does, shown to whoever has to wait (e.g. ``"plan_batch"``).
    wait_s : float, default=10
        How long to wait for a busy dataset before giving up.
    lease_s : float, default=60
        Lease length; renewed every ``lease_s / 3`` while the block runs.

    Raises
    ------
    DatasetLocked
        When another writer still holds the lock after ``wait_s``; nothing was written.

    Examples
    --------
    >>> with dataset_lock(dataset, "plan_batch"):  # doctest: +SKIP
    ...     write_the_batch()
    """
    with named_lock(
        dataset.name, action, what=f"dataset '{dataset.name}'", wait_s=wait_s, lease_s=lease_s
    ):
        yield


@contextmanager
def named_lock(
    key: str,
    action: str,
    *,
    what: str | None = None,
    wait_s: float = DEFAULT_WAIT_S,
    lease_s: float = DEFAULT_LEASE_S,
) -> Iterator[None]:
    """Hold the lock ``key`` (see :func:`dataset_lock`); ``what`` names it in the error."""
    if not hasattr(_HELD, "keys"):
        _HELD.keys = set()
    held = _HELD.keys
    if key in held:  # this thread holds it already
        yield
        return
    token = uuid.uuid4().hex
    owner = f"{socket.gethostname()}:{os.getpid()}"
    deadline = time.monotonic() + wait_s
    while not _try_take(key, token, owner, action, lease_s):
        if time.monotonic() >= deadline:
            holder = held_lock(key) or {}
            raise DatasetLocked(
                f"{what or key} is being written by {holder.get('action', '?')} "
                f"({holder.get('owner', '?')}, since {holder.get('since', '?')} UTC); nothing "
                f"was written — run this again when it has finished (a writer that died "
                f"releases the lock within {lease_s:.0f} s)"
            )
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(lease_s / 3):
            if not _renew(key, token, lease_s):
                return

    renewer = threading.Thread(target=heartbeat, name=f"annoloop-lock-{key}", daemon=True)
    renewer.start()
    held.add(key)
    try:
        yield
    finally:
        held.discard(key)
        stop.set()
        renewer.join()
        _locks().delete_one({"_id": key, "token": token})


def _run_lock_key(dataset: fo.Dataset, run_key: str) -> str:
    return f"{dataset.name}/{run_key}"


def run_lock(dataset: fo.Dataset, run_key: str, action: str, what: str):
    """Hold the liveness lock of run ``run_key`` of ``dataset`` while the run works.

    Taken at once or never (``wait_s=0``): a second process working on the same run gets
    :class:`DatasetLocked` naming the holder (``what`` names the run in the message).
    """
    return named_lock(
        _run_lock_key(dataset, run_key), action, what=what, wait_s=0, lease_s=RUN_LEASE_S
    )


def run_is_alive(dataset: fo.Dataset, run_key: str) -> bool:
    """Whether another process (or thread) holds the liveness lock of run ``run_key``.

    A record left ``started`` by a run that is not alive was left by a killed process.
    """
    key = _run_lock_key(dataset, run_key)
    return held_lock(key) is not None and not holds_lock(key)
