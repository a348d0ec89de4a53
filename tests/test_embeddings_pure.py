"""The weight-free embeddings on arrays: the image baseline, the point-cloud descriptor, crops."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annoloop.selection.algorithms.image_features import (
    BASELINE_MODEL_NAME,
    baseline_descriptors,
    baseline_dim,
)
from annoloop.selection.embeddings.patches import check_boxes, crop_patches, patch_pixel_boxes
from annoloop.selection.embeddings.pointcloud import (
    MIN_FPFH_POINTS,
    PointCloudDescriptorConfig,
    pointcloud_descriptor,
    read_point_cloud,
)

# Real photographs that ship with Ultralytics (found without importing it).
ASSETS = Path(importlib.util.find_spec("ultralytics").submodule_search_locations[0]) / "assets"


def photo(name: str) -> np.ndarray:
    with Image.open(ASSETS / name) as image:
        return np.asarray(image.convert("RGB"))


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


# --- image baseline -------------------------------------------------------------------------


def test_baseline_is_named_so_nobody_mistakes_it_for_a_learned_model():
    assert BASELINE_MODEL_NAME == "baseline-colour-gradient"


def test_baseline_rows_have_the_documented_length_and_unit_norm():
    images = [photo("bus.jpg"), photo("zidane.jpg"), np.zeros((10, 30, 3), np.uint8) + 40]
    out = baseline_descriptors(images)
    assert out.shape == (3, baseline_dim()) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert baseline_descriptors(images, grid=(2, 3), orientation_bins=6).shape == (
        3,
        baseline_dim((2, 3), 6),
    )


def test_baseline_is_deterministic():
    image = photo("bus.jpg")
    np.testing.assert_array_equal(
        baseline_descriptors([image]), baseline_descriptors([image.copy()])
    )


def test_baseline_puts_a_resized_copy_nearer_than_a_different_photo():
    bus, zidane = photo("bus.jpg"), photo("zidane.jpg")
    half = np.asarray(
        Image.fromarray(bus).resize((bus.shape[1] // 2, bus.shape[0] // 2), Image.BILINEAR)
    )
    a, b, c = baseline_descriptors([bus, half, zidane])
    assert distance(a, b) < 0.5 * distance(a, c)


def test_baseline_separates_day_from_night_versions_of_a_photo():
    bus = photo("bus.jpg")
    night = (bus.astype(np.float32) * 0.25).astype(np.uint8)
    noisy = np.clip(bus + np.random.default_rng(0).normal(0, 4, bus.shape), 0, 255).astype(np.uint8)
    a, b, c = baseline_descriptors([bus, noisy, night])
    assert distance(a, b) < distance(a, c)


def test_baseline_accepts_grey_rgba_and_float_images_like_their_rgb_uint8_equivalent():
    rgb = photo("zidane.jpg")[::4, ::4]
    grey = rgb[..., 0]
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    out = baseline_descriptors(
        [rgb, rgba, rgb.astype(np.float64) / 255.0, grey, np.repeat(grey[..., None], 3, axis=2)]
    )
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)
    np.testing.assert_allclose(out[0], out[2], atol=1e-5)
    np.testing.assert_allclose(out[3], out[4], atol=1e-6)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((8, 8, 2), np.uint8), "shape"),
        (np.zeros((3, 40, 3), np.uint8), "3x40 pixels"),
        (np.full((8, 8, 3), 2.0), r"\[0, 1\]"),
        (np.full((8, 8, 3), np.nan), "finite"),
        (np.zeros((8, 8, 3), np.int32), "dtype"),
    ],
)
def test_baseline_rejects_malformed_images_with_a_clear_message(image, message):
    with pytest.raises(ValueError, match=message):
        baseline_descriptors([np.zeros((8, 8, 3), np.uint8), image])


def test_baseline_of_a_very_thin_image_still_covers_the_grid():
    out = baseline_descriptors([np.full((3000, 8, 3), 200, np.uint8)])
    assert out.shape == (1, baseline_dim()) and np.isfinite(out).all()


# --- point-cloud descriptor -----------------------------------------------------------------


def road(rng: np.random.Generator, n: int = 3000) -> np.ndarray:
    """A flat, slightly noisy ground patch around the sensor."""
    xy = rng.uniform(-20, 20, (n, 2))
    return np.c_[xy, rng.normal(0.0, 0.02, n)]


def box_surfaces(
    rng: np.random.Generator, centre: tuple[float, float], size=(4.0, 2.0, 1.6), n: int = 800
) -> np.ndarray:
    """Points on the faces of an axis-aligned box standing on the ground."""
    p = rng.uniform(0, 1, (n, 3))
    axis = rng.integers(0, 3, n)
    p[np.arange(n), axis] = rng.integers(0, 2, n)  # snap one coordinate onto a face
    return p * np.array(size) + np.array([centre[0] - size[0] / 2, centre[1] - size[1] / 2, 0.0])


@pytest.fixture(scope="module")
def clouds():
    rng = np.random.default_rng(3)
    plane_a, plane_b = road(rng), road(rng)
    busy = np.vstack(
        [road(rng)] + [box_surfaces(rng, c) for c in [(8, 3), (12, -4), (-10, 2), (5, -9)]]
    )
    return plane_a, plane_b, busy


def test_pointcloud_descriptor_has_the_configured_length_and_unit_norm(clouds):
    config = PointCloudDescriptorConfig(range_bins=8, height_bins=10)
    out = pointcloud_descriptor(clouds[0], config)
    assert out.shape == (config.dim,) and out.dtype == np.float32
    assert np.linalg.norm(out) == pytest.approx(1.0, abs=1e-5)


def test_pointcloud_descriptor_tells_a_busy_street_from_an_empty_road(clouds):
    plane_a, plane_b, busy = (pointcloud_descriptor(c) for c in clouds)
    assert distance(plane_a, busy) > 3 * distance(plane_a, plane_b)


def test_pointcloud_descriptor_does_not_depend_on_point_order(clouds):
    busy = clouds[2]
    shuffled = busy[np.random.default_rng(0).permutation(len(busy))]
    np.testing.assert_allclose(
        pointcloud_descriptor(busy), pointcloud_descriptor(shuffled), atol=1e-4
    )


def test_pointcloud_descriptor_ignores_extra_columns_and_non_finite_points(clouds):
    busy = clouds[2]
    with_intensity = np.c_[busy, np.random.default_rng(1).uniform(size=len(busy))]
    with_nan = np.vstack([busy, [[np.nan, 0.0, 0.0], [np.inf, 1.0, 1.0]]])
    reference = pointcloud_descriptor(busy)
    np.testing.assert_allclose(pointcloud_descriptor(with_intensity), reference, atol=1e-6)
    np.testing.assert_allclose(pointcloud_descriptor(with_nan), reference, atol=1e-6)


def test_tiny_clouds_fall_back_to_layout_statistics_and_empty_clouds_to_zeros():
    points = np.array([[1.0, 2.0, 0.0], [3.0, 1.0, 0.5], [5.0, 0.0, 1.0]])
    assert len(points) < MIN_FPFH_POINTS
    tiny = pointcloud_descriptor(points)
    assert np.linalg.norm(tiny) == pytest.approx(1.0, abs=1e-5)
    assert not tiny[:66].any(), "the two pooled FPFH blocks (2 x 33) are zero"
    assert not pointcloud_descriptor(np.zeros((0, 3))).any()
    assert not pointcloud_descriptor(np.full((5, 3), np.nan)).any()


@pytest.mark.parametrize("points", [np.zeros((5, 2)), np.zeros(6), np.array([["a", "b", "c"]])])
def test_pointcloud_descriptor_rejects_arrays_that_are_not_points(points):
    with pytest.raises(ValueError, match="points must"):
        pointcloud_descriptor(points)


@pytest.mark.parametrize("kwargs", [{"voxel_size": 0.0}, {"max_range": -1.0}, {"height_bins": 0}])
def test_pointcloud_config_rejects_non_positive_parameters(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        PointCloudDescriptorConfig(**kwargs)


def test_point_clouds_read_back_from_a_pcd_file_embed_like_the_array(tmp_path, clouds):
    import open3d as o3d

    busy = clouds[2]
    path = tmp_path / "busy.pcd"
    o3d.io.write_point_cloud(str(path), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(busy)))
    points = read_point_cloud(path)
    assert points.shape == busy.shape
    np.testing.assert_allclose(
        pointcloud_descriptor(points), pointcloud_descriptor(busy), atol=1e-4
    )
    with pytest.raises(FileNotFoundError, match="missing.pcd"):
        read_point_cloud(tmp_path / "missing.pcd")


# --- patches --------------------------------------------------------------------------------


def test_patch_windows_square_the_box_then_add_the_margin():
    # A 20 x 10 px box at (40, 20) in a 200 x 100 image: squared to 20 x 20 about its centre
    # (50, 25), then 10 % of 20 px = 2 px of context on each side.
    windows = patch_pixel_boxes([[0.2, 0.2, 0.1, 0.1]], 200, 100, margin=0.1)
    np.testing.assert_array_equal(windows, [[38, 13, 62, 37]])
    not_square = patch_pixel_boxes([[0.2, 0.2, 0.1, 0.1]], 200, 100, margin=0.0, square=False)
    np.testing.assert_array_equal(not_square, [[40, 20, 60, 30]])


def test_patch_windows_are_clipped_to_the_image_and_never_empty():
    windows = patch_pixel_boxes(
        [[0.9, 0.9, 0.3, 0.3], [0.5, 0.5, 0.0, 0.0], [-0.2, 0.0, 0.3, 1.0]], 100, 50
    )
    np.testing.assert_array_equal(windows[0, 2:], [100, 50])
    assert (windows[:, 2] > windows[:, 0]).all() and (windows[:, 3] > windows[:, 1]).all()
    assert windows[2, 0] == 0 and windows[2, 1] == 0
    assert patch_pixel_boxes([], 100, 50).shape == (0, 4)


@pytest.mark.parametrize(
    "boxes",
    [[[0.1, 0.1, -0.1, 0.2]], [[np.nan, 0.1, 0.1, 0.1]], [[1.2, 0.1, 0.1, 0.1]], [[0.1, 0.1, 0.1]]],
)
def test_malformed_or_outside_boxes_are_rejected(boxes):
    with pytest.raises(ValueError, match="boxes"):
        check_boxes(boxes)


def test_crops_show_the_boxed_object_at_the_requested_size():
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:40, 40:60] = (255, 0, 0)  # a red square object
    image[60:90, 150:180] = (0, 0, 255)  # a blue one
    red, blue = crop_patches(
        image, [[0.2, 0.2, 0.1, 0.2], [0.75, 0.6, 0.15, 0.3]], margin=0.0, size=32
    )
    assert red.shape == blue.shape == (32, 32, 3) and red.dtype == np.uint8
    assert red[..., 0].mean() > 200 and red[..., 2].mean() < 20
    assert blue[..., 2].mean() > 200 and blue[..., 0].mean() < 20
