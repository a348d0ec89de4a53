"""Bad input through every operator: a clear message that names the problem and what to do,
and a dataset left exactly as it was (samples, tags, fields, saved views, runs, info).

One prepared demo dataset serves every case: since a refused call must write nothing, the
cases cannot disturb each other, and the fingerprint check after each one proves it.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from fiftyone.operators.executor import ExecutionError

from annoloop.demo.annotation import annotate_batch
from annoloop.demo.dataset import load_demo_dataset
from annoloop.quality.frozen import create_splits
from annoloop.selection.batches import plan_batch
from annoloop.selection.embed import compute_embeddings
from annoloop.selection.algorithms.zcore import ZCoreParams
from annoloop.selection.scoring import compute_zcore
from fo_helpers import run_operator, unique_name

NOW = {"delegate": False}
#: The tag of the labeled batch: a case with it as a fourth item runs on that batch's view.
BATCH = "batch:v1"


@pytest.fixture(scope="module")
def prepared():
    """A demo dataset one round into the loop: splits, embeddings, ZCore, one labeled batch."""
    dataset = load_demo_dataset(
        unique_name("bad-inputs"), num_scenes=24, seed=5, image_size=(128, 64)
    )
    create_splits(dataset, test=4, mining=3, golden=3, seed=0)
    compute_embeddings(dataset)
    compute_zcore(dataset, params=ZCoreParams(n_sample=5_000, seed=0))
    plan_batch(dataset, budget=6, embeddings_field="embedding")
    annotate_batch(dataset.match_tags("batch:v1"), "batch:v1", seed=0)
    yield dataset
    dataset.delete()


@pytest.fixture(scope="module")
def owlvit(tmp_path_factory) -> str:
    """A tiny randomly initialised OWL-ViT checkpoint on disk."""
    from annoloop.benchmarks.bench_autolabel import random_checkpoint

    return random_checkpoint("owlvit", "tiny", tmp_path_factory.mktemp("owlvit"))[0]


def fingerprint(dataset) -> str:
    """A digest of everything a call could write: every sample of every slice (labels, tags,
    timestamps), the schema, saved views, runs of every kind, and the dataset's info."""
    dataset.reload()
    state = {
        "samples": {
            name: [s.to_dict() for s in dataset.select_group_slices(name).iter_samples()]
            for name in dataset.group_slices
        },
        "schema": sorted(dataset.get_field_schema(flat=True)),
        "saved_views": sorted(dataset.list_saved_views()),
        "runs": sorted(dataset.list_runs()),
        "brain_runs": sorted(dataset.list_brain_runs()),
        "evaluations": sorted(dataset.list_evaluations()),
        "info": dataset.info,
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


#: (operator, params, pattern the message must match: the problem *and* what to do[, tag of
#: the view to run on]).
CASES = [
    # --- load_demo_dataset ---------------------------------------------------------------
    ("load_demo_dataset", {"name": "bad-demo", "num_scenes": 0}, r"num_scenes.*0"),
    ("load_demo_dataset", {"name": "bad-demo", "night_fraction": 1.5}, r"night_fraction must be between 0\.0 and 1\.0; got 1\.5"),
    # --- create_splits -----------------------------------------------------------------
    ("create_splits", {}, r"already has frozen splits.*overwrite=True"),
    ("create_splits", {"test": 1.5, "overwrite": True}, r"test must be .*whole number.*1\.5"),
    ("create_splits", {"test": 20, "golden": 20, "overwrite": True}, r"exceed the 23 groups.*fewer"),
    ("create_splits", {"source_field": "nope", "overwrite": True}, r"'nope' does not exist.*Detections fields are"),
    ("create_splits", {"strata_fields": ["colour"], "overwrite": True}, r"\['colour'\] are not fields.*choose"),
    ("create_splits", {"golden_field": "oracle", "overwrite": True}, r"'oracle' must be a new field"),
    ("create_splits", {"scene_field": "nope", "overwrite": True}, r"'nope' is not a field.*choose"),
    ("create_splits", {"min_stratum_groups": 0, "overwrite": True}, r"min_stratum_groups must be at least 1; got 0"),
    # --- simulate_annotation -----------------------------------------------------------
    ("simulate_annotation", {"batch": "batch:v9"}, r"test"),
    ("simulate_annotation", {"batch": "batch:v1", "label_field": "embedding"}, r"'embedding'.*Detections", BATCH),
    # --- compute_embeddings ------------------------------------------------------------
    ("compute_embeddings", {"model_kind": "hf", "model_path": "/no/such/model"}, r"/no/such/model"),
    ("compute_embeddings", {"embeddings_field": "oracle"}, r"'oracle' already exists.*must be a VectorField or not exist"),
    ("compute_embeddings", {"slices": ["nope"]}, r"\['nope'\]; the collection has"),
    ("compute_embeddings", {"batch_size": 0}, r"batch_size must be at least 1; got 0"),
    # --- compute_zcore -----------------------------------------------------------------
    ("compute_zcore", {"n_sample": 5_000}, r"already holds ZCore scores.*overwrite=True"),
    ("compute_zcore", {"n_sample": 0, "overwrite": True}, r"n_sample.*0"),
    ("compute_zcore", {"redund_nn": 0, "overwrite": True}, r"redund_nn.*0"),
    ("compute_zcore", {"embeddings_fields": ["nope"], "overwrite": True}, r"'nope' does not exist.*run compute_embeddings"),
    ("compute_zcore", {"score_field": "oracle", "overwrite": True}, r"'oracle' already exists.*must be a FloatField or not exist"),
    # --- compute_visualization ---------------------------------------------------------
    ("compute_visualization", {"slice": "left", "embeddings": "nope"}, r"nope"),
    ("compute_visualization", {"slice": "left", "embeddings": "embedding", "method": "bogus"}, r"bogus"),
    # --- plan_batch --------------------------------------------------------------------
    ("plan_batch", {"embeddings_field": "nope", "budget": 4}, r"'nope' does not exist.*compute embeddings first"),
    ("plan_batch", {"embeddings_field": "embedding", "budget": 0}, r"budget must be a positive number.*got 0"),
    ("plan_batch", {"embeddings_field": "embedding", "budget": 10_000}, r"budget 10000 exceeds"),
    ("plan_batch", {"embeddings_field": "zcore", "budget": 4}, r"'zcore'.*vector"),
    ("plan_batch", {"slice": "nope", "embeddings_field": "embedding", "budget": 4}, r"'nope'.*slices"),
    ("plan_batch", {"embeddings_field": "embedding", "budget": 4, "use_schedule": False, "coverage_fraction": 1.5}, r"coverage_fraction must be between 0\.0 and 1\.0; got 1\.5"),
    ("plan_batch", {"embeddings_field": "embedding", "budget": 4, "eval_key": "nope"}, r"evaluation 'nope' does not exist.*evaluate_model with split 'mining'"),
    ("plan_batch", {"embeddings_field": "embedding", "budget": 4, "targeting_source": "uncertainty", "uncertainty_field": "nope"}, r"'nope' does not exist.*apply_detector"),
    # --- validate_labels ---------------------------------------------------------------
    ("validate_labels", {"label_field": "nope"}, r"'nope' does not exist.*Detections fields are"),
    ("validate_labels", {"label_field": "embedding"}, r"'embedding' holds VectorField, not Detections"),
    ("validate_labels", {"label_field": "ground_truth", "schema": "{not json"}, r"schema is not valid JSON"),
    ("validate_labels", {"label_field": "ground_truth", "schema": {"type": "classifications"}}, r"only Detections label schemas are supported"),
    ("validate_labels", {"label_field": "ground_truth", "schema": {"attributes": [{"type": "bool"}]}}, r"needs a 'name'"),
    ("validate_labels", {"label_field": "ground_truth", "box_tolerance": -1.0}, r"box_tolerance must be at least 0\.0; got -1\.0"),
    ("validate_labels", {"label_field": "ground_truth", "batch_tag": "batch:v9"}, r"batch:v9"),
    # --- check_incoming_drift ----------------------------------------------------------
    ("check_incoming_drift", {"batch_tag": ""}, r"batch_tag is required: the tag of the newly arrived samples"),
    ("check_incoming_drift", {"batch_tag": "incoming:nope"}, r"no sample is tagged 'incoming:nope'.*add_demo_scenes"),
    ("check_incoming_drift", {"batch_tag": BATCH, "k": 0}, r"k must be between 1 and 100; got 0"),
    ("check_incoming_drift", {"batch_tag": BATCH, "fdr": 0.9}, r"fdr must be between 1e-06 and 0\.5; got 0\.9"),
    ("check_incoming_drift", {"batch_tag": BATCH, "embeddings_field": "nope"}, r"no samples have an embeddings field 'nope'.*compute_embeddings"),
    ("check_incoming_drift", {"batch_tag": BATCH, "embeddings_field": "zcore"}, r"'zcore' holds FloatField, not vectors"),
    ("check_incoming_drift", {"batch_tag": BATCH, "describe_by": ["nope"]}, r"describe_by fields \['nope'\] do not exist"),
    ("check_incoming_drift", {"batch_tag": BATCH, "k": 50}, r"k=50 needs a reference of more than 50 samples; got \d+ \(lower k"),
    # --- categorize_scenes -------------------------------------------------------------
    ("categorize_scenes", {"attribute": ""}, r"attribute is required: the name of the scene attribute"),
    ("categorize_scenes", {"attribute": "colour"}, r"known field 'colour' does not exist: set it to the true value"),
    ("categorize_scenes", {"attribute": "weather", "output_field": "weather"}, r"must differ from .*predictions never overwrite"),
    ("categorize_scenes", {"attribute": "weather", "output_field": "scene_index"}, r"'scene_index' already exists as IntField; predictions need a StringField"),
    ("categorize_scenes", {"attribute": "weather", "output_field": "scene_id"}, r"'scene_id' already exists and was not written by categorize_scenes"),
    ("categorize_scenes", {"attribute": "weather", "embeddings_field": "zcore"}, r"'zcore' holds FloatField, not vectors; pass an embeddings field"),
    ("categorize_scenes", {"attribute": "weather", "min_per_value": 1000}, r"fewer than 1000 labeled scenes.*set 'weather' on more scenes"),
    ("categorize_scenes", {"attribute": "weather", "min_per_value": 0}, r"min_per_value must be between 1 and 10000; got 0"),
    # --- check_golden ------------------------------------------------------------------
    ("check_golden", {"candidate_field": "nope"}, r"'nope' does not exist.*Detections fields are"),
    ("check_golden", {"candidate_field": "ground_truth", "iou": 0.0}, r"iou must be a number in \(0, 1\]; got 0"),
    ("check_golden", {"candidate_field": "ground_truth", "iou": 1.5}, r"iou must be a number in \(0, 1\]; got 1\.5"),
    ("check_golden", {"candidate_field": "ground_truth", "golden_field": "nope"}, r"'nope' does not exist.*run create_splits"),
    ("check_golden", {"candidate_field": "ground_truth", "batch_by": "bogus"}, r"batch_by.*bogus.*attribute"),
    ("check_golden", {"candidate_field": "ground_truth", "slices": ["nope"]}, r"\['nope'\]; the collection has"),
    ("check_golden", {"candidate_field": "ground_truth", "baseline_batch": "batch:v9"}, r"no batch found on the golden samples.*'batch' attribute"),
    # --- train_detector ----------------------------------------------------------------
    ("train_detector", {"slice": "left", "label_field": "nope"}, r"'nope' does not exist.*Detections fields are"),
    ("train_detector", {"slice": "pcd"}, r"'pcd' .* point-cloud samples, not images; its camera slices are"),
    ("train_detector", {"slice": "nope"}, r"nope"),
    ("train_detector", {"slice": "left", "model": "yolov99x"}, r"unknown model 'yolov99x'.*choose one of .*yolov8n"),
    ("train_detector", {"slice": "left", "checkpoint": "/no/such/weights.pt"}, r"checkpoint '/no/such/weights.pt' does not exist"),
    ("train_detector", {"slice": "left", "imgsz": 30}, r"imgsz must be at least 32; got 30"),
    ("train_detector", {"slice": "left", "epochs": 0}, r"epochs must be at least 1; got 0"),
    ("train_detector", {"slice": "left", "batch": 2.5}, r"batch must be a whole number; got 2\.5"),
    ("train_detector", {"slice": "left", "freeze": -1}, r"freeze must be at least 0; got -1"),
    ("train_detector", {"slice": "left", "val_fraction": 1.5}, r"val_fraction must be between 0\.01 and 0\.99; got 1\.5"),
    # --- apply_detector ----------------------------------------------------------------
    ("apply_detector", {"run_name": "nope"}, r"no training run 'nope'.*runs: \[\]"),
    ("apply_detector", {"target": "test"}, r"train_detector"),
    ("apply_detector", {"weights": "/no/such/best.pt", "target": "test"}, r"/no/such/best.pt"),
    ("apply_detector", {"target": "test", "conf": 0}, r"conf must be between 0\.001 and 1\.0; got 0"),
    # --- evaluate_model ----------------------------------------------------------------
    ("evaluate_model", {"pred_field": "nope"}, r"'nope' \(the field does not exist: run apply_detector first\)"),
    ("evaluate_model", {"pred_field": "oracle", "gt_field": "nope", "record": False}, r"'nope' is not a Detections field.*Detections fields are"),
    ("evaluate_model", {"pred_field": "oracle"}, r"no training run made the predictions.*pass run_name, or record=False"),
    ("evaluate_model", {"pred_field": "oracle", "iou": 2.0}, r"iou must be between 0\.05 and 0\.95; got 2\.0"),
    ("evaluate_model", {"pred_field": "oracle", "slice": "pcd"}, r"'pcd' .* point-cloud samples, not images"),
    # --- autolabel ---------------------------------------------------------------------
    ("autolabel", {"model": "owlvit", "checkpoint": "/no/such/owl"}, r"'/no/such/owl' is not on this machine.*Nothing is downloaded"),
    ("autolabel", {"target": "tag", "batch_tag": "batch:v9"}, r"no sample .* has the tag 'batch:v9'"),
    ("autolabel", {"target": "tag", "batch_tag": ""}, r"batch_tag"),
    ("autolabel", {"min_confidence": 1.5}, r"min_confidence must lie in \[0, 1\]; got 1\.5"),
    ("autolabel", {"output_field": "oracle"}, r"'oracle' holds the frozen splits' recorded labels; choose another output_field"),
    ("autolabel", {"slice": "pcd"}, r"'pcd' .* point-cloud samples, not images"),
    ("autolabel", {"batch_size": 0}, r"batch_size must be at least 1; got 0"),
    # --- review_autolabels -------------------------------------------------------------
    ("review_autolabels", {"autolabel_field": "nope"}, r"'nope' does not exist.*Detections fields are"),
    ("review_autolabels", {"autolabel_field": "oracle", "min_confidence": 1.5}, r"min_confidence must lie in \[0, 1\]; got 1\.5"),
    ("review_autolabels", {"autolabel_field": "oracle", "duplicate_iou": 0.0}, r"duplicate_iou must lie in \(0, 1\]; got 0"),
]


@pytest.mark.parametrize(
    "operator, params, message, view_tag",
    [(*case, None)[:4] for case in CASES],
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_bad_input_is_refused_with_a_clear_message_and_nothing_written(
    prepared, operator, params, message, view_tag, request
):
    if operator == "autolabel" and "checkpoint" not in params:
        # Weights on this machine, so the form's checkpoint check passes and the case's
        # own problem is the one refused.
        params = {"model": "owlvit", "checkpoint": request.getfixturevalue("owlvit"), **params}
    view = prepared.match_tags(view_tag) if view_tag else None
    before = fingerprint(prepared)
    with pytest.raises(ExecutionError) as refused:
        run_operator(operator, {**NOW, **params}, dataset=prepared, view=view)
    lines = [l for l in str(refused.value).splitlines() if l.strip()]
    assert re.search(message, lines[-1]), lines[-1]
    assert fingerprint(prepared) == before
