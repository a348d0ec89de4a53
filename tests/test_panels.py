"""The App panels: what they read from a dataset, and what their buttons and clicks do.

The module's dataset is the grouped demo (``left`` / ``right`` / ``pcd``) one round into
the loop, built with the real glue: frozen splits, embeddings and a PCA layout of
``left``, a cold-start batch ``batch:v1`` labeled by the simulated annotator, a model on
the frozen test set that misses every other object (evaluated as ``eval``), a second
planned batch ``batch:v2`` that targets those misses, and golden-set QA of a clean and a
drifted annotator batch. The ledger is written with the ledger module (training a model
is not what these tests are about).

Panel events run through FiftyOne's own executor with a panel id and state, as the App
sends them; what the App is asked to do (set the view, open an operator's form, render)
comes back as the executor's requests.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
from bson import ObjectId, json_util

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone import ViewField as F

from annoloop.demo.annotation import annotate_batch
from annoloop.demo.dataset import load_demo_dataset
from annoloop.panels import jobs as jb
from annoloop.panels import state as st
from annoloop.panels.loop_panel import BATCH, GOLDEN, JOBS, LEDGER
from annoloop.panels.steps import STEPS, step_names
from annoloop.panels.widgets import format_map
from annoloop.quality.algorithms.drift import DriftRules
from annoloop.quality.frozen import create_splits
from annoloop.quality.gate import gate_label_field
from annoloop.quality.golden import check_golden
from annoloop.selection.batches import plan_batch
from annoloop.selection.plan_record import planned_batches
from annoloop.selection.embed import compute_embeddings
from annoloop.selection.visualization import compute_embedding_visualization
from annoloop.core.names import (
    GOLDEN_SPLIT_TAG,
    MINING_EVAL_KEY,
    MINING_SPLIT_TAG,
    QUARANTINE_TAG,
    TEST_SPLIT_TAG,
)
from annoloop.training.evaluate import evaluate_split
from annoloop.training.algorithms.ledger import append_round, ledger_to_json, save_ledger
from fo_helpers import PLUGIN, queue_operator, unique_name, uri
from test_plugin import manifest

PANELS = {name: f"{PLUGIN}/{name}" for name in ("annotation_loop", "batch_planner")}
#: (batch, labels, mAP, recall per class) of the fabricated ledger, oldest first.
ROUNDS = (
    ("batch:v1", 6, 0.212, {"car": 0.55, "pedestrian": 0.41, "cyclist": 0.12}),
    ("batch:v2", 12, 0.347, {"car": 0.71, "pedestrian": 0.58, "cyclist": 0.27}),
    ("batch:v3", 18, 0.3472, {"car": 0.72, "pedestrian": 0.60, "cyclist": 0.28}),
    ("batch:v4", 24, 0.3473, {"car": 0.72, "pedestrian": 0.61, "cyclist": 0.28}),
)
BASELINE = ((6, 0.205), (12, 0.281), (18, 0.329), (24, 0.331))
GATE_SCHEMA = {
    "type": "detections",
    "classes": ["car", "van", "truck", "pedestrian", "cyclist"],
    "attributes": [{"name": n, "type": "str"} for n in ("annotator", "batch")]
    + [{"name": "object_id", "type": "int"}]
    + [{"name": n, "type": "bool"} for n in ("occluded", "truncated")],
}


NUM_SCENES = 36


def build_loop_dataset(name: str, num_scenes: int = NUM_SCENES, image_size=(128, 64)) -> dict:
    """The dataset of the module docstring (persistent, as the demo is); returns the
    dataset with the plan results and the golden check of the drifted batch."""
    dataset = load_demo_dataset(name, num_scenes=num_scenes, seed=7, image_size=image_size)
    create_splits(dataset, test=4, mining=2, golden=6, seed=1)
    compute_embeddings(dataset, slices=["left"], group_field=None)
    compute_embedding_visualization(
        dataset, embeddings="embedding", slice_name="left", method="pca"
    )
    first = plan_batch(dataset, 6, embeddings_field="embedding")
    annotate_batch(dataset.select_groups(first["ids"]), "batch:v1", seed=1)
    half_blind_model(dataset)
    second = plan_batch(dataset, 6, embeddings_field="embedding")
    golden = dataset.select_groups(dataset.match_tags(GOLDEN_SPLIT_TAG).distinct("group.id"))
    rules = DriftRules(min_support=5)  # a small golden set still shows the drift
    annotate_batch(golden, 0, seed=0)
    check_golden(dataset, "ground_truth", rules=rules)
    annotate_batch(golden, 2, seed=2)  # the drifted annotator: misses, renames, looser boxes
    drifted = check_golden(dataset, "ground_truth", rules=rules)
    ledger = []
    for batch, labels, map_, recall in ROUNDS:
        ledger = append_round(
            ledger, batch=batch, total_labels=labels, map_=map_, per_class_recall=recall
        )
    save_ledger(dataset, ledger)
    baseline = []
    for labels, map_ in BASELINE:
        baseline = append_round(
            baseline, batch="random", total_labels=labels, map_=map_, per_class_recall={}
        )
    dataset.info[st.BASELINE_LEDGER_INFO_KEY] = ledger_to_json(baseline)
    dataset.save()
    return {"dataset": dataset, "first": first, "second": second, "golden": drifted}


def half_blind_model(dataset: fo.Dataset) -> None:
    """Mining-set predictions that keep every other true object; evaluated as
    ``eval_mining``, the planner's source of failures."""
    mining = dataset.select_group_slices("left").match_tags(MINING_SPLIT_TAG)
    oracle = mining.values("oracle")
    mining.set_values("ground_truth", oracle)
    mining.set_values(
        "predictions",
        [
            fo.Detections(
                detections=[
                    fo.Detection(label=d.label, bounding_box=d.bounding_box, confidence=0.9)
                    for d in o.detections[::2]
                ]
            )
            for o in oracle
        ],
    )
    evaluate_split(
        dataset, "predictions", split="mining", slice_name="left", eval_key=MINING_EVAL_KEY
    )


def units(view) -> set:
    return set(view.distinct("group.id"))


def run_panel(panel: str, method: str, dataset, state: dict | None = None, **params):
    """Run a panel event as the App does; return ``(requests, state)``: the App operations
    asked for (name -> list of params) and the panel state after the event."""
    state = {} if state is None else state
    result = foo.execute_operator(
        PANELS[panel],
        ctx={
            "dataset": dataset,
            "params": {
                "__method__": method,
                "panel_id": "test-panel",
                "panel_state": state,
                **params,
            },
        },
    )
    requests: dict = {}
    for request in result.executor._requests:
        requests.setdefault(request.operator_uri, []).append(request.params)
    return requests, state


def view_set(dataset, requests: dict):
    """The view the panel asked the App to show, rebuilt as the App's server does."""
    import json

    stages = json_util.loads(json.dumps(requests["set_view"][0]["view"]))
    return fo.DatasetView._build(dataset, stages)


def rendered(requests: dict) -> str:
    """The panel's last rendered layout, as the JSON text the App receives."""
    import json

    return json.dumps(requests["show_panel_output"][-1]["output"])


@pytest.fixture(scope="module")
def loop():
    built = build_loop_dataset(unique_name("panels"))
    yield built
    built["dataset"].delete()


@pytest.fixture(scope="module")
def loaded(loop):
    """The Annotation loop panel after it loaded: ``(requests, state)``."""
    return run_panel("annotation_loop", "on_load", loop["dataset"])


@pytest.fixture
def loop_state(loaded):
    """A copy of the loaded panel's state for one event."""
    return copy.deepcopy(loaded[1])


def fresh_demo() -> fo.Dataset:
    """The demo before any step of the loop."""
    name = unique_name("panels-fresh")
    return load_demo_dataset(name, num_scenes=4, seed=3, image_size=(128, 64))


@pytest.fixture(scope="module")
def fresh():
    dataset = fresh_demo()
    yield dataset
    dataset.delete()


# --- registration -------------------------------------------------------------------------


def test_both_panels_register_through_fiftyones_plugin_loader():
    assert foo.OperatorRegistry().list_errors() == []
    registered = {p.uri for p in foo.list_operators(type="panel")}
    assert set(PANELS.values()) <= registered


def test_the_manifest_lists_exactly_the_two_panels():
    assert manifest()["panels"] == list(PANELS)


def test_every_step_button_names_a_registered_operator():
    operators = {op.uri for op in foo.list_operators(type="operator")}
    missing = [step.operator for step in STEPS if uri(step.operator) not in operators]
    assert missing == []


def test_every_listed_operator_of_the_manifest_has_a_step_button():
    # Unlisted operators are steps other operators queue (a ZCore shard), not user actions.
    listed = {
        name
        for name in manifest()["operators"]
        if not foo.get_operator(uri(name)).config.unlisted
    }
    assert step_names() == listed


# --- state readers ------------------------------------------------------------------------


def test_ledger_state_reports_rounds_weakest_class_baseline_and_plateau(loop):
    ledger = st.ledger_state(loop["dataset"])
    assert [r["batch"] for r in ledger["rounds"]] == [b for b, *_ in ROUNDS]
    assert [r["map"] for r in ledger["rounds"]] == [m for _, _, m, _ in ROUNDS]
    assert {r["weakest_class"] for r in ledger["rounds"]} == {"cyclist"}
    assert ledger["rounds"][0]["weakest_recall"] == pytest.approx(0.12)
    assert [(r["total_labels"], r["map"]) for r in ledger["baseline"]] == list(BASELINE)
    # The last two rounds gained under half an mAP point per 100 labels; cyclists lag.
    plateau = ledger["plateau"]
    assert plateau["plateaued"] and plateau["flat_rounds"] == 2
    assert plateau["recommendation"] == "more coverage"
    assert plateau["lagging_classes"] == ["cyclist"]


def test_ledger_state_of_a_dataset_without_rounds_is_empty(fresh):
    ledger = st.ledger_state(fresh)
    assert ledger["rounds"] == [] and ledger["baseline"] == []
    assert ledger["plateau"]["reason"] == "no rounds yet"


def test_batch_composition_describes_the_latest_plan_and_its_pick_reasons(loop):
    dataset, second = loop["dataset"], loop["second"]
    composition = st.batch_composition(dataset)
    assert composition["batch"] == second["batch"] == "batch:v2"
    shares = (composition["n_coverage"], composition["n_targeting"])
    assert shares == (second["n_coverage"], second["n_targeting"])
    assert composition["n_targeting"] > 0, "the half-blind model leaves misses to target"
    picked_kinds = [p["near_failure_kind"] for p in second["picks"] if p["source"] == "targeting"]
    assert composition["targets"] == {k: picked_kinds.count(k) for k in st.FAILURE_KINDS}
    assert composition["eval_key"] == MINING_EVAL_KEY and composition["scheduled"]
    assert composition["labeled"] == 0 and composition["view"] == "batch_v2"
    assert any(r.startswith(f"Targeting ({second['n_targeting']})") for r in composition["reasons"])
    assert planned_batches(dataset) == ["batch:v1", "batch:v2"]


def test_batch_composition_of_an_earlier_batch_counts_its_labeled_picks(loop):
    composition = st.batch_composition(loop["dataset"], "batch:v1")
    assert composition["n_targeting"] == 0, "a cold start is all coverage"
    assert composition["labeled"] == composition["budget"] == 6
    assert composition["reasons"][0].startswith("Round 1 follows the schedule: 100% coverage")


def test_batch_composition_is_none_before_any_plan(fresh):
    assert st.batch_composition(fresh) is None
    assert planned_batches(fresh) == []


def test_explain_batch_says_when_the_share_was_set_by_hand_and_why_it_fell_back():
    reasons = st.explain_batch(
        {
            "unit": "scene",
            "budget": 4,
            "round": 2,
            "scheduled": False,
            "coverage_fraction": 1.0,
            "fallback_reason": "no failures to target",
            "n_targeting": 0,
            "n_coverage": 4,
            "targets": {k: 0 for k in st.FAILURE_KINDS},
            "eval_key": None,
            "coverage_method": "random",
        }
    )
    assert reasons[0] == "Share set by hand: 100% coverage, 0% targeting of 4 scenes."
    assert reasons[1] == "All coverage: no failures to target."
    assert reasons[2].startswith("Coverage (4): uniformly at random")


def test_batch_view_opens_a_planned_batch_and_each_of_its_shares(loop):
    dataset, second = loop["dataset"], loop["second"]
    assert units(st.batch_view(dataset, "batch:v2")) == set(second["ids"])
    for source in ("coverage", "targeting"):
        expected = {i for i, s in zip(second["ids"], second["sources"]) if s == source}
        assert units(st.batch_view(dataset, "batch:v2", source=source)) == expected


def test_batch_view_finds_annotator_batches_by_their_label_attribute(loop):
    dataset = loop["dataset"]
    golden = set(dataset.match_tags(GOLDEN_SPLIT_TAG).distinct("group.id"))
    assert units(st.batch_view(dataset, "batch-002")) == golden
    assert st.batch_view(dataset, "batch:v9") is None


def test_units_view_of_scenes_keeps_every_slice_and_survives_flattening(loop):
    dataset, ids = loop["dataset"], loop["second"]["ids"]
    view = st.units_view(dataset, ids)
    assert units(view) == set(ids)
    # The App counts a grouped view on one flat slice; select_groups cannot be flattened.
    for slice_name in dataset.group_slices:
        assert len(view.select_group_slices(slice_name)) == len(ids)


def test_golden_state_has_a_row_per_batch_and_slice_with_its_alarms(loop):
    dataset, drifted = loop["dataset"], loop["golden"]
    golden = st.golden_state(dataset)
    assert golden["candidate_field"] == "ground_truth" and golden["iou"] == 0.5
    assert golden["batches"] == ["batch-000", "batch-002"]
    assert golden["slices"] == ["left", "right", "pcd"]
    assert len(golden["rows"]) == 6
    assert len(golden["alarms"]) == len(drifted["alarms"]) > 0
    alarmed = {(a["batch"], a["slice"]) for a in drifted["alarms"]}
    assert {(r["batch"], r["slice"]) for r in golden["rows"] if r["alarms"]} == alarmed
    first = next(r for r in golden["rows"] if (r["batch"], r["slice"]) == ("batch-002", "left"))
    per_batch = drifted["per_batch"]["batch-002"]["left"]
    assert first["recall"] == pytest.approx(per_batch["overall"]["recall"])
    assert first["recall_per_class"] == {
        c: pytest.approx(s["recall"]) for c, s in per_batch["per_class"].items() if s["n_gt"]
    }


def test_golden_state_refuses_a_field_without_history(loop, fresh):
    assert st.golden_state(fresh) is None
    with pytest.raises(ValueError, match="no golden-set history for 'predictions'"):
        st.golden_state(loop["dataset"], "predictions")


def test_golden_batch_view_opens_the_golden_scenes_of_a_batch(loop):
    dataset = loop["dataset"]
    golden = set(dataset.match_tags(GOLDEN_SPLIT_TAG).distinct("group.id"))
    assert units(st.golden_batch_view(dataset, "ground_truth", "batch-002")) == golden
    assert st.golden_batch_view(dataset, "ground_truth", "batch-404") is None


def test_quarantine_counts_scenes_once_and_samples_and_labels_per_slice():
    fresh = fresh_demo()
    # Scenes ordered by how many objects the right camera sees: the third one sees some.
    right = fresh.select_group_slices("right")
    counts = dict(zip(*right.values(["group.id", F("oracle.detections").length()])))
    scenes = sorted(counts, key=counts.get)
    fresh.select_groups(scenes[:2]).select_group_slices("left").tag_samples(QUARANTINE_TAG)
    fresh.select_groups(scenes[:1]).select_group_slices("right").tag_samples(QUARANTINE_TAG)
    third = fresh.select_groups(scenes[-1:]).select_group_slices("right")
    third.tag_labels(QUARANTINE_TAG, label_fields="oracle")
    labels = counts[scenes[-1]]

    q = st.quarantine_state(fresh)
    assert q["unit"] == "scene" and q["units"] == 3
    assert q["per_slice"] == {
        "left": {"samples": 2, "labels": 0},
        "right": {"samples": 1, "labels": labels},
        "pcd": {"samples": 0, "labels": 0},
    }
    assert labels > 0 and (q["samples"], q["labels"]) == (3, labels)
    assert units(st.quarantine_view(fresh)) == {*scenes[:2], scenes[-1]}
    fresh.delete()


def test_quarantine_state_sums_the_gates_violations_by_rule(loop):
    dataset = loop["dataset"].clone(unique_name("panels-gate"))
    try:
        not_test = dataset.match_tags(TEST_SPLIT_TAG, bool=False).distinct("group.id")
        summary = gate_label_field(
            dataset.select_groups(not_test),
            "ground_truth",
            schema=GATE_SCHEMA,
            slices=["left", "right"],
        )
        q = st.quarantine_state(dataset)
        assert q["by_rule"] == summary["total"]["by_rule"]
        assert q["by_rule"], "the drifted annotator's renamed class breaks the schema"
        assert q["samples"] == summary["quarantined"]
    finally:
        dataset.delete()


def test_nothing_is_quarantined_before_the_gate_runs(fresh):
    q = st.quarantine_state(fresh)
    assert (q["units"], q["samples"], q["labels"], q["by_rule"]) == (0, 0, 0, {})
    assert st.quarantine_view(fresh) is None


def test_loop_overview_counts_each_scene_once_whichever_slice_holds_it(loop):
    dataset = loop["dataset"]
    overview = st.loop_overview(dataset)
    assert overview["unit"] == "scene" and overview["units"] == NUM_SCENES
    assert (overview["test"], overview["golden"]) == (4, 6)
    assert overview["batched"] == 12  # batch:v1 and batch:v2
    labeled = units(dataset.select_group_slices("left").exists("ground_truth"))
    mining, golden = (units(dataset.match_tags(t)) for t in (MINING_SPLIT_TAG, GOLDEN_SPLIT_TAG))
    first_batch = units(dataset.match_tags("batch:v1"))
    assert overview["labeled"] == len(labeled) == len(mining | golden | first_batch)


def test_read_jobs_lists_annoloop_operations_queued_for_the_dataset(loop):
    from fiftyone.operators.delegated import DelegatedOperationService

    dataset = loop["dataset"]
    op_id = str(queue_operator("check_golden", {"candidate_field": "ground_truth"}, dataset=dataset))
    try:
        jobs = jb.read_jobs(dataset)
        assert [(j["id"], j["operator"], j["state"]) for j in jobs["active"]] == [
            (op_id, "check_golden", "queued")
        ]
        assert jobs["failed"] == []
    finally:
        DelegatedOperationService().delete_operation(ObjectId(op_id))
    assert jb.read_jobs(dataset) == {"active": [], "failed": [], "completed": []}


def test_error_message_is_the_last_line_of_a_traceback_without_the_exception_class():
    traceback_text = (
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "ValueError: 'zcore' already holds ZCore scores: pass overwrite=True\n"
    )
    assert jb.error_message(traceback_text) == "'zcore' already holds ZCore scores: pass overwrite=True"
    assert jb.error_message("no class: just words") == "no class: just words"
    assert "worker's log" in jb.error_message(None)


def test_preview_summary_explains_a_dry_run_like_a_planned_batch(loop):
    dataset = loop["dataset"]
    result = plan_batch(dataset, 4, embeddings_field="embedding", dry_run=True)
    preview = st.preview_summary(result, scheduled=True)
    assert preview["unit"] == "scene" and preview["budget"] == 4
    assert preview["batch"] == "batch:v3" and not dataset.has_run("annoloop_plan_batch_v3")
    assert preview["n_coverage"] + preview["n_targeting"] == 4
    assert sum(preview["targets"].values()) == preview["n_targeting"]
    assert preview["reasons"] == st.explain_batch(preview)


def test_embedding_points_keep_the_picks_and_sample_the_rest(loop):
    dataset, ids = loop["dataset"], loop["second"]["ids"]
    points = st.embedding_points(dataset, "embedding", keep=ids, max_points=5)
    assert points["brain_key"] == "viz_left_embedding_pca" and points["total"] == NUM_SCENES
    assert len(points["x"]) == len(points["y"]) == len(points["unit"]) == len(ids) + 5
    assert set(ids) <= set(points["unit"])
    assert set(points["unit"]) <= units(dataset)


def test_embedding_points_are_none_without_a_visualization(fresh):
    assert st.embedding_points(fresh) is None


# --- panel events -------------------------------------------------------------------------


def test_the_loop_panel_loads_and_renders_every_section(loop, loaded):
    requests, state = loaded
    assert state["dataset"] == loop["dataset"].name
    assert state["ledger_batches"] == [b for b, *_ in ROUNDS]
    assert state["composition"]["batch"] == "batch:v2"
    data = {}
    for patch in requests["patch_panel_data"]:
        data.update(patch["data"])
    assert [r["map"] for r in data[f"{LEDGER}.table"]] == [format_map(m) for _, _, m, _ in ROUNDS]
    assert [t["name"] for t in data[f"{LEDGER}.row.plot"]] == ["annoloop", "random baseline"]
    assert sum(t["x"][0] for t in data[f"{BATCH}.row.plot"]) == 6
    table = data[f"{GOLDEN}.table"]
    assert [table["rows"][i][0] for i in table["selected_rows"]] == ["batch-002"] * 3
    layout = rendered(requests)
    for label in ("Ledger of rounds", "Current batch", "Golden set", "Quarantine"):
        assert label in layout


def test_the_loop_panel_asks_for_nothing_but_a_message_without_a_dataset():
    requests, state = run_panel("annotation_loop", "on_load", None)
    assert state == {"dataset": None}
    assert "Open a dataset" in rendered(requests)


def test_clicking_a_ledger_row_opens_that_batch_as_the_app_view(loop, loop_state):
    dataset = loop["dataset"]
    requests, _ = run_panel("annotation_loop", "open_ledger_row", dataset, state=loop_state, row=1)
    view = view_set(dataset, requests)
    assert units(view) == set(loop["second"]["ids"])  # round 1 added batch:v2


def test_clicking_a_round_without_samples_notifies_instead_of_emptying_the_view(loop, loop_state):
    dataset = loop["dataset"]
    requests, _ = run_panel("annotation_loop", "open_ledger_row", dataset, state=loop_state, row=2)
    assert "set_view" not in requests
    assert requests["notify"][0]["message"] == "No samples found for batch batch:v3"


def test_a_step_button_opens_its_operators_form_and_refreshes_after(loop):
    dataset = loop["dataset"]
    requests, _ = run_panel("annotation_loop", "start_step", dataset, operator="train_detector")
    prompt = requests["prompt_user_for_operation"][0]
    assert prompt["operator_uri"] == uri("train_detector")
    assert prompt["on_success"] == f"{PANELS['annotation_loop']}#on_step_done"


def test_the_share_buttons_open_the_coverage_and_targeting_picks(loop, loop_state):
    dataset, second = loop["dataset"], loop["second"]
    requests, _ = run_panel(
        "annotation_loop", "open_share", dataset, state=loop_state, share="targeting"
    )
    view = view_set(dataset, requests)
    assert units(view) == {i for i, s in zip(second["ids"], second["sources"]) if s == "targeting"}


def test_the_planner_previews_without_writing_and_prefills_the_operator_form(loop):
    dataset = loop["dataset"]
    _, state = run_panel("batch_planner", "on_load", dataset)
    assert state["next_batch"] == "batch:v3" and state["budget"] == 6
    assert state["embeddings_field"] == "embedding" and state["eval_key"] == MINING_EVAL_KEY
    requests, state = run_panel("batch_planner", "preview", dataset, state=state)
    assert state["error"] is None and len(state["pick_ids"]) == 6
    assert state["preview"]["batch"] == "batch:v3" and not dataset.has_run("annoloop_plan_batch_v3")
    assert "Preview of batch:v3" in rendered(requests)
    data = requests["patch_panel_data"][-1]["data"]
    scene_of = dict(zip(*dataset.values(["group.id", "scene_id"])))
    table = data["preview_section.row.side.table"]
    assert [r["name"] for r in table] == [scene_of[i] for i in state["pick_ids"]]
    assert data["preview_section.thumbnails.thumb_0"].startswith("/media?filepath=")

    requests, _ = run_panel("batch_planner", "create_batch", dataset, state=state)
    prompt = requests["prompt_user_for_operation"][0]
    assert prompt["operator_uri"] == uri("plan_batch")
    assert prompt["params"] == {
        "budget": 6,
        "embeddings_field": "embedding",
        "coverage_method": "typical",
        "use_schedule": True,
        "dry_run": False,
        "eval_key": MINING_EVAL_KEY,
        "slice": "left",
    }


def test_the_planner_shows_the_planners_message_for_a_budget_too_large(loop):
    dataset = loop["dataset"]
    _, state = run_panel("batch_planner", "on_load", dataset)
    # The App reports a control's path in its stack and the new value.
    _, state = run_panel(
        "batch_planner", "set_option", dataset, state=state, path="controls.budget", value=500
    )
    assert state["budget"] == 500
    requests, state = run_panel("batch_planner", "preview", dataset, state=state)
    assert state["preview"] is None and "budget 500 exceeds" in state["error"]
    assert "Cannot plan this batch" in rendered(requests)


def test_a_preview_survives_a_control_reporting_its_unchanged_value_but_not_a_change(loop):
    # The App reports each control's initial value too, possibly after Preview was clicked.
    dataset = loop["dataset"]
    _, state = run_panel("batch_planner", "on_load", dataset)
    _, state = run_panel("batch_planner", "preview", dataset, state=state)
    _, state = run_panel("batch_planner", "set_option", dataset, state=state,
                         path="controls.budget", value=state["budget"])
    assert state["preview"]["batch"] == "batch:v3"
    _, state = run_panel("batch_planner", "set_option", dataset, state=state,
                         path="controls.budget", value=state["budget"] - 1)
    assert state["preview"] is None


def test_the_picks_table_names_samples_and_rounds_numbers_without_raw_ids(loop):
    dataset = loop["dataset"]
    _, state = run_panel("batch_planner", "on_load", dataset)
    requests, state = run_panel("batch_planner", "preview", dataset, state=state)
    table = requests["patch_panel_data"][-1]["data"]["preview_section.row.side.table"]
    cells = [str(v) for row in table for v in row.values()]
    assert not [c for c in cells if re.fullmatch(r"[0-9a-f]{24}", c)], "no raw ObjectIds"
    numbers = [c for row in table for c in (row["distance"], row["score"]) if c != "—"]
    assert numbers and all(re.fullmatch(r"-?\d+\.\d{2}", c) for c in numbers)


def test_the_planner_shows_its_thumbnails_in_a_grid_of_columns(loop):
    dataset = loop["dataset"]
    _, state = run_panel("batch_planner", "on_load", dataset)
    requests, state = run_panel("batch_planner", "preview", dataset, state=state)
    grid = find_view(json.loads(rendered(requests)), "thumbnails")
    assert grid["view"]["orientation"] == "horizontal" and grid["view"]["columns"] > 1
    assert len(grid["type"]["properties"]) == len(state["pick_ids"])


def test_every_plot_has_a_fixed_height_and_scrolls_the_panel_instead_of_zooming(loop, loaded):
    dataset = loop["dataset"]
    _, state = run_panel("batch_planner", "on_load", dataset)
    preview, _ = run_panel("batch_planner", "preview", dataset, state=state)
    plots = [
        view
        for requests in (loaded[0], preview)
        for view in views_named(json.loads(rendered(requests)), "PlotlyView")
    ]
    assert len(plots) == 4  # ledger, batch, golden set, embeddings
    for view in plots:
        assert view["config"]["scrollZoom"] is False
        assert view["height"] == view["layout"]["height"]
        item = view["componentsProps"]["item"]["sx"]
        assert item["height"] == item["minHeight"] == f"{view['height']}px"


def test_rounds_are_numbered_from_1_like_their_batches_in_both_panels(loop, loaded):
    requests, state = loaded
    data = {}
    for patch in requests["patch_panel_data"]:
        data.update(patch["data"])
    table = data[f"{LEDGER}.table"]
    assert [(r["round"], r["batch"]) for r in table] == [
        (f"round {b[len('batch:v'):]}", b) for b, *_ in ROUNDS
    ]
    assert "**batch:v2**, round 2:" in rendered(requests)
    _, planner = run_panel("batch_planner", "on_load", loop["dataset"])
    requests, _ = run_panel("batch_planner", "preview", loop["dataset"], state=planner)
    assert "next batch **batch:v3**, round 3:" in rendered(requests)
    assert "coverage + " in rendered(requests) and "round 3. Nothing was written" in rendered(
        requests
    )


def test_the_pool_counts_add_up_to_the_datasets_scenes(loop, loaded):
    composition = loaded[1]["composition"]
    counts = composition["counts"]
    assert counts["view"] == NUM_SCENES
    held = counts["pool"] - counts["selectable"]
    assert max(composition["excluded"].values()) <= held <= sum(composition["excluded"].values())
    line = f"Of **{NUM_SCENES}** scenes, {NUM_SCENES - counts['pool']} are labeled and "
    assert line in rendered(loaded[0])


def test_scenes_labeled_and_training_images_after_the_gate_are_named_where_shown(loaded):
    layout = rendered(loaded[0])
    assert "scenes labeled" in layout and "training images after the gate" in layout
    assert "Training images (after the gate)" in layout  # the ledger's column


def test_annotate_this_batch_opens_the_batch_with_the_ground_truth_schema_active(
    loop, loop_state
):
    dataset = loop["dataset"]
    requests, _ = run_panel("annotation_loop", "annotate_batch", dataset, state=loop_state)
    assert units(view_set(dataset, requests)) == set(loop["second"]["ids"])
    dataset.reload()
    assert dataset.active_label_schemas[0] == "ground_truth"
    message = requests["notify"][0]["message"]
    assert message.startswith("batch:v2 is the view") and "Annotate tab" in message


def test_a_running_job_shows_its_progress_and_the_panel_polls_until_it_completes(loop):
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionProgress

    dataset, service = loop["dataset"], DelegatedOperationService()
    op_id = str(queue_operator("check_golden", {"candidate_field": "ground_truth"}, dataset=dataset))
    try:
        service.set_running(ObjectId(op_id))
        service.set_progress(ObjectId(op_id), ExecutionProgress(0.4, "Scoring batch-002"))
        requests, state = run_panel("annotation_loop", "on_load", dataset)
        (job,) = state["jobs"]["active"]
        assert (job["state"], job["progress"], job["progress_label"]) == (
            "running", 0.4, "Scoring batch-002"
        )
        layout = json.loads(rendered(requests))
        line = find_view(layout, JOBS)["type"]["properties"]["active_0"]["default"]
        assert "**running** · 40% · Scoring batch-002" in line
        (timer,) = views_named(layout, "TimerView")
        assert timer["on_interval"] == f"{PANELS['annotation_loop']}#poll_jobs"

        # Still running: the poll updates the jobs only.
        requests, state = run_panel("annotation_loop", "poll_jobs", dataset, state=state)
        assert "patch_panel_data" not in requests and state["active_jobs"] == [op_id]
        service.set_completed(ObjectId(op_id))
        requests, state = run_panel("annotation_loop", "poll_jobs", dataset, state=state)
        assert state["active_jobs"] == [] and state["jobs"]["active"] == []
        (completed,) = state["jobs"]["completed"]
        assert (completed["id"], completed["state"]) == (op_id, "completed")
        assert "patch_panel_data" in requests, "a completed job reloads the panel's data"
        assert not views_named(json.loads(rendered(requests)), "TimerView")
    finally:
        service.delete_operation(ObjectId(op_id))


def test_a_failed_scheduled_job_shows_its_error_and_a_rerun_button_after_one_poll(loop):
    from fiftyone.operators.delegated import DelegatedOperationService

    dataset, service = loop["dataset"], DelegatedOperationService()
    params = {"candidate_field": "ground_truth", "golden_field": "no_such_field"}
    op_id = str(queue_operator("check_golden", params, dataset=dataset))
    rerun_id = None
    try:
        _, state = run_panel("annotation_loop", "on_load", dataset)
        assert state["active_jobs"] == [op_id]
        service.execute_queued_operations(dataset_name=dataset.name)  # the worker fails it
        doc = service.get(ObjectId(op_id))
        assert doc.run_state == "failed"

        requests, state = run_panel("annotation_loop", "poll_jobs", dataset, state=state)
        (failed,) = state["jobs"]["failed"]
        assert failed["id"] == op_id and failed["error"] == jb.error_message(doc.result.error)
        assert "no_such_field" in failed["error"]
        section = json.dumps(find_view(json.loads(rendered(requests)), JOBS), ensure_ascii=False)
        assert failed["error"] in section and "Re-run" in section

        requests, state = run_panel(
            "annotation_loop", "rerun_job", dataset, state=state, job_id=op_id
        )
        (rerun,) = state["jobs"]["active"]
        rerun_id = rerun["id"]
        assert (rerun["operator"], rerun["state"]) == ("check_golden", "queued")
        assert service.get(ObjectId(rerun_id)).context.request_params["params"] == params
        assert state["jobs"]["failed"] == [], "a failed job queued again no longer alarms"
    finally:
        for i in (op_id, rerun_id):
            if i:
                service.delete_operation(ObjectId(i))


def find_view(layout: dict, name: str) -> dict:
    """The property called ``name`` anywhere in a rendered layout."""
    stack = [layout]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict) and name in node["properties"]:
                return node["properties"][name]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise AssertionError(f"no property {name!r} in the layout")


def views_named(layout: dict, view_name: str) -> list:
    """Every view of ``view_name`` (e.g. ``"PlotlyView"``) in a rendered layout."""
    found, stack = [], [layout]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("name") == view_name:
                found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found
