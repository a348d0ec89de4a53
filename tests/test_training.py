"""Train -> apply -> evaluate through FiftyOne's executor, on a tiny grouped dataset.

The dataset is built here with Pillow (two camera slices of 96 x 64 images, one red "car"
and one green "pedestrian" box per image), so these tests depend on nothing but FiftyOne
and Ultralytics. Training is the default detector (yolov8n-lite0: its backbone from ImageNet
weights, the rest random), one epoch at 64 px.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fiftyone as fo
from fiftyone.operators.executor import ExecutionError, ExecutionRunState

from annoloop.training import runs
from annoloop.core.names import (
    GOLDEN_SPLIT_TAG,
    LEDGER_INFO_KEY,
    MINING_EVAL_KEY,
    MINING_SPLIT_TAG,
    QUARANTINE_TAG,
    TEST_SPLIT_TAG,
)
from annoloop.training.export import export_yolo
from annoloop.core.views import frozen_media, real_paths
from fo_helpers import queue_operator, run_on_worker, run_operator, unique_name

SIZE = (96, 64)
TINY_TRAINING = {"slice": "left", "epochs": 1, "imgsz": 64, "batch": 8, "delegate": False}


def build_tiny_dataset(
    num_groups: int = 20, num_test: int = 5, num_unlabeled: int = 2, num_mining: int = 0
) -> fo.Dataset:
    """A persistent grouped dataset: groups [0, num_test) are the frozen test set and the
    next ``num_mining`` groups the frozen mining set (tagged on both slices); the last
    ``num_unlabeled`` groups have no ground truth."""
    name = unique_name("train")
    media = Path(os.environ["ANNOLOOP_TEST_SESSION_DIR"]) / "media" / name
    media.mkdir(parents=True)
    rng = np.random.default_rng(7)
    dataset = fo.Dataset(name, persistent=True)
    dataset.add_group_field("group", default="left")
    samples = []
    for g in range(num_groups):
        group = fo.Group()
        for slice_name in ("left", "right"):
            pixels = np.full((SIZE[1], SIZE[0], 3), 50, dtype=np.uint8)
            boxes = []
            for label, colour in (("car", (220, 40, 40)), ("pedestrian", (40, 220, 40))):
                w, h = rng.uniform(0.25, 0.4), rng.uniform(0.3, 0.5)
                x, y = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
                x0, y0 = int(x * SIZE[0]), int(y * SIZE[1])
                pixels[y0 : y0 + int(h * SIZE[1]), x0 : x0 + int(w * SIZE[0])] = colour
                boxes.append(fo.Detection(label=label, bounding_box=[x, y, w, h], batch=f"batch-{g % 2:03d}"))
            path = media / f"{g:03d}_{slice_name}.png"
            Image.fromarray(pixels).save(path)
            labeled = g < num_groups - num_unlabeled
            samples.append(
                fo.Sample(
                    filepath=str(path),
                    group=group.element(slice_name),
                    ground_truth=fo.Detections(detections=boxes) if labeled else None,
                    tags=[TEST_SPLIT_TAG]
                    if g < num_test
                    else [MINING_SPLIT_TAG]
                    if g < num_test + num_mining
                    else [],
                )
            )
    dataset.add_samples(samples)
    return dataset


@pytest.fixture
def tiny():
    dataset = build_tiny_dataset()
    yield dataset
    dataset.delete()


@pytest.fixture(scope="module")
def trained():
    """A tiny dataset with one completed training run, ``r0``, shared by the loop tests."""
    dataset = build_tiny_dataset(num_mining=3)
    result = run_operator("train_detector", {**TINY_TRAINING, "run_name": "r0"}, dataset=dataset)
    yield dataset, result.result
    dataset.delete()


def left_slice(dataset):
    return dataset.select_group_slices("left")


# --- the loop -------------------------------------------------------------------------------


def test_train_detector_completes_a_run_with_weights_params_and_metrics(trained):
    dataset, result = trained
    record = runs.get_run(dataset, "r0")
    assert record.status == runs.STATUS_COMPLETED
    assert record.weights == result["weights"] and Path(record.weights).is_file()
    assert record.params["epochs"] == 1 and record.params["imgsz"] == 64
    assert "metrics/mAP50-95(B)" in record.metrics
    export = record.outputs["export"]
    # 20 groups: 5 frozen test, 3 frozen mining, 2 unlabeled, 10 trainable.
    assert (export["num_samples"], export["num_frozen"], export["num_unlabeled"]) == (10, 8, 2)
    assert result["num_train"] + result["num_val"] == 10
    assert result["classes"] == ["car", "pedestrian"]


def test_apply_then_evaluate_scores_the_frozen_test_set_and_records_a_round(trained):
    dataset, _ = trained
    applied = run_operator(
        "apply_detector",
        {"run_name": "r0", "target": "test", "conf": 0.001, "delegate": False},
        dataset=dataset,
    ).result
    assert applied["num_samples"] == 5
    left = left_slice(dataset)
    assert sorted(left.exists("predictions").values("id")) == sorted(
        left.match_tags(TEST_SPLIT_TAG).values("id")
    )

    evaluated = run_operator(
        "evaluate_model", {"pred_field": "predictions", "delegate": False}, dataset=dataset
    ).result
    assert evaluated["run_name"] == "r0"  # found from the run that wrote the field
    assert 0.0 <= evaluated["map"] <= 1.0
    assert evaluated["num_samples"] == 5
    assert evaluated["fn"] + evaluated["tp"] == 10  # two boxes per test image
    labels = evaluated["confusion_labels"]
    assert labels == ["car", "pedestrian", "(none)"]
    assert np.asarray(evaluated["confusion_matrix"]).shape == (3, 3)
    assert set(evaluated["per_class"]) >= {"car", "pedestrian"}

    # Per-sample and per-object outcomes stay on the dataset for the planner.
    test = left.match_tags(TEST_SPLIT_TAG)
    assert test.sum("eval_fn") == evaluated["fn"]
    assert test.sum("eval_fp") == evaluated["fp"]
    assert set(test.distinct("ground_truth.detections.eval")) <= {"tp", "fn"}
    assert len(test.filter_labels("ground_truth", fo.ViewField("eval") != None)) == 5
    assert set(test.distinct("predictions.detections.eval")) <= {"tp", "fp"}

    dataset.reload()
    ledger = dataset.info[LEDGER_INFO_KEY]
    assert len(ledger) == 1
    assert ledger[0]["total_labels"] == 10 and ledger[0]["train_run"] == "r0"
    assert ledger[0]["batch"] == "batch-001"  # the latest annotation batch trained on
    assert evaluated["plateau"]["plateaued"] is False

    # Evaluating the same model again replaces its round instead of adding one.
    run_operator("evaluate_model", {"iou": 0.6, "delegate": False}, dataset=dataset)
    dataset.reload()
    assert len(dataset.info[LEDGER_INFO_KEY]) == 1


def test_the_mining_split_is_predicted_and_evaluated_for_the_planner_without_a_ledger_round(
    trained,
):
    dataset, _ = trained
    dataset.reload()
    ledger_before = dataset.info.get(LEDGER_INFO_KEY)
    applied = run_operator(
        "apply_detector",
        {"run_name": "r0", "target": "mining", "pred_field": "mining_pred", "conf": 0.001,
         "delegate": False},
        dataset=dataset,
    ).result
    left = left_slice(dataset)
    mining = left.match_tags(MINING_SPLIT_TAG)
    assert applied["num_samples"] == len(mining)
    assert sorted(left.exists("mining_pred").values("id")) == sorted(mining.values("id"))

    evaluated = run_operator(
        "evaluate_model",
        {"pred_field": "mining_pred", "split": "mining", "delegate": False},
        dataset=dataset,
    ).result
    assert evaluated["split"] == "mining" and evaluated["eval_key"] == MINING_EVAL_KEY
    assert evaluated["num_samples"] == len(mining)
    assert mining.sum(f"{MINING_EVAL_KEY}_fn") == evaluated["fn"]
    assert "round" not in evaluated  # the ledger reports the test split only
    dataset.reload()
    assert dataset.info.get(LEDGER_INFO_KEY) == ledger_before


def test_the_pool_target_predicts_only_unlabeled_samples_outside_the_frozen_splits(trained):
    dataset, _ = trained
    applied = run_operator(
        "apply_detector",
        {"run_name": "r0", "target": "pool", "pred_field": "pool_pred", "delegate": False},
        dataset=dataset,
    ).result
    left = left_slice(dataset)
    pool = left.match_tags([TEST_SPLIT_TAG, MINING_SPLIT_TAG], bool=False).exists(
        "ground_truth", False
    )
    assert applied["num_samples"] == len(pool) == 2
    assert sorted(left.exists("pool_pred").values("id")) == sorted(pool.values("id"))


def test_a_run_sized_by_steps_trains_as_many_epochs_as_the_steps_need(trained):
    dataset, _ = trained
    steps = 3
    result = run_operator(
        "train_detector",
        {**TINY_TRAINING, "run_name": "by_steps", "steps": steps, "rect": True,
         "val_each_epoch": False},
        dataset=dataset,
    ).result
    batches_per_epoch = math.ceil(result["num_train"] / TINY_TRAINING["batch"])
    assert result["epochs"] == math.ceil(steps / batches_per_epoch)
    record = runs.get_run(dataset, "by_steps")
    assert record.params["steps"] == steps and record.params["rect"] is True


def test_apply_detector_refuses_to_overwrite_ground_truth(trained):
    dataset, _ = trained
    before = left_slice(dataset).values("ground_truth")
    with pytest.raises(ExecutionError, match="without confidences"):
        run_operator(
            "apply_detector",
            {"run_name": "r0", "pred_field": "ground_truth", "target": "slice", "delegate": False},
            dataset=dataset,
        )
    assert left_slice(dataset).values("ground_truth") == before


# --- frozen splits never reach training ------------------------------------------------------


def test_frozen_test_golden_and_quarantined_samples_never_reach_a_training_export(tiny, tmp_path):
    left = left_slice(tiny)
    right = tiny.select_group_slices("right")
    ids = left.values("id")
    # Group 5 is frozen only through its *right* image: the whole scene must stay out.
    right.skip(5).limit(1).tag_samples(TEST_SPLIT_TAG)
    left.select(ids[6]).tag_samples(GOLDEN_SPLIT_TAG)
    left.select(ids[7]).tag_samples(QUARANTINE_TAG)
    left.select(ids[8]).tag_labels(QUARANTINE_TAG, label_fields="ground_truth")
    # A second sample on the media of a test image (a duplicate added twice).
    group = fo.Group()
    tiny.add_sample(
        fo.Sample(
            filepath=left.first().filepath,
            group=group.element("left"),
            ground_truth=left.first().ground_truth,
        )
    )

    # The caller's view explicitly contains the test set: it is refused anyway.
    exported = export_yolo(tiny.select_group_slices("left"), str(tmp_path / "yolo"), slice_name="left")

    written = list((tmp_path / "yolo" / "images").rglob("*.png"))
    written_media = real_paths(map(str, written))
    assert written_media.isdisjoint(frozen_media(tiny))
    frozen_left = left.match_tags([TEST_SPLIT_TAG, GOLDEN_SPLIT_TAG, QUARANTINE_TAG])
    assert written_media.isdisjoint(real_paths(frozen_left.values("filepath")))
    assert real_paths([left.select(ids[5]).first().filepath]).isdisjoint(written_media)
    assert real_paths([left.select(ids[8]).first().filepath]).isdisjoint(written_media)
    assert (exported.num_frozen, exported.num_quarantined) == (7, 2)
    assert exported.num_duplicates_of_frozen == 1
    assert exported.num_samples == len(written) == 20 - 7 - 2 - 2


def test_a_flat_image_dataset_exports_without_a_slice_and_still_refuses_its_test_set(tiny, tmp_path):
    flat = left_slice(tiny).clone()
    try:
        with pytest.raises(ValueError, match="is not grouped, so it has no slice 'left'"):
            export_yolo(flat, str(tmp_path / "a"), slice_name="left")
        exported = export_yolo(flat, str(tmp_path / "b"))
        assert (exported.num_samples, exported.num_frozen) == (13, 5)
        written = real_paths(map(str, (tmp_path / "b" / "images").rglob("*.png")))
        assert written.isdisjoint(real_paths(flat.match_tags(TEST_SPLIT_TAG).values("filepath")))
    finally:
        flat.delete()


def test_a_view_of_only_frozen_samples_exports_nothing(tiny, tmp_path):
    with pytest.raises(ValueError, match="need at least 2 labeled samples"):
        export_yolo(left_slice(tiny).match_tags(TEST_SPLIT_TAG), str(tmp_path / "yolo"), slice_name="left")
    assert not (tmp_path / "yolo").exists()


def test_export_refuses_labels_outside_the_classes(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"not in classes \['car'\]: 'pedestrian' \(\d+ boxes\)"):
        export_yolo(tiny, str(tmp_path / "yolo"), slice_name="left", classes=["car"])


# --- bad inputs: a clear error and no completed-looking run ----------------------------------


def test_training_without_labeled_samples_fails_clearly_and_records_no_run(tiny):
    tiny.select_group_slices("left").set_field("ground_truth", None).save()
    with pytest.raises(ExecutionError, match="need at least 2 labeled samples.*found 0"):
        run_operator("train_detector", {**TINY_TRAINING, "run_name": "empty"}, dataset=tiny)
    assert runs.list_runs(tiny) == []


def trainable_left(dataset):
    """The left samples training uses: labeled, outside the test split."""
    return left_slice(dataset).match_tags([TEST_SPLIT_TAG], bool=False).exists("ground_truth")


def remove_trainable_images(dataset, count: int, damage: str = "delete") -> list[str]:
    """Delete (or overwrite with junk) the left images of the first ``count`` trainable
    samples; their paths, sorted."""
    paths = sorted(trainable_left(dataset).values("filepath"))[:count]
    for path in paths:
        if damage == "delete":
            os.remove(path)
        else:
            Path(path).write_bytes(b"not an image")
    return paths


@pytest.mark.parametrize("damage", ["delete", "corrupt"])
def test_training_with_missing_or_unreadable_images_is_refused_before_anything_is_written(
    tiny, tmp_path, damage
):
    from annoloop.training.detector import train_detector

    paths = remove_trainable_images(tiny, 3, damage)
    trainable = len(trainable_left(tiny))
    expected = (
        rf"3 of {trainable} images to train on \('ground_truth' on slice 'left'\) are missing "
        rf"or unreadable, e\.g\. \['{paths[0]}', .*Restore the files, or leave those samples out"
    )
    out = tmp_path / "out"
    with pytest.raises(ExecutionError, match=expected):
        run_operator("train_detector", {**TINY_TRAINING, "output_dir": str(out)}, dataset=tiny)
    with pytest.raises(ValueError, match=expected):
        train_detector(tiny, slice_name="left", epochs=1, imgsz=64, output_dir=str(out))
    assert runs.list_runs(tiny) == [] and not out.exists()


def test_prediction_on_missing_images_is_refused_before_anything_is_written(trained, tmp_path):
    dataset, _ = trained
    clone = dataset.clone(unique_name("predict-missing"))
    try:
        test_left = left_slice(clone).match_tags(TEST_SPLIT_TAG)
        moved = sorted(test_left.values("filepath"))[:2]
        # The clone shares the media: point two samples at paths that do not exist instead.
        gone = {p: str(tmp_path / os.path.basename(p)) for p in moved}
        test_left.set_values(
            "filepath", [gone.get(p, p) for p in test_left.values("filepath")]
        )
        with pytest.raises(
            ExecutionError,
            match=rf"2 of {len(test_left)} images to predict on are missing or unreadable.*"
            r"Restore the files or predict on a view without them",
        ):
            run_operator(
                "apply_detector",
                {"run_name": "r0", "pred_field": "missing_preds", "delegate": False},
                dataset=clone,
            )
        assert clone.get_field("missing_preds") is None
        assert "missing_preds" not in runs.get_run(clone, "r0").outputs.get("predicted_fields", {})
    finally:
        clone.delete()


def test_a_missing_checkpoint_fails_clearly_and_records_no_run(tiny, tmp_path):
    missing = str(tmp_path / "nowhere" / "best.pt")
    with pytest.raises(ExecutionError, match="checkpoint .*nowhere/best.pt' does not exist"):
        run_operator("train_detector", {**TINY_TRAINING, "checkpoint": missing}, dataset=tiny)
    assert runs.list_runs(tiny) == []


def test_an_unknown_model_fails_clearly_and_records_no_run(tiny):
    with pytest.raises(ExecutionError, match="unknown model 'yolov99x'"):
        run_operator("train_detector", {**TINY_TRAINING, "model": "yolov99x"}, dataset=tiny)
    assert runs.list_runs(tiny) == []


@pytest.mark.parametrize("operator", ["train_detector", "evaluate_model"])
def test_an_unknown_slice_fails_clearly(tiny, operator):
    with pytest.raises(ExecutionError, match="slice 'middle' does not exist.*\\['left', 'right'\\]"):
        run_operator(operator, {"slice": "middle", "record": False, "delegate": False}, dataset=tiny)
    assert runs.list_runs(tiny) == []


def test_evaluation_before_predictions_fails_clearly(tiny):
    with pytest.raises(ExecutionError, match="no predictions to evaluate"):
        run_operator(
            "evaluate_model",
            {"pred_field": "predictions", "slice": "left", "record": False, "delegate": False},
            dataset=tiny,
        )
    assert tiny.list_evaluations() == []
    assert LEDGER_INFO_KEY not in tiny.info


def test_a_taken_run_name_is_refused_before_anything_is_written(tiny):
    runs.start_run(tiny, "taken", {})
    runs.fail_run(tiny, "taken", "an earlier failure")
    with pytest.raises(ExecutionError, match="training run 'taken' already exists"):
        run_operator("train_detector", {**TINY_TRAINING, "run_name": "taken"}, dataset=tiny)
    assert [r.status for r in runs.list_runs(tiny)] == [runs.STATUS_FAILED]


def test_a_training_that_fails_leaves_a_failed_run_not_a_finished_one(tiny, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ExecutionError):
        run_operator(
            "train_detector",
            {**TINY_TRAINING, "run_name": "broken", "checkpoint": str(corrupt)},
            dataset=tiny,
        )
    record = runs.get_run(tiny, "broken")
    assert record.status == runs.STATUS_FAILED
    assert record.weights is None and record.error and record.finished_at
    # A failed run offers no weights to apply.
    with pytest.raises(ExecutionError, match="'broken' is failed"):
        run_operator("apply_detector", {"run_name": "broken", "delegate": False}, dataset=tiny)


@pytest.mark.slow
def test_train_detector_completes_on_a_delegated_worker(tiny):
    params = {**TINY_TRAINING, "run_name": "worker", "delegate": True}
    doc = run_on_worker(queue_operator("train_detector", params, dataset=tiny.name))
    assert doc.run_state == ExecutionRunState.COMPLETED, doc.result
    tiny.reload()  # the worker wrote the record; this process's copy is stale
    record = runs.get_run(tiny, "worker")
    assert record.status == runs.STATUS_COMPLETED and Path(record.weights).is_file()


def test_the_sdk_functions_behind_the_operators_validate_before_writing(tiny):
    from annoloop.training.detector import apply_detector, evaluate_model
    from annoloop.training.params import next_run_name, train_params

    with pytest.raises(ValueError, match="no completed training run to predict with; train one with train_detector"):
        apply_detector(tiny)
    with pytest.raises(ValueError, match="slice 'middle' does not exist"):
        evaluate_model(tiny, slice_name="middle", record=False)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1; got 0"):
        train_params(tiny, epochs=0)
    params = train_params(tiny, imgsz=64)
    assert (params["run_name"], params["slice"], params["imgsz"]) == (next_run_name(tiny), "left", 64)
    assert runs.list_runs(tiny) == [] and tiny.list_evaluations() == []
