"""create_splits freezes a test, a mining and a golden set by scene; check_frozen notices any
change."""

from __future__ import annotations

import warnings

import pytest

import fiftyone as fo
from fiftyone import ViewField as F
import fiftyone.operators as foo
from fiftyone.operators.executor import ExecutionContext, ExecutionError

from fo_helpers import run_operator, unique_name, uri

from annoloop.demo.dataset import load_demo_dataset
from annoloop.quality.algorithms.scene_groups import duplicate_groups
from annoloop.quality.frozen_check import (
    FROZEN_RUN_KEY,
    FrozenSplitError,
    FrozenSplitWarning,
    check_frozen,
    frozen_record,
)
from annoloop.core.names import GOLDEN_SPLIT_TAG, MINING_SPLIT_TAG, TEST_SPLIT_TAG

SLICES = ("left", "right", "pcd")


@pytest.fixture(scope="module")
def demo():
    dataset = load_demo_dataset(unique_name("frozen"), num_scenes=36, seed=7, image_size=(128, 64))
    yield dataset
    dataset.delete()


@pytest.fixture
def dataset(demo):
    clone = demo.clone(unique_name("frozen-clone"))
    yield clone
    clone.delete()


def split_scenes(dataset, tag: str) -> dict[str, set]:
    """Scene ids tagged ``tag``, per slice."""
    return {
        s: set(dataset.select_group_slices(s).match_tags(tag).values("scene_id")) for s in SLICES
    }


def create(dataset, **params):
    params = {"test": 6, "mining": 4, "golden": 4, "seed": 1, **params}
    return run_operator("create_splits", params, dataset=dataset)


def test_create_splits_tags_every_slice_of_the_chosen_scenes(dataset):
    result = create(dataset).result
    test, golden = split_scenes(dataset, TEST_SPLIT_TAG), split_scenes(dataset, GOLDEN_SPLIT_TAG)
    assert test["left"] == test["right"] == test["pcd"]
    assert golden["left"] == golden["right"] == golden["pcd"]
    assert test["left"] and golden["left"]
    assert not test["left"] & golden["left"]
    assert result["counts"]["test"]["samples"] == 3 * len(test["left"])
    assert result["counts"]["golden"]["samples"] == 3 * len(golden["left"])
    assert dataset.load_saved_view("test_set").count() == len(test["left"])
    assert dataset.load_saved_view("golden_set").count() == len(golden["left"])


def test_create_splits_freezes_a_mining_set_apart_from_test_and_golden(dataset):
    result = create(dataset).result
    mining = split_scenes(dataset, MINING_SPLIT_TAG)
    assert mining["left"] == mining["right"] == mining["pcd"] and len(mining["left"]) == 4
    for other in (TEST_SPLIT_TAG, GOLDEN_SPLIT_TAG):
        assert not mining["left"] & split_scenes(dataset, other)["left"]
    assert result["counts"]["mining"]["samples"] == 3 * 4
    assert dataset.load_saved_view("mining_set").count() == 4
    assert set(result["fingerprints"]["mining"]) == {"oracle"}


def test_create_splits_is_deterministic_for_a_seed(dataset, demo):
    create(dataset)
    other = demo.clone(unique_name("frozen-other"))
    try:
        create(other)
        assert split_scenes(other, TEST_SPLIT_TAG) == split_scenes(dataset, TEST_SPLIT_TAG)
        assert split_scenes(other, GOLDEN_SPLIT_TAG) == split_scenes(dataset, GOLDEN_SPLIT_TAG)
    finally:
        other.delete()


def test_create_splits_keeps_near_duplicates_with_their_original(dataset):
    create(dataset, test=0.3, golden=0.2)
    left = dataset.select_group_slices("left")
    scene_ids, originals, tags = left.values(["scene_id", "near_duplicate_of", "tags"])
    split_of = {s: {TEST_SPLIT_TAG, GOLDEN_SPLIT_TAG} & set(t) for s, t in zip(scene_ids, tags)}
    pairs = [(s, o) for s, o in zip(scene_ids, originals) if o in split_of]
    assert pairs, "the demo has near-duplicate scenes"
    for scene, original in pairs:
        assert split_of[scene] == split_of[original]


def test_create_splits_gives_every_large_stratum_a_test_scene(dataset):
    create(dataset, strata_fields=["weather"])
    left = dataset.select_group_slices("left")
    counts = left.count_values("weather")
    tested = left.match_tags(TEST_SPLIT_TAG).count_values("weather")
    assert {w for w, n in counts.items() if n >= 3} <= set(tested)


def test_golden_labels_are_copied_from_the_source_with_new_ids(dataset):
    create(dataset, source_field="oracle", golden_field="golden")
    for name in SLICES:
        view = dataset.select_group_slices(name)
        golden = view.match_tags(GOLDEN_SPLIT_TAG)
        for oracle, copy in zip(*golden.values(["oracle", "golden"])):
            assert [d.label for d in copy.detections] == [d.label for d in oracle.detections]
            for a, b in zip(oracle.detections, copy.detections):
                assert a.id != b.id
                assert {**a.to_dict(), "_id": None} == {**b.to_dict(), "_id": None}
        assert view.match_tags(GOLDEN_SPLIT_TAG, bool=False).exists("golden").count() == 0


def test_splits_are_recorded_as_a_run_with_fingerprints(dataset):
    result = create(dataset).result
    assert dataset.has_run(FROZEN_RUN_KEY)
    record = frozen_record(dataset)
    assert record["fingerprints"] == result["fingerprints"]
    assert set(record["fingerprints"]) == {"test", "mining", "golden"}
    assert record["params"]["source_field"] == "oracle"
    assert check_frozen(dataset).ok


def test_create_splits_refuses_existing_splits_without_overwrite(dataset):
    create(dataset)
    before = split_scenes(dataset, TEST_SPLIT_TAG)
    with pytest.raises(ExecutionError, match="overwrite"):
        create(dataset, seed=2)
    assert split_scenes(dataset, TEST_SPLIT_TAG) == before


def test_overwrite_redraws_the_splits_and_clears_the_old_golden_labels(dataset):
    create(dataset)
    create(dataset, seed=5, overwrite=True)
    for name in SLICES:
        view = dataset.select_group_slices(name)
        assert view.exists("golden").count() == view.match_tags(GOLDEN_SPLIT_TAG).count()
    assert check_frozen(dataset).ok


def test_check_frozen_lists_a_changed_golden_label_loudly(dataset):
    create(dataset)
    golden = dataset.select_group_slices("pcd").match_tags(GOLDEN_SPLIT_TAG)
    sample = golden.match(F("golden.detections").length() > 0).first()
    sample.golden.detections[0].dimensions = [9.0, 9.0, 9.0]
    sample.save()
    with pytest.warns(FrozenSplitWarning, match=sample.id):
        report = check_frozen(dataset)
    assert report.changed["golden"]["golden"] == [sample.id]
    assert not report.ok
    with pytest.raises(FrozenSplitError, match=sample.id):
        check_frozen(dataset, strict=True)


def test_check_frozen_ignores_label_tags_and_ids(dataset):
    create(dataset)
    test = dataset.select_group_slices("left").match_tags(TEST_SPLIT_TAG)
    test.tag_labels("qa:quarantine", "oracle")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_frozen(dataset).ok


def test_check_frozen_reports_samples_that_left_a_split(dataset):
    create(dataset)
    left = dataset.select_group_slices("left")
    sample_id = left.match_tags(TEST_SPLIT_TAG).first().id
    left.select(sample_id).untag_samples(TEST_SPLIT_TAG)
    with pytest.warns(FrozenSplitWarning):
        report = check_frozen(dataset)
    assert report.removed["test"] == [sample_id]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"source_field": "nope"}, "does not exist"),
        ({"source_field": "scene_id"}, "not Detections"),
        ({"test": 1.5}, "whole number"),
        ({"test": 20, "golden": 20}, "exceed"),
        ({"strata_fields": ["colour"]}, "colour"),
        ({"golden_field": "oracle"}, "new field"),
    ],
)
def test_create_splits_rejects_bad_input_and_writes_nothing(dataset, params, message):
    with pytest.raises(ExecutionError, match=message):
        create(dataset, **params)
    assert not dataset.has_run(FROZEN_RUN_KEY)
    assert not dataset.has_saved_views
    assert dataset.get_field("golden") is None
    for name in SLICES:
        view = dataset.select_group_slices(name)
        assert not view.match_tags([TEST_SPLIT_TAG, GOLDEN_SPLIT_TAG]).count()


def test_create_splits_refuses_a_golden_field_it_did_not_write(dataset):
    dataset.add_sample_field("golden", fo.StringField)
    with pytest.raises(ExecutionError, match="already exists"):
        create(dataset)


def test_create_splits_works_on_a_flat_dataset(demo):
    flat = demo.select_group_slices("left").clone(unique_name("frozen-flat"))
    try:
        result = create(flat).result
        assert result["counts"]["golden"]["samples"] >= 4
        golden = flat.match_tags(GOLDEN_SPLIT_TAG)
        assert golden.exists("golden").count() == result["counts"]["golden"]["samples"]
        assert check_frozen(flat).ok
    finally:
        flat.delete()


def test_duplicate_groups_joins_linked_scenes_and_stratifies_them_as_the_original():
    component, stratum = duplicate_groups(
        {"a": "day", "b": "night", "c": "day"}, {"b": "a", "c": "outside"}
    )
    assert component == {"a": "a", "b": "a", "c": "c"}
    assert stratum == {"a": "day", "c": "day"}


@pytest.mark.parametrize("grouped", [False, True])
def test_create_splits_on_an_empty_dataset_says_it_has_no_samples(grouped):
    empty = fo.Dataset(unique_name("frozen-empty"))
    if grouped:
        empty.add_group_field("group", default="left")
    message = f"dataset '{empty.name}' has no samples; add samples before creating splits"
    try:
        with pytest.raises(ExecutionError, match=message):
            create(empty)
        operator = foo.OperatorRegistry().get_operator(uri("create_splits"))
        ctx = ExecutionContext(request_params={"dataset_name": empty.name, "params": {}})
        form = operator.resolve_input(ctx).to_json()["type"]["properties"]
        assert list(form) == ["no_samples"]
        assert message in form["no_samples"]["view"]["label"]
    finally:
        empty.delete()
