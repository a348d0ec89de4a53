"""check_golden scores annotation batches against the golden labels (2D and 3D), keeps a
per-batch history on the dataset and raises drift alarms."""

from __future__ import annotations

import pytest

from fiftyone import ViewField as F
from fiftyone.operators.executor import ExecutionError

from fo_helpers import run_operator, unique_name

from annoloop.demo.annotation import annotate_batch
from annoloop.demo.dataset import load_demo_dataset
from annoloop.quality.frozen import create_splits
from annoloop.quality.frozen_check import FROZEN_RUN_KEY
from annoloop.quality.golden import (
    GOLDEN_RUN_METHOD,
    check_golden,
    golden_history,
    golden_run_key,
)
from annoloop.core.names import GOLDEN_SPLIT_TAG

SLICES = ("left", "right", "pcd")
RUN_KEY = golden_run_key("ground_truth")


@pytest.fixture(scope="module")
def demo():
    dataset = load_demo_dataset(unique_name("golden"), num_scenes=40, seed=5, image_size=(128, 64))
    create_splits(dataset, test=4, golden=16, seed=2)
    annotate(dataset, 0)
    yield dataset
    dataset.delete()


@pytest.fixture
def dataset(demo):
    clone = demo.clone(unique_name("golden-clone"))
    yield clone
    clone.delete()


def golden_groups(dataset):
    return dataset.select_groups(dataset.match_tags(GOLDEN_SPLIT_TAG).distinct("group.id"))


def annotate(dataset, batch: int):
    annotate_batch(golden_groups(dataset), batch, seed=batch)


def check(dataset, **params):
    params = {"candidate_field": "ground_truth", **params}
    return run_operator("check_golden", params, dataset=dataset).result


@pytest.mark.parametrize("slice_name", ["left", "pcd"])
def test_precision_and_recall_equal_fiftyones_evaluate_detections(dataset, slice_name):
    annotate(dataset, 2)  # the drifted annotator: misses, confusions, a renamed class
    result = check(dataset, iou=0.5)
    ours = result["per_batch"]["batch-002"][slice_name]

    view = dataset.select_group_slices(slice_name).match_tags(GOLDEN_SPLIT_TAG)
    results = view.evaluate_detections(
        "ground_truth", gt_field="golden", iou=0.5, classwise=True, eval_key="qa"
    )
    assert ours["overall"]["tp"] == view.sum("qa_tp")
    assert ours["overall"]["fp"] == view.sum("qa_fp")
    assert ours["overall"]["fn"] == view.sum("qa_fn")
    assert ours["overall"]["fp"] + ours["overall"]["fn"] > 0, "the drifted batch has errors"
    report = results.report()
    for cls, stats in ours["per_class"].items():
        if stats["n_pred"]:
            assert stats["precision"] == pytest.approx(report[cls]["precision"])
        if stats["n_gt"]:
            assert stats["recall"] == pytest.approx(report[cls]["recall"])
            assert stats["n_gt"] == report[cls]["support"]


def test_a_drifted_batch_raises_alarms_and_clean_batches_do_not(dataset):
    # batch-000 (clean) is already on the golden set
    assert check(dataset)["new_alarms"] == []
    annotate(dataset, 1)
    assert check(dataset)["new_alarms"] == []
    annotate(dataset, 2)
    result = check(dataset)
    alarms = result["new_alarms"]
    assert alarms and {a["batch"] for a in alarms} == {"batch-002"}
    assert any(a["rule"] == "new_class" and a["class"] == "vehicle" for a in alarms)
    assert result["alarms"] == alarms  # earlier batches raised nothing


def test_the_history_keeps_one_entry_per_batch_and_slice(dataset):
    check(dataset)
    annotate(dataset, 1)
    check(dataset)
    first = golden_history(dataset, "ground_truth")
    assert [(e["batch"], e["slice"]) for e in first] == [
        (b, s) for b in ("batch-000", "batch-001") for s in SLICES
    ]
    result = check(dataset)  # batch-001 again: replaced in place, baseline stays first
    assert result["history_length"] == 6
    again = golden_history(dataset, "ground_truth")
    assert [e["batch"] for e in again] == [e["batch"] for e in first]
    assert dataset.list_runs(method=GOLDEN_RUN_METHOD) == [RUN_KEY]
    assert dataset.get_run_info(RUN_KEY).config.batches == ["batch-000", "batch-001"]


def test_batches_can_come_from_sample_tags_or_one_name(dataset):
    for name in SLICES:
        golden_groups(dataset).select_group_slices(name).tag_samples("batch:t1")
    assert check(dataset, batch_by="tag")["batches"] == ["t1"]
    result = check(dataset, batch_by="name", batch_name="whole-set", reset_history=True)
    assert result["batches"] == ["whole-set"]
    assert set(result["per_batch"]["whole-set"]) == set(SLICES)


def test_golden_samples_without_candidate_labels_join_the_only_batch(dataset):
    left = dataset.select_group_slices("left").match_tags(GOLDEN_SPLIT_TAG)
    emptied = left.match(F("golden.detections").length() > 0).first()
    emptied.ground_truth = None
    emptied.save()
    result = check(dataset)
    assert result["unassigned_samples"] == 0
    overall = result["per_batch"]["batch-000"]["left"]["overall"]
    assert overall["n_gt"] == left.count("golden.detections")


def test_a_sample_without_labels_takes_its_groups_batch(dataset):
    groups = golden_groups(dataset).distinct("group.id")
    half = groups[: len(groups) // 2]
    annotate_batch(dataset.select_groups(half), 1, seed=1)
    pcd = dataset.select_groups(half).select_group_slices("pcd")
    group_id = pcd.match(F("ground_truth.detections").length() > 0).first().group.id
    sample = dataset.select_groups(group_id).select_group_slices("left").first()
    sample.ground_truth = None
    sample.save()
    result = check(dataset)
    assert result["unassigned_samples"] == 0
    assert result["per_batch"]["batch-001"]["left"]["n_samples"] == len(half)
    assert result["per_batch"]["batch-000"]["left"]["n_samples"] == len(groups) - len(half)


def test_changed_golden_labels_stop_the_check(dataset):
    golden = dataset.select_group_slices("pcd").match_tags(GOLDEN_SPLIT_TAG)
    sample = golden.match(F("golden.detections").length() > 0).first()
    label = sample.golden.detections[0]
    label.label = "truck" if label.label != "truck" else "car"
    sample.save()
    with pytest.raises(ExecutionError, match=sample.id):
        check(dataset)
    assert not dataset.has_run(RUN_KEY)


def test_a_history_keeps_its_iou_threshold(dataset):
    check(dataset, iou=0.5)
    with pytest.raises(ExecutionError, match="reset_history"):
        check(dataset, iou=0.7)
    assert check(dataset, iou=0.7, reset_history=True)["history_length"] == 3


@pytest.mark.parametrize(
    "params, message",
    [
        ({"iou": 0.0}, r"\(0, 1\]"),
        ({"iou": 1.5}, r"\(0, 1\]"),
        ({"candidate_field": "nope"}, "does not exist"),
        ({"candidate_field": "scene_id"}, "not Detections"),
        ({"golden_field": "missing"}, "no golden labels"),
        ({"batch_by": "name"}, "batch_name"),
        ({"baseline_batch": "batch-999"}, "batch-999"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(demo, params, message):
    with pytest.raises(ExecutionError, match=message):
        check(demo, **params)
    assert not demo.has_run(RUN_KEY)


def test_an_unknown_batch_by_is_refused_listing_the_choices_from_the_sdk_and_the_operator(demo):
    listed = r"batch_by must be one of \['attribute', 'tag', 'name'\], got 'bogus' \('attribute': "
    with pytest.raises(ValueError, match=listed):
        check_golden(demo, "ground_truth", batch_by="bogus")
    with pytest.raises(ExecutionError, match=listed):
        check(demo, batch_by="bogus")
    assert not demo.has_run(RUN_KEY)


def test_batch_by_name_without_a_name_says_to_pass_one(demo):
    with pytest.raises(ExecutionError, match="batch_by='name' needs a batch_name: pass the one"):
        check(demo, batch_by="name")
    assert not demo.has_run(RUN_KEY)


def test_golden_samples_without_golden_labels_are_an_error(dataset):
    dataset.delete_run(FROZEN_RUN_KEY)  # a golden set tagged by hand: no fingerprints to check
    sample = dataset.select_group_slices("right").match_tags(GOLDEN_SPLIT_TAG).first()
    sample.golden = None
    sample.save()
    with pytest.raises(ExecutionError, match="no 'golden' labels"):
        check(dataset)
    assert not dataset.has_run(RUN_KEY)


def test_a_dataset_without_a_golden_set_is_an_error(dataset):
    for name in SLICES:
        dataset.select_group_slices(name).untag_samples(GOLDEN_SPLIT_TAG)
    dataset.delete_run(FROZEN_RUN_KEY)
    with pytest.raises(ExecutionError, match="no golden set"):
        check(dataset)
