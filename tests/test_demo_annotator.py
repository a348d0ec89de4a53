"""The simulated annotator: rates match the profile, drift follows the batch (pure tests);
on a dataset it leaves frozen test / mining samples, frozen fields and a person's labels alone."""

import numpy as np
import pytest

import fiftyone as fo
from fiftyone import ViewField as F
from fiftyone.operators.executor import ExecutionError

from fo_helpers import run_operator, unique_name

from annoloop.core.names import GOLDEN_SPLIT_TAG, MINING_SPLIT_TAG, TEST_SPLIT_TAG
from annoloop.core.views import slice_views
from annoloop.demo.algorithms import annotator as an
from annoloop.demo.annotation import annotate_batch
from annoloop.demo.dataset import load_demo_dataset
from annoloop.quality.frozen import create_splits
from annoloop.quality.frozen_check import check_frozen

CLASSES = ("car", "van", "truck", "pedestrian", "cyclist")


def _oracle(n=20_000, num_images=2_000, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(CLASSES, size=n)
    wh = rng.uniform(0.05, 0.2, size=(n, 2))
    xy = rng.uniform(0.2, 0.6, size=(n, 2))  # well inside the frame: no clipping
    return labels, np.hstack([xy, wh]), rng.integers(0, num_images, n), num_images


def test_a_perfect_profile_copies_the_oracle():
    labels, boxes, image, num = _oracle(500, 50)
    out = an.annotate_boxes(
        labels, boxes, image, num, an.AnnotatorProfile(), np.random.default_rng(1)
    )
    np.testing.assert_array_equal(out.labels, labels)
    np.testing.assert_array_equal(out.boxes, boxes)
    np.testing.assert_array_equal(out.source_row, np.arange(500))
    assert not (out.missed.any() or out.confused.any() or out.renamed.any() or out.jittered.any())


def test_miss_rate_is_close_to_the_profile():
    labels, boxes, image, num = _oracle()
    out = an.annotate_boxes(
        labels, boxes, image, num, an.AnnotatorProfile(miss_rate=0.2), np.random.default_rng(2)
    )
    assert out.missed.mean() == pytest.approx(0.2, abs=0.015)
    assert len(out.labels) == (~out.missed).sum()
    np.testing.assert_array_equal(out.labels, labels[~out.missed])


def test_confusion_rates_are_close_to_the_profile():
    labels, boxes, image, num = _oracle()
    profile = an.AnnotatorProfile(confusion={"truck": {"car": 0.3, "van": 0.1}})
    out = an.annotate_boxes(labels, boxes, image, num, profile, np.random.default_rng(3))
    truck = labels == "truck"
    written = out.labels[np.argsort(out.source_row)]
    assert np.mean(written[truck] == "car") == pytest.approx(0.3, abs=0.03)
    assert np.mean(written[truck] == "van") == pytest.approx(0.1, abs=0.02)
    assert np.array_equal(out.confused, truck & (written != "truck"))
    assert np.all(written[~truck] == labels[~truck])


def test_rename_applies_after_confusion_and_to_false_positives():
    labels, boxes, image, num = _oracle(5_000, 500)
    profile = an.AnnotatorProfile(
        confusion={"truck": {"van": 0.5}}, rename={"van": "vehicle"}, false_positive_rate=0.5
    )
    out = an.annotate_boxes(labels, boxes, image, num, profile, np.random.default_rng(4))
    assert "van" not in set(out.labels)
    assert "vehicle" in set(out.labels[out.false_positive])
    kept = out.source_row >= 0
    from_trucks = labels[out.source_row[kept]] == "truck"
    assert np.mean(out.labels[kept][from_trucks] == "vehicle") == pytest.approx(0.5, abs=0.05)
    assert out.renamed.sum() == np.sum(out.labels[kept] == "vehicle")


def test_looseness_grows_boxes_around_their_centre():
    labels, boxes, image, num = _oracle(2_000, 100)
    out = an.annotate_boxes(
        labels, boxes, image, num, an.AnnotatorProfile(looseness=0.2), np.random.default_rng(5)
    )
    np.testing.assert_allclose(out.boxes[:, 2:], boxes[:, 2:] * 1.2)
    np.testing.assert_allclose(
        out.boxes[:, :2] + out.boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2
    )
    assert out.jittered.all()


def test_box_jitter_is_relative_to_box_size():
    labels, boxes, image, num = _oracle()
    out = an.annotate_boxes(
        labels, boxes, image, num, an.AnnotatorProfile(box_jitter=0.05), np.random.default_rng(6)
    )
    shift = (out.boxes[:, :2] + out.boxes[:, 2:] / 2 - boxes[:, :2] - boxes[:, 2:] / 2) / boxes[
        :, 2:
    ]
    assert shift.std() == pytest.approx(0.05, rel=0.1)
    assert abs(shift.mean()) < 0.005
    scale = out.boxes[:, 2:] / boxes[:, 2:]
    assert scale.std() == pytest.approx(0.05, rel=0.1)


def test_false_positives_per_image_match_the_rate_and_stay_in_frame():
    labels, boxes, image, num = _oracle(4_000, 4_000)
    out = an.annotate_boxes(
        labels,
        boxes,
        image,
        num,
        an.AnnotatorProfile(false_positive_rate=0.3),
        np.random.default_rng(7),
    )
    assert out.false_positive.sum() / num == pytest.approx(0.3, abs=0.03)
    fp = out.boxes[out.false_positive]
    assert np.all(fp >= 0) and np.all(fp[:, :2] + fp[:, 2:] <= 1)
    assert np.all((out.image_index >= 0) & (out.image_index < num))


def test_annotation_is_deterministic_for_a_seed():
    labels, boxes, image, num = _oracle(3_000, 300)
    profile = an.DRIFTED
    a = an.annotate_boxes(labels, boxes, image, num, profile, np.random.default_rng(8))
    b = an.annotate_boxes(labels, boxes, image, num, profile, np.random.default_rng(8))
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    c = an.annotate_boxes(labels, boxes, image, num, profile, np.random.default_rng(9))
    assert not np.array_equal(a.missed, c.missed)


def test_cuboids_get_looser_and_jittered_like_boxes():
    rng = np.random.default_rng(10)
    n = 5_000
    labels = rng.choice(CLASSES, size=n)
    location = rng.uniform([5, -5, 0.5], [50, 5, 1.5], size=(n, 3))
    dimensions = rng.uniform([1, 0.5, 1], [5, 2, 3], size=(n, 3))
    rotation = np.zeros((n, 3))
    rotation[:, 2] = rng.uniform(-np.pi, np.pi, n)
    image = rng.integers(0, 500, n)
    loose = an.annotate_cuboids(
        labels,
        location,
        dimensions,
        rotation,
        image,
        500,
        an.AnnotatorProfile(looseness=0.2),
        np.random.default_rng(11),
    )
    np.testing.assert_allclose(loose.dimensions, dimensions * 1.2)
    np.testing.assert_allclose(loose.location, location)
    profile = an.AnnotatorProfile(miss_rate=0.1, box_jitter=0.05, false_positive_rate=0.2)
    out = an.annotate_cuboids(
        labels, location, dimensions, rotation, image, 500, profile, np.random.default_rng(12)
    )
    assert out.missed.mean() == pytest.approx(0.1, abs=0.015)
    kept = out.source_row >= 0
    shift = (out.location[kept] - location[out.source_row[kept]]) / dimensions[out.source_row[kept]]
    assert shift.std() == pytest.approx(0.05, rel=0.1)
    assert np.all(np.abs(out.rotation[:, 2]) <= np.pi)
    assert out.false_positive.sum() / 500 == pytest.approx(0.2, abs=0.06)


def test_drift_schedule_switches_profile_by_batch():
    schedule = an.default_drift_schedule()
    assert schedule.profile_for(0) is an.CLEAN and schedule.profile_for(1) is an.CLEAN
    assert schedule.profile_for(2) is an.DRIFTED and schedule.profile_for(9) is an.DRIFTED
    assert an.DRIFTED.rename == {"van": "vehicle"} and an.DRIFTED.looseness == pytest.approx(0.2)
    assert an.DRIFTED.miss_rate > an.CLEAN.miss_rate
    custom = an.DriftSchedule({0: an.CLEAN, 3: an.DRIFTED, 5: an.CLEAN})
    assert [custom.profile_for(b).name for b in range(7)] == ["clean"] * 3 + ["drifted"] * 2 + [
        "clean"
    ] * 2


def test_bad_profiles_and_schedules_are_rejected():
    with pytest.raises(ValueError, match="miss_rate"):
        an.AnnotatorProfile(miss_rate=1.2)
    with pytest.raises(ValueError, match="sum to <= 1"):
        an.AnnotatorProfile(confusion={"car": {"van": 0.7, "truck": 0.6}})
    with pytest.raises(ValueError, match="false_positive_rate"):
        an.AnnotatorProfile(false_positive_rate=-1)
    with pytest.raises(ValueError, match="batch 0"):
        an.DriftSchedule({2: an.DRIFTED})
    with pytest.raises(ValueError, match="batch must be an index"):
        an.default_drift_schedule().profile_for(-1)


def test_bad_label_arrays_are_rejected():
    labels, boxes, image, num = _oracle(10, 5)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"boxes must have shape \(10, 4\)"):
        an.annotate_boxes(labels, boxes[:, :3], image, num, an.CLEAN, rng)
    with pytest.raises(ValueError, match="image_index must lie in"):
        an.annotate_boxes(labels, boxes, image + 10, num, an.CLEAN, rng)
    with pytest.raises(ValueError, match=r"image_index must have shape \(10,\)"):
        an.annotate_boxes(labels, boxes, image[:5], num, an.CLEAN, rng)
    bad = boxes.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        an.annotate_boxes(labels, bad, image, num, an.CLEAN, rng)


def test_no_oracle_rows_gives_no_labels():
    out = an.annotate_boxes(
        [], np.zeros((0, 4)), np.zeros(0, int), 3, an.DRIFTED, np.random.default_rng(0)
    )
    assert len(out.labels) == 0 and out.boxes.shape == (0, 4)
    assert out.counts()["oracle"] == 0


# ------------------------------------------------------------------ on a frozen dataset

FROZEN = [TEST_SPLIT_TAG, MINING_SPLIT_TAG, GOLDEN_SPLIT_TAG]


@pytest.fixture(scope="module")
def demo():
    dataset = load_demo_dataset(unique_name("annotator"), num_scenes=16, seed=2, image_size=(128, 64))
    yield dataset
    dataset.delete()


@pytest.fixture
def dataset(demo):
    clone = demo.clone(unique_name("annotator-clone"))
    create_splits(clone, test=2, mining=2, golden=2, seed=0)
    yield clone
    clone.delete()


def scenes(dataset, tags, bool_=True):
    """Whole scenes (every slice) whose samples carry one of ``tags`` (or none, ``bool_=False``)."""
    return dataset.select_groups(dataset.match_tags(tags, bool=bool_).distinct("group.id"))


def field_values(dataset, field="ground_truth") -> dict:
    if dataset.get_field(field) is None:
        return {}
    return {name: view.values(field) for name, view in slice_views(dataset).items()}


def test_the_annotator_refuses_test_and_mining_samples_and_writes_nothing(dataset):
    before = field_values(dataset)
    with pytest.raises(ValueError, match="frozen test or mining splits.*match_tags"):
        annotate_batch(dataset, 0)
    with pytest.raises(ExecutionError, match="frozen test or mining splits"):
        run_operator("simulate_annotation", {"batch": "batch:v1", "delegate": False},
                     dataset=dataset, view=scenes(dataset, [MINING_SPLIT_TAG]))
    assert field_values(dataset) == before


def test_the_annotator_refuses_a_recorded_frozen_field(dataset):
    golden = scenes(dataset, [GOLDEN_SPLIT_TAG])
    before = field_values(dataset, "golden")
    with pytest.raises(ValueError, match="'golden' holds the frozen splits' recorded labels"):
        annotate_batch(golden, 0, label_field="golden")
    assert field_values(dataset, "golden") == before
    assert check_frozen(dataset).ok


def test_golden_samples_are_re_annotated_into_ground_truth_each_round(dataset):
    golden = scenes(dataset, [GOLDEN_SPLIT_TAG])
    first = annotate_batch(golden, 0, seed=0)
    # The schema gate quarantining a label does not make it a person's.
    dataset.select_group_slices("left").tag_labels("qa:quarantine", "ground_truth")
    second = annotate_batch(golden, 2, seed=2)
    assert first["num_samples"] == second["num_samples"] == 6 and second["left_alone"] == 0
    assert set(golden.select_group_slices("left").distinct("ground_truth.detections.batch")) == {"batch-002"}
    assert check_frozen(dataset).ok


def test_the_annotator_leaves_labels_a_person_made_or_corrected_alone(dataset):
    pool = scenes(dataset, FROZEN, bool_=False)
    annotate_batch(pool, 0, seed=1)
    left = dataset.select_group_slices("left").match_tags(FROZEN, bool=False)
    boxed = left.match(F("ground_truth.detections").length() > 0)
    corrected, redrawn = boxed.first(), boxed.skip(1).first()
    corrected.ground_truth.detections[0].bounding_box[0] += 0.01  # still says "simulated"
    corrected.save()
    redrawn.ground_truth = fo.Detections(detections=[fo.Detection(label="car", bounding_box=[0.1, 0.1, 0.2, 0.2])])
    redrawn.save()
    kept = {s.id: s.ground_truth.to_dict() for s in (corrected, redrawn)}

    summary = run_operator("simulate_annotation", {"batch": "batch:v1", "delegate": False},
                           dataset=dataset, view=pool).result
    assert summary["left_alone"] == summary["per_slice"]["left"]["left_alone"] == 2
    assert {sid: left[sid].ground_truth.to_dict() for sid in kept} == kept
    others = left.exclude(list(kept))
    assert set(others.distinct("ground_truth.detections.batch")) == {"batch:v1"}

    forced = annotate_batch(pool, 1, seed=1, overwrite=True)
    assert forced["left_alone"] == 0
    assert {left[sid].ground_truth.detections[0].batch for sid in kept} == {"batch-001"}
