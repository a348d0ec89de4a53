"""plan_batch through FiftyOne's executor, on small grouped datasets built here.

Every dataset has 30 scenes with slices ``left``, ``right`` (images) and ``pcd`` (point
clouds; no media is ever read). Scene embeddings live on ``left``: night scenes form a tight
cluster far from the day scenes. Scenes 0-3 are the frozen mining set (labeled on ``left``;
scene 3 is tagged on ``left`` only), scene 4 the golden set (unlabeled in ``ground_truth``,
tagged on ``pcd`` only), scene 5 is quarantined on its ``right`` sample only: exclusion is
per scene, whichever slice carries the tag. Scenes 6-29 are the unlabeled pool.
The fabricated model misses every object at night, so the evaluation's failures (run by
the real :func:`annoloop.training.evaluate.evaluate_split` on the mining split) are night
scenes.
"""

from __future__ import annotations

import numpy as np
import pytest

import fiftyone as fo
from fiftyone.operators.executor import ExecutionContext, ExecutionError

from annoloop.selection import batches
from annoloop.selection.plan_record import PICK_FIELD, plan_record, plan_run_key
from annoloop.selection.pool import default_uncertainty_slice
from annoloop.selection.algorithms.uncertainty import detection_uncertainty
from annoloop.core.names import (
    GOLDEN_SPLIT_TAG,
    MINING_SPLIT_TAG,
    QUARANTINE_TAG,
    TEST_SPLIT_TAG,
)
from annoloop.training.evaluate import evaluate_split
from annoloop.core.views import split_set
from fo_helpers import run_operator, schedules_by_default, unique_name, uri

SLICES = ("left", "right", "pcd")
NUM_SCENES = 30
MINING_SCENES = (0, 1, 2, 3)
GOLDEN_SCENE, QUARANTINED_SCENE = 4, 5
POOL_SCENES = tuple(range(6, NUM_SCENES))
NIGHT = {0, 1, 6, 7, 8, 9}
BOXES = (("car", [0.1, 0.1, 0.3, 0.3]), ("pedestrian", [0.5, 0.5, 0.2, 0.3]))
RUN_NOW = {"delegate": False, "embeddings_field": "embedding"}


def scene_embedding(scene: int, rng: np.random.Generator) -> np.ndarray:
    centre = np.array([6.0, 6.0, 0.0, 0.0]) if scene in NIGHT else np.zeros(4)
    spread = 0.2 if scene in NIGHT else 1.0
    return (centre + rng.normal(scale=spread, size=4)).astype(np.float32)


def detections(pairs, confidence=None) -> fo.Detections:
    return fo.Detections(
        detections=[
            fo.Detection(label=label, bounding_box=box, confidence=confidence)
            for label, box in pairs
        ]
    )


def build(evaluate: bool = True) -> fo.Dataset:
    """The 30-scene dataset of the module docstring, its test set evaluated as ``eval``
    (predictions: every object by day, none at night) when ``evaluate``."""
    name = unique_name("plan")
    dataset = fo.Dataset(name)
    dataset.add_group_field("group", default="left")
    rng = np.random.default_rng(0)
    samples = []
    for scene in range(NUM_SCENES):
        group = fo.Group()
        for slice_name in SLICES:
            tags = []
            if scene in MINING_SCENES and (scene != 3 or slice_name == "left"):
                tags.append(MINING_SPLIT_TAG)
            if scene == GOLDEN_SCENE and slice_name == "pcd":
                tags.append(GOLDEN_SPLIT_TAG)
            if scene == QUARANTINED_SCENE and slice_name == "right":
                tags.append(QUARANTINE_TAG)
            extension = "pcd" if slice_name == "pcd" else "jpg"
            samples.append(
                fo.Sample(
                    filepath=f"/nonexistent/{name}/{scene:02d}_{slice_name}.{extension}",
                    group=group.element(slice_name),
                    scene=scene,
                    time_of_day="night" if scene in NIGHT else "day",
                    tags=tags,
                )
            )
    dataset.add_samples(samples)
    left = dataset.select_group_slices("left")
    scenes, ids = left.values(["scene", "id"])
    left.set_values(
        "embedding", {i: scene_embedding(s, rng) for s, i in zip(scenes, ids)}, key_field="id"
    )
    label(dataset, MINING_SCENES)
    if evaluate:
        blind_at_night(dataset)
    return dataset


def label(dataset: fo.Dataset, scenes) -> None:
    """Give the left samples of ``scenes`` ground truth (the annotator's work)."""
    view = dataset.select_group_slices("left").match(fo.ViewField("scene").is_in(list(scenes)))
    view.set_values("ground_truth", [detections(BOXES) for _ in range(len(view))])


def blind_at_night(dataset: fo.Dataset) -> None:
    """Evaluate a model that finds every object by day and none at night, as ``eval``."""
    mining = dataset.select_group_slices("left").match(fo.ViewField("scene").is_in(MINING_SCENES))
    mining.set_values(
        "predictions", [detections([] if s in NIGHT else BOXES, 0.9) for s in mining.values("scene")]
    )
    evaluate_split(dataset, "predictions", split="mining", slice_name="left", eval_key="eval")


def test_an_evaluation_that_covers_a_test_sample_is_never_targeted(evaluated_base):
    dataset = evaluated_base.clone(unique_name("plan-leak"))
    try:
        # A mining scene that is also in the test set: its failures would leak the test set.
        leaked = dataset.select_group_slices("left").match(fo.ViewField("scene") == 0)
        leaked.tag_samples(TEST_SPLIT_TAG)
        with pytest.raises(ExecutionError, match="covers 1 samples of the frozen test set"):
            plan(dataset, budget=4, eval_key="eval", coverage_fraction=0.3)
        assert not dataset.has_run(plan_run_key("batch:v1"))
        # Without an explicit key the planner finds no targetable evaluation: all coverage.
        result = plan(dataset, budget=4, coverage_fraction=0.3, dry_run=True)
        assert result["eval_key"] is None and result["n_targeting"] == 0
        assert "no evaluation" in result["fallback_reason"]
    finally:
        dataset.delete()


@pytest.fixture(scope="module")
def evaluated_base():
    ds = build()
    yield ds
    ds.delete()


@pytest.fixture(scope="module")
def cold_base():
    ds = build(evaluate=False)
    yield ds
    ds.delete()


@pytest.fixture
def dataset(evaluated_base):
    """A fresh copy of the evaluated dataset (evaluation included)."""
    ds = evaluated_base.clone(unique_name("plan"))
    yield ds
    ds.delete()


@pytest.fixture
def cold(cold_base):
    """A fresh copy of the dataset before any evaluation (cold start)."""
    ds = cold_base.clone(unique_name("plan-cold"))
    yield ds
    ds.delete()


def plan(dataset, view=None, **params) -> dict:
    return run_operator("plan_batch", {**RUN_NOW, **params}, dataset=dataset, view=view).result


def scenes_of(dataset, group_ids) -> set[int]:
    return set(dataset.select_groups(list(group_ids)).select_group_slices("left").values("scene"))


def tagged_scenes(dataset, tag: str, slice_name: str = "left") -> set[int]:
    return set(dataset.select_group_slices(slice_name).match_tags(tag).values("scene"))


def snapshot(dataset) -> tuple:
    """Everything a plan could write: tags per slice, the schema, saved views, runs."""
    dataset.reload()
    tags = {
        s: sorted(dataset.select_group_slices(s).count_values("tags").items())
        for s in dataset.group_slices
    }
    return (
        tags,
        sorted(dataset.get_field_schema(flat=True)),
        dataset.list_saved_views(),
        sorted(dataset.list_runs()),
    )


# --- behaviour ----------------------------------------------------------------------------


def test_a_cold_start_batch_is_all_coverage_and_tags_every_slice_of_each_picked_scene(cold):
    result = plan(cold, budget=5)
    assert result["batch"] == "batch:v1" and result["round"] == 0 and result["unit"] == "group"
    assert (result["n_coverage"], result["n_targeting"]) == (5, 0)
    assert result["coverage_fraction"] == 1.0 and result["fallback_reason"] is None
    picked = scenes_of(cold, result["ids"])
    assert len(picked) == 5
    for slice_name in SLICES:
        assert tagged_scenes(cold, "batch:v1", slice_name) == picked
        assert tagged_scenes(cold, "source:coverage", slice_name) == picked
        records = cold.select_group_slices(slice_name).match_tags("batch:v1").values(PICK_FIELD)
        assert [r.batch for r in records] == ["batch:v1"] * 5
        assert {r.source for r in records} == {"coverage"}
    assert scenes_of(cold, cold.load_saved_view("batch_v1").values("group.id")) == picked
    record = plan_record(cold, "batch:v1")
    assert record["plan"]["n_coverage"] == 5 and record["params"]["budget"] == 5
    assert cold.get_run_info(plan_run_key("batch:v1")).config.method == "annoloop.plan"


def test_the_saved_batch_view_lists_the_picks_of_every_slice_in_pick_order(cold):
    result = plan(cold, budget=4)
    saved = cold.load_saved_view(result["view"])
    # That the App's grid can page it is checked in test_browser.
    for slice_name in SLICES:
        flat = saved.select_group_slices(slice_name)
        assert flat.values("group.id") == result["ids"]
        assert flat.values(f"{PICK_FIELD}.rank") == sorted(flat.values(f"{PICK_FIELD}.rank"))


def test_frozen_golden_quarantined_and_batched_scenes_are_never_picked_from_any_view(dataset):
    first = scenes_of(dataset, plan(dataset, budget=3)["ids"])
    # The caller's view holds every scene; the budget is exactly what may be picked.
    selectable = set(POOL_SCENES) - first
    everything = plan(dataset, budget=len(selectable), coverage_fraction=0.3)
    assert scenes_of(dataset, everything["ids"]) == selectable
    assert everything["counts"]["excluded"] == {"frozen": 1, "quarantined": 1, "batched": 3}

    # Now nothing is left to pick, whatever the view offers, and the refusal says why.
    with pytest.raises(
        ExecutionError,
        match=r"every group of the view is already labeled or held back: of its 30 groups, "
        r"4 labeled in 'ground_truth', 1 frozen \(test, mining or golden\), 1 quarantined, "
        r"24 already in a batch",
    ):
        plan(dataset, budget=1)


def test_the_planners_exclusions_and_the_panels_counts_agree_on_quarantine(dataset):
    from annoloop.panels import state as st

    # A quarantined label outside the label field still holds its scene back.
    scene = dataset.select_group_slices("left").match(fo.ViewField("scene") == 12)
    scene.set_values("predictions", [detections(BOXES[:1], 0.5)])
    scene.tag_labels(QUARANTINE_TAG, label_fields="predictions")
    result = plan(dataset, budget=2, dry_run=True)
    quarantined = result["counts"]["excluded"]["quarantined"]
    assert quarantined == 2 and 12 not in scenes_of(dataset, result["ids"])
    assert st.loop_overview(dataset)["quarantined"] == quarantined
    assert st.quarantine_state(dataset)["units"] == quarantined
    assert st.loop_overview(dataset)["units"] == result["counts"]["view"] == NUM_SCENES


def test_the_form_and_the_panel_share_the_plan_defaults(cold):
    import fiftyone.operators as foo
    from annoloop.selection.request import DEFAULT_BUDGET, plan_defaults

    defaults = plan_defaults(cold)
    assert defaults.budget == DEFAULT_BUDGET == 30 and defaults.embeddings_field == "embedding"
    operator = foo.OperatorRegistry().get_operator(uri("plan_batch"))
    form = operator.resolve_input(
        ExecutionContext(request_params={"dataset_name": cold.name, "params": {}})
    ).to_json()["type"]["properties"]
    assert form["budget"]["default"] == DEFAULT_BUDGET
    plan(cold, budget=7)
    assert plan_defaults(cold).budget == 7  # the latest plan's budget comes next


def test_a_value_the_app_kept_for_an_input_it_hid_does_not_fail_the_plan(cold):
    # The App keeps "Coverage share" after the user switches the schedule back on.
    result = plan(cold, budget=3, use_schedule=True, coverage_fraction=0.2, dry_run=True)
    assert result["dry_run"] and result["n_coverage"] == 3


def test_the_planner_refuses_forbidden_scenes_that_the_callers_view_offers(dataset):
    forbidden = [*MINING_SCENES, GOLDEN_SCENE, QUARANTINED_SCENE]
    view = dataset.match(fo.ViewField("scene").is_in([*forbidden, 17]))
    result = plan(view=view, dataset=dataset, budget=1, dry_run=True)
    assert scenes_of(dataset, result["ids"]) == {17}
    with pytest.raises(ExecutionError, match=r"budget 2 exceeds the 1 selectable"):
        plan(dataset, view=view, budget=2, dry_run=True)


def test_the_default_schedule_moves_from_all_coverage_toward_30_70_and_batches_never_overlap(cold):
    first = plan(cold, budget=4)
    assert (first["round"], first["n_coverage"], first["n_targeting"]) == (0, 4, 0)
    label(cold, scenes_of(cold, first["ids"]))
    blind_at_night(cold)

    second = plan(cold, budget=4)
    assert second["eval_key"] == "eval" and second["round"] == 1
    shares = (second["coverage_fraction"], second["n_coverage"], second["n_targeting"])
    assert shares == (0.65, 3, 1)
    third = plan(cold, budget=10)
    assert third["batch"] == "batch:v3" and third["round"] == 2
    assert (third["coverage_fraction"], third["n_coverage"], third["n_targeting"]) == (0.3, 3, 7)

    batches = [scenes_of(cold, r["ids"]) for r in (first, second, third)]
    assert sum(map(len, batches)) == len(set().union(*batches)) == 18
    targeted = [p["id"] for p in second["picks"] + third["picks"] if p["source"] == "targeting"]
    night_pool = NIGHT & set(POOL_SCENES)
    assert scenes_of(cold, targeted[:1]) <= night_pool
    assert night_pool - batches[0] <= scenes_of(cold, targeted)


def test_an_explicit_coverage_fraction_is_honoured(dataset):
    half = plan(dataset, budget=6, coverage_fraction=0.5, dry_run=True)
    assert (half["n_coverage"], half["n_targeting"], half["coverage_fraction"]) == (3, 3, 0.5)
    targeting = plan(dataset, budget=4, coverage_fraction=0.0, dry_run=True)
    assert targeting["sources"] == ["targeting"] * 4
    assert scenes_of(dataset, targeting["ids"]) == NIGHT & set(POOL_SCENES)


def test_coverage_fills_in_when_the_failures_neighbours_run_out_and_the_plan_says_so(dataset):
    result = plan(dataset, budget=4, coverage_fraction=0.0, neighbors_per_failure=1, dry_run=True)
    assert result["n_targeting"] in (1, 2) and result["n_coverage"] == 4 - result["n_targeting"]
    assert f"targeting filled {result['n_targeting']} of 4" in result["fallback_reason"]


def test_the_same_seed_gives_the_same_plan(cold):
    plans = [plan(cold, budget=6, dry_run=True, seed=seed) for seed in (3, 3)]
    assert plans[0]["ids"] == plans[1]["ids"] and plans[0]["picks"] == plans[1]["picks"]


def test_a_dry_run_returns_the_plan_with_its_reasons_and_writes_nothing(dataset):
    before = snapshot(dataset)
    result = plan(dataset, budget=5, coverage_fraction=0.4, dry_run=True)
    assert snapshot(dataset) == before
    assert result["dry_run"] and result["view"] is None and result["run_key"] is None
    assert len(result["ids"]) == len(result["sources"]) == len(result["picks"]) == 5
    assert result["counts"]["pool"] == 26 and result["counts"]["selectable"] == 24
    target = next(p for p in result["picks"] if p["source"] == "targeting")
    assert target["near_failure_kind"] == "fn" and target["score_kind"] == "failure_similarity"


def test_targeting_serves_false_negatives_first_and_each_pick_records_why(dataset):
    # Test scene 2 (day) now has a false positive only; the night scenes missed everything.
    left = dataset.select_group_slices("left")
    day_test = left.match(fo.ViewField("scene") == 2)
    day_test.set_values("predictions", [detections([*BOXES, ("car", [0.7, 0.05, 0.2, 0.2])], 0.8)])
    evaluate_split(dataset, "predictions", split="mining", slice_name="left", eval_key="eval")
    failing_night = left.match(fo.ViewField("scene").is_in([0, 1])).values("id")

    result = plan(dataset, budget=2, coverage_fraction=0.0)
    assert result["counts"]["failures"] == {
        "fn": 4, "confusion": 0, "fp": 1, "samples": 3, "queries": 3,
    }
    assert [p["near_failure_kind"] for p in result["picks"]] == ["fn", "fn"]
    assert {p["near_failure"] for p in result["picks"]} <= set(failing_night)
    records = left.match_tags("batch:v1").values(PICK_FIELD)
    assert {r.source for r in records} == {"targeting"}
    assert all(r.near_failure in failing_night and r.eval_key == "eval" for r in records)
    assert all(r.distance_to_failure >= 0 and 0 < r.score <= 1 for r in records)
    assert tagged_scenes(dataset, "source:targeting", "pcd") <= NIGHT


def test_a_scene_where_every_object_is_missed_is_served_before_one_with_more_misses(dataset):
    # Day mining scene 2 gets four objects and misses three of them (more misses, share 3/4);
    # night scene 0 misses its two of two (a blind spot, share 1).
    left = dataset.select_group_slices("left")
    crowded = left.match(fo.ViewField("scene") == 2)
    extra = [("car", [0.05, 0.6, 0.1, 0.1]), ("pedestrian", [0.8, 0.1, 0.1, 0.2])]
    crowded.set_values("ground_truth", [detections([*BOXES, *extra])])
    crowded.set_values("predictions", [detections(BOXES[:1], 0.9)])
    left.match(fo.ViewField("scene").is_in([1, 3])).set_values(
        "predictions", [detections(BOXES, 0.9)] * 2
    )
    evaluate_split(dataset, "predictions", split="mining", slice_name="left", eval_key="eval")
    blind = left.match(fo.ViewField("scene") == 0).first().id

    result = plan(dataset, budget=1, coverage_fraction=0.0, dry_run=True)
    assert result["counts"]["failures"]["fn"] == 2 + 3
    assert result["picks"][0]["near_failure"] == blind


def test_a_weak_spot_whose_neighbours_fail_too_is_served_before_an_isolated_blind_spot(dataset):
    # Mining grows to 4 night scenes (0, 1, 8, 9), each missing one object of two, and 5 day
    # scenes (2, 3, 20, 21, 22) of which only scene 20 fails, missing both of its objects.
    left = dataset.select_group_slices("left")
    left.match(fo.ViewField("scene").is_in([8, 9, 20, 21, 22])).tag_samples(MINING_SPLIT_TAG)
    label(dataset, [8, 9, 20, 21, 22])
    mining = left.match_tags(MINING_SPLIT_TAG)
    outcome = {0: BOXES[:1], 1: BOXES[:1], 8: BOXES[:1], 9: BOXES[:1], 20: ()}
    mining.set_values(
        "predictions",
        [detections(outcome.get(s, BOXES), 0.9) for s in mining.values("scene")],
    )
    evaluate_split(dataset, "predictions", split="mining", slice_name="left", eval_key="eval")
    isolated = left.match(fo.ViewField("scene") == 20).first().id

    result = plan(dataset, budget=1, coverage_fraction=0.0, dry_run=True)
    assert result["counts"]["failures"]["fn"] == 4 + 2
    served = result["picks"][0]["near_failure"]
    assert served != isolated
    assert scenes_of(dataset, result["ids"]) <= NIGHT


@pytest.mark.parametrize("classwise", [True, False])
def test_a_prediction_of_another_class_over_a_missed_object_is_a_confusion(dataset, classwise):
    left = dataset.select_group_slices("left")
    swapped = [("truck", BOXES[0][1]), BOXES[1]]  # the car is called a truck by day
    left.match(fo.ViewField("scene").is_in([2, 3])).set_values(
        "predictions", [detections(swapped, 0.9) for _ in range(2)]
    )
    # classwise=True (the default) leaves the pair unlinked; classwise=False links it.
    split_set(dataset, "left", "mining").evaluate_detections(
        "predictions", gt_field="ground_truth", eval_key="eval", classwise=classwise
    )
    result = plan(dataset, budget=4, coverage_fraction=0.0, dry_run=True)
    assert result["counts"]["failures"] == {
        "fn": 4, "confusion": 2, "fp": 0, "samples": 4, "queries": 4,
    }
    kinds = [p["near_failure_kind"] for p in result["picks"]]
    assert kinds[0] == "fn" and "confusion" in kinds


def test_patch_embeddings_of_the_missed_objects_are_the_queries_when_asked(dataset):
    # Put every missed object's patch embedding next to pool scene 20 (a day scene).
    left = dataset.select_group_slices("left")
    target = left.match(fo.ViewField("scene") == 20).first().embedding
    test = left.match(fo.ViewField("scene").is_in(MINING_SCENES))
    gt_ids = test.values("ground_truth.detections.id")
    vectors = {i: target + 0.01 for row in gt_ids for i in row}
    left.set_label_values("ground_truth.detections.embedding", vectors, dynamic=True)
    result = plan(
        dataset, budget=1, coverage_fraction=0.0, patches_field="ground_truth", dry_run=True
    )
    assert scenes_of(dataset, result["ids"]) == {20}
    assert result["picks"][0]["near_failure"] in vectors
    assert result["counts"]["failures"]["queries"] == 4


def test_an_evaluation_without_failures_falls_back_to_coverage_and_says_so(dataset):
    test = split_set(dataset, "left", "mining")
    test.set_values("predictions", [detections(BOXES, 0.9) for _ in range(len(test))])
    evaluate_split(dataset, "predictions", split="mining", slice_name="left", eval_key="eval")
    result = plan(dataset, budget=4)
    assert result["round"] == 1 and result["n_coverage"] == 4 and result["n_targeting"] == 0
    assert "evaluation 'eval' has no false negatives" in result["fallback_reason"]
    assert "all 4 picks are coverage" in result["fallback_reason"]
    assert plan_record(dataset, "batch:v1")["fallback_reason"] == result["fallback_reason"]


def test_zcore_coverage_starts_from_the_best_scored_scene(cold):
    left = cold.select_group_slices("left")
    scenes, ids = left.values(["scene", "id"])
    left.set_values("zcore", {i: float(s == 11) for s, i in zip(scenes, ids)}, key_field="id")
    result = plan(cold, budget=3, coverage_method="zcore", dry_run=True)
    assert scenes_of(cold, result["ids"][:1]) == {11}
    assert result["picks"][0]["score_kind"] == "zcore_score"


def test_flat_datasets_pick_samples():
    flat = fo.Dataset(unique_name("plan-flat"))
    rng = np.random.default_rng(1)
    flat.add_samples(
        [
            fo.Sample(filepath=f"/nonexistent/{i}.jpg", embedding=rng.normal(size=3), tags=tags)
            for i, tags in enumerate([[TEST_SPLIT_TAG]] * 2 + [[]] * 8)
        ]
    )
    try:
        result = plan(flat, budget=8, seed=1)
        assert result["unit"] == "sample" and len(result["ids"]) == 8
        assert set(result["ids"]) == set(flat.match_tags(TEST_SPLIT_TAG, bool=False).values("id"))
        assert set(flat.match_tags("batch:v1").values("id")) == set(result["ids"])
    finally:
        flat.delete()


def test_the_form_offers_stored_embeddings_evaluations_and_explains_the_schedule(dataset):
    import fiftyone.operators as foo

    operator = foo.OperatorRegistry().get_operator(uri("plan_batch"))
    form = operator.resolve_input(
        ExecutionContext(request_params={"dataset_name": dataset.name, "params": {}})
    ).to_json()["type"]["properties"]
    assert form["embeddings_field"]["default"] == "embedding" and form["slice"]["default"] == "left"
    assert form["eval_key"]["default"] == "eval" and form["batch_name"]["default"] == "batch:v1"
    assert "Round 1: 65% coverage" in form["use_schedule"]["view"]["description"]
    assert not schedules_by_default("plan_batch", dataset)


# --- uncertainty targeting: the model's predictions on the pool, no labels -----------------

UNCERTAIN = {"targeting_source": "uncertainty"}


def predict(dataset, confidences: dict, slice_name: str = "left") -> None:
    """Write predictions with the given confidences (one box each) on ``slice_name`` of the
    scenes in ``confidences``, as apply_detector with target 'pool' would."""
    view = dataset.select_group_slices(slice_name)
    scenes, ids = view.values(["scene", "id"])
    boxes = {
        i: fo.Detections(
            detections=[
                fo.Detection(label="car", bounding_box=[0.1, 0.1, 0.2, 0.2], confidence=c)
                for c in confidences[s]
            ]
        )
        for s, i in zip(scenes, ids)
        if s in confidences
    }
    view.set_values("predictions", boxes, key_field="id")


def random_confidences(scenes, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {s: rng.uniform(0.05, 0.99, size=rng.integers(0, 5)).tolist() for s in scenes}


def test_uncertainty_targeting_picks_the_scene_the_model_is_least_sure_about_first(cold):
    confidences = random_confidences(range(NUM_SCENES))
    predict(cold, confidences)
    score = {s: detection_uncertainty([confidences[s]])[0] for s in POOL_SCENES}
    most_uncertain = max(POOL_SCENES, key=score.get)

    result = plan(cold, budget=4, coverage_fraction=0.5, **UNCERTAIN)
    assert result["targeting_source"] == "uncertainty" and result["eval_key"] is None
    assert (result["uncertainty_field"], result["uncertainty_slice"]) == ("predictions", "left")
    assert result["round"] == 1  # predictions come from a trained model: no cold start
    first = result["picks"][0]
    assert scenes_of(cold, [first["id"]]) == {most_uncertain}
    assert (first["source"], first["score_kind"]) == ("targeting", "uncertainty")
    assert first["score"] == pytest.approx(score[most_uncertain])
    assert first["near_failure"] is None
    for slice_name in SLICES:
        record = cold.select_groups([first["id"]]).select_group_slices(slice_name).first()
        assert record[PICK_FIELD].score_kind == "uncertainty"
    params = plan_record(cold, "batch:v1")["params"]
    assert params["targeting_source"] == "uncertainty"
    assert params["uncertainty_field"] == "predictions"


def test_scenes_whose_model_sees_nothing_are_not_targeted_and_coverage_fills_in(cold):
    doubtful = {9: [0.5], 21: [0.4, 0.6]}
    predict(cold, {**{s: [] for s in range(NUM_SCENES)}, **doubtful})
    result = plan(cold, budget=4, coverage_fraction=0.0, dry_run=True, **UNCERTAIN)
    targeted = [p["id"] for p in result["picks"] if p["source"] == "targeting"]
    assert scenes_of(cold, targeted) == set(doubtful)
    assert f"targeting filled {len(doubtful)} of 4" in result["fallback_reason"]

    predict(cold, {s: [] for s in range(NUM_SCENES)})
    nothing = plan(cold, budget=4, dry_run=True, **UNCERTAIN)
    assert nothing["n_targeting"] == 0 and nothing["n_coverage"] == 4
    assert "no selectable pool row has an uncertainty score above 0" in nothing["fallback_reason"]


def test_predictions_are_read_on_the_slice_asked_for(cold):
    confidences = random_confidences(range(NUM_SCENES), seed=1)
    predict(cold, confidences, slice_name="right")
    most_uncertain = max(POOL_SCENES, key=lambda s: detection_uncertainty([confidences[s]])[0])
    result = plan(
        cold, budget=1, coverage_fraction=0.0, dry_run=True, uncertainty_slice="right",
        **UNCERTAIN,
    )
    assert scenes_of(cold, result["ids"]) == {most_uncertain}
    # The embeddings' slice is not an image slice: the first image slice stands in.
    assert default_uncertainty_slice(cold, "pcd") == "left"


def without_predictions_on(scenes):
    def prepare(ds):
        predict(ds, random_confidences(set(range(NUM_SCENES)) - set(scenes)))
    return prepare


def classification_predictions(ds):
    ds.select_group_slices("left").set_values(
        "weather_pred", [fo.Classification(label="rain")] * NUM_SCENES
    )


@pytest.mark.parametrize(
    ("params", "prepare", "message"),
    [
        ({}, None, r"predictions field 'predictions' does not exist on slice 'left'"),
        ({"uncertainty_field": "weather_pred"}, classification_predictions, "not Detections"),
        (
            {},
            without_predictions_on([7, 8]),
            rf"2 of {NUM_SCENES - len(MINING_SCENES)} pool groups have no 'predictions' on slice "
            r"'left'",
        ),
        ({"uncertainty_slice": "pcd"}, None, "uncertainty_slice must be an image slice"),
    ],
    ids=["no-predictions-field", "not-detections", "pool-without-predictions", "pcd-slice"],
)
def test_uncertainty_targeting_without_pool_predictions_fails_clearly(
    cold, params, prepare, message
):
    if prepare is not None:
        prepare(cold)
    before = snapshot(cold)
    with pytest.raises(ExecutionError, match=message) as error:
        plan(cold, budget=3, **UNCERTAIN, **params)
    if params.get("uncertainty_slice") != "pcd":
        assert "apply the detector to the pool first (apply_detector with target 'pool')" in str(
            error.value
        )
    assert snapshot(cold) == before


def test_uncertainty_targeting_refuses_evaluation_parameters(cold):
    predict(cold, random_confidences(range(NUM_SCENES)))
    with pytest.raises(ValueError, match="eval_key select the failures to target"):
        batches.plan_batch(
            cold, 2, embeddings_field="embedding", eval_key="eval", dry_run=True, **UNCERTAIN
        )


def test_the_form_offers_the_pool_predictions_for_uncertainty_targeting(cold):
    import fiftyone.operators as foo

    operator = foo.OperatorRegistry().get_operator(uri("plan_batch"))

    def form():
        ctx = ExecutionContext(request_params={"dataset_name": cold.name, "params": UNCERTAIN})
        return operator.resolve_input(ctx).to_json()["type"]["properties"]

    assert "no_predictions" in form() and "eval_key" not in form()
    predict(cold, random_confidences(range(NUM_SCENES)))
    fields = form()
    assert fields["targeting_source"]["default"] == "failures"
    assert fields["uncertainty_field"]["default"] == "predictions"
    assert fields["uncertainty_slice"]["default"] == "left"
    assert "Round 1" in fields["use_schedule"]["view"]["description"]


def test_an_empty_view_is_refused_as_empty_and_nothing_is_written(dataset):
    empty = dataset.match(fo.ViewField("scene") < 0)
    before = snapshot(dataset)
    message = "the view is empty: it holds no groups to plan from; plan on the dataset or"
    with pytest.raises(ExecutionError, match=message):
        plan(dataset, view=empty, budget=3)
    with pytest.raises(ValueError, match=message):
        batches.plan_batch(empty, budget=3, embeddings_field="embedding")
    assert snapshot(dataset) == before


def test_a_view_of_labeled_scenes_only_is_refused_with_the_counts(dataset):
    labeled = dataset.match(fo.ViewField("scene").is_in(MINING_SCENES))
    before = snapshot(dataset)
    with pytest.raises(
        ValueError,
        match=r"of its 4 groups, 4 labeled in 'ground_truth'; nothing is left to plan\. Plan "
        r"on a view with unlabeled groups",
    ):
        batches.plan_batch(labeled, budget=1, embeddings_field="embedding")
    assert snapshot(dataset) == before


# --- bad input: a clear error, nothing tagged or saved --------------------------------------


def remove_embeddings(dataset, scenes) -> None:
    view = dataset.select_group_slices("left").match(fo.ViewField("scene").is_in(scenes))
    view.set_values("embedding", [None] * len(view))


@pytest.mark.parametrize(
    ("params", "prepare", "message"),
    [
        ({"budget": 0}, None, "budget must be a positive"),
        ({"budget": -3}, None, "budget must be a positive"),
        ({"budget": 25}, None, "budget 25 exceeds the 24 selectable"),
        ({"budget": 3, "embeddings_field": None}, None, "embeddings_field is required"),
        ({"budget": 3, "embeddings_field": "clip"}, None, "'clip' does not exist"),
        (
            {"budget": 3},
            lambda ds: remove_embeddings(ds, [7, 8]),
            "2 of 26 pool groups have no 'embedding'",
        ),
        ({"budget": 3, "eval_key": "nope"}, None, "evaluation 'nope' does not exist"),
        ({"budget": 3, "batch_name": "batch:v1"}, lambda ds: plan(ds, budget=2), "already exists"),
    ],
    ids=[
        "zero-budget",
        "negative-budget",
        "budget-above-pool",
        "no-embeddings-field",
        "missing-embeddings-field",
        "embeddings-missing-on-part-of-the-pool",
        "unknown-eval-key",
        "existing-batch-name",
    ],
)
def test_bad_input_fails_clearly_and_leaves_nothing_tagged_or_saved(
    dataset, params, prepare, message
):
    if prepare is not None:
        prepare(dataset)
    before = snapshot(dataset)
    with pytest.raises(ExecutionError, match=message):
        plan(dataset, **params)
    assert snapshot(dataset) == before


def test_the_result_dialog_names_each_pick_and_says_why_instead_of_showing_object_ids(dataset):
    import fiftyone.operators as foo

    result = plan(dataset, budget=5, coverage_fraction=0.4, dry_run=True)
    ctx = ExecutionContext(
        request_params={"dataset_name": dataset.name, "params": {}, "results": result}
    )
    text = foo.OperatorRegistry().get_operator(uri("plan_batch")).resolve_output(ctx).to_json()
    summary = str(text)
    assert not any(unit in summary for unit in result["ids"])
    files = dataset.select_groups(result["ids"]).select_group_slices(dataset.default_group_slice)
    assert all(name.rsplit("/", 1)[-1] in summary for name in files.values("filepath"))
    assert "near a missed object" in summary
