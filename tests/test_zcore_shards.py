"""Sharded ZCore runs: shards as delegated operations on FiftyOne's queue, combined by the last.

The pool is synthetic (clustered 32-d vectors on a plain dataset), so the expected scores come
from the pure functions on the same matrix; the shards run on FiftyOne's executor, in this
process or on real ``fiftyone delegated launch`` workers.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from bson import ObjectId

import fiftyone as fo
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionError, ExecutionResult, ExecutionRunState

from annoloop.core.runs import load_record
from annoloop.core.shared_arrays import load_arrays
from annoloop.selection.algorithms.zcore import (
    ZCoreParams,
    combine_shard_scores,
    zcore_shard_scores,
)
from annoloop.selection.scoring import zcore_run, zcore_run_key
from fo_helpers import delegated_worker, queue_operator, run_operator, unique_name, wait_for_delegated

SETTINGS = {"n_sample": 3 * 2048, "redund_nn": 20, "seed": 4, "delegate": False}


def make_pool(rows: int, seed: int = 0) -> fo.Dataset:
    """A persistent dataset (workers need one) with clustered embeddings in ``embedding``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (12, 32))
    x = (centres[rng.integers(0, 12, rows)] + rng.normal(0, 1, (rows, 32))).astype(np.float32)
    dataset = fo.Dataset(unique_name("zcore-shards"), persistent=True)
    dataset.add_samples([fo.Sample(filepath=f"/pool/{i:06d}.jpg") for i in range(rows)])
    dataset.set_values("embedding", list(x))
    return dataset


@pytest.fixture
def pool():
    dataset = make_pool(600)
    yield dataset
    dataset.delete()


def expected_scores(dataset: fo.Dataset, settings: dict, n_shards: int) -> np.ndarray:
    x = np.stack(dataset.values("embedding")).astype(np.float32)
    params = ZCoreParams(**{k: v for k, v in settings.items() if k != "delegate"})
    return combine_shard_scores([zcore_shard_scores(x, params, k, n_shards) for k in range(n_shards)], params)


def start(dataset, shards: int, **extra) -> dict:
    return run_operator("compute_zcore", {**SETTINGS, "shards": shards, **extra}, dataset=dataset).result


def scored(dataset) -> int:
    """Samples holding a ZCore score (0 before the field exists)."""
    dataset.reload()
    return dataset.count("zcore") if dataset.has_field("zcore") else 0


def run_status(dataset) -> str | None:
    dataset.reload()
    return (load_record(dataset, zcore_run_key("zcore")) or {}).get("status")


def run_here(op_id) -> None:
    """Run one queued operation in this process, as a worker would."""
    service = DelegatedOperationService()
    service.execute_operation(service.get(op_id))


def shard_operations(dataset) -> dict:
    """The run's shard operations' ids, by shard."""
    operations = load_record(dataset, zcore_run_key("zcore"))["sharding"]["operations"]
    return {shard: ObjectId(op) for shard, op in operations.items()}


def test_shards_run_anywhere_and_the_last_one_writes_the_same_scores_as_the_pure_functions(pool):
    result = start(pool, 3)
    assert (result["shards"], result["queued"], result["resumed"]) == (3, [0, 1, 2], [])
    operations = shard_operations(pool)
    service = DelegatedOperationService()
    assert all(service.get(op).run_state == ExecutionRunState.QUEUED for op in operations.values())
    for shard in ("2", "0", "1"):  # any order: the sum is taken in shard order
        assert scored(pool) == 0
        run_here(operations[shard])
        assert service.get(operations[shard]).run_state == ExecutionRunState.COMPLETED
    np.testing.assert_array_equal(pool.values("zcore"), expected_scores(pool, SETTINGS, 3))
    record = zcore_run(pool)
    assert record["status"] == "completed" and record["shards"]["n_shards"] == 3
    assert sorted(record["shards"]["done"]) == ["0", "1", "2"]
    prefix = f"zcore/zcore/{result['run_id']}/"
    assert all(load_arrays(pool, f"{prefix}{k}") is None for k in range(3))  # partials deleted


def test_scores_of_three_shards_match_one_unsharded_run_up_to_summation_order(pool):
    plain = pool.clone(unique_name("zcore-plain"))
    try:
        run_operator("compute_zcore", SETTINGS, dataset=plain)
        start(pool, 3)
        for op in shard_operations(pool).values():
            run_here(op)
        np.testing.assert_allclose(pool.values("zcore"), plain.values("zcore"), atol=1e-12)
    finally:
        plain.delete()


def test_a_second_start_is_refused_while_shards_are_queued(pool):
    start(pool, 3)
    with pytest.raises(ExecutionError, match=r"sharded ZCore run .* \(0 of 3 shards done\)"):
        start(pool, 3)
    with pytest.raises(ExecutionError, match="sharded ZCore run"):
        start(pool, 3, overwrite=True)


def test_a_restarted_run_queues_only_the_shards_not_done_and_keeps_the_finished_ones(pool):
    start(pool, 3)
    first = shard_operations(pool)
    run_here(first["0"])
    service = DelegatedOperationService()
    for shard in ("1", "2"):  # as when their worker died: failed, never scored
        service.set_failed(first[shard], result=ExecutionResult(error="worker died"))
    again = start(pool, 3)
    assert (again["queued"], again["resumed"]) == ([1, 2], [0])
    second = shard_operations(pool)
    assert second["0"] == first["0"] and {second["1"], second["2"]}.isdisjoint(first.values())
    for shard in ("1", "2"):
        run_here(second[shard])
    np.testing.assert_array_equal(pool.values("zcore"), expected_scores(pool, SETTINGS, 3))


def test_a_start_with_other_settings_replaces_an_unfinished_run_instead_of_resuming_it(pool):
    start(pool, 3)
    first = shard_operations(pool)
    run_here(first["0"])
    service = DelegatedOperationService()
    for shard in ("1", "2"):
        service.set_failed(first[shard], result=ExecutionResult(error="worker died"))
    again = start(pool, 3, seed=5)
    assert (again["queued"], again["resumed"]) == ([0, 1, 2], [])
    run_here(first["0"])  # a stale shard of the replaced run does nothing
    assert service.get(first["0"]).run_state == ExecutionRunState.COMPLETED  # it had completed
    for op in shard_operations(pool).values():
        run_here(op)
    np.testing.assert_array_equal(
        pool.values("zcore"), expected_scores(pool, {**SETTINGS, "seed": 5}, 3)
    )


def test_a_shard_of_a_replaced_run_fails_saying_so_and_writes_nothing(pool):
    start(pool, 3)
    stale = shard_operations(pool)
    service = DelegatedOperationService()
    for op in stale.values():
        service.set_failed(op, result=ExecutionResult(error="worker died"))
    start(pool, 3, seed=5)
    rerun = service.rerun_operation(stale["1"])
    run_here(rerun.id)
    doc = service.get(rerun.id)
    assert doc.run_state == ExecutionRunState.FAILED
    assert "was replaced by a newer run" in doc.result.error
    assert scored(pool) == 0


def test_a_shard_refuses_embeddings_that_changed_since_the_run_was_planned(pool):
    start(pool, 3)
    sample = pool.first()
    sample["embedding"] = np.zeros(32, dtype=np.float32)
    sample.save()
    op = shard_operations(pool)["0"]
    run_here(op)
    doc = DelegatedOperationService().get(op)
    assert doc.run_state == ExecutionRunState.FAILED
    assert "changed since the sharded ZCore run" in doc.result.error
    assert scored(pool) == 0


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        (0, r"shards must be a whole number from 1 to 3 \(one per 2,048 of the 6,144"),
        (4, "shards must be a whole number from 1 to 3"),
        (2.5, "got 2.5"),
    ],
)
def test_a_bad_shard_count_is_refused_before_anything_is_recorded(pool, shards, message):
    with pytest.raises(ExecutionError, match=message):
        start(pool, shards)
    assert load_record(pool, zcore_run_key("zcore")) is None


@pytest.mark.slow
def test_two_workers_share_a_sharded_run_and_give_the_one_process_scores():
    # Shards of ~2-5 s each on this machine: long enough that both workers take some.
    settings = {"n_sample": 8 * 12 * 2048, "redund_nn": 100, "seed": 1}
    dataset = make_pool(20_000, seed=1)
    try:
        queued = queue_operator("compute_zcore", {**settings, "shards": 8}, dataset=dataset)
        with delegated_worker() as (first, log), delegated_worker() as (second, _):
            parent = wait_for_delegated(queued, log_path=log)
            assert parent.run_state == ExecutionRunState.COMPLETED, parent.result.error
            deadline = time.monotonic() + 600
            while run_status(dataset) != "completed":
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                assert first.poll() is None and second.poll() is None
                time.sleep(1.0)
        done = zcore_run(dataset)["shards"]["done"]
        # Each worker runs an operation in a child process of its own.
        assert {d["parent_pid"] for d in done.values()} == {first.pid, second.pid}
        np.testing.assert_array_equal(dataset.values("zcore"), expected_scores(dataset, settings, 8))
    finally:
        dataset.delete()
