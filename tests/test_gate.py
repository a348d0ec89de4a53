"""validate_labels checks a Detections field against its label schema and quarantines what
breaks it, on 2D and 3D slices, without touching the labels themselves."""

from __future__ import annotations

import json

import pytest

import fiftyone as fo
from fiftyone import ViewField as F
from fiftyone.operators.executor import ExecutionError

from fo_helpers import run_operator, unique_name

from annoloop.demo.annotation import annotate_batch
from annoloop.demo.dataset import load_demo_dataset
from annoloop.quality.gate import gate_record, gate_run_key
from annoloop.core.names import QUARANTINE_TAG

SLICES = ("left", "right", "pcd")
CLASSES = ["car", "cyclist", "pedestrian", "truck", "van"]
#: FiftyOne 1.22 label schema of the annotator's field (as the App's annotation UI uses it).
SCHEMA = {
    "type": "detections",
    "component": "dropdown",
    "classes": CLASSES,
    "attributes": [
        {"name": "annotator", "type": "str", "component": "text"},
        {"name": "batch", "type": "str", "component": "text"},
    ],
}


@pytest.fixture(scope="module")
def demo():
    dataset = load_demo_dataset(unique_name("gate"), num_scenes=24, seed=11, image_size=(128, 64))
    annotate_batch(dataset, 0, seed=3)
    dataset.add_dynamic_sample_fields()
    dataset.set_label_schemas({"ground_truth": SCHEMA})
    yield dataset
    dataset.delete()


@pytest.fixture
def dataset(demo):
    clone = demo.clone(unique_name("gate-clone"))
    yield clone
    clone.delete()


def gate(dataset, view=None, **params):
    return run_operator(
        "validate_labels", {"label_field": "ground_truth", **params}, dataset=dataset, view=view
    ).result


def samples_with(dataset, slice_name: str, min_labels: int, skip=()):
    """Distinct samples of a slice with at least ``min_labels`` annotator labels."""
    view = dataset.select_group_slices(slice_name)
    view = view.match(F("ground_truth.detections").length() >= min_labels)
    return [s for s in view if s.id not in skip]


def violations(dataset, field: str = "ground_truth") -> set[tuple]:
    """``(sample id, label id, rule)`` of every stored record of ``field``, on every slice."""
    found = set()
    for name in SLICES:
        view = dataset.select_group_slices(name)
        for sid, records in zip(*view.values(["id", "qa_violations"])):
            found.update((sid, r.label_id, r.rule) for r in records or [] if r.field == field)
    return found


def tagged(dataset) -> tuple[set, set]:
    """Ids of quarantined samples and of quarantined ground_truth labels, on every slice."""
    samples, labels = set(), set()
    for name in SLICES:
        view = dataset.select_group_slices(name)
        samples.update(view.match_tags(QUARANTINE_TAG).values("id"))
        flagged = view.select_labels(tags=QUARANTINE_TAG, fields="ground_truth")
        labels.update(flagged.values("ground_truth.detections.id", unwind=True))
    return samples, labels


def label_contents(dataset) -> dict:
    """Every ground_truth label as a dict without its tags, by label id."""
    out = {}
    for name in SLICES:
        for dets in dataset.select_group_slices(name).values("ground_truth"):
            for d in dets.detections if dets else []:
                out[d.id] = {k: v for k, v in d.to_dict().items() if k != "tags"}
    return out


def inject(dataset) -> set[tuple]:
    """Break labels on both camera and point-cloud slices; return the expected findings."""
    expected = set()
    a, b = samples_with(dataset, "left", 3)[:2]
    dets = a.ground_truth.detections
    dets[0].label = "Car"
    dets[1].bounding_box = [0.9, 0.9, 0.3, 0.3]
    expected |= {(a.id, dets[0].id, "unknown_class"), (a.id, dets[1].id, "box_out_of_bounds")}
    a.save()
    dets = b.ground_truth.detections
    dets[0].bounding_box = [0.1, 0.1, -0.05, 0.1]
    dets[1]["colour"] = "red"
    dup = fo.Detection(
        label=dets[2].label,
        bounding_box=list(dets[2].bounding_box),
        annotator="simulated",
        batch="batch-000",
    )
    dets.append(dup)
    expected |= {
        (b.id, dets[0].id, "box_non_positive_size"),
        (b.id, dets[1].id, "unknown_attribute"),
        (b.id, dup.id, "duplicate_label"),
    }
    b.save()
    (c,) = samples_with(dataset, "pcd", 2)[:1]
    dets = c.ground_truth.detections
    dets[0].dimensions = [1.0, -1.0, 1.0]
    flat = fo.Detection(
        label="car", bounding_box=[0.1, 0.1, 0.2, 0.2], annotator="simulated", batch="batch-000"
    )
    dets.append(flat)
    expected |= {
        (c.id, dets[0].id, "cuboid_non_positive_dimensions"),
        (c.id, dets[1].id, "attribute_wrong_type"),
        (c.id, flat.id, "wrong_label_type"),
    }
    c.save()
    # Labels imported by other routes skip FiftyOne's field validation: write an int batch.
    batches = [d.batch for d in dets]
    batches[1] = 7
    dataset.select_group_slices("pcd").set_values(
        "ground_truth.detections.batch", {c.id: batches}, key_field="id", validate=False
    )
    return expected


def test_clean_annotations_pass_the_datasets_label_schema(dataset):
    result = gate(dataset)
    assert result["total"]["n_labels"] > 100
    assert result["total"]["n_violations"] == 0
    assert set(result["per_slice"]) == set(SLICES)
    assert tagged(dataset) == (set(), set())


def test_every_injected_violation_is_quarantined_with_its_rule(dataset):
    expected = inject(dataset)
    result = gate(dataset)
    assert violations(dataset) == expected
    samples, labels = tagged(dataset)
    assert samples == {sid for sid, _, _ in expected}
    assert labels == {lid for _, lid, _ in expected}
    assert result["total"]["n_violations"] == len(expected)
    assert result["total"]["by_rule"] == {rule: 1 for _, _, rule in expected}
    assert result["total"]["by_class"]["Car"] == 1
    assert result["per_slice"]["pcd"]["by_rule"] == {
        "attribute_wrong_type": 1,
        "cuboid_non_positive_dimensions": 1,
        "wrong_label_type": 1,
    }
    assert result["quarantined"] == result["newly_tagged"] == 3


def test_the_gate_deletes_and_changes_no_label(dataset):
    inject(dataset)
    before = label_contents(dataset)
    gate(dataset)
    assert label_contents(dataset) == before


def test_fixing_a_label_and_rerunning_releases_the_sample(dataset):
    inject(dataset)
    gate(dataset)
    left = dataset.select_group_slices("left")
    sample = left.match(F("ground_truth.detections.label").contains("Car")).first()
    sample.ground_truth.detections[0].label = "car"
    sample.ground_truth.detections[1].bounding_box = [0.5, 0.5, 0.2, 0.2]
    sample.save()
    result = gate(dataset)
    assert result["released"] == 1
    assert not any(sid == sample.id for sid, _, _ in violations(dataset))
    samples, labels = tagged(dataset)
    assert sample.id not in samples
    assert not {d.id for d in sample.ground_truth.detections} & labels
    assert len(samples) == 2
    assert dataset.select_group_slices("left").select(sample.id).first().qa_violations is None


def test_a_sample_stays_quarantined_while_another_field_breaks_its_schema(dataset):
    inject(dataset)
    gate(dataset)
    oracle_schema = {"label_type": "detections", "classes": ["car"]}
    left = dataset.select_group_slices("left")
    sample = left.match(F("ground_truth.detections.label").contains("Car")).first()
    assert sample.oracle.detections, "the sample has oracle labels"
    sample.oracle.detections[0].label = "tram"
    sample.save()
    oracle_schema = json.dumps(oracle_schema)
    gate(dataset, view=left.select(sample.id), label_field="oracle", schema=oracle_schema)
    sample.reload()
    sample.ground_truth.detections[0].label = "car"
    sample.ground_truth.detections[1].bounding_box = [0.5, 0.5, 0.2, 0.2]
    sample.save()
    gate(dataset)
    sample.reload()
    assert QUARANTINE_TAG in sample.tags
    assert {r.field for r in sample.qa_violations} == {"oracle"}


def test_an_explicit_schema_can_require_attributes(dataset):
    sample = samples_with(dataset, "right", 1)[0]
    sample.ground_truth.detections[0].annotator = None
    sample.save()
    schema = {
        "label_type": "detections",
        "classes": CLASSES,
        "attributes": {"annotator": {"type": "str", "required": True}, "batch": {"type": "str"}},
    }
    gate(dataset, schema=schema, slices=["right"])
    label_id = sample.ground_truth.detections[0].id
    assert violations(dataset) == {(sample.id, label_id, "missing_required_attribute")}


def test_expected_but_empty_samples_of_a_batch_are_flagged(dataset):
    groups = dataset.distinct("group.id")
    batch_group, other_group = groups[0], groups[1]
    batch = dataset.select_groups(batch_group)
    batch.select_group_slices("left").tag_samples("batch:b1")
    left = batch.select_group_slices("left").first()
    left.ground_truth = fo.Detections()
    left.save()
    pcd = batch.select_group_slices("pcd").first()
    pcd.ground_truth = None
    pcd.save()
    outside = dataset.select_groups(other_group).select_group_slices("left").first()
    outside.ground_truth = None
    outside.save()
    result = gate(dataset, batch_tag="batch:b1")
    assert violations(dataset) == {(left.id, None, "empty_sample"), (pcd.id, None, "empty_sample")}
    assert result["per_slice"]["left"]["n_expected_samples"] == 1
    # An empty label list can be accepted as "nothing here"; an unset field cannot.
    gate(dataset, batch_tag="batch:b1", allow_empty=True)
    assert violations(dataset) == {(pcd.id, None, "empty_sample")}


def test_the_gate_leaves_samples_outside_the_view_alone(dataset):
    bad = {sid for sid, _, _ in inject(dataset)}
    view = dataset.select_group_slices("left").exclude(list(bad))
    result = gate(dataset, view=view)
    assert set(result["per_slice"]) == {"left"}
    assert result["total"]["n_violations"] == 0
    assert tagged(dataset) == (set(), set())


def test_the_summary_is_stored_as_a_run(dataset):
    inject(dataset)
    result = gate(dataset)
    assert dataset.has_run(gate_run_key("ground_truth"))
    record = gate_record(dataset, "ground_truth")
    assert record["total"] == result["total"]
    assert record["schema"]["classes"] == CLASSES


@pytest.mark.parametrize(
    "params, message",
    [
        ({"label_field": "nope"}, "does not exist"),
        ({"label_field": "scene_id"}, "not Detections"),
        ({"label_field": "oracle"}, "no label schema"),
        ({"schema": "{not json"}, "not valid JSON"),
        ({"schema": {"classes": CLASSES, "attributes": {"x": {"type": "colour"}}}}, "unknown type"),
        ({"slices": ["rear"]}, "rear"),
        ({"batch_tag": "batch:none"}, "batch tag"),
        ({"violations_field": "ground_truth"}, "differ"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(demo, params, message):
    with pytest.raises(ExecutionError, match=message):
        gate(demo, **params)
    assert demo.get_field("qa_violations") is None
    assert not demo.has_run(gate_run_key(params.get("label_field", "ground_truth")))
    assert tagged(demo) == (set(), set())
