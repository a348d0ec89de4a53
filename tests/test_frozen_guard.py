"""Frozen means frozen: an evaluation leaves the splits intact, a real edit or a membership
change is named, and training, evaluation and planning refuse to run on changed splits."""

from __future__ import annotations

import warnings

import pytest

import fiftyone as fo
from fiftyone import ViewField as F
from fiftyone.operators.executor import ExecutionError

from fo_helpers import run_operator, unique_name

from annoloop.core.names import GOLDEN_SPLIT_TAG, TEST_SPLIT_TAG
from annoloop.core.views import slice_views
from annoloop.demo.dataset import load_demo_dataset
from annoloop.quality.frozen import create_splits
from annoloop.quality.frozen_check import (
    FrozenSplitError,
    check_frozen,
    frozen_sample_ids,
    require_frozen,
)
from annoloop.selection.batches import plan_batch
from annoloop.training import runs
from annoloop.training.detector import evaluate_model, train_detector

WIDTH = 128


@pytest.fixture(scope="module")
def demo():
    dataset = load_demo_dataset(unique_name("guard"), num_scenes=24, seed=3, image_size=(WIDTH, 64))
    yield dataset
    dataset.delete()


@pytest.fixture
def dataset(demo):
    clone = demo.clone(unique_name("guard-clone"))
    create_splits(clone, test=4, mining=2, golden=2, seed=0)
    yield clone
    clone.delete()


def left(dataset):
    return dataset.select_group_slices("left")


def predict_from_oracle(dataset) -> None:
    """Predictions on the left test images: every other true box, shifted a little."""
    test = left(dataset).match_tags(TEST_SPLIT_TAG)
    test.set_values(
        "predictions",
        [
            fo.Detections(
                detections=[
                    fo.Detection(
                        label=d.label,
                        bounding_box=[d.bounding_box[0] + 0.01, *d.bounding_box[1:]],
                        confidence=0.9,
                    )
                    for d in o.detections[::2]
                ]
            )
            for o in test.values("oracle")
        ],
    )


def test_an_evaluation_on_the_test_split_leaves_it_frozen(dataset):
    predict_from_oracle(dataset)
    evaluate_model(dataset, slice_name="left", gt_field="oracle", record=False)
    test = left(dataset).match_tags(TEST_SPLIT_TAG)
    test.evaluate_detections("predictions", gt_field="oracle", eval_key="by_hand")
    # Both evaluations wrote their bookkeeping onto the frozen boxes ...
    for key in ("eval", "by_hand"):
        assert set(test.distinct(f"oracle.detections.{key}")) >= {"tp", "fn"}
        assert test.exists(f"oracle.detections.{key}_iou").count()
    # ... and that is not an edit.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_frozen(dataset).ok
    require_frozen(dataset, "the next step")


def test_moving_one_box_by_a_pixel_or_renaming_one_label_is_named(dataset):
    predict_from_oracle(dataset)
    evaluate_model(dataset, slice_name="left", gt_field="oracle", record=False)
    boxed = left(dataset).match_tags(TEST_SPLIT_TAG).match(F("oracle.detections").length() > 0)
    moved, renamed = boxed.first(), boxed.skip(1).first()
    moved.oracle.detections[0].bounding_box[0] += 1 / WIDTH
    moved.save()
    renamed.oracle.detections[-1].label += "_x"
    renamed.save()
    with pytest.warns(Warning):
        report = check_frozen(dataset)
    assert report.changed["test"]["oracle"] == sorted([moved.id, renamed.id])


def test_membership_changes_are_each_detected(dataset):
    view = left(dataset)
    untagged, deleted = view.match_tags(TEST_SPLIT_TAG).limit(2).values("id")
    joined = view.match_tags([TEST_SPLIT_TAG, GOLDEN_SPLIT_TAG, "split:mining"], bool=False).first().id
    view.select(untagged).untag_samples(TEST_SPLIT_TAG)
    dataset.delete_samples([deleted])
    view.select(joined).tag_samples(TEST_SPLIT_TAG)
    with pytest.warns(Warning) as caught:
        report = check_frozen(dataset)
    assert report.removed["test"] == [untagged]
    assert report.deleted["test"] == [deleted]
    assert report.added["test"] == [joined]
    message = str(caught[0].message)
    assert "left the split" in message and "were deleted" in message and "joined" in message


def untag_one_test_scene(dataset) -> str:
    """Remove ``split:test`` from every slice of one test scene; return its left sample id."""
    scene = left(dataset).match_tags(TEST_SPLIT_TAG).first()
    for view in slice_views(dataset).values():
        view.match(F("scene_id") == scene.scene_id).untag_samples(TEST_SPLIT_TAG)
    return scene.id


def tag_counts(dataset) -> dict:
    return {name: view.count_sample_tags() for name, view in slice_views(dataset).items()}


def assert_refusal(message: str, sample_id: str) -> None:
    assert "refused" in message and "test:" in message and sample_id in message
    assert "left the split" in message
    assert "re-tag" in message and "overwrite=True" in message


def test_train_evaluate_and_plan_refuse_a_split_that_lost_a_scene(dataset):
    sample_id = untag_one_test_scene(dataset)
    tags_before = tag_counts(dataset)
    runs_before = dataset.list_runs()
    evaluations_before = dataset.list_evaluations()

    with pytest.raises(FrozenSplitError) as refused:
        train_detector(dataset, slice_name="left", epochs=1, imgsz=64)
    assert_refusal(str(refused.value), sample_id)
    with pytest.raises(FrozenSplitError) as refused:
        evaluate_model(dataset, slice_name="left", gt_field="oracle", record=False)
    assert_refusal(str(refused.value), sample_id)
    with pytest.raises(FrozenSplitError) as refused:
        plan_batch(dataset, 2, embeddings_field="embedding")
    assert_refusal(str(refused.value), sample_id)
    with pytest.raises(ExecutionError) as refused:
        run_operator("plan_batch", {"budget": 2, "embeddings_field": "embedding", "delegate": False}, dataset=dataset)
    assert_refusal(str(refused.value), sample_id)

    dataset.reload()
    assert tag_counts(dataset) == tags_before
    assert dataset.list_runs() == runs_before and runs.list_runs(dataset) == []
    assert dataset.list_evaluations() == evaluations_before


def test_the_untagged_scene_stays_frozen_for_label_writers(dataset):
    sample_id = untag_one_test_scene(dataset)
    assert sample_id in frozen_sample_ids(dataset, ["test"])


def test_redrawing_the_splits_deliberately_lifts_the_refusal(dataset):
    untag_one_test_scene(dataset)
    with pytest.raises(FrozenSplitError):
        require_frozen(dataset, "plan_batch")
    create_splits(dataset, test=4, mining=2, golden=2, seed=1, overwrite=True)
    require_frozen(dataset, "plan_batch")


def test_a_dataset_without_splits_is_not_checked(demo):
    require_frozen(demo, "train_detector")
    assert not check_frozen(demo).recorded
    assert frozen_sample_ids(demo) == set()


def test_a_stored_label_fingerprints_alike_read_raw_or_as_a_label_object():
    """Checks read labels raw; records made from label objects must still match them."""
    import datetime

    import numpy as np
    from bson import ObjectId

    from annoloop.quality.frozen_check import bookkeeping_keys, owned_fingerprint

    dataset = fo.Dataset(unique_name("fingerprint-forms"))
    try:
        box = fo.Detection(
            label="car", bounding_box=[0.1, 0.2, 0.3, 0.4], confidence=0.5,
            mask=np.eye(4, dtype=bool), annotated_at=datetime.datetime(2026, 1, 2, 3, 4, 5),
            source_id=ObjectId(), occluded=True, score_list=[0.25, 1.0], nested={"a": 1},
        )
        dataset.add_samples([
            fo.Sample(
                filepath="/x/a.jpg",
                gt=fo.Detections(detections=[box, fo.Detection(label="van", bounding_box=[0, 0, 1, 1])]),
                kind=fo.Classification(label="day", confidence=0.9),
                lines=fo.Polylines(polylines=[fo.Polyline(label="lane", points=[[(0, 0), (1, 1)]])]),
            ),
            fo.Sample(filepath="/x/b.jpg"),
        ])
        fields = ["gt", "kind", "lines"]
        ignore = bookkeeping_keys(dataset, fields)
        for name in fields:
            objects, raw = dataset.values(name), dataset.values(F(name))
            assert [owned_fingerprint(o, ignore) for o in objects] == [
                owned_fingerprint(r, ignore) for r in raw
            ], name
    finally:
        dataset.delete()
