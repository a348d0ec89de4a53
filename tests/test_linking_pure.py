"""The linking kernel on arrays: clean demo scenes raise nothing, each injected link error is
caught by its own rule, and the shared pinhole projection agrees with FiftyOne's corners."""

from __future__ import annotations

import numpy as np
import pytest

from annoloop.core.algorithms import pinhole
from annoloop.demo.algorithms import camera as cam
from annoloop.demo.algorithms import render
from annoloop.demo.algorithms import scenes as sc
from annoloop.quality.algorithms.linking import LINK_RULES, LinkParams, link_labels

SIZE = (384, 128)
CAMERAS = cam.stereo_rig(SIZE)


def _link(cuboid_labels, geometry, box_labels, boxes, camera):
    return link_labels(
        np.zeros(len(cuboid_labels), int), np.asarray(cuboid_labels, object), geometry,
        np.zeros(len(box_labels), int), np.asarray(box_labels, object), boxes,
        camera.intrinsics[None], camera.extrinsics[None], np.array([SIZE]),
    )


def _rendered(scene):
    parts = sc.expand_parts(scene)
    return [render.render_camera(scene, c, parts)[1] for c in CAMERAS]


def test_corners_match_fiftyones_euler_convention_with_roll_and_pitch():
    import fiftyone.utils.utils3d as fou3d

    loc, dims, rot = [3.0, -1.0, 0.5], [4.0, 2.0, 1.5], [0.2, -0.3, 1.1]
    ours = pinhole.cuboid_corners([loc], [dims], [rot])[0]
    theirs = fou3d.corners_from_euler(loc, rot, dims).T
    np.testing.assert_allclose(np.sort(ours, axis=0), np.sort(theirs, axis=0), atol=1e-12)


def test_a_cuboid_crossing_the_near_plane_is_clipped_there_not_dropped():
    left = CAMERAS[0]
    corners = pinhole.cuboid_corners([[0.5, 0.3, 0.8]], [[4.0, 1.8, 1.5]], [[0.0, 0.0, 0.0]])
    boxes, in_front, _ = pinhole.project_corners(corners, left.intrinsics, left.extrinsics)
    assert not in_front[0] and np.isfinite(boxes[0]).all()


def test_clean_demo_labels_raise_no_link_violation():
    for scene in sc.sample_scenes(60, 11):
        geometry = np.hstack([scene.location, scene.dimensions, scene.rotation])
        for camera, labels in zip(CAMERAS, _rendered(scene)):
            report = _link(scene.labels, geometry, [scene.labels[r] for r in labels.rows],
                           labels.boxes, camera)
            assert len(report.rule) == 0, list(zip(report.rule, report.detail))
            # every labelled object is linked to its own cuboid with IoU 1
            np.testing.assert_array_equal(report.box_match, labels.rows)
            np.testing.assert_allclose(report.pair_iou, 1.0, atol=1e-9)


def _car(x, y):
    return [x, y, 0.75, 4.0, 1.7, 1.5, 0.0, 0.0, 0.0]


def _projected_box(geometry, camera):
    report = _link(["car"] * len(geometry), np.array(geometry), [], np.zeros((0, 4)), camera)
    return report.projected


@pytest.mark.parametrize(
    "edit, rule",
    [
        ("drop_box", "link_missing_box"),
        ("drop_cuboid", "link_missing_cuboid"),
        ("relabel", "link_class_mismatch"),
        ("shift", "link_misaligned"),
    ],
)
def test_each_link_error_is_caught_by_its_own_rule_and_nothing_else(edit, rule):
    left = CAMERAS[0]
    geometry = [_car(15.0, 3.0), _car(25.0, -3.0)]
    boxes = _projected_box(geometry, left)
    cuboid_labels, box_labels = ["car", "car"], ["car", "car"]
    if edit == "drop_box":
        boxes, box_labels = boxes[1:], box_labels[1:]
    elif edit == "drop_cuboid":
        geometry, cuboid_labels = geometry[1:], cuboid_labels[1:]
    elif edit == "relabel":
        box_labels = ["van", "car"]
    else:
        boxes = boxes.copy()
        boxes[0, 0] += 0.55 * boxes[0, 2]
    report = _link(cuboid_labels, np.array(geometry), box_labels, boxes, left)
    assert list(report.rule) == [rule], list(zip(report.rule, report.detail))
    assert report.counts() == {r: int(r == rule) for r in LINK_RULES}


def test_an_object_hidden_behind_a_nearer_one_may_lack_a_box():
    left = CAMERAS[0]
    geometry = np.array([_car(12.0, 0.0), _car(30.0, 0.0)])  # the far car is behind
    boxes = _projected_box(geometry, left)[:1]
    report = _link(["car", "car"], geometry, ["car"], boxes, left)
    assert not report.expected[1] and len(report.rule) == 0


def test_injected_link_errors_on_demo_scenes_are_all_caught_with_the_right_rule():
    from annoloop.benchmarks.bench_linking import simulate

    out = simulate(60, 3, rate=0.1)
    assert out["clean_alarms"] == 0
    for rule in LINK_RULES:
        injected, caught, false_alarms = out[rule]
        assert injected >= 20, (rule, out)
        assert caught == injected and false_alarms == 0, (rule, out)


def test_bad_parameters_and_arrays_are_refused_with_the_value():
    with pytest.raises(ValueError, match=r"iou_threshold must be a number in \(0, 1\]; got 1.5"):
        LinkParams(iou_threshold=1.5)
    with pytest.raises(ValueError, match=r"match_iou must be a number in \(0, iou_threshold"):
        LinkParams(match_iou=0.6)
    left = CAMERAS[0]
    with pytest.raises(ValueError, match=r"intrinsics must have shape \(1, 3, 3\)"):
        link_labels([], [], np.zeros((0, 9)), [], [], np.zeros((0, 4)),
                    np.eye(3), left.extrinsics[None], np.array([SIZE]))
