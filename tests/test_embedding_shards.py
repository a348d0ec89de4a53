"""Sharded embedding runs: compute_embeddings split by scene into delegated operations that any
worker may take, giving the embeddings of one unsharded run."""

from __future__ import annotations

import numpy as np
import pytest
from bson import ObjectId

from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionError, ExecutionRunState

from annoloop.core.algorithms.key_shards import key_shards
from annoloop.demo.dataset import load_demo_dataset
from annoloop.core.unit_shards import shard_view
from fo_helpers import delegated_worker, run_operator, unique_name, wait_for_delegated

SLICES = ("left", "right", "pcd")
RUN_NOW = {"delegate": False}


@pytest.fixture(scope="module")
def demo():
    dataset = load_demo_dataset(unique_name("emb-shards"), num_scenes=12, seed=3, image_size=(192, 64))
    yield dataset
    dataset.delete()


@pytest.fixture
def dataset(demo):
    clone = demo.clone(unique_name("emb-shards-clone"))
    clone.persistent = True  # workers are other processes
    yield clone
    clone.delete()


@pytest.fixture(scope="module")
def unsharded(demo):
    """Every slice's and scene's embeddings of one plain run, by sample id."""
    clone = demo.clone(unique_name("emb-plain"))
    try:
        run_operator("compute_embeddings", {**RUN_NOW, "patches": False}, dataset=clone)
        return vectors(clone)
    finally:
        clone.delete()


def vectors(dataset) -> dict:
    out = {}
    for name in SLICES:
        ids, emb, scene = dataset.select_group_slices(name).values(["id", "embedding", "group_embedding"])
        out.update({(name, i): (e, g) for i, e, g in zip(ids, emb, scene)})
    return out


def assert_same_vectors(dataset, expected: dict) -> None:
    dataset.reload()  # the fields were declared by another process
    found = vectors(dataset)
    assert found.keys() == expected.keys()
    for key, (emb, scene) in expected.items():
        np.testing.assert_allclose(found[key][0], emb, atol=1e-6, err_msg=str(key))
        np.testing.assert_allclose(found[key][1], scene, atol=1e-6, err_msg=str(key))


def start(dataset, shards: int, **params) -> dict:
    return run_operator(
        "compute_embeddings", {**RUN_NOW, "patches": False, "shards": shards, **params}, dataset=dataset
    ).result


def test_a_keys_shard_depends_on_the_key_alone_so_new_keys_never_move_old_ones():
    keys = [str(ObjectId()) for _ in range(4000)]
    first = key_shards(keys, 4)
    more = key_shards(keys + [str(ObjectId()) for _ in range(1000)], 4)
    np.testing.assert_array_equal(more[: len(keys)], first)
    counts = np.bincount(first, minlength=4)
    assert counts.min() > 0.8 * len(keys) / 4  # spread about evenly
    with pytest.raises(ValueError, match="n_shards"):
        key_shards(keys, 0)


def test_shard_views_split_the_scenes_with_every_slice_of_each(demo):
    groups = [set(shard_view(demo, k, 3).distinct("group.id")) for k in range(3)]
    assert set().union(*groups) == set(demo.distinct("group.id"))
    assert sum(map(len, groups)) == len(demo.distinct("group.id"))  # disjoint
    for k in range(3):
        view = shard_view(demo, k, 3)
        assert {s: len(view.select_group_slices(s)) for s in SLICES} == {s: len(groups[k]) for s in SLICES}


def test_shards_queued_by_the_form_and_run_in_any_order_give_the_unsharded_embeddings(dataset, unsharded):
    result = start(dataset, 3)
    assert result["shards"] == 3 and result["queued"] == len(result["operations"]) >= 2
    assert sum(result["units_per_shard"]) == 12
    assert result["to_embed"] == {s: 12 for s in SLICES}
    service = DelegatedOperationService()
    assert not dataset.has_field("embedding") or dataset.count("embedding") == 0
    for op in reversed(result["operations"]):
        assert service.get(ObjectId(op)).run_state == ExecutionRunState.QUEUED
        service.execute_operation(service.get(ObjectId(op)))  # as a worker would
        assert service.get(ObjectId(op)).run_state == ExecutionRunState.COMPLETED
    assert_same_vectors(dataset, unsharded)


def test_a_bad_call_fails_before_any_shard_is_queued(dataset):
    service = DelegatedOperationService()
    before = len(service.list_operations(dataset_name=dataset.name))
    with pytest.raises(ExecutionError, match="patches_field"):
        start(dataset, 3, patches=True, patches_field="scene_id")
    assert len(service.list_operations(dataset_name=dataset.name)) == before
    assert dataset.get_field("embedding") is None


@pytest.mark.slow
def test_two_workers_share_a_sharded_run_and_give_the_unsharded_embeddings(dataset, unsharded):
    result = start(dataset, 4)
    ops = [ObjectId(op) for op in result["operations"]]
    with delegated_worker() as (first, log), delegated_worker() as (second, _):
        docs = [wait_for_delegated(op, log_path=log) for op in ops]
    assert all(d.run_state == ExecutionRunState.COMPLETED for d in docs), [d.result for d in docs]
    assert {d.result.result["parent_pid"] for d in docs} == {first.pid, second.pid}
    assert_same_vectors(dataset, unsharded)
