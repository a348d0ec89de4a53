"""A planned batch goes to a real Label Studio server and comes back through the schema gate.

Two 20-scene batches of the demo are sent, each split between two scripted annotators with
golden scenes hidden in both queues. The annotators are Label Studio users who submit their
boxes through Label Studio's REST API with their own tokens: a careful one draws the demo's
``oracle`` boxes; a drifting one does too in the first batch, and in the second renames
``car`` to ``vehicle`` (a class the schema does not have) and draws boxes 40 % larger.
"""

from __future__ import annotations

import os
import re
import uuid

import numpy as np
import pytest

from fo_helpers import run_operator, unique_name

from annoloop.annotation.load import annotator_history, annotator_summary, load_batch
from annoloop.annotation.send import PROVENANCE_ATTRIBUTES, send_batch, send_record
from annoloop.core.names import QUARANTINE_TAG
from annoloop.demo.dataset import load_demo_dataset
from annoloop.quality.algorithms.drift import DriftRules
from annoloop.quality.frozen import create_splits
from annoloop.selection.batches import plan_batch

pytestmark = pytest.mark.slow

# Unique accounts, so the tests also run against a long-lived server.
_RUN = uuid.uuid4().hex[:6]
ANNOTATORS = {name: f"{name}-{_RUN}@annoloop.test" for name in ("careful", "drifting")}
# A demo camera image shows 2-3 objects, so a 10-scene queue at the default 8 % golden share
# (one golden scene) gives an annotator too few golden boxes for any statistical test. Here
# each queue holds 4 golden scenes (~9 boxes) and the drift tests need 5 boxes instead of the
# 30 sized for production batches.
RULES = DriftRules(min_support=5)
GOLDEN_SHARE = 0.3


def boxes(sample, drift: bool) -> list[tuple[str, list[float]]]:
    """What a scripted annotator draws on one sample: the oracle, or the drifted oracle."""
    drawn = []
    for det in sample.oracle.detections if sample.oracle else []:
        x, y, w, h = det.bounding_box
        label = det.label
        if drift:
            label = "vehicle" if label == "car" else label
            cx, cy, w, h = x + w / 2, y + h / 2, w * 1.4, h * 1.4
            x, y = max(0.0, cx - w / 2), max(0.0, cy - h / 2)
            w, h = min(w, 1.0 - x), min(h, 1.0 - y)
        drawn.append((label, [x, y, w, h]))
    return drawn


def submit(label_studio, dataset, anno_key: str, email: str, drift: bool) -> int:
    """Annotate every task of one queue as ``email``, through Label Studio's API."""
    _, token = label_studio.annotator(email)
    results = dataset.load_annotation_results(anno_key)
    samples = {s.id: s for s in dataset.select_group_slices("left").select(
        list(results.uploaded_tasks.values()))}
    n = 0
    for task_id, sample_id in results.uploaded_tasks.items():
        sample = samples[sample_id]
        result = [
            {
                "from_name": "incoming",
                "to_name": "image",
                "type": "rectanglelabels",
                "original_width": sample.metadata.width,
                "original_height": sample.metadata.height,
                "image_rotation": 0,
                "value": {"x": 100 * x, "y": 100 * y, "width": 100 * w, "height": 100 * h,
                          "rotation": 0, "rectanglelabels": [label]},
            }
            for label, (x, y, w, h) in boxes(sample, drift)
        ]
        label_studio.request(
            "POST", f"/api/tasks/{task_id}/annotations/", token=token, json={"result": result}
        )
        n += len(result)
    return n


def tasks_of(label_studio, project_id: int) -> list[dict]:
    page = label_studio.request("GET", "/api/tasks/", params={"project": project_id, "page_size": 1000})
    return page["tasks"] if isinstance(page, dict) else page


@pytest.fixture(scope="module")
def round_trip(label_studio):
    dataset = load_demo_dataset(unique_name("ls"), num_scenes=70, seed=17, image_size=(192, 64))
    create_splits(dataset, test=4, mining=4, golden=8, seed=3)
    left = dataset.select_group_slices("left")
    rng = np.random.default_rng(0)
    left.set_values("embedding", list(rng.normal(size=(len(left), 8))))
    credentials = {"url": label_studio.url, "api_key": label_studio.api_key}
    rounds = []
    for k in range(2):
        plan = plan_batch(dataset, 20, embeddings_field="embedding", coverage_fraction=1.0,
                          slice_name="left", seed=k)
        params = {"batch": plan["batch"], "annotators": ",".join(ANNOTATORS),
                  "golden_share": GOLDEN_SHARE, "seed": k, **credentials}
        # The first batch goes out through the SDK, the second through the operator.
        sent = (send_batch(dataset, plan["batch"], list(ANNOTATORS), golden_share=GOLDEN_SHARE,
                           seed=k, **credentials) if k == 0
                else {**run_operator("send_batch", params, dataset=dataset).result,
                      **send_record(dataset, plan["batch"])})
        submitted = {
            q["annotator"]: submit(label_studio, dataset, q["anno_key"],
                                   ANNOTATORS[q["annotator"]], drift=k == 1 and q["annotator"] == "drifting")
            for q in sent["queues"]
        }
        loaded = load_batch(dataset, plan["batch"], rules=RULES)
        rounds.append({"sent": sent, "submitted": submitted, "loaded": loaded})
    yield dataset, rounds
    dataset.delete()


def test_each_batch_of_20_scenes_is_split_between_the_annotators_with_golden_scenes_in_each_queue(round_trip):
    _, rounds = round_trip
    for r in rounds:
        queues = r["sent"]["queues"]
        assert r["sent"]["n_batch"] == 20
        assert sum(q["n_tasks"] - q["n_golden"] for q in queues) == 20
        assert all(q["n_golden"] == 4 for q in queues)


def test_every_submitted_label_is_merged_quarantined_with_a_reason_or_scored_as_golden(round_trip):
    _, rounds = round_trip
    for r in rounds:
        for name, outcome in r["loaded"]["per_annotator"].items():
            assert outcome["n_loaded"] == r["submitted"][name]
            assert outcome["n_merged"] + outcome["n_quarantined"] + outcome["n_golden"] == outcome["n_loaded"]
            assert all(q["rules"] for q in outcome["quarantined"])


def test_only_gate_passing_labels_reach_ground_truth_with_their_provenance(round_trip):
    dataset, rounds = round_trip
    left = dataset.select_group_slices("left")
    drifted = rounds[1]["loaded"]["per_annotator"]["drifting"]
    assert drifted["n_quarantined"] > 0
    assert {tuple(q["rules"]) for q in drifted["quarantined"]} == {("unknown_class",)}
    assert {q["label"] for q in drifted["quarantined"]} == {"vehicle"}
    merged = left.filter_labels("ground_truth", True).values("ground_truth.detections")
    labels = [d for dets in merged if dets for d in dets]
    assert len(labels) == sum(a["n_merged"] for r in rounds for a in r["loaded"]["per_annotator"].values())
    assert "vehicle" not in {d.label for d in labels}
    for d in labels:
        assert {a: d[a] is not None for a in PROVENANCE_ATTRIBUTES} == dict.fromkeys(PROVENANCE_ATTRIBUTES, True)
        assert d["annotation_tool"] == "labelstudio"


def test_quarantined_labels_stay_visible_in_the_annotators_staging_field(round_trip):
    dataset, rounds = round_trip
    left = dataset.select_group_slices("left")
    tagged = left.match_labels(tags=QUARANTINE_TAG, fields="incoming_drifting")
    ids = {d.id for dets in tagged.values("incoming_drifting.detections") for d in dets
           if QUARANTINE_TAG in d.tags}
    assert ids == {q["label_id"] for q in rounds[1]["loaded"]["per_annotator"]["drifting"]["quarantined"]}
    assert set(tagged.values("id")) <= set(left.match_tags(QUARANTINE_TAG).values("id"))


def test_golden_tasks_look_like_every_other_task_to_the_annotator(round_trip, label_studio):
    dataset, rounds = round_trip
    positions = []
    for r in rounds:
        for queue in r["sent"]["queues"]:
            results = dataset.load_annotation_results(queue["anno_key"])
            golden = set(queue["golden_sample_ids"])
            tasks = tasks_of(label_studio, results.project_id)
            assert len(tasks) == queue["n_tasks"]
            shapes = {
                (task_id in golden, tuple(sorted(t["data"])), tuple(sorted(t.get("meta") or {})))
                for t in tasks
                for task_id in [results.uploaded_tasks[t["id"]]]
            }
            assert {s[1:] for s in shapes if s[0]} == {s[1:] for s in shapes if not s[0]}
            for t in tasks:
                assert "golden" not in repr(t["data"]).lower()
                assert re.fullmatch(r"/data/upload/\d+/[0-9a-f]+-scene-\d{6}\.jpg", t["data"]["image"])
                assert not t.get("predictions")
            by_id = sorted(tasks, key=lambda t: t["id"])
            shown = [re.sub(r"^/data/upload/\d+/[0-9a-f]+-", "", t["data"]["image"]) for t in by_id]
            mapped = [results.uploaded_tasks[t["id"]] for t in by_id]
            positions.append([i for i, sid in enumerate(mapped) if sid in golden])
            paths = dict(zip(*dataset.select_group_slices("left").select(mapped).values(["id", "filepath"])))
            assert shown == [os.path.basename(paths[sid]) for sid in mapped]
    # Upload order is the shuffled queue order: golden tasks are not gathered at the end.
    assert any(p[0] < 8 for p in positions), positions


def test_the_drifting_annotator_raises_alarms_and_the_careful_one_does_not(round_trip):
    dataset, rounds = round_trip
    alarms = rounds[1]["loaded"]["per_annotator"]
    assert alarms["careful"]["alarms"] == []
    rules = {a["rule"] for a in alarms["drifting"]["alarms"]}
    assert {"new_class", "iou_drop"} <= rules
    history = annotator_history(dataset)
    assert [e["batch"] for e in history["drifting"]] == [r["loaded"]["batch"] for r in rounds]
    careful, drifting = history["careful"][-1], history["drifting"][-1]
    assert careful["overall"]["mean_iou"] > drifting["overall"]["mean_iou"]
    assert "vehicle" in drifting["per_class"] and "vehicle" not in careful["per_class"]


def test_the_panel_lists_each_annotator_with_the_alarms_of_their_latest_batch(round_trip):
    dataset, rounds = round_trip
    rows = {r["annotator"]: r for r in annotator_summary(dataset)}
    assert rows["careful"]["alarms"] == [] and rows["careful"]["batch"] == rounds[1]["loaded"]["batch"]
    assert rows["drifting"]["alarms"] == [a["message"] for a in rounds[1]["loaded"]["alarms"]
                                          if a["annotator"] == "drifting"]
    assert rows["drifting"]["mean_iou"] < rows["careful"]["mean_iou"]


def test_a_batch_is_sent_once_and_loaded_once(round_trip, label_studio):
    dataset, rounds = round_trip
    batch = rounds[0]["loaded"]["batch"]
    runs = dataset.list_annotation_runs()
    labels = dataset.select_group_slices("left").count("ground_truth.detections")
    with pytest.raises(ValueError, match=f"batch '{batch}' was sent to labelstudio at"):
        send_batch(dataset, batch, list(ANNOTATORS), url=label_studio.url, api_key=label_studio.api_key)
    with pytest.raises(ValueError, match="loaded before.*stay quarantined in"):
        load_batch(dataset, batch)
    assert dataset.list_annotation_runs() == runs
    assert dataset.select_group_slices("left").count("ground_truth.detections") == labels
