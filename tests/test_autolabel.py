"""autolabel and review_autolabels, end to end on the demo dataset, offline.

The detectors are real ``transformers`` / Ultralytics models with random weights, built
from tiny configs by the benchmark's :func:`random_checkpoint` and saved to disk, then
loaded through the same code path as a real checkpoint (``from_pretrained(...,
local_files_only=True)`` / a ``.pt``). The OWL box heads' last layer is zeroed, so every
patch predicts its box bias: a geometry the tests can check exactly. Scores stay random.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bson import ObjectId
from fiftyone import ViewField as F
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionError, ExecutionRunState

from annoloop.benchmarks.bench_autolabel import random_checkpoint
from annoloop.core.locks import run_is_alive
from annoloop.demo.dataset import load_demo_dataset
from annoloop.quality.frozen import create_splits
from annoloop.training import runs
from annoloop.training.autolabel.base import MODELS, ZeroShotDetector, load_detector
from annoloop.training.autolabel.review import AUTOLABEL_TAG, review_autolabels
from annoloop.training.autolabel.run import autolabel, autolabel_run, autolabel_runs
from fo_helpers import (
    delegated_worker,
    fail_and_rerun,
    form_properties,
    kill_worker,
    queue_operator,
    run_on_worker,
    run_operator,
    unique_name,
    wait_for_delegated,
    wait_until,
    wait_until_dead,
)

CLASSES = ["car", "cyclist", "pedestrian", "truck", "van"]
SCHEMA = {"type": "detections", "component": "dropdown", "classes": CLASSES, "attributes": []}
NUM_SCENES = 6
FROZEN_TAGS = ["split:test", "split:mining", "split:golden"]


# ------------------------------------------------------------------------- tiny models


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("autolabel-models")


@pytest.fixture(scope="module")
def owlvit(model_dir):
    return random_checkpoint("owlvit", "tiny", model_dir)[0]


@pytest.fixture(scope="module")
def checkpoints(model_dir, owlvit):
    """Every registered model, as ``(checkpoint, loader options)``."""
    built = {name: random_checkpoint(name, "tiny", model_dir) for name in MODELS if name != "owlvit"}
    return {**built, "owlvit": (owlvit, {})}


# ----------------------------------------------------------------------------- datasets


@pytest.fixture(scope="module")
def demo():
    dataset = load_demo_dataset(unique_name("autolabel"), num_scenes=NUM_SCENES, seed=4, image_size=(128, 64))
    dataset.set_label_schemas({"ground_truth": SCHEMA})
    yield dataset
    dataset.delete()


@pytest.fixture
def dataset(demo):
    clone = demo.clone(unique_name("autolabel-clone"))
    clone.persistent = True  # delegated workers load datasets by name
    yield clone
    clone.delete()


def test_the_form_says_the_default_weights_are_missing_and_offers_the_trained_runs(dataset):
    runs.start_run(dataset, "round1", {})
    runs.complete_run(dataset, "round1", weights="/runs/round1/best.pt")
    form = form_properties("autolabel", dataset, {"model": "owlv2"})
    assert form["checkpoint"]["invalid"]
    assert "is not on this machine" in form["checkpoint"]["error_message"]
    assert "model 'trained'" in form["missing_checkpoint"]["view"]["label"]
    assert "round1" in form["missing_checkpoint"]["view"]["label"]


def test_the_form_accepts_weights_that_are_on_this_machine(dataset, owlvit):
    form = form_properties("autolabel", dataset, {"model": "owlvit", "checkpoint": owlvit})
    assert not form["checkpoint"].get("invalid") and "missing_checkpoint" not in form


def left(dataset):
    return dataset.select_group_slices("left")


def labels_by_sample(dataset, field="autolabels", slice_name="left"):
    """``{sample id: Counter of (class, rounded box)}``."""
    view = dataset.select_group_slices(slice_name)
    out = {}
    for sid, labels, boxes in zip(*view.values(["id", f"{field}.detections.label", f"{field}.detections.bounding_box"])):
        out[sid] = None if labels is None else Counter(
            (lab, tuple(np.round(b, 6))) for lab, b in zip(labels, boxes)
        )
    return out


def run(dataset, view=None, **params):
    return run_operator("autolabel", {"delegate": False, "slice": "left", **params}, dataset=dataset, view=view).result


def owl_params(checkpoint, **params):
    return {"model": "owlvit", "checkpoint": checkpoint, "min_confidence": 0.0, **params}


# --------------------------------------------------------------------------- detectors


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_returns_clipped_relative_boxes_for_its_prompts(checkpoints, name):
    checkpoint, options = checkpoints[name]
    detector = load_detector(name, checkpoint, device="cpu", **options)
    assert isinstance(detector, ZeroShotDetector) and detector.name == name
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 128, 3), dtype=np.uint8) for _ in range(2)]
    prompts = ["car", "a red truck", "van"]
    found = detector.detect(images, prompts, 0.0)
    assert len(found) == 2
    for boxes in found:
        for box in boxes:
            x, y, w, h = box.xywh
            assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 1 + 1e-6 and y + h <= 1 + 1e-6
            assert 0.0 <= box.score <= 1.0
            if name == "trained":  # closed vocabulary: its classes '0'..'79' name no prompt
                assert box.prompt == -1 and box.text.isdigit()
            else:
                assert box.text == prompts[box.prompt]
    if name in ("owlvit", "owlv2", "grounding_dino"):
        assert sum(map(len, found)) > 0
    assert all(b.score >= 0.9 for boxes in detector.detect(images, prompts, 0.9) for b in boxes)


def test_owlv2_boxes_are_relative_to_the_image_not_to_its_padded_square(checkpoints):
    # OWLv2 pads a 128 x 64 image to a 128 x 128 square. With the zeroed box head each patch
    # of the 4 x 4 grid predicts its box bias: a 1/4 x 1/4 box (of the square) centred on the
    # patch's bottom-right corner. In image coordinates that is 1/4 wide and 1/2 high, rows 0
    # and 1 only (the rest is padding), clipped at the image border.
    detector = load_detector("owlv2", checkpoints["owlv2"][0], device="cpu")
    image = np.full((64, 128, 3), 127, dtype=np.uint8)
    boxes = detector.detect([image], ["car"], 0.0)[0]
    expected = sorted(
        (x0, y0, min(x0 + 0.25, 1.0) - x0, min(y0 + 0.5, 1.0) - y0)
        for x0 in (0.125, 0.375, 0.625, 0.875)
        for y0 in (0.25, 0.75)
    )
    np.testing.assert_allclose(sorted(b.xywh for b in boxes), expected, atol=1e-3)


# -------------------------------------------------------------------------- autolabel


def test_autolabel_operator_writes_boxes_with_confidence_and_provenance(dataset, owlvit):
    result = run(dataset, **owl_params(owlvit, batch_size=3))
    assert result["status"] == "completed" and result["n_labeled"] == NUM_SCENES
    assert result["n_detections"] > 0 and set(result["per_class"]) <= set(CLASSES)
    dataset.reload()
    view = left(dataset)
    assert view.exists("autolabels").count() == NUM_SCENES
    assert view.values("autolabels.run") == [result["run_id"]] * NUM_SCENES
    labels = [d for dets in view.values("autolabels") for d in dets.detections]
    assert len(labels) == result["n_detections"]
    for d in labels:
        assert d.label in CLASSES and 0.0 <= d.confidence <= 1.0
        assert (d.model, d.checkpoint, d.run, d.prompt) == ("owlvit", owlvit, result["run_id"], d.label)
    # Only the chosen camera slice is labeled; the labels themselves are untouched.
    assert dataset.select_group_slices("right").exists("autolabels").count() == 0
    assert view.exists("ground_truth").count() == 0
    record = autolabel_run(dataset, result["run_id"])
    assert record["status"] == "completed" and record["summary"]["n_detections"] == result["n_detections"]
    assert record["label_field"] == "ground_truth" and record["vocabulary"]["classes"] == CLASSES


def test_sdk_rerun_does_nothing_and_overwrite_relabels_without_duplicates(dataset, owlvit):
    first = autolabel(dataset, slice_name="left", **owl_params(owlvit))
    before = labels_by_sample(dataset)
    ids_before = left(dataset).values("autolabels.detections.id")

    again = autolabel(dataset, slice_name="left", **owl_params(owlvit))
    assert again["status"] == "up_to_date" and again["n_labeled"] == 0 and again["n_skipped"] == NUM_SCENES
    assert left(dataset).values("autolabels.detections.id") == ids_before
    assert len(autolabel_runs(dataset)) == 1, "a run with nothing to do leaves no record"

    redone = autolabel(dataset, slice_name="left", overwrite=True, **owl_params(owlvit))
    assert redone["run_id"] != first["run_id"] and redone["n_labeled"] == NUM_SCENES
    assert labels_by_sample(dataset) == before, "same model, same boxes: replaced, not appended"
    assert set(left(dataset).values("autolabels.run")) == {redone["run_id"]}


def test_off_schema_outputs_are_dropped_and_counted_never_written(dataset, owlvit, checkpoints):
    result = autolabel(
        dataset, slice_name="left", prompts={"car": "car", "bus": None, "lorry": "truck"}, **owl_params(owlvit)
    )
    assert result["off_schema"].get("bus", 0) > 0 and result["n_off_schema"] == result["off_schema"]["bus"]
    written = left(dataset).distinct("autolabels.detections.label")
    assert set(written) <= {"car", "truck"}
    assert set(left(dataset).distinct("autolabels.detections.prompt")) <= {"car", "lorry"}
    assert result["classes_without_prompt"] == ["cyclist", "pedestrian", "van"]

    # A trained detector whose classes are not the schema's writes nothing and says so.
    weights, options = checkpoints["trained"]
    trained = autolabel(
        dataset, slice_name="left", model="trained", checkpoint=weights, min_confidence=0.0,
        output_field="from_trained", model_options=options,
    )
    assert trained["n_detections"] == 0 and trained["n_off_schema"] > 0
    assert left(dataset).exists("from_trained").count() == NUM_SCENES


def test_trained_detector_is_found_by_its_training_run_record(dataset, checkpoints):
    weights, _ = checkpoints["trained"]
    runs.start_run(dataset, "tiny", {"slice": "left"})
    runs.complete_run(dataset, "tiny", weights=weights)
    result = run(dataset, model="trained", min_confidence=0.5, output_field="from_run")
    assert result["checkpoint"] == weights and result["n_labeled"] == NUM_SCENES


def boxes_of(dataset, field, label):
    """Sorted ``(rounded box, confidence)`` of one class on the left slice."""
    view = left(dataset).filter_labels(field, F("label") == label)
    return sorted(
        (tuple(np.round(d.bounding_box, 6)), d.confidence)
        for dets in view.values(field)
        for d in dets.detections
    )


def test_class_thresholds_raise_the_bar_per_class(dataset, owlvit):
    base = autolabel(dataset, slice_name="left", **owl_params(owlvit, min_confidence=0.2))
    # The class whose confidences spread most, with a bar in the middle of them.
    cls = max(base["per_class"], key=lambda c: len({c2 for _, c2 in boxes_of(dataset, "autolabels", c)}))
    confidences = sorted(c for _, c in boxes_of(dataset, "autolabels", cls))
    bar = float(np.median(confidences))
    assert confidences[0] < bar, "the random model should give this class spread-out scores"
    strict = autolabel(
        dataset, slice_name="left", output_field="strict", class_thresholds={cls: bar},
        **owl_params(owlvit, min_confidence=0.2),
    )
    assert strict["below_threshold"] >= sum(c < bar for c in confidences) > 0
    assert boxes_of(dataset, "strict", cls) == [b for b in boxes_of(dataset, "autolabels", cls) if b[1] >= bar]
    for other in set(CLASSES) - {cls}:
        assert boxes_of(dataset, "strict", other) == boxes_of(dataset, "autolabels", other)


def test_selected_samples_and_batch_tags_choose_the_scenes_to_label(dataset, owlvit):
    right = dataset.select_group_slices("right")
    picked = right.limit(2).values("id")  # selected in the App on another slice: same scenes
    result = run_operator(
        "autolabel",
        {"delegate": False, "slice": "left", "target": "selected", **owl_params(owlvit)},
        dataset=dataset,
        selected=picked,
    ).result
    assert result["n_labeled"] == 2
    groups = set(right.select(picked).values("group.id"))
    assert set(left(dataset).exists("autolabels").values("group.id")) == groups

    left(dataset).skip(5).tag_samples("batch:007")
    result = run(dataset, target="tag", batch_tag="batch:007", **owl_params(owlvit))
    assert result["n_labeled"] == NUM_SCENES - 5
    assert left(dataset).exists("autolabels").count() == 2 + NUM_SCENES - 5


def test_autolabel_scores_the_run_on_the_golden_set(dataset, owlvit):
    create_splits(dataset, test=1, golden=2, seed=0)
    result = run(dataset, target="tag", batch_tag="split:test", score_golden=True, **owl_params(owlvit))
    assert result["n_labeled"] == 2, "the two golden scenes; the test scene is never labeled"
    assert result["n_skipped_frozen"] == 1
    golden = result["golden"]
    assert "error" not in golden and golden["n_samples"] == 2
    assert {"precision", "recall", "f1"} <= set(golden["overall"])
    assert set(golden["per_class"]) <= set(CLASSES)


def frozen_left(dataset, tags=FROZEN_TAGS):
    return left(dataset).match_tags(list(tags))


def test_autolabel_skips_the_frozen_splits_and_counts_them(dataset, owlvit):
    create_splits(dataset, test=1, mining=1, golden=1, seed=0)
    # A test scene whose tag was removed by hand stays frozen: the record remembers it.
    untagged = frozen_left(dataset, ["split:test"]).first()
    for name in ("left", "right", "pcd"):
        dataset.select_group_slices(name).match(F("scene_id") == untagged.scene_id).untag_samples("split:test")
    result = run(dataset, **owl_params(owlvit))
    assert result["n_skipped_frozen"] == 3 and result["n_labeled"] == result["n_target"] == NUM_SCENES - 3
    assert frozen_left(dataset).exists("autolabels").count() == 0
    assert not left(dataset).select(untagged.id).exists("autolabels").count()
    assert autolabel_run(dataset, result["run_id"])["summary"]["n_skipped_frozen"] == 3

    # Opting in labels the golden scene (to score the model); test and mining stay untouched.
    scored = run(dataset, score_golden=True, **owl_params(owlvit))
    assert scored["n_skipped_frozen"] == 2 and scored["n_labeled"] == 1
    assert frozen_left(dataset, ["split:golden"]).exists("autolabels").count() == 1
    assert frozen_left(dataset, ["split:test", "split:mining"]).exists("autolabels").count() == 0

    with pytest.raises(ExecutionError, match="frozen test / mining / golden splits.*score_golden"):
        run(dataset, target="tag", batch_tag="split:mining", **owl_params(owlvit))


def test_autolabel_never_writes_a_recorded_frozen_field(dataset, owlvit):
    create_splits(dataset, test=1, mining=1, golden=1, seed=0)
    before = left(dataset).values("golden")
    with pytest.raises(ExecutionError, match="frozen splits' recorded labels.*another output_field"):
        run(dataset, output_field="golden", score_golden=True, **owl_params(owlvit))
    assert left(dataset).values("golden") == before and autolabel_runs(dataset) == []


# ----------------------------------------------------------------------------- review


def test_review_accepts_only_confident_schema_passing_labels_once(dataset, owlvit):
    result = autolabel(dataset, slice_name="left", **owl_params(owlvit))
    view = left(dataset)
    # A reviewer renamed one candidate to a class the schema does not have.
    first = view.first()
    first.autolabels.detections[0].label = "bus"
    first.save()
    candidates = [d for dets in view.values("autolabels") for d in dets.detections]
    expected = sorted(
        (d.label, round(d.confidence, 6)) for d in candidates if d.label in CLASSES and d.confidence >= 0.6
    )

    summary = review_autolabels(dataset, slice_name="left", min_confidence=0.6)
    assert summary["n_samples"] == NUM_SCENES and summary["label_field"] == "ground_truth"
    assert summary["rejected"]["unknown_class"] == 1
    assert summary["n_accepted"] == len(expected) > 0
    accepted = [d for dets in view.values("ground_truth") for d in (dets.detections if dets else [])]
    assert sorted((d.label, round(d.confidence, 6)) for d in accepted) == expected
    assert all(d.tags == [AUTOLABEL_TAG, f"{AUTOLABEL_TAG}:{result['run_id']}"] for d in accepted)
    reviewed = [d for dets in view.values("autolabels") for d in dets.detections]
    assert Counter(d.review for d in reviewed) == Counter(
        {"accepted": len(expected), "unknown_class": 1, "low_confidence": len(reviewed) - len(expected) - 1}
    )

    again = review_autolabels(dataset, slice_name="left", min_confidence=0.6)
    assert again["n_samples"] == 0 and again["n_unchanged"] == NUM_SCENES
    assert sum(len(d.detections) for d in view.values("ground_truth") if d) == len(expected)

    # The accepted labels pass the gate: provenance lives in tags, not undeclared attributes.
    gate = run_operator("validate_labels", {"label_field": "ground_truth", "slices": ["left"]}, dataset=dataset)
    assert gate.result["total"]["n_violations"] == 0


def test_review_discards_a_selected_sample_and_takes_back_its_accepted_labels(dataset, owlvit):
    autolabel(dataset, slice_name="left", **owl_params(owlvit))
    review_autolabels(dataset, slice_name="left", min_confidence=0.0)
    view = left(dataset)
    sample_id = view.match(F("ground_truth.detections").length() > 0).first().id
    n_total = sum(len(d.detections) for d in view.values("ground_truth") if d)
    n_sample = len(view[sample_id].ground_truth.detections)

    result = run_operator(
        "review_autolabels",
        {"action": "discard", "slice": "left", "target": "selected"},
        dataset=dataset,
        selected=[sample_id],
    ).result
    assert result["n_samples"] == 1 and result["n_removed"] == n_sample
    assert sum(len(d.detections) for d in view.values("ground_truth") if d) == n_total - n_sample
    assert view[sample_id].autolabels.review == "discarded"


def test_review_rejects_every_label_missing_a_required_attribute(dataset, owlvit):
    autolabel(dataset, slice_name="left", **owl_params(owlvit))
    schema = {**SCHEMA, "attributes": [{"name": "occluded", "type": "bool", "required": True}]}
    summary = review_autolabels(dataset, slice_name="left", min_confidence=0.0, schema=schema)
    assert summary["n_accepted"] == 0 and summary["rejected"] == {"missing_required_attribute": summary["n_candidates"]}
    assert left(dataset).exists("ground_truth").count() == 0


def test_review_refuses_to_accept_labels_on_frozen_samples(dataset, owlvit):
    create_splits(dataset, test=1, mining=1, golden=1, seed=0)
    autolabel(dataset, slice_name="left", score_golden=True, **owl_params(owlvit))
    golden_id = frozen_left(dataset).first().id
    before = left(dataset).values(["ground_truth", "autolabels.review"])
    with pytest.raises(ValueError, match=f"1 of the {NUM_SCENES - 2} samples.*frozen.*{golden_id}.*match_tags"):
        review_autolabels(dataset, slice_name="left", min_confidence=0.0)
    assert left(dataset).values(["ground_truth", "autolabels.review"]) == before
    with pytest.raises(ExecutionError, match="frozen"):
        run_operator(
            "review_autolabels", {"action": "accept", "slice": "left", "target": "selected"},
            dataset=dataset, selected=[golden_id],
        )
    assert left(dataset).values(["ground_truth", "autolabels.review"]) == before

    outside = dataset.match_tags(FROZEN_TAGS, bool=False)
    summary = review_autolabels(outside, slice_name="left", min_confidence=0.0)
    assert summary["n_samples"] == NUM_SCENES - 3 and summary["n_accepted"] > 0
    assert frozen_left(dataset).exists("ground_truth").count() == 0


# -------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model": "owlv2", "checkpoint": "google/owlv2-no-such-model"}, "needs weights.*Hugging Face cache"),
        ({"model": "yolo_world", "checkpoint": None}, "YOLO-World needs weights"),
        ({"model": "dino-x"}, "unknown autolabel model"),
        ({"classes": []}, "class list is empty"),
        ({"min_confidence": 1.5}, r"\[0, 1\]"),
        ({"min_confidence": -0.1}, r"\[0, 1\]"),
        ({"class_thresholds": ["car = 2"]}, r"\[0, 1\]"),
        ({"slice": "pcd"}, "not images"),
        ({"output_field": "scene_id"}, "not Detections"),
        ({"output_field": "oracle"}, "did not write"),
        ({"output_field": "ground_truth"}, "must differ from the label field"),
        ({"classes": ["car", "bus"]}, r"not classes of 'ground_truth'"),
        ({"prompts": ["traffic cone ="]}, "no prompt maps to a schema class"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(demo, owlvit, params, message):
    fields = set(demo.get_field_schema())
    with pytest.raises(ExecutionError, match=message):
        run(demo, **{**owl_params(owlvit), **params})
    demo.reload()
    assert set(demo.get_field_schema()) == fields and autolabel_runs(demo) == []


def test_an_empty_target_is_refused(demo, owlvit):
    with pytest.raises(ValueError, match="no images"):
        autolabel(demo.match(F("scene_index") < 0), slice_name="left", **owl_params(owlvit))


# ------------------------------------------------------------------- delegated workers


def queue(dataset, params) -> str:
    return queue_operator(
        "autolabel", {"slice": "left", "delegate": True, **params}, dataset=dataset.name
    )


@pytest.mark.slow
def test_autolabel_completes_on_a_delegated_worker(dataset, owlvit):
    doc = run_on_worker(queue(dataset, owl_params(owlvit)))
    assert doc.run_state == ExecutionRunState.COMPLETED, doc.result
    dataset.reload()
    assert left(dataset).exists("autolabels").count() == NUM_SCENES
    assert [r["status"] for r in autolabel_runs(dataset)] == ["completed"]


@pytest.mark.slow
def test_a_killed_worker_is_resumed_by_a_new_one_without_duplicates(demo, dataset, owlvit):
    params = owl_params(owlvit, batch_size=1, chunk_size=2)
    reference = demo.clone(unique_name("autolabel-reference"))
    autolabel(reference, slice_name="left", **{k: v for k, v in params.items()})
    expected = {
        scene: labels
        for scene, labels in zip(left(reference).values("scene_id"), labels_by_sample(reference).values())
    }
    reference.delete()

    # The third image is a FIFO: reading it blocks, so the worker stops after writing the
    # first chunk, exactly where we want to kill it.
    third = left(dataset).skip(2).first()
    fifo = Path(os.environ["ANNOLOOP_TEST_SESSION_DIR"]) / f"{unique_name('fifo')}.jpg"
    os.mkfifo(fifo)
    real_path = third.filepath
    third.filepath = str(fifo)
    third.save()

    op_id = queue(dataset, params)
    with delegated_worker() as (worker, log_path):
        wait_until(lambda: left(dataset).exists("autolabels").count() >= 2, worker, log_path)
        time.sleep(0.5)  # the worker is blocked on the FIFO
        kill_worker(worker)
    assert left(dataset).exists("autolabels").count() == 2
    dataset.reload()
    assert [r["status"] for r in autolabel_runs(dataset)] == ["started"]

    fifo.unlink()
    shutil.copyfile(real_path, fifo)
    wait_until_dead(lambda: run_is_alive(dataset, "autolabel:autolabels"))
    rerun_id = fail_and_rerun(op_id)  # what the README says to do when a worker died
    with delegated_worker() as (worker, log_path):
        doc = wait_for_delegated(rerun_id, log_path=log_path)
    assert doc.run_state == ExecutionRunState.COMPLETED, doc.result
    assert doc.result.result["resumed"] and doc.result.result["n_labeled"] == NUM_SCENES - 2

    dataset.reload()
    [record] = autolabel_runs(dataset)
    assert record["status"] == "completed"
    assert set(left(dataset).values("autolabels.run")) == {record["run_id"]}
    got = {scene: labels for scene, labels in zip(left(dataset).values("scene_id"), labels_by_sample(dataset).values())}
    assert got == expected, "every sample labeled once, exactly as an uninterrupted run"


# ------------------------------------------------------------------------ sharded runs


def start_sharded(dataset, checkpoint, shards: int, **params) -> dict:
    return run(dataset, **owl_params(checkpoint, shards=shards, **params))


def execute_queued(operations, order=reversed):
    """Run queued operations in this process, as a worker would; their documents."""
    service = DelegatedOperationService()
    docs = []
    for op in order(operations):
        service.execute_operation(service.get(ObjectId(op)))
        docs.append(service.get(ObjectId(op)))
    return docs


def test_shards_run_in_any_order_make_one_run_with_the_labels_of_an_unsharded_one(demo, dataset, owlvit):
    reference = demo.clone(unique_name("autolabel-plain"))
    plain = autolabel(reference, slice_name="left", **owl_params(owlvit))
    expected = dict(zip(left(reference).values("scene_id"), labels_by_sample(reference).values()))
    reference.delete()

    started = start_sharded(dataset, owlvit, 3)
    assert started["status"] == "queued" and sum(started["units_per_shard"]) == NUM_SCENES
    assert started["queued"] == [k for k in range(3) if started["units_per_shard"][k]]
    docs = execute_queued(list(started["operations"].values()))
    assert [d.run_state for d in docs] == [ExecutionRunState.COMPLETED] * len(docs), [d.result for d in docs]
    assert [d.result.result["completed"] for d in docs] == [False] * (len(docs) - 1) + [True]
    dataset.reload()
    (record,) = autolabel_runs(dataset)
    assert record["run_id"] == started["run_id"] and record["status"] == "completed"
    summary = record["summary"]
    assert summary["n_labeled"] == summary["n_run_samples"] == NUM_SCENES
    assert summary["n_detections"] == plain["n_detections"]
    assert sorted(summary["shards"]["done"]) == [str(k) for k in started["queued"]]
    found = dict(zip(left(dataset).values("scene_id"), labels_by_sample(dataset).values()))
    assert found == expected


def test_a_bad_sharded_call_fails_before_any_shard_is_queued(dataset, owlvit):
    service = DelegatedOperationService()
    before = len(service.list_operations(dataset_name=dataset.name))
    with pytest.raises(ExecutionError, match="min_confidence"):
        start_sharded(dataset, owlvit, 3, min_confidence=2.0)
    assert len(service.list_operations(dataset_name=dataset.name)) == before
    dataset.reload()
    assert autolabel_runs(dataset) == []


def test_a_failed_shard_leaves_the_run_open_and_starting_again_queues_only_that_shard(dataset, owlvit):
    started = start_sharded(dataset, owlvit, 3)
    broken = left(dataset).first()
    real_path, broken.filepath = broken.filepath, "/no/such/image.jpg"
    broken.save()
    docs = execute_queued(list(started["operations"].values()), order=list)
    failed = [d for d in docs if d.run_state == ExecutionRunState.FAILED]
    assert len(failed) == 1 and "/no/such/image.jpg" in str(failed[0].result.error)
    dataset.reload()
    assert autolabel_runs(dataset)[0]["status"] == "failed"

    broken.filepath = real_path
    broken.save()
    again = start_sharded(dataset, owlvit, 3)
    assert again["run_id"] == started["run_id"]
    assert len(again["queued"]) == 1 and sorted(again["resumed"]) == sorted(
        set(started["queued"]) - set(again["queued"])
    )
    (doc,) = execute_queued(list(again["operations"].values()))
    assert doc.run_state == ExecutionRunState.COMPLETED and doc.result.result["completed"]
    dataset.reload()
    (record,) = autolabel_runs(dataset)
    assert record["status"] == "completed" and record["summary"]["n_run_samples"] == NUM_SCENES


@pytest.mark.slow
def test_two_workers_share_a_sharded_autolabel_run(dataset, owlvit):
    started = start_sharded(dataset, owlvit, 4)
    ops = [ObjectId(op) for op in started["operations"].values()]
    with delegated_worker() as (first, log), delegated_worker() as (second, _):
        docs = [wait_for_delegated(op, log_path=log) for op in ops]
    assert all(d.run_state == ExecutionRunState.COMPLETED for d in docs), [d.result for d in docs]
    assert {d.result.result["parent_pid"] for d in docs} == {first.pid, second.pid}
    assert sum(d.result.result["completed"] for d in docs) == 1
    dataset.reload()
    assert [r["status"] for r in autolabel_runs(dataset)] == ["completed"]
    assert left(dataset).match(F("autolabels.run") == started["run_id"]).count() == NUM_SCENES
