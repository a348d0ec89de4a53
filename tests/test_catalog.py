"""The unit catalog's one scan agrees with FiftyOne's own queries for every state."""

from __future__ import annotations

import fiftyone as fo

from annoloop.core.catalog import read_catalog
from annoloop.core.names import QUARANTINE_TAG
from fo_helpers import unique_name


def _grouped() -> fo.Dataset:
    """Six scenes, two image slices; each scene exercises one state on one slice."""
    dataset = fo.Dataset(unique_name("catalog"))
    dataset.add_group_field("group", default="left")
    detection = fo.Detection(label="car", bounding_box=[0.1, 0.1, 0.2, 0.2])
    flagged = fo.Detection(label="car", bounding_box=[0.1, 0.1, 0.2, 0.2], tags=[QUARANTINE_TAG])
    per_scene = [
        {},  # 0: nothing
        {"right": dict(ground_truth=fo.Detections(detections=[]))},  # 1: labeled empty
        {"right": dict(ground_truth=fo.Detections(detections=[detection, flagged]))},  # 2
        {"left": dict(weather=fo.Classification(label="rain", tags=[QUARANTINE_TAG]))},  # 3
        {"left": dict(tags=["batch:r1", "split:test"])},  # 4
        {"right": dict(tags=[QUARANTINE_TAG], ground_truth=None)},  # 5
    ]
    samples = []
    for i, extra in enumerate(per_scene):
        group = fo.Group()
        for name in ("left", "right"):
            samples.append(
                fo.Sample(filepath=f"/c/{i}_{name}.jpg", group=group.element(name), **extra.get(name, {}))
            )
    dataset.add_samples(samples)
    return dataset


def _units(view: fo.DatasetView) -> set:
    return set(view.values("group.id"))


def test_one_scan_finds_the_units_fiftyone_queries_find_in_every_state():
    dataset = _grouped()
    catalog = read_catalog(dataset)
    everything = dataset.select_group_slices(["left", "right"])
    scene = {i: dataset.select_group_slices("left").skip(i).first().group.id for i in range(6)}

    assert catalog.units == _units(everything) and len(catalog.units) == 6
    assert catalog.labeled == _units(everything.exists("ground_truth")) == {scene[1], scene[2]}
    quarantined = _units(everything.match_labels(tags=QUARANTINE_TAG)) | _units(
        everything.match_tags(QUARANTINE_TAG)
    )
    assert catalog.quarantined == quarantined == {scene[2], scene[3], scene[5]}
    assert catalog.batched == _units(everything.match_tags("batch:r1")) == {scene[4]}
    assert catalog.splits["split:test"] == {scene[4]}


def test_an_absent_label_field_leaves_nothing_labeled_and_the_rest_read():
    dataset = _grouped()
    catalog = read_catalog(dataset, "no_such_field")
    assert catalog.labeled == frozenset()
    assert len(catalog.quarantined) == 3


def test_a_second_read_sees_scenes_added_deleted_and_tagged_since_the_first():
    dataset = _grouped()
    first = read_catalog(dataset)
    gone = dataset.select_group_slices("left").first().group.id
    dataset.delete_groups([gone])
    group = fo.Group()
    dataset.add_samples(
        [fo.Sample(filepath=f"/c/new_{n}.jpg", group=group.element(n)) for n in ("left", "right")]
    )
    dataset.select_group_slices("right").match(fo.ViewField("filepath") == "/c/new_right.jpg").tag_samples("batch:r2")
    second = read_catalog(dataset)
    assert second.units == (first.units - {gone}) | {group.id}
    assert second.batched == first.batched | {group.id}
