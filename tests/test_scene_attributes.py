"""Scene categorization on a real demo dataset: time of day from a few labeled scenes."""

from __future__ import annotations

import numpy as np
import pytest

from annoloop.core.names import FROZEN_SPLIT_TAGS, GOLDEN_SPLIT_TAG
from annoloop.core.runs import load_record
from annoloop.demo.algorithms import scenes as sc
from annoloop.demo.dataset import add_demo_scenes, load_demo_dataset
from annoloop.quality.frozen import create_splits
from annoloop.quality.frozen_check import check_frozen
from annoloop.quality.scene_attributes import (
    attribute_run_key,
    categorize_scenes,
    predicted_attribute_fields,
)
from annoloop.training.detector import evaluate_model
from annoloop.selection.embed import compute_embeddings
from fo_helpers import form_properties, run_operator, schedules_by_default, unique_name

KNOWN = "known_time_of_day"
PER_VALUE = 4
SLICES = ("left", "right", "pcd")


def truth(dataset) -> dict:
    """Scene id -> its true time of day (the demo writes it on every slice)."""
    left = dataset.select_group_slices("left")
    return dict(zip(left.values("group.id"), left.values("time_of_day")))


def label_scenes(dataset, scenes) -> None:
    """What a user does: set the true value on the left image of ``scenes`` only."""
    left = dataset.select_group_slices("left")
    true = truth(dataset)
    ids, groups = left.values(["id", "group.id"])
    left.set_values(KNOWN, {i: true[g] for i, g in zip(ids, groups) if g in scenes}, key_field="id")


def frozen_known(dataset) -> dict:
    """Sample id -> known value of every frozen sample, on every slice."""
    out = {}
    for name in SLICES:
        view = dataset.select_group_slices(name).match_tags(list(FROZEN_SPLIT_TAGS))
        out.update(zip(*view.values(["id", KNOWN])))
    return out


@pytest.fixture(scope="module")
def demo():
    """A 40-scene demo (30 % night), embedded; PER_VALUE scenes of each value labeled, then
    split by the predicted time of day, and the golden scenes' true value recorded."""
    dataset = load_demo_dataset(
        unique_name("attr"), num_scenes=40, seed=7, image_size=(192, 64),
        scene_config=sc.SceneConfig(night_fraction=0.3),
    )
    compute_embeddings(dataset)
    true = truth(dataset)
    picked = set()
    for value in sorted(set(true.values())):
        picked |= set(sorted(g for g, v in true.items() if v == value)[:PER_VALUE])
    label_scenes(dataset, picked)
    first = categorize_scenes(dataset, "time_of_day", known_field=KNOWN)
    splits = create_splits(
        dataset, test=6, mining=3, golden=6, seed=0, strata_fields=["predicted_time_of_day"],
        min_stratum_groups=1,
    )
    golden = set(dataset.match_tags(GOLDEN_SPLIT_TAG).distinct("group.id"))
    label_scenes(dataset, picked | golden)
    yield dataset, picked, first, splits
    dataset.delete()


def test_the_predicted_attribute_is_a_stratum_of_the_frozen_splits(demo):
    dataset, picked, first, splits = demo
    assert first["n_labeled"] == len(picked) and first["n_golden_checked"] == 0
    assert splits["params"]["strata_fields"] == ["predicted_time_of_day"]
    predicted = set(dataset.distinct("predicted_time_of_day"))
    assert {s.split("|")[0] for s in splits["strata"]} <= predicted and len(predicted) == 2


def test_time_of_day_from_a_few_labeled_scenes_beats_the_majority_class_on_the_rest(demo):
    dataset, picked, _, _ = demo
    before = frozen_known(dataset)
    result = categorize_scenes(dataset, "time_of_day", known_field=KNOWN, min_per_value=2)
    true = truth(dataset)
    frozen = set(dataset.match_tags(list(FROZEN_SPLIT_TAGS)).distinct("group.id"))
    left = dataset.select_group_slices("left")
    predicted = dict(zip(left.values("group.id"), left.values("predicted_time_of_day")))
    rest = [g for g in true if g not in picked and g not in frozen]
    accuracy = np.mean([predicted[g] == true[g] for g in rest])
    values = [true[g] for g in rest]
    majority = max(values.count(v) for v in set(values)) / len(values)
    # Night scenes are darker: the colour baseline must close at least half the gap between
    # always answering the majority value and a perfect answer.
    assert accuracy >= (1 + majority) / 2, (accuracy, majority)
    # Labeled scenes that the splits froze never train the probe.
    assert result["n_labeled"] == len(picked - frozen)
    assert result["n_frozen_known_unused"] == len(frozen & (picked | _golden(dataset)))
    # Golden QA: accuracy against the true values of the golden scenes.
    golden = _golden(dataset)
    assert result["n_golden_checked"] == len(golden)
    assert result["golden_accuracy"] == pytest.approx(np.mean([predicted[g] == true[g] for g in golden]))
    assert sum(v["golden"] for v in result["per_value"].values()) == len(golden)
    # Every slice of a scene carries the same prediction and a probability.
    for name in ("right", "pcd"):
        view = dataset.select_group_slices(name)
        assert dict(zip(view.values("group.id"), view.values("predicted_time_of_day"))) == predicted
        confidence = np.array(view.values("predicted_time_of_day_confidence"))
        assert np.all((confidence >= 0.5) & (confidence <= 1.0))
    # Frozen samples: the known values and the frozen labels are as they were.
    assert frozen_known(dataset) == before
    assert check_frozen(dataset).ok
    record = load_record(dataset, attribute_run_key("predicted_time_of_day"))
    assert record["golden_accuracy"] == result["golden_accuracy"]
    assert record["n_labeled"] == result["n_labeled"]


def _golden(dataset) -> set:
    return set(dataset.match_tags(GOLDEN_SPLIT_TAG).distinct("group.id"))


def test_the_operator_writes_what_the_sdk_writes(demo):
    dataset, _, _, _ = demo
    sdk = categorize_scenes(dataset, "time_of_day", known_field=KNOWN, output_field="sdk_tod")
    op = run_operator(
        "categorize_scenes",
        {"delegate": False, "attribute": "time_of_day", "known_field": KNOWN,
         "output_field": "op_tod", "min_per_value": 2},
        dataset=dataset,
    ).result
    for name in SLICES:
        view = dataset.select_group_slices(name)
        assert view.values("op_tod") == view.values("sdk_tod")
        assert view.values("op_tod_confidence") == view.values("sdk_tod_confidence")
    strip = lambda r: {k: v for k, v in r.items() if k not in ("categorized_at", "run_key", "output_field", "confidence_field")}
    assert strip(op) == strip(sdk)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"output_field": "time_of_day"}, r"must differ from .*predictions never overwrite"),
        ({"output_field": KNOWN}, r"must differ from .*predictions never overwrite"),
        ({"output_field": "scene_index"}, r"'scene_index' already exists as IntField; predictions need a StringField"),
        ({"output_field": "weather"}, r"field 'weather' already exists and was not written by categorize_scenes"),
        ({"output_field": "filepath"}, r"field 'filepath' already exists and was not written by categorize_scenes"),
        ({"confidence_field": "scene_id"}, r"'scene_id' already exists as StringField; predictions need a FloatField"),
        ({"known_field": "nope"}, r"known field 'nope' does not exist: set it to the true value"),
        ({"embeddings_field": "nope"}, r"no samples have an embeddings field 'nope'.*compute_embeddings"),
        ({"min_per_value": 50}, r"fewer than 50 labeled scenes.*set 'known_time_of_day' on more scenes \(\d+ labeled units lie in frozen splits"),
        ({"min_per_value": 0}, r"min_per_value must be a whole number of at least 1; got 0"),
    ],
)
def test_a_bad_call_says_what_to_change_and_writes_nothing(demo, kwargs, message):
    dataset, _, _, _ = demo
    call = {"known_field": KNOWN, "output_field": "never_written", **kwargs}
    with pytest.raises(ValueError, match=message):
        categorize_scenes(dataset, "time_of_day", **call)
    dataset.reload()
    assert "never_written" not in dataset.get_field_schema()
    assert "never_written_confidence" not in dataset.get_field_schema()
    assert attribute_run_key("never_written") not in dataset.list_runs()


def test_scenes_without_embeddings_are_refused_with_the_step_that_fills_them(demo):
    dataset, _, _, _ = demo
    fresh = add_demo_scenes(dataset, 2, seed=12, name="late")
    try:
        with pytest.raises(ValueError, match=r"2 units have no 'group_embedding'; run compute_embeddings"):
            categorize_scenes(dataset, "time_of_day", known_field=KNOWN, output_field="never_written")
        assert "never_written" not in dataset.get_field_schema()
    finally:
        for name in SLICES:
            dataset.delete_samples(dataset.select_group_slices(name).match_tags(fresh["tag"]))


def test_on_a_flat_dataset_units_are_samples_and_the_attribute_field_holds_the_known_values(demo):
    dataset, _, _, _ = demo
    flat = dataset.select_group_slices("left").exclude_fields(
        [f for f in dataset.get_field_schema() if f.startswith(("predicted_", "sdk_", "op_"))]
    ).clone(unique_name("attr-flat"))
    flat.untag_samples(list(FROZEN_SPLIT_TAGS))  # no splits on the copy: every label trains
    try:
        ids, true = flat.values(["id", "time_of_day"])
        labeled = {i for v in set(true) for i in [j for j, t in zip(ids, true) if t == v][:PER_VALUE]}
        flat.set_values("lighting", {i: t for i, t in zip(ids, true) if i in labeled}, key_field="id")
        result = categorize_scenes(flat, "lighting")
        assert result["n_units"] == len(ids) and result["n_labeled"] == len(labeled)
        assert result["embeddings_field"] == "embedding" and result["slice"] is None
        predicted = flat.values("predicted_lighting")
        rest = [k for k, i in enumerate(ids) if i not in labeled]
        accuracy = np.mean([predicted[k] == true[k] for k in rest])
        share = max(np.mean([true[k] == v for k in rest]) for v in set(true))
        assert accuracy >= (1 + share) / 2
        assert flat.values("lighting") == [t if i in labeled else None for i, t in zip(ids, true)]
    finally:
        flat.delete()


def test_a_view_gets_predictions_only_on_its_scenes_and_learns_from_labeled_scenes_anywhere(demo):
    dataset, picked, _, _ = demo
    scenes = sorted(set(truth(dataset)) - picked)[:5]
    view = dataset.select_groups(scenes)
    whole = categorize_scenes(dataset, "time_of_day", known_field=KNOWN, output_field="all_tod")
    result = categorize_scenes(view, "time_of_day", known_field=KNOWN, output_field="view_tod")
    assert result["n_units"] == 5 and result["n_labeled"] == whole["n_labeled"]
    assert result["golden_accuracy"] == whole["golden_accuracy"]
    assert sum(v["predicted"] for v in result["per_value"].values()) == 5
    for name in SLICES:
        flat = dataset.select_group_slices(name)
        written = {g: v for g, v in zip(*flat.values(["group.id", "view_tod"])) if v is not None}
        assert set(written) == set(scenes)
        everywhere = dict(zip(*flat.values(["group.id", "all_tod"])))
        assert written == {g: everywhere[g] for g in scenes}


def test_the_form_suggests_the_demo_attribute_and_the_scene_embedding_and_runs_now(demo):
    dataset, _, _, _ = demo
    form = form_properties("categorize_scenes", dataset)
    assert form["attribute"]["default"] == "time_of_day"
    assert form["embeddings_field"]["default"] == "group_embedding"
    assert {"known_field", "output_field", "min_per_value"} <= set(form)
    assert schedules_by_default("categorize_scenes", dataset) is False
    bad = form_properties("categorize_scenes", dataset, {"min_per_value": 0})["min_per_value"]
    assert bad["invalid"] and "min_per_value must be between 1 and 10000" in bad["error_message"]


def test_evaluation_reports_recall_per_predicted_attribute_value_of_the_test_scenes(demo):
    import fiftyone as fo

    dataset, _, _, _ = demo
    assert "predicted_time_of_day" in predicted_attribute_fields(dataset)
    test = dataset.select_group_slices("left").match_tags("split:test")
    ids, oracle, true, predicted = test.values(["id", "oracle", "time_of_day", "predicted_time_of_day"])
    # A model that finds every object by day and none at night.
    def found(detections):
        return fo.Detections(detections=[
            fo.Detection(label=d.label, bounding_box=d.bounding_box, confidence=1.0)
            for d in detections.detections
        ])

    test.set_values(
        "night_blind",
        {i: (found(o) if t == "day" else fo.Detections()) for i, o, t in zip(ids, oracle, true)},
        key_field="id",
    )
    result = evaluate_model(
        dataset, pred_field="night_blind", slice_name="left", gt_field="oracle",
        eval_key="eval_night_blind", record=False,
    )
    recall = result["per_slice_recall"]["predicted_time_of_day"]
    boxes = {v: [len(o.detections) for o, p in zip(oracle, predicted) if p == v] for v in set(predicted)}
    by_day = {v: [len(o.detections) for o, p, t in zip(oracle, predicted, true) if p == v and t == "day"]
              for v in set(predicted)}
    assert recall == pytest.approx({v: sum(by_day[v]) / sum(boxes[v]) for v in boxes if sum(boxes[v])})
    assert set(result["per_slice_recall"]) == set(predicted_attribute_fields(dataset))
    with pytest.raises(ValueError, match=r"slice fields \['nope'\] are not sample fields.*categorize_scenes"):
        evaluate_model(dataset, pred_field="night_blind", slice_name="left", gt_field="oracle",
                       eval_key="eval_night_blind", record=False, slice_fields=["nope"])
