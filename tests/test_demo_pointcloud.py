"""Pure tests of the LiDAR simulation and the PCD reader/writer (open3d as a cross-check)."""

import dataclasses

import numpy as np
import pytest

from annoloop.demo.algorithms import pointcloud as pc
from annoloop.demo.algorithms import scenes as sc


@pytest.fixture(scope="module")
def scenes():
    return sc.sample_scenes(6, 51)


def test_pcd_round_trips_points_and_intensity(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 3)).astype(np.float32)
    intensity = rng.random(500).astype(np.float32)
    path = tmp_path / "a.pcd"
    size = pc.write_pcd(path, points, intensity)
    assert size == path.stat().st_size
    data = pc.read_pcd(path)
    assert list(data) == ["x", "y", "z", "intensity"]
    np.testing.assert_array_equal(np.stack([data["x"], data["y"], data["z"]], 1), points)
    np.testing.assert_array_equal(data["intensity"], intensity)


def test_pcd_opens_in_open3d_with_the_right_point_count(tmp_path, scenes):
    import open3d as o3d

    sweep = pc.simulate_lidar(scenes[0])
    path = tmp_path / "sweep.pcd"
    pc.write_pcd(path, sweep.points, sweep.intensity)
    cloud = o3d.io.read_point_cloud(str(path))
    assert len(cloud.points) == len(sweep.points)
    np.testing.assert_allclose(np.asarray(cloud.points), sweep.points, atol=1e-6)


def test_read_pcd_reads_ascii_files(tmp_path):
    path = tmp_path / "ascii.pcd"
    path.write_text(
        "VERSION 0.7\nFIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F U\nCOUNT 1 1 1 1\n"
        "WIDTH 2\nHEIGHT 1\nPOINTS 2\nDATA ascii\n1 2 3 7\n4 5 6 9\n"
    )
    data = pc.read_pcd(path)
    np.testing.assert_array_equal(data["z"], [3, 6])
    np.testing.assert_array_equal(data["rgb"], [7, 9])


def test_read_pcd_rejects_truncated_and_compressed_files(tmp_path):
    path = tmp_path / "short.pcd"
    pc.write_pcd(path, np.zeros((10, 3)), np.zeros(10))
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match="truncated"):
        pc.read_pcd(path)
    packed = tmp_path / "packed.pcd"
    packed.write_bytes(b"FIELDS x\nSIZE 4\nTYPE F\nPOINTS 1\nDATA binary_compressed\n\x00")
    with pytest.raises(ValueError, match="binary_compressed"):
        pc.read_pcd(packed)


def test_write_pcd_rejects_mismatched_arrays(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        pc.write_pcd(tmp_path / "a.pcd", np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="intensity"):
        pc.write_pcd(tmp_path / "a.pcd", np.zeros((4, 3)), np.zeros(5))


def test_ray_box_hits_returns_the_nearest_box():
    origin = np.zeros(3)
    directions = np.array([[1.0, 0, 0], [0, 1.0, 0], [-1.0, 0, 0]])
    center = np.array([[10.0, 0, 0], [5.0, 0, 0], [0, 8.0, 0]])
    size = np.array([[2.0, 2, 2], [1.0, 1, 1], [2.0, 2, 2]])
    yaw = np.array([0.0, 0.0, np.pi / 4])
    distance, index = pc.ray_box_hits(origin, directions, center, size, yaw)
    np.testing.assert_allclose(distance[:2], [4.5, 8.0 - np.sqrt(2)])
    np.testing.assert_array_equal(index, [1, 2, -1])
    assert np.isinf(distance[2])


def test_a_sweep_has_thousands_of_points_ground_at_zero(scenes):
    sweep = pc.simulate_lidar(scenes[1])
    assert 2_000 <= len(sweep.points) <= 20_000
    assert sweep.points.dtype == np.float32 and sweep.intensity.dtype == np.float32
    assert np.all((sweep.intensity >= 0) & (sweep.intensity <= 1))
    ground = sweep.points[(sweep.owner < 0) & (np.abs(sweep.points[:, 2]) < 0.2)]
    assert len(ground) > 0.5 * len(sweep.points)
    assert np.abs(ground[:, 2]).mean() < 0.05


def test_object_points_lie_on_their_cuboids(scenes):
    for scene in scenes:
        sweep = pc.simulate_lidar(scene)
        counts = sweep.points_per_object(len(scene.class_index))
        assert counts.sum() > 0
        for row in np.flatnonzero(counts):
            pts = sweep.points[sweep.owner == row] - scene.location[row]
            c, s = np.cos(scene.yaw[row]), np.sin(scene.yaw[row])
            local = pts @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
            assert np.all(np.abs(local) <= scene.dimensions[row] / 2 + 0.15)


def test_point_density_falls_with_range(scenes):
    sweep = pc.simulate_lidar(scenes[2])
    r = np.linalg.norm(sweep.points[:, :2], axis=1)
    ground = sweep.owner < 0
    near = np.sum(ground & (r >= 5) & (r < 10)) / (np.pi * (10**2 - 5**2))
    far = np.sum(ground & (r >= 30) & (r < 40)) / (np.pi * (40**2 - 30**2))
    assert near > 5 * far


def test_a_sweep_is_deterministic_and_fog_shortens_it(scenes):
    scene = dataclasses.replace(scenes[3], weather="clear", fog_visibility=float("inf"))
    a, b = pc.simulate_lidar(scene), pc.simulate_lidar(scene)
    np.testing.assert_array_equal(a.points, b.points)
    foggy = pc.simulate_lidar(dataclasses.replace(scene, weather="fog", fog_visibility=15.0))
    reach = lambda sweep: np.linalg.norm(sweep.points - [0, 0, pc.SENSOR_HEIGHT], axis=1).max()
    assert reach(foggy) <= 30.5 < reach(a)


def test_snow_adds_flake_returns_near_the_sensor(scenes):
    clear = dataclasses.replace(scenes[0], weather="clear", fog_visibility=float("inf"))
    snowy = dataclasses.replace(clear, weather="snow")

    def unowned_in_the_air(scene):
        sweep = pc.simulate_lidar(scene)
        near = np.linalg.norm(sweep.points[:, :2], axis=1) < 15.0
        return int(np.sum(near & (sweep.owner < 0) & (sweep.points[:, 2] > 0.1)))

    assert unowned_in_the_air(snowy) > unowned_in_the_air(clear) + 150
