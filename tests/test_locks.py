"""Per-dataset write locks, across real processes on the test database."""

from __future__ import annotations

import signal
import subprocess
import textwrap
import threading
import time
import uuid

import fiftyone as fo
import pytest

from annoloop.core.locks import DatasetLocked, dataset_lock, lock_holder
from fo_helpers import python_process


@pytest.fixture
def dataset():
    ds = fo.Dataset(f"locks-{uuid.uuid4().hex[:8]}", persistent=True)
    yield ds
    ds.delete()


def hold_in_another_process(name: str, seconds: float, lease_s: float = 60.0) -> subprocess.Popen:
    code = textwrap.dedent(
        f"""
        import time, fiftyone as fo
        from annoloop.core.locks import dataset_lock
        with dataset_lock(fo.load_dataset({name!r}), "create_splits", lease_s={lease_s}):
            print("held", flush=True)
            time.sleep({seconds})
        """
    )
    return python_process(code, "held")


def test_a_second_writer_is_refused_with_who_holds_the_dataset(dataset):
    holder = hold_in_another_process(dataset.name, seconds=30)
    try:
        with pytest.raises(DatasetLocked, match=r"being written by create_splits .*nothing was"):
            with dataset_lock(dataset, "plan_batch", wait_s=0.5):
                pytest.fail("the lock was taken twice")
        assert lock_holder(dataset)["action"] == "create_splits"
    finally:
        holder.kill()
        holder.wait()


def test_a_waiting_writer_gets_the_lock_when_the_holder_finishes(dataset):
    holder = hold_in_another_process(dataset.name, seconds=1)
    with dataset_lock(dataset, "plan_batch", wait_s=30):
        assert lock_holder(dataset)["action"] == "plan_batch"
    holder.wait()
    assert lock_holder(dataset) is None


def test_a_killed_holder_releases_the_dataset_within_one_lease(dataset):
    holder = hold_in_another_process(dataset.name, seconds=60, lease_s=1.0)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with dataset_lock(dataset, "plan_batch", wait_s=10):
        assert lock_holder(dataset)["action"] == "plan_batch"


def test_a_live_holder_keeps_its_lock_past_the_lease_by_renewing_it(dataset):
    released = threading.Event()

    def hold() -> None:
        with dataset_lock(dataset, "train_detector", lease_s=0.6):
            released.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        time.sleep(2.0)  # more than three leases
        with pytest.raises(DatasetLocked, match="train_detector"):
            with dataset_lock(dataset, "plan_batch", wait_s=0):
                pass
    finally:
        released.set()
        thread.join()


def test_the_lock_is_released_when_the_work_fails(dataset):
    with pytest.raises(ValueError, match="bad input"):
        with dataset_lock(dataset, "plan_batch"):
            raise ValueError("bad input")
    assert lock_holder(dataset) is None
