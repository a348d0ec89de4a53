"""Training run names are claimed once, and a killed trainer's record does not block a re-run."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
import uuid

import fiftyone as fo
import pytest

from annoloop.core.locks import DatasetLocked
from annoloop.training import runs
from fo_helpers import python_process


#: A one-epoch training on the tiny dataset, as SDK keyword arguments.
SDK_TRAINING = {"slice_name": "left", "epochs": 1, "imgsz": 64, "batch": 8}


@pytest.fixture
def dataset():
    ds = fo.Dataset(f"runs-{uuid.uuid4().hex[:8]}", persistent=True)
    yield ds
    ds.delete()


def train_in_another_process(name: str, seconds: float) -> subprocess.Popen:
    """A process inside ``training_run(dataset, "race")`` for ``seconds`` (it never completes)."""
    code = textwrap.dedent(
        f"""
        import time, fiftyone as fo
        from annoloop.training import runs
        with runs.training_run(fo.load_dataset({name!r}), "race", {{"who": "first"}}):
            print("training", flush=True)
            time.sleep({seconds})
        """
    )
    return python_process(code, "training", start_new_session=True)


def test_a_second_process_cannot_train_a_run_name_that_is_being_trained(dataset):
    first = train_in_another_process(dataset.name, seconds=60)
    try:
        assert runs.run_is_alive(dataset, "race")
        with pytest.raises(DatasetLocked, match=r"training run 'race' .* is being written by"):
            with runs.training_run(dataset, "race", {"who": "second"}):
                pytest.fail("two processes trained one run name")
        dataset.reload()
        assert runs.get_run(dataset, "race").params == {"who": "first"}
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def test_a_killed_trainers_record_is_replaced_by_a_rerun_without_overwrite(dataset):
    first = train_in_another_process(dataset.name, seconds=600)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    dataset.reload()
    assert runs.get_run(dataset, "race").status == runs.STATUS_STARTED
    deadline = time.monotonic() + runs.RUN_LEASE_S + 10
    while runs.run_is_alive(dataset, "race"):  # the dead trainer's lease runs out
        assert time.monotonic() < deadline
        time.sleep(0.5)
    record = runs.start_run(dataset, "race", {"who": "rerun"})
    assert record.params == {"who": "rerun"} and record.status == runs.STATUS_STARTED


def test_a_finished_run_name_stays_taken_without_overwrite(dataset):
    runs.start_run(dataset, "done", {})
    runs.fail_run(dataset, "done", "boom")
    with pytest.raises(ValueError, match="training run 'done' already exists"):
        runs.start_run(dataset, "done", {})


def test_a_trainer_killed_while_exporting_is_finished_by_one_rerun_into_the_same_folder(tmp_path):
    from annoloop.training.detector import train_detector
    from test_training import build_tiny_dataset

    dataset = build_tiny_dataset()
    output_dir = str(tmp_path / "cut")
    params = SDK_TRAINING
    # Killed at a known point: the images and labels are on disk, the export not yet checked.
    code = textwrap.dedent(
        f"""
        import os, signal, fiftyone as fo
        from annoloop.training import export
        def killed(*args):
            print("exported", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        export._check_export = killed
        from annoloop.training.detector import train_detector
        train_detector(fo.load_dataset({dataset.name!r}), run_name="cut", output_dir={output_dir!r},
                       **{params!r})
        """
    )
    python_process(code, "exported").wait()
    dataset.reload()
    assert runs.get_run(dataset, "cut").status == runs.STATUS_STARTED
    assert os.listdir(os.path.join(output_dir, "data"))
    deadline = time.monotonic() + runs.RUN_LEASE_S + 10
    while runs.run_is_alive(dataset, "cut"):
        assert time.monotonic() < deadline, "the killed trainer's lease never ran out"
        time.sleep(0.5)

    result = train_detector(dataset, run_name="cut", output_dir=output_dir, **params)

    dataset.reload()
    [record] = runs.list_runs(dataset)
    assert record.status == runs.STATUS_COMPLETED and record.weights == result["weights"]
    assert sorted(os.listdir(output_dir)) == ["data", "train"]
    dataset.delete()


def test_bad_training_input_is_refused_before_a_run_record_is_written():
    from annoloop.training.detector import train_detector
    from test_training import build_tiny_dataset

    dataset = build_tiny_dataset(num_groups=7, num_test=5, num_unlabeled=1)
    params = SDK_TRAINING
    with pytest.raises(ValueError, match="need at least 2 labeled samples to train"):
        train_detector(dataset, run_name="too_few", **params)
    dataset.reload()
    assert runs.list_runs(dataset) == []
    dataset.delete()
