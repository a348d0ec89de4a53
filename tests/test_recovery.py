"""A worker killed in the middle of a long operation: one re-run finishes it, nothing doubled.

Each test runs the operation on a real, monitored worker (``scripts/worker.sh``), kills it at
a known point, recovers the way the README says (``fiftyone delegated fail`` when the whole
worker died, then ``fiftyone delegated rerun``) and compares the result with an uninterrupted
run. A run killed mid-write is reproduced in a helper process that stops at a progress report.
"""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionRunState

from annoloop.core.locks import lock_holder, run_is_alive
from annoloop.demo.dataset import load_demo_dataset
from annoloop.selection.algorithms.zcore import ZCoreParams
from annoloop.selection.embed import INFO_KEY, compute_embeddings
from annoloop.selection.scoring import compute_zcore, zcore_run, zcore_run_key
from annoloop.training import runs
from fo_helpers import (
    delegated_worker,
    fail_and_rerun,
    kill_operation,
    kill_worker,
    progress_label,
    python_process,
    queue_operator,
    rerun,
    run_operator,
    unique_name,
    wait_for_delegated,
    wait_until,
    wait_until_dead,
)
from test_training import TINY_TRAINING, build_tiny_dataset

pytestmark = pytest.mark.slow

NUM_SCENES = 20
SLICES = ("left", "right", "pcd")
EMBED = {"patches": True, "patches_field": "oracle"}
#: Scoring takes seconds: long enough to be killed in the middle.
ZCORE = {"n_sample": 1_000_000, "redund_nn": 6, "seed": 0}


@pytest.fixture
def demo():
    dataset = load_demo_dataset(unique_name("recovery"), num_scenes=NUM_SCENES, seed=1)
    dataset.persistent = True  # the worker is another process
    yield dataset
    dataset.delete()


def stored_embeddings(dataset) -> dict:
    """(slice, path) -> {filepath: value} of every embedding the run writes."""
    out = {}
    for slice_name in SLICES:
        view = dataset.select_group_slices(slice_name)
        paths = ["embedding", "group_embedding"]
        if slice_name != "pcd":
            paths.append("oracle.detections.embedding")
        filepaths, *columns = view.values(["filepath", *paths])
        for path, column in zip(paths, columns):
            out[slice_name, path] = dict(zip(filepaths, column))
    return out


def assert_same_embeddings(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for key, values in expected.items():
        assert got[key].keys() == values.keys(), key
        for filepath, value in values.items():
            assert value is not None, (key, filepath)
            np.testing.assert_array_equal(np.asarray(got[key][filepath]), np.asarray(value))


def scores_by_filepath(dataset) -> dict:
    view = dataset.select_group_slices(_allow_mixed=True)
    return dict(zip(*view.values(["filepath", "zcore"])))


def test_an_embedding_run_whose_process_was_killed_is_finished_by_one_rerun(demo):
    reference = demo.clone(unique_name("reference"))
    compute_embeddings(reference, patches_field="oracle")
    right = demo.select_group_slices("right")
    objects = right.count("oracle.detections")

    op_id = queue_operator("compute_embeddings", {**EMBED, "delegate": True}, dataset=demo)
    with delegated_worker() as (worker, log_path):
        # Camera slices and their objects are written as each slice finishes; the point
        # clouds then take seconds: kill the operation's process there.
        wait_until(lambda: right.count("oracle.detections.embedding") == objects, worker, log_path)
        kill_operation(worker)
        dead = wait_for_delegated(op_id, log_path=log_path)
        assert dead.run_state == ExecutionRunState.FAILED
        assert "died before it finished" in dead.result.error, dead.result.error
        demo.reload()  # the worker declared the fields
        assert demo.select_group_slices("pcd").count("embedding") == 0
        assert demo.get_field("group_embedding") is None

        doc = wait_for_delegated(rerun(op_id), log_path=log_path)  # the same worker serves it
    assert doc.run_state == ExecutionRunState.COMPLETED, doc.result
    summary = doc.result.result
    assert {s: v["computed"] for s, v in summary["slices"].items()} == {
        "left": 0, "right": 0, "pcd": NUM_SCENES
    }
    assert summary["patches"]["computed"] == 0 and summary["groups_written"] == NUM_SCENES
    demo.reload()
    assert_same_embeddings(stored_embeddings(demo), stored_embeddings(reference))
    assert demo.info[INFO_KEY] == reference.info[INFO_KEY]
    assert right.count("oracle.detections") == objects  # no object doubled
    reference.delete()


def test_a_zcore_run_whose_worker_died_is_replaced_by_one_rerun_without_overwrite(demo):
    compute_embeddings(demo)
    reference = demo.clone(unique_name("reference"))
    compute_zcore(reference, params=ZCoreParams(**ZCORE))

    op_id = queue_operator("compute_zcore", {**ZCORE, "delegate": True}, dataset=demo)
    with delegated_worker() as (worker, log_path):
        wait_until(lambda: progress_label(op_id).startswith("scoring"), worker, log_path)
        kill_worker(worker)
    # Nothing was alive to notice: FiftyOne leaves the operation running.
    service = DelegatedOperationService()
    assert service.get(op_id).run_state == ExecutionRunState.RUNNING
    demo.reload()
    assert demo.get_field("zcore") is None and not demo.has_run(zcore_run_key())
    wait_until_dead(lambda: run_is_alive(demo, zcore_run_key()))

    rerun_id = fail_and_rerun(op_id)
    assert service.get(op_id).run_state == ExecutionRunState.FAILED
    with delegated_worker() as (worker, log_path):
        doc = wait_for_delegated(rerun_id, log_path=log_path)
    assert doc.run_state == ExecutionRunState.COMPLETED, doc.result
    demo.reload()
    assert zcore_run(demo)["n"] == NUM_SCENES
    assert scores_by_filepath(demo) == scores_by_filepath(reference)
    reference.delete()


def test_a_zcore_run_killed_mid_write_is_recognised_as_unfinished_and_replaced(demo):
    compute_embeddings(demo)
    reference = demo.clone(unique_name("reference"))
    compute_zcore(reference, params=ZCoreParams(**ZCORE))

    # A process that stops for good right after writing one slice's scores.
    code = textwrap.dedent(
        f"""
        import time, fiftyone as fo
        from annoloop.selection.algorithms.zcore import ZCoreParams
        from annoloop.selection.scoring import compute_zcore

        def progress(fraction, label):
            if label.startswith("scores written on "):
                print("written", flush=True)
                time.sleep(600)

        compute_zcore(fo.load_dataset({demo.name!r}), params=ZCoreParams(**{ZCORE!r}),
                      progress=progress)
        """
    )
    writer = python_process(code, "written", start_new_session=True)
    os.killpg(writer.pid, signal.SIGKILL)
    writer.wait()
    demo.reload()
    counts = [demo.select_group_slices(s).count("zcore") for s in SLICES]
    assert sorted(counts) == [0, 0, NUM_SCENES], counts
    with pytest.raises(ValueError, match="is writing 'zcore' .* now; wait for it to finish"):
        compute_zcore(demo, params=ZCoreParams(**ZCORE))  # the dead run's lease still runs
    wait_until_dead(lambda: run_is_alive(demo, zcore_run_key()) or lock_holder(demo))
    with pytest.raises(ValueError, match="did not finish .* without overwrite, to replace it"):
        zcore_run(demo)

    run_operator("compute_zcore", {**ZCORE, "delegate": False}, dataset=demo)  # no overwrite
    demo.reload()
    assert zcore_run(demo)["samples_written"] == NUM_SCENES * len(SLICES)
    assert scores_by_filepath(demo) == scores_by_filepath(reference)
    reference.delete()


def test_a_training_whose_worker_died_is_replaced_by_one_rerun_leaving_no_orphan_folder():
    dataset = build_tiny_dataset()
    params = {**TINY_TRAINING, "epochs": 3, "run_name": "killed", "delegate": True}
    op_id = queue_operator("train_detector", params, dataset=dataset.name)

    def first_epoch_saved() -> bool:
        dataset.reload()
        if not dataset.has_run(runs.run_key("killed")):
            return False
        output_dir = runs.get_run(dataset, "killed").params["output_dir"]
        return (Path(output_dir) / "train" / "weights" / "last.pt").is_file()

    with delegated_worker() as (worker, log_path):
        wait_until(first_epoch_saved, worker, log_path)
        kill_worker(worker)
    dataset.reload()
    dead = runs.get_run(dataset, "killed")
    assert dead.status == runs.STATUS_STARTED and Path(dead.params["output_dir"]).is_dir()
    wait_until_dead(lambda: runs.run_is_alive(dataset, "killed"))

    rerun_id = fail_and_rerun(op_id)
    with delegated_worker() as (worker, log_path):
        doc = wait_for_delegated(rerun_id, log_path=log_path)
    assert doc.run_state == ExecutionRunState.COMPLETED, doc.result
    dataset.reload()
    [record] = runs.list_runs(dataset)
    assert record.name == "killed" and record.status == runs.STATUS_COMPLETED
    assert Path(record.weights).is_file()
    train_root = Path(record.params["output_dir"]).parent
    assert [p.name for p in train_root.iterdir()] == [Path(record.params["output_dir"]).name]
    dataset.delete()

