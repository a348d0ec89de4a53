"""Annotator queues hide golden scenes among the batch; send_batch and load_batch refuse bad
input before they reach an annotation tool (no server needed: nothing is uploaded)."""

from __future__ import annotations

import pytest
from fiftyone.operators.executor import ExecutionError

from fo_helpers import run_operator, unique_name

from annoloop.annotation.algorithms.queues import golden_count, plan_queues
from annoloop.annotation.load import load_batch
from annoloop.annotation.send import SEND_RUN_METHOD, send_batch
from annoloop.core.names import TEST_SPLIT_TAG
from annoloop.core.views import tagged_groups
from annoloop.demo.dataset import load_demo_dataset
from annoloop.quality.frozen import create_splits

BATCH = [f"s{i:02d}" for i in range(20)]
GOLDEN = [f"g{i}" for i in range(6)]


def test_every_batch_scene_goes_to_exactly_one_annotator_and_every_queue_has_golden_ones():
    queues = plan_queues(BATCH, GOLDEN, ["a", "b"], share=0.1, seed=0)
    dealt = [u for q in queues for u in q.units if u not in q.golden]
    assert sorted(dealt) == BATCH
    assert all(len(q.golden) == golden_count(10, 0.1) == 1 for q in queues)
    assert all(set(q.golden) <= set(q.units) and set(q.golden) <= set(GOLDEN) for q in queues)


def test_golden_scenes_are_shuffled_into_the_queue_not_appended():
    positions = [
        q.units.index(g)
        for seed in range(20)
        for q in plan_queues(BATCH, GOLDEN, ["a"], share=0.1, seed=seed)
        for g in q.golden
    ]
    assert min(positions) < len(BATCH) - 2


def test_an_annotator_sees_every_golden_scene_once_before_any_twice():
    uses = {"a": {g: 1 for g in GOLDEN[:4]}}
    (queue,) = plan_queues(BATCH[:10], GOLDEN, ["a"], share=0.15, seed=1, golden_uses=uses)
    assert set(queue.golden) == set(GOLDEN[4:])


@pytest.mark.parametrize(
    "share, message",
    [(1.0, r"golden share must be in \[0, 1\)"), (0.49, "needs 19 golden scenes")],
)
def test_impossible_golden_shares_are_refused(share, message):
    with pytest.raises(ValueError, match=message):
        plan_queues(BATCH, GOLDEN, ["a"], share=share, seed=0)


@pytest.fixture(scope="module")
def dataset():
    dataset = load_demo_dataset(unique_name("send"), num_scenes=24, seed=2, image_size=(96, 32))
    create_splits(dataset, test=4, mining=2, golden=4, seed=1)
    test_scene = tagged_groups(dataset, [TEST_SPLIT_TAG])[0]
    pool = [g for g in dataset.distinct("group.id") if g not in tagged_groups(
        dataset, ["split:test", "split:mining", "split:golden"])]
    dataset.save_view("batch_v1", dataset.select_groups(pool[:6]))
    dataset.save_view("batch_leaky", dataset.select_groups([*pool[6:9], test_scene]))
    yield dataset
    dataset.delete()


def nothing_sent(dataset) -> bool:
    dataset.reload()
    return not dataset.list_runs(method=SEND_RUN_METHOD) and not dataset.list_annotation_runs()


@pytest.mark.parametrize(
    "batch, annotators, params, message",
    [
        ("v9", ["a"], {}, "has no batch 'batch:v9'.*plan one with plan_batch"),
        ("leaky", ["a"], {}, "holds 1 scenes of the frozen test split.*never sent"),
        ("v1", [], {}, "name at least one annotator"),
        ("v1", ["a b"], {}, "letters, digits or '_'"),
        ("v1", ["a", "a"], {}, "must be unique"),
        ("v1", ["a"], {"golden_share": 0.7}, r"golden_share must be a number in \[0, 0.5\]"),
        ("v1", ["a"], {"label_field": "oracle"}, "'oracle'.*has no label schema"),
    ],
)
def test_send_batch_refuses_before_anything_is_uploaded(dataset, batch, annotators, params, message):
    with pytest.raises(ValueError, match=message):
        send_batch(dataset, batch, annotators, url="http://127.0.0.1:9", api_key="x", **params)
    assert nothing_sent(dataset)


def test_the_operator_refuses_the_same_way_with_the_message(dataset):
    with pytest.raises(ExecutionError, match="holds 1 scenes of the frozen test split"):
        run_operator("send_batch", {"batch": "batch:leaky", "annotators": "a"}, dataset=dataset)
    assert nothing_sent(dataset)


def test_loading_a_batch_that_was_never_sent_says_to_send_it(dataset):
    with pytest.raises(ValueError, match="never sent.*send it with send_batch first"):
        load_batch(dataset, "v1")
