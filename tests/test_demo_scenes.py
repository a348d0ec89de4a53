"""Pure tests of the demo scene sampler, the stereo camera and the renderer."""

import dataclasses

import numpy as np
import pytest

from annoloop.demo.algorithms import camera as cam
from annoloop.demo.algorithms import render
from annoloop.demo.algorithms import scenes as sc

IMAGE_SIZE = (384, 128)


def _scene_with(objects, *, base=None, **changes):
    """A scene holding exactly ``objects`` = [(class, x, y, yaw), ...] and no clutter."""
    base = base or sc.sample_scenes(1, 3)[0]
    cls = np.array([sc.CLASSES.index(o[0]) for o in objects], dtype=np.int64)
    dims = sc.CLASS_SIZE_MEAN[cls].reshape(-1, 3)
    loc = np.array([[o[1], o[2], d[2] / 2] for o, d in zip(objects, dims)]).reshape(-1, 3)
    return dataclasses.replace(
        base,
        class_index=cls,
        object_id=np.arange(len(objects), dtype=np.int64),
        location=loc,
        dimensions=dims,
        yaw=np.array([o[3] for o in objects], dtype=float),
        colors=np.full((len(objects), 3, 3), 200, dtype=np.uint8),
        clutter_kind=np.zeros(0, dtype=np.int64),
        clutter_location=np.zeros((0, 3)),
        clutter_dimensions=np.zeros((0, 3)),
        clutter_yaw=np.zeros(0),
        clutter_colors=np.zeros((0, 3), dtype=np.uint8),
        **{"time_of_day": "day", "weather": "clear", "fog_visibility": float("inf"), **changes},
    )


def _same_scene(a, b):
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, np.ndarray):
            np.testing.assert_array_equal(va, vb)
        else:
            assert va == vb, f.name


def test_sample_scenes_is_deterministic_for_a_seed():
    for a, b in zip(sc.sample_scenes(25, 7), sc.sample_scenes(25, 7)):
        _same_scene(a, b)
    other = sc.sample_scenes(25, 8)
    assert any(
        len(a.class_index) != len(b.class_index) or not np.allclose(a.location, b.location)
        for a, b in zip(sc.sample_scenes(25, 7), other)
    )


def test_a_scene_does_not_depend_on_how_many_scenes_are_sampled():
    for a, b in zip(sc.sample_scenes(10, 51), sc.sample_scenes(30, 51)[:10]):
        _same_scene(a, b)


def test_scene_ids_and_object_ids_are_stable_and_unique():
    scenes = sc.sample_scenes(40, 51)
    assert [s.scene_id for s in scenes] == [f"scene-{i:06d}" for i in range(40)]
    ids = np.concatenate([s.object_id for s in scenes])
    assert len(np.unique(ids)) == len(ids)
    assert all(np.all(s.object_id // sc.MAX_OBJECTS_PER_SCENE == s.index) for s in scenes)


def test_night_is_about_a_tenth_of_200_scenes_and_configurable():
    scenes = sc.sample_scenes(200, 51)
    night = np.mean([s.time_of_day == "night" for s in scenes])
    assert 0.05 <= night <= 0.15
    # Every default weather occurs; snow, the novel domain, only when asked for.
    assert {s.weather for s in scenes} == set(sc.WEATHERS) - {"snow"}
    config = sc.SceneConfig(night_fraction=0.5)
    night = np.mean([s.time_of_day == "night" for s in sc.sample_scenes(200, 51, config)])
    assert 0.4 <= night <= 0.6


def test_classes_are_long_tailed_and_night_cyclists_rarest():
    config = sc.SceneConfig(night_fraction=0.5, near_duplicate_fraction=0.0)
    scenes = sc.sample_scenes(600, 11, config)
    counts = {t: np.zeros(len(sc.CLASSES)) for t in sc.TIMES_OF_DAY}
    for s in scenes:
        counts[s.time_of_day] += np.bincount(s.class_index, minlength=len(sc.CLASSES))
    total = counts["day"] + counts["night"]
    car, van, truck, ped, cyc = (total[sc.CLASSES.index(c)] for c in sc.CLASSES)
    assert car > ped > van > cyc and car > truck
    cyclist = sc.CLASSES.index("cyclist")
    day_share = counts["day"][cyclist] / counts["day"].sum()
    night_share = counts["night"][cyclist] / counts["night"].sum()
    assert night_share < 0.5 * day_share
    assert counts["night"][cyclist] > 0  # rare, not absent


def test_near_duplicates_are_jittered_copies_of_earlier_scenes():
    scenes = sc.sample_scenes(200, 51)
    by_id = {s.scene_id: s for s in scenes}
    duplicates = [s for s in scenes if s.near_duplicate_of is not None]
    assert 0.04 <= len(duplicates) / len(scenes) <= 0.18
    for dup in duplicates:
        source = by_id[dup.near_duplicate_of]
        assert source.index < dup.index and source.near_duplicate_of is None
        np.testing.assert_array_equal(dup.class_index, source.class_index)
        shift = np.linalg.norm(dup.location - source.location, axis=1)
        assert np.all(shift < 1.0)
        assert dup.time_of_day == source.time_of_day and dup.weather == source.weather
        assert dup.render_seed != source.render_seed


def test_objects_stand_on_the_ground_without_overlapping():
    for s in sc.sample_scenes(60, 5):
        np.testing.assert_allclose(s.location[:, 2], s.dimensions[:, 2] / 2)
        assert np.all(s.location[:, 0] > 3.0)
        prints = [
            (x, y, d[0], d[1], yaw) for (x, y, _), d, yaw in zip(s.location, s.dimensions, s.yaw)
        ]
        for i in range(len(prints)):
            for j in range(i + 1, len(prints)):
                assert not sc._footprints_overlap(prints[i], prints[j], margin=0.0)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10", None])
def test_sample_scenes_rejects_a_bad_count(bad):
    with pytest.raises(ValueError, match="num_scenes must be a positive int"):
        sc.sample_scenes(bad, 1)


def test_scene_config_rejects_bad_probabilities():
    with pytest.raises(ValueError, match="night_fraction"):
        sc.SceneConfig(night_fraction=1.5)
    with pytest.raises(ValueError, match="class_probs"):
        sc.SceneConfig(class_probs={"car": 1.0})
    with pytest.raises(ValueError, match="weather_probs"):
        sc.SceneConfig(weather_probs={"clear": 0.5, "rain": 0.2, "fog": 0.2})


def test_stereo_disparity_is_focal_times_baseline_over_depth():
    left, right = cam.stereo_rig(IMAGE_SIZE)
    points = np.array([[10.0, 1.0, 1.0], [25.0, -2.0, 0.5]])
    (uv_l, depth), (uv_r, _) = left.project(points), right.project(points)
    np.testing.assert_allclose(uv_l[:, 0] - uv_r[:, 0], left.fx * cam.STEREO_BASELINE / depth)
    np.testing.assert_allclose(uv_l[:, 1], uv_r[:, 1])


def test_render_is_deterministic_and_boxes_lie_in_the_image():
    left, _ = cam.stereo_rig(IMAGE_SIZE)
    for scene in sc.sample_scenes(8, 51):
        image, labels = render.render_camera(scene, left)
        again, labels_again = render.render_camera(scene, left)
        assert image.shape == (IMAGE_SIZE[1], IMAGE_SIZE[0], 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, again)
        np.testing.assert_array_equal(labels.boxes, labels_again.boxes)
        assert np.all(labels.boxes >= 0) and np.all(
            labels.boxes[:, :2] + labels.boxes[:, 2:] <= 1 + 1e-9
        )
        assert np.all(labels.boxes[:, 2:] > 0)


def test_boxes_are_the_projected_cuboids():
    left, _ = cam.stereo_rig(IMAGE_SIZE)
    scene = _scene_with([("car", 15.0, 0.0, 0.0)])
    _, labels = render.render_camera(scene, left)
    corners = sc.cuboid_corners(scene.location, scene.dimensions, scene.yaw)
    ((x0, y0, x1, y1),) = cam.project_cuboids(left, corners)[0]
    w, h = IMAGE_SIZE
    np.testing.assert_allclose(labels.boxes[0], [x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h])
    assert not labels.occluded[0] and not labels.truncated[0]


def test_a_nearer_object_occludes_a_farther_one():
    left, _ = cam.stereo_rig(IMAGE_SIZE)
    scene = _scene_with(
        [("truck", 14.0, 0.27, 0.0), ("car", 30.0, 0.6, 0.0), ("car", 20.0, -3.5, 0.0)]
    )
    _, labels = render.render_camera(scene, left)
    flags = dict(zip(labels.rows.tolist(), labels.occluded.tolist()))
    assert flags[0] is False and flags[2] is False
    assert flags.get(1, True) is True  # hidden behind the truck: occluded, or not labelled


def test_an_object_cut_by_the_image_border_is_truncated():
    left, _ = cam.stereo_rig(IMAGE_SIZE)
    scene = _scene_with([("car", 6.0, -4.5, 0.0), ("car", 25.0, 0.0, 0.0)])
    _, labels = render.render_camera(scene, left)
    truncated = dict(zip(labels.rows.tolist(), labels.truncated.tolist()))
    assert truncated == {0: True, 1: False}


def test_night_is_darker_and_fog_lowers_contrast():
    left, _ = cam.stereo_rig(IMAGE_SIZE)
    base = sc.sample_scenes(4, 51)[1]
    clear = dataclasses.replace(
        base, time_of_day="day", weather="clear", fog_visibility=float("inf")
    )
    night = dataclasses.replace(clear, time_of_day="night")
    fog = dataclasses.replace(clear, weather="fog", fog_visibility=25.0)
    img_clear, _ = render.render_camera(clear, left)
    img_night, _ = render.render_camera(night, left)
    img_fog, _ = render.render_camera(fog, left)
    assert img_night.mean() < 0.4 * img_clear.mean()
    assert img_night.std() < 0.6 * img_clear.std()
    assert img_fog.std() < 0.8 * img_clear.std()


def test_rain_streaks_the_image():
    left, _ = cam.stereo_rig(IMAGE_SIZE)
    clear = _scene_with([("car", 20.0, 0.0, 0.0)])
    rain = dataclasses.replace(clear, weather="rain")
    img_clear = render.render_camera(clear, left)[0].astype(float)
    img_rain = render.render_camera(rain, left)[0].astype(float)
    # Rain darkens the frame, so pixels clearly brighter than in clear weather are streaks.
    brighter = (img_rain - img_clear).mean(axis=2) > 10
    assert 0.01 < brighter.mean() < 0.2
    assert img_rain.mean() < img_clear.mean()


SNOW = {"clear": 0.0, "rain": 0.0, "fog": 0.0, "snow": 1.0}


def test_snow_comes_only_when_asked_for_and_a_later_batch_continues_the_numbering():
    batch = sc.sample_scenes(20, 51, sc.SceneConfig(weather_probs=SNOW), first_index=200)
    assert [s.scene_id for s in batch] == [sc.scene_id(i) for i in range(200, 220)]
    assert {s.weather for s in batch} == {"snow"}
    assert all(np.all(s.object_id // sc.MAX_OBJECTS_PER_SCENE == s.index) for s in batch)
    # Near-duplicates copy scenes of the same batch.
    ids = {s.scene_id for s in batch}
    assert all(s.near_duplicate_of in ids for s in batch if s.near_duplicate_of)


def test_the_same_seed_continues_the_pool_scene_for_scene():
    pool = sc.sample_scenes(30, 7, sc.SceneConfig(near_duplicate_fraction=0.0))
    later = sc.sample_scenes(10, 7, sc.SceneConfig(near_duplicate_fraction=0.0), first_index=20)
    assert [s.weather for s in later] == [s.weather for s in pool[20:]]
    assert all(np.array_equal(a.location, b.location) for a, b in zip(later, pool[20:]))


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_a_bad_first_index_is_refused(bad):
    with pytest.raises(ValueError, match="first_index must be a non-negative int"):
        sc.sample_scenes(2, 1, first_index=bad)


def test_snow_whitens_the_roadside_and_flattens_the_contrast():
    base = dataclasses.replace(sc.sample_scenes(1, 3)[0], time_of_day="day", weather="clear")
    snowy = dataclasses.replace(base, weather="snow", fog_visibility=100.0)
    camera = cam.stereo_rig(IMAGE_SIZE)[0]
    clear_image = render.render_camera(base, camera)[0].astype(float)
    snow_image = render.render_camera(snowy, camera)[0].astype(float)
    # The bottom corners are grass beside the road in this rig.
    corner = (slice(-10, None), slice(0, 20))
    assert snow_image[corner].mean() > clear_image[corner].mean() + 60
    assert snow_image.std() < clear_image.std()
