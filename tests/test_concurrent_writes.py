"""Two processes writing one dataset at the same instant leave it consistent."""

from __future__ import annotations

import json
import textwrap
import uuid

from collections import Counter

import fiftyone as fo
import pytest

import annoloop
from annoloop.core.names import (
    BATCH_TAG_PREFIX,
    GOLDEN_SPLIT_TAG,
    LEDGER_INFO_KEY,
    MINING_SPLIT_TAG,
    TEST_SPLIT_TAG,
)
from annoloop.benchmarks.bench_autolabel import random_checkpoint
from annoloop.core.views import tagged_groups
from annoloop.demo.annotation import annotate_batch
from annoloop.quality.gate import gate_record
from annoloop.quality.golden import golden_history
from annoloop.training import runs
from annoloop.training.autolabel.run import autolabel_runs
from fo_helpers import python_process


@pytest.fixture(scope="module")
def embedded():
    dataset = annoloop.load_demo_dataset(f"race-{uuid.uuid4().hex[:8]}", num_scenes=24, seed=5)
    annoloop.compute_embeddings(dataset)
    yield dataset
    dataset.delete()


def in_parallel(setup: str, actions: list[str], tmp_path) -> list[str]:
    """Run each of ``actions`` in its own process, all released together once each has run
    ``setup``; their last stdout lines, in the order of ``actions``."""
    go = tmp_path / "go"

    def code(action: str) -> str:
        return "\n".join(
            [
                "import os, sys, time",
                textwrap.dedent(setup),
                "print('ready', flush=True)",
                f"while not os.path.exists({str(go)!r}):",
                "    time.sleep(0.005)",
                textwrap.dedent(action),
            ]
        )

    procs = [python_process(code(action), "ready") for action in actions]
    go.touch()
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * len(actions)
    return [out.strip().splitlines()[-1] for out in outputs]


def loaded(dataset, *names: str) -> str:
    """Setup code: ``dataset`` loaded by name, and the SDK functions ``names`` imported (so
    no process is still importing when the race starts)."""
    return "\n".join(
        [
            "import json, annoloop, fiftyone as fo",
            f"dataset = fo.load_dataset({dataset.name!r})",
            *(f"annoloop.{name}" for name in names),
        ]
    )


@pytest.fixture
def fresh():
    dataset = annoloop.load_demo_dataset(f"race-{uuid.uuid4().hex[:8]}", num_scenes=24, seed=6)
    yield dataset
    dataset.delete()


def test_two_planners_at_once_claim_two_batches_with_disjoint_scenes(embedded, tmp_path):
    action = """
        plan = annoloop.plan_batch(dataset, 3, embeddings_field="group_embedding")
        print(json.dumps([plan["batch"], plan["ids"]]))
        """
    outputs = in_parallel(loaded(embedded, "plan_batch"), [action] * 2, tmp_path)
    plans = [json.loads(line) for line in outputs]
    names = sorted(name for name, _ in plans)
    assert names == [f"{BATCH_TAG_PREFIX}v1", f"{BATCH_TAG_PREFIX}v2"]
    first, second = (set(ids) for _, ids in plans)
    assert len(first) == len(second) == 3 and not first & second
    embedded.reload()
    for name, ids in plans:
        assert set(tagged_groups(embedded, [name])) == set(ids)


def test_two_split_draws_at_once_freeze_one_draw_and_refuse_the_other(fresh, tmp_path):
    action = """
        try:
            annoloop.create_splits(dataset, test=4, golden=2, mining=2)
            print("frozen")
        except ValueError as error:
            print("refused" if "already has frozen splits" in str(error) else repr(error))
        """
    outputs = in_parallel(loaded(fresh, "create_splits"), [action] * 2, tmp_path)
    assert sorted(outputs) == ["frozen", "refused"]
    fresh.reload()
    tags = (TEST_SPLIT_TAG, MINING_SPLIT_TAG, GOLDEN_SPLIT_TAG)
    splits = [set(tagged_groups(fresh, [tag])) for tag in tags]
    assert all(splits) and sum(map(len, splits)) == len(set().union(*splits))


@pytest.fixture(scope="module")
def labeled():
    """A demo dataset with frozen splits (golden labels from the oracle) and annotator
    labels in ``ground_truth`` everywhere."""
    dataset = annoloop.load_demo_dataset(
        f"race-{uuid.uuid4().hex[:8]}", num_scenes=24, seed=7, image_size=(128, 64)
    )
    annotate_batch(dataset, 0, seed=3)  # before the splits: test samples are never annotated
    annoloop.create_splits(dataset, test=4, golden=4, mining=2)
    yield dataset
    dataset.delete()


@pytest.fixture
def clone(labeled):
    """A persistent clone of ``labeled`` (the racing processes load it by name)."""
    dataset = labeled.clone(f"race-{uuid.uuid4().hex[:8]}", persistent=True)
    yield dataset
    dataset.delete()


def test_two_golden_checks_at_once_keep_both_batches_in_the_history(clone, tmp_path):
    actions = [
        f"""
        result = annoloop.check_golden(
            dataset, "ground_truth", batch_by="name", batch_name={name!r}
        )
        print(json.dumps(result["batches"]))
        """
        for name in ("night-1", "night-2")
    ]
    outputs = in_parallel(loaded(clone, "check_golden"), actions, tmp_path)
    assert [json.loads(line) for line in outputs] == [["night-1"], ["night-2"]]
    clone.reload()
    history = golden_history(clone, "ground_truth")
    entries = Counter((e["batch"], e["slice"]) for e in history)
    slices = {s for _, s in entries}
    assert set(entries) == {(b, s) for b in ("night-1", "night-2") for s in slices}
    assert set(entries.values()) == {1}


def predictions(view, keep_every: int) -> list:
    """Copies of every ``keep_every``-th ground-truth box of ``view``, as confident
    predictions: two models of different quality."""
    return [
        fo.Detections(
            detections=[
                fo.Detection(label=d.label, bounding_box=d.bounding_box, confidence=0.9)
                for d in labels.detections[::keep_every]
            ]
        )
        for labels in view.values("ground_truth")
    ]


def test_two_evaluations_at_once_record_two_rounds_with_their_own_metrics(clone, tmp_path):
    test_set = clone.select_group_slices("left").match_tags(TEST_SPLIT_TAG)
    models = {"model_a": (1, 10), "model_b": (2, 14)}  # every box / every other box
    for run, (keep_every, num_labels) in models.items():
        test_set.set_values(f"pred_{run}", predictions(test_set, keep_every))
        runs.start_run(clone, run, {"slice": "left"})
        outputs = {"export": {"num_samples": num_labels, "batches": ["batch-000"]}}
        runs.complete_run(clone, run, weights=f"{run}.pt", outputs=outputs)
    actions = [
        f"""
        result = annoloop.evaluate_model(
            dataset, pred_field="pred_{run}", run_name={run!r}, eval_key="eval_{run}"
        )
        print(json.dumps(result["round"]))
        """
        for run in models
    ]
    outputs = in_parallel(loaded(clone, "evaluate_model"), actions, tmp_path)
    rounds = [json.loads(line) for line in outputs]
    assert sorted(r["round"] for r in rounds) == [0, 1]

    clone.reload()
    ledger = clone.info[LEDGER_INFO_KEY]
    assert [r["round"] for r in ledger] == [0, 1]
    assert sorted(r["train_run"] for r in ledger) == sorted(models)
    for run in models:
        metrics = runs.get_run(clone, run).outputs["test_metrics"]
        assert test_set.sum(f"eval_{run}_tp") == metrics["tp"]


def gate_state(dataset) -> str:
    """What the gate leaves on every slice: sample tags, violation records, label tags."""
    paths = ("tags", "qa_violations", "ground_truth.detections.tags")
    state = {
        name: dataset.select_group_slices(name).values(list(paths))
        for name in dataset.group_slices
    }
    return json.dumps(state, sort_keys=True, default=str)


def test_two_gates_at_once_leave_the_quarantine_of_the_one_recorded(clone, tmp_path):
    classes = clone.distinct("ground_truth.detections.label")
    attributes = [{"name": name, "type": "str"} for name in ("annotator", "batch")]
    schemas = [
        {"type": "detections", "classes": sorted(set(classes) - {banned}), "attributes": attributes}
        for banned in ("car", "pedestrian")
    ]
    actions = [
        f"""
        summary = annoloop.validate_labels(dataset, "ground_truth", schema={schema!r})
        print(summary["total"]["n_violations"])
        """
        for schema in schemas
    ]
    outputs = in_parallel(loaded(clone, "validate_labels"), actions, tmp_path)
    assert all(int(n) > 0 for n in outputs)

    clone.reload()
    record = gate_record(clone, "ground_truth")
    assert record["schema"] in schemas
    state = gate_state(clone)
    # Gating again with the recorded schema finds the dataset already as that run left it.
    again = annoloop.validate_labels(clone, "ground_truth", schema=record["schema"])
    assert (again["newly_tagged"], again["released"]) == (0, 0)
    assert gate_state(clone) == state


def test_two_layouts_at_once_under_one_brain_key_store_one_and_refuse_the_other(
    embedded, tmp_path
):
    key = f"viz_{uuid.uuid4().hex[:8]}"
    action = f"""
        try:
            annoloop.compute_visualization(
                dataset, embeddings="embedding", slice_name="left", brain_key={key!r}
            )
            print("stored")
        except ValueError as error:
            print("refused" if "exists; pass overwrite=True" in str(error) else repr(error))
        """
    outputs = in_parallel(loaded(embedded, "compute_visualization"), [action] * 2, tmp_path)
    assert sorted(outputs) == ["refused", "stored"]
    embedded.reload()
    assert key in embedded.list_brain_runs()


def test_two_embedding_runs_at_once_into_two_fields_both_stay_recorded(fresh, tmp_path):
    action = """
        annoloop.compute_embeddings(dataset, embeddings_field={!r}, group_field=None)
        print("embedded")
        """
    fields = ["emb_a", "emb_b"]
    outputs = in_parallel(
        loaded(fresh, "compute_embeddings"), [action.format(f) for f in fields], tmp_path
    )
    assert outputs == ["embedded", "embedded"]
    fresh.reload()
    records = fresh.info["annoloop_embeddings"]
    for field in fields:
        assert set(records[field]) == set(fresh.group_slices)
        for name in fresh.group_slices:
            one_slice = fresh.select_group_slices(name)
            assert one_slice.exists(field).count() == one_slice.count()


@pytest.fixture(scope="module")
def owlvit(tmp_path_factory):
    return random_checkpoint("owlvit", "tiny", tmp_path_factory.mktemp("race-models"))[0]


def autolabel_action(checkpoint: str, field: str) -> str:
    return f"""
        from annoloop.core.locks import DatasetLocked
        try:
            annoloop.autolabel(
                dataset, model="owlvit", checkpoint={checkpoint!r}, min_confidence=0.0,
                slice_name="left", output_field={field!r},
            )
            print("labeled")
        except DatasetLocked as error:
            print("refused" if "autolabel into '{field}'" in str(error) else repr(error))
        """


def test_two_autolabel_runs_at_once_into_one_field_label_once_and_refuse_the_other(
    fresh, owlvit, tmp_path
):
    action = autolabel_action(owlvit, "auto")
    outputs = in_parallel(loaded(fresh, "autolabel"), [action] * 2, tmp_path)
    assert sorted(outputs) == ["labeled", "refused"]
    fresh.reload()
    records = autolabel_runs(fresh, "auto")
    assert [r["status"] for r in records] == ["completed"]
    left = fresh.select_group_slices("left")
    assert set(left.values("auto.run")) == {records[0]["run_id"]}


def test_two_autolabel_runs_at_once_into_two_fields_both_keep_their_run_records(
    fresh, owlvit, tmp_path
):
    fields = ["auto_a", "auto_b"]
    actions = [autolabel_action(owlvit, field) for field in fields]
    assert in_parallel(loaded(fresh, "autolabel"), actions, tmp_path) == ["labeled", "labeled"]
    fresh.reload()
    for field in fields:
        records = autolabel_runs(fresh, field)
        assert [r["status"] for r in records] == ["completed"]
        assert fresh.select_group_slices("left").exists(field).count() > 0


@pytest.fixture
def embedded_copy(embedded):
    dataset = embedded.clone(f"race-{uuid.uuid4().hex[:8]}", persistent=True)
    yield dataset
    dataset.delete()


def zcore_action(field: str, seed: int) -> str:
    return f"""
        from annoloop.core.locks import DatasetLocked
        from annoloop.selection.algorithms.zcore import ZCoreParams
        try:
            annoloop.compute_zcore(
                dataset, score_field={field!r},
                params=ZCoreParams(n_sample=200_000, redund_nn=6, seed={seed}),
            )
            print("scored")
        except (DatasetLocked, ValueError) as error:
            # Locked out while the other one scores, or too late: its scores are there.
            ours = "ZCore scores '{field}'" in str(error) or "already holds ZCore scores" in str(error)
            print("refused" if ours else repr(error))
        """


def test_two_zcore_runs_at_once_into_one_field_score_once_and_refuse_the_other(
    embedded_copy, tmp_path
):
    from annoloop.selection.scoring import zcore_run

    actions = [zcore_action("zcore", seed) for seed in (1, 2)]
    outputs = in_parallel(loaded(embedded_copy, "compute_zcore"), actions, tmp_path)
    assert sorted(outputs) == ["refused", "scored"]
    embedded_copy.reload()
    record = zcore_run(embedded_copy, "zcore")
    assert record["status"] == "completed"
    assert record["params"]["seed"] == 1 + outputs.index("scored")


def test_two_zcore_runs_at_once_into_two_fields_both_keep_their_run_records(
    embedded_copy, tmp_path
):
    from annoloop.selection.scoring import zcore_run

    actions = [zcore_action(field, 0) for field in ("zcore_a", "zcore_b")]
    outputs = in_parallel(loaded(embedded_copy, "compute_zcore"), actions, tmp_path)
    assert outputs == ["scored", "scored"]
    embedded_copy.reload()
    for field in ("zcore_a", "zcore_b"):
        assert zcore_run(embedded_copy, field)["status"] == "completed"
        assert embedded_copy.select_group_slices("left").exists(field).count() == 24


def camera_labels(dataset, field: str = "ground_truth") -> dict:
    """(slice, filepath) -> the (label, box) pairs of ``field``, ids left out."""
    out = {}
    for name in ("left", "right"):
        view = dataset.select_group_slices(name)
        paths, labels, boxes = view.values(
            ["filepath", f"{field}.detections.label", f"{field}.detections.bounding_box"]
        )
        for path, ls, bs in zip(paths, labels, boxes):
            out[name, path] = sorted(zip(ls or [], map(tuple, bs or [])))
    return out


def test_two_simulated_annotators_at_once_leave_one_annotators_labels_everywhere(
    fresh, tmp_path
):
    alone = {}
    for seed in (1, 2):
        copy = fresh.clone(f"race-{uuid.uuid4().hex[:8]}")
        annotate_batch(copy, "batch:v1", seed=seed)
        alone[seed] = camera_labels(copy)
        copy.delete()
    assert alone[1] != alone[2]
    action = """
        from annoloop.demo.annotation import annotate_batch
        annotate_batch(dataset, "batch:v1", seed={})
        print("annotated")
        """
    outputs = in_parallel(loaded(fresh), [action.format(s) for s in (1, 2)], tmp_path)
    assert outputs == ["annotated", "annotated"]
    fresh.reload()
    assert camera_labels(fresh) in (alone[1], alone[2]), "two annotators' labels mixed"


def test_two_reviews_at_once_accept_each_auto_label_once(fresh, owlvit, tmp_path):
    from annoloop.training.autolabel.review import review_autolabels

    annoloop.autolabel(
        fresh, model="owlvit", checkpoint=owlvit, min_confidence=0.0, slice_name="left",
        output_field="auto",
    )
    copy = fresh.clone(f"race-{uuid.uuid4().hex[:8]}")
    once = review_autolabels(copy, autolabel_field="auto", min_confidence=0.0, slice_name="left")
    accepted_once = camera_labels(copy)
    copy.delete()
    assert once["n_accepted"] > 0
    action = """
        from annoloop.training.autolabel.review import review_autolabels
        result = review_autolabels(
            dataset, autolabel_field="auto", min_confidence=0.0, slice_name="left"
        )
        print(result["n_accepted"])
        """
    outputs = in_parallel(loaded(fresh), [action] * 2, tmp_path)
    assert sorted(int(n) for n in outputs) == [0, once["n_accepted"]]
    fresh.reload()
    assert camera_labels(fresh) == accepted_once
