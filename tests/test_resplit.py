"""Re-drawing the frozen splits after training never puts a trained scene into a split and
never keeps ledger rounds measured on the old sets (issue 14)."""

from __future__ import annotations

import pytest

from fiftyone.operators.executor import ExecutionError

import annoloop
from annoloop.core.names import (
    BATCH_TAG_PREFIX,
    GOLDEN_SPLIT_TAG,
    LEDGER_ARCHIVE_INFO_KEY,
    LEDGER_INFO_KEY,
    MINING_SPLIT_TAG,
    TEST_SPLIT_TAG,
)
from annoloop.demo.annotation import annotate_batch
from annoloop.quality.algorithms.scene_groups import duplicate_groups
from annoloop.quality.frozen_check import frozen_record
from annoloop.training import runs
from annoloop.training.algorithms.ledger import record_round
from fo_helpers import form_properties, run_operator, unique_name

SLICES = ("left", "right", "pcd")
SPLITS = (TEST_SPLIT_TAG, MINING_SPLIT_TAG, GOLDEN_SPLIT_TAG)
SIZES = {"test": 6, "mining": 4, "golden": 4}


@pytest.fixture(scope="module")
def planned():
    """Demo with frozen splits and a first batch planned (``batch:v1``) by plan_batch."""
    dataset = annoloop.load_demo_dataset(
        unique_name("resplit"), num_scenes=36, seed=7, image_size=(128, 64)
    )
    annoloop.create_splits(dataset, seed=1, **SIZES)
    annoloop.compute_embeddings(dataset)
    annoloop.plan_batch(dataset, 16, embeddings_field="group_embedding")
    yield dataset
    dataset.delete()


@pytest.fixture
def dataset(planned):
    clone = planned.clone(unique_name("resplit-clone"))
    yield clone
    clone.delete()


def scenes(dataset, tags) -> set:
    """Scene ids with a sample (on any slice) tagged with one of ``tags``."""
    return set().union(
        *(dataset.select_group_slices(s).match_tags(tags).values("scene_id") for s in SLICES)
    )


def batch_tags(dataset) -> list[str]:
    tags = set().union(*(dataset.select_group_slices(s).distinct("tags") for s in SLICES))
    return sorted(t for t in tags if t.startswith(BATCH_TAG_PREFIX))


def batch_scenes(dataset) -> set:
    return scenes(dataset, batch_tags(dataset))


def labeled_scenes(dataset, field: str = "ground_truth") -> set:
    return set().union(
        *(dataset.select_group_slices(s).exists(field).values("scene_id") for s in SLICES)
    )


def untag_batches(dataset) -> None:
    tags = batch_tags(dataset)
    for name in SLICES:
        dataset.select_group_slices(name).untag_samples(tags)


def redraw(dataset, **params):
    return run_operator(
        "create_splits", {**SIZES, "seed": 2, "overwrite": True, **params}, dataset=dataset
    )


def train_round(dataset, run_name: str = "r0") -> None:
    """Record a round the way evaluate_model does after training on batch:v1."""
    record_round(
        dataset, batch="batch:v1", total_labels=16, map_=0.12,
        per_class_recall={"car": 0.3, "pedestrian": 0.1}, train_run=run_name,
    )


def state(dataset) -> dict:
    """Everything create_splits writes: tags on every slice, views, its record, info."""
    dataset.reload()
    return {
        "tags": {s: dataset.select_group_slices(s).values("tags") for s in SLICES},
        "golden": {
            s: dataset.select_group_slices(s).values("golden.detections.id") for s in SLICES
        },
        "views": dataset.list_saved_views(),
        "record": frozen_record(dataset),
        "info": dict(dataset.info),
    }


def plain_draw(dataset) -> set:
    """The scenes the same re-draw picks when nothing was trained (on a copy)."""
    copy = dataset.clone(unique_name("resplit-probe"))
    try:
        untag_batches(copy)
        copy.info.pop(LEDGER_INFO_KEY, None)
        copy.save()
        redraw(copy)
        return scenes(copy, list(SPLITS))
    finally:
        copy.delete()


def test_redraw_after_training_is_refused_naming_the_trained_scenes_and_the_rounds(dataset):
    train_round(dataset)
    entering = sorted(plain_draw(dataset) & batch_scenes(dataset))
    assert entering, "the plain re-draw would contaminate the splits"
    before = state(dataset)
    with pytest.raises(ExecutionError) as refused:
        redraw(dataset)
    message = str(refused.value)
    assert f"{len(entering)} scene{'s' * (len(entering) > 1)} trained on" in message
    assert all(scene in message for scene in entering[:5])
    assert "holds 1 round measured on the old test set (round 0 (batch:v1, run r0))" in message
    assert "reset=True" in message
    assert state(dataset) == before


def test_ledger_rounds_alone_refuse_a_redraw(dataset):
    untag_batches(dataset)
    train_round(dataset)
    before = state(dataset)
    with pytest.raises(ExecutionError, match=r"holds 1 round measured .*reset=True") as refused:
        redraw(dataset)
    assert "would enter" not in str(refused.value)
    assert state(dataset) == before


def test_the_form_says_a_redraw_needs_a_reset_before_submit(dataset):
    untag_batches(dataset)
    train_round(dataset)
    warned = form_properties("create_splits", dataset, {"overwrite": True})
    assert "holds 1 round measured" in warned["reset_needed"]["view"]["label"]
    assert "reset_needed" not in form_properties("create_splits", dataset, {"overwrite": True, "reset": True})


def test_reset_archives_the_ledger_and_draws_no_trained_scene_into_a_split(dataset):
    train_round(dataset)
    old_ledger = list(dataset.info[LEDGER_INFO_KEY])
    old_record = frozen_record(dataset)
    trained = batch_scenes(dataset)

    result = redraw(dataset, reset=True).result

    dataset.reload()
    left = dataset.select_group_slices("left")
    linked = dict(zip(*left.values(["scene_id", "near_duplicate_of"])))
    group_of, _ = duplicate_groups(
        {scene: "" for scene in linked}, {s: d for s, d in linked.items() if d}
    )
    left_out = {s for s in linked if group_of[s] in {group_of[t] for t in trained}}
    assert not scenes(dataset, list(SPLITS)) & left_out
    assert result["excluded_scenes"] == len(left_out) >= len(trained)
    assert result["counts"]["test"]["scenes"] == SIZES["test"]
    assert dataset.info[LEDGER_INFO_KEY] == []
    [archived] = dataset.info[LEDGER_ARCHIVE_INFO_KEY]
    assert archived["rounds"] == old_ledger and archived["baseline_rounds"] == []
    assert archived["frozen_created_at"] == old_record["created_at"]
    assert result["archived_rounds"] == len(old_ledger)
    assert record_round(
        dataset, batch="batch:v2", total_labels=20, map_=0.2, per_class_recall={}
    )[-1].round == 0, "the next round starts a new ledger"


def test_a_redraw_deletes_the_evaluations_measured_on_the_old_splits_only(dataset):
    dataset.clone_sample_field("oracle", "predictions")
    left = dataset.select_group_slices("left")
    for eval_key, tag in (("eval", TEST_SPLIT_TAG), ("eval_mining", MINING_SPLIT_TAG)):
        left.match_tags(tag).evaluate_detections("predictions", gt_field="oracle", eval_key=eval_key)
    left.evaluate_detections("predictions", gt_field="oracle", eval_key="whole_slice")

    result = redraw(dataset, reset=True).result

    dataset.reload()
    assert dataset.list_evaluations() == ["whole_slice"]
    assert sorted(result["deleted_evaluations"]) == ["eval", "eval_mining"]
    assert "eval_tp" not in dataset.select_group_slices("left").get_field_schema()


def test_labels_a_training_run_trained_on_keep_their_scenes_out_of_the_splits(dataset):
    untag_batches(dataset)
    annotate_batch(dataset.match_tags(list(SPLITS), bool=False), 0, seed=0)
    labeled = labeled_scenes(dataset)
    runs.start_run(dataset, "r0", {"label_field": "ground_truth", "slice": "left"})
    runs.complete_run(dataset, "r0", weights="best.pt")

    with pytest.raises(ExecutionError, match="trained on or labeled for training"):
        redraw(dataset)
    redraw(dataset, reset=True)
    assert not scenes(dataset, list(SPLITS)) & labeled


def test_labels_no_model_trained_on_do_not_block_a_redraw(dataset):
    untag_batches(dataset)
    annotate_batch(dataset.match_tags(list(SPLITS), bool=False), 0, seed=0)
    assert labeled_scenes(dataset)
    result = redraw(dataset).result
    assert result["excluded_scenes"] == 0 and result["archived_rounds"] == 0
