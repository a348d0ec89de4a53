"""LiDAR-like point clouds of a scene and the PCD v0.7 file format (pure: numpy only).

A spinning LiDAR is simulated by casting rays on a (beams x azimuths) grid from the sensor
against the ground plane and every box of the scene (object parts and clutter), keeping the
nearest hit. Density therefore falls with range the way a real sweep's does: rings on the
ground, few points on far objects. Range noise, dropout and weather (rain drops returns and
adds spurious near hits; fog shortens the range and adds backscatter; snow drops more
returns and adds many flake hits) are added on top.

Files are written as binary PCD v0.7 with fields ``x y z intensity`` (float32), which both
FiftyOne's 3D viewer and ``open3d.io.read_point_cloud`` read.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from . import scenes as sc

SENSOR_HEIGHT = 1.73  # metres, as in KITTI
NUM_BEAMS = 32
NUM_AZIMUTHS = 360
ELEVATION_RANGE_DEG = (-24.8, 2.0)
# Like real sensors, a quarter of the beams cover the steep downward range and the rest are
# packed near the horizon, where the objects are.
STEEP_BEAM_SHARE, STEEP_BEAM_LIMIT_DEG = 0.25, -9.0
MAX_RANGE = 80.0

# Reflectivity indexed by part role (PAINT ... TAILLIGHT) and by clutter kind.
_ROLE_INTENSITY = np.array([0.35, 0.3, 0.25, 0.05, 0.04, 0.9, 0.85])
_CLUTTER_INTENSITY = np.array([0.3, 0.5, 0.2, 0.12])
_GROUND = -1  # hit index of rays that end on the ground


@dataclass
class LidarSweep:
    """One sweep: points in the ego frame and what each point hit."""

    points: np.ndarray  # (N, 3) float32
    intensity: np.ndarray  # (N,) float32 in [0, 1]
    owner: np.ndarray  # (N,) int: object row, or -1 for ground, clutter and noise

    def points_per_object(self, num_objects: int) -> np.ndarray:
        """Number of points on each labelled object, shape (num_objects,)."""
        return np.bincount(self.owner[self.owner >= 0], minlength=num_objects)[:num_objects]


def ray_box_hits(
    origin: np.ndarray,
    directions: np.ndarray,
    center: np.ndarray,
    size: np.ndarray,
    yaw: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest intersection of rays from one origin with yawed boxes (slab method).

    Parameters
    ----------
    origin : ndarray of shape (3,)
    directions : ndarray of shape (R, 3)
        Unit ray directions.
    center, size : ndarray of shape (B, 3)
    yaw : ndarray of shape (B,)

    Returns
    -------
    distance : ndarray of shape (R,)
        Distance to the nearest box hit, ``inf`` where a ray hits none.
    index : ndarray of shape (R,)
        The box hit, -1 where none.

    Notes
    -----
    Only the rays whose azimuth falls in a box's angular extent are tested against it, so
    the cost is about (rays on boxes) rather than (rays x boxes).
    """
    origin = np.asarray(origin, float)
    directions = np.asarray(directions, float)
    num_rays = len(directions)
    distance = np.full(num_rays, np.inf)
    index = np.full(num_rays, -1, dtype=np.int64)
    if len(center) == 0 or num_rays == 0:
        return distance, index
    ray_az = np.arctan2(directions[:, 1], directions[:, 0])
    order = np.argsort(ray_az, kind="stable")
    sorted_az = ray_az[order]
    corners = sc.cuboid_corners(center, size, yaw)[..., :2] - origin[:2]
    corner_az = np.arctan2(corners[..., 1], corners[..., 0])
    for b in range(len(center)):
        lo, hi = corner_az[b].min(), corner_az[b].max()
        if hi - lo > np.pi:  # the box straddles the +-pi seam or surrounds the sensor
            candidates = np.arange(num_rays)
        else:
            candidates = order[
                np.searchsorted(sorted_az, lo) : np.searchsorted(sorted_az, hi, "right")
            ]
        if len(candidates) == 0:
            continue
        c, s = np.cos(yaw[b]), np.sin(yaw[b])
        rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # ego -> box frame
        o = rot @ (origin - center[b])
        d = directions[candidates] @ rot.T
        d[d == 0] = 1e-12  # a ray parallel to a slab: avoid 0/0, keep the sign logic
        half = size[b] / 2
        t1 = (-half - o) / d
        t2 = (half - o) / d
        t_near = np.minimum(t1, t2).max(axis=1)
        t_far = np.maximum(t1, t2).min(axis=1)
        hit = (t_far >= t_near) & (t_near > 0)
        closer = hit & (t_near < distance[candidates])
        distance[candidates[closer]] = t_near[closer]
        index[candidates[closer]] = b
    return distance, index


def simulate_lidar(
    scene: sc.Scene,
    parts: sc.Parts | None = None,
    *,
    num_beams: int = NUM_BEAMS,
    num_azimuths: int = NUM_AZIMUTHS,
    max_range: float = MAX_RANGE,
) -> LidarSweep:
    """Simulate one 360 degree LiDAR sweep of a scene.

    Parameters
    ----------
    scene : Scene
    parts : Parts, optional
        ``scenes.expand_parts(scene)``, if already computed.
    num_beams, num_azimuths : int
        Rays per sweep are ``num_beams * num_azimuths``; the defaults give a few thousand
        points.
    max_range : float
        Returns beyond this distance are lost (fog shortens it further).

    Returns
    -------
    LidarSweep
    """
    sc.check_count("num_beams", num_beams)
    sc.check_count("num_azimuths", num_azimuths)
    if not max_range > 0:
        raise ValueError(f"max_range must be > 0 metres, got {max_range}")
    parts = sc.expand_parts(scene) if parts is None else parts
    rng = np.random.default_rng(np.random.SeedSequence(scene.render_seed, spawn_key=(7,)))
    origin = np.array([0.0, 0.0, SENSOR_HEIGHT])
    directions = _ray_grid(num_beams, num_azimuths)

    distance, hit = ray_box_hits(origin, directions, parts.center, parts.size, parts.yaw)
    with np.errstate(divide="ignore"):
        ground = np.where(directions[:, 2] < 0, origin[2] / -directions[:, 2], np.inf)
    on_ground = ground < distance
    distance = np.where(on_ground, ground, distance)
    hit = np.where(on_ground, _GROUND, hit)

    reach = max_range
    if np.isfinite(scene.fog_visibility):
        reach = min(reach, 2.0 * scene.fog_visibility)
    dropout = 0.05 + 0.25 * distance / reach + _WEATHER_DROPOUT.get(scene.weather, 0.0)
    keep = (distance < reach) & (rng.random(len(distance)) >= dropout)
    distance = distance[keep] + rng.normal(0.0, 0.02, keep.sum())
    directions, hit = directions[keep], hit[keep]
    points = origin + directions * distance[:, None]

    intensity = np.empty(len(points))
    is_part = hit >= 0
    part_idx = hit[is_part]
    clutter = parts.clutter_kind[part_idx]
    intensity[is_part] = np.where(
        clutter >= 0,
        _CLUTTER_INTENSITY[np.maximum(clutter, 0)],
        _ROLE_INTENSITY[parts.role[part_idx]],
    )
    intensity[~is_part] = _ground_intensity(points[~is_part], scene.lane_phase)
    intensity = intensity / (1 + 0.01 * distance) + rng.normal(0.0, 0.03, len(points))
    owner = np.full(len(points), -1, dtype=np.int64)
    owner[is_part] = parts.owner[part_idx]

    spurious = _weather_clutter(scene, origin, rng)
    if len(spurious):
        points = np.vstack([points, spurious])
        intensity = np.concatenate([intensity, rng.uniform(0.0, 0.1, len(spurious))])
        owner = np.concatenate([owner, np.full(len(spurious), -1)])
    return LidarSweep(
        points=points.astype(np.float32),
        intensity=np.clip(intensity, 0.0, 1.0).astype(np.float32),
        owner=owner,
    )


@functools.lru_cache(maxsize=4)
def _ray_grid(num_beams: int, num_azimuths: int) -> np.ndarray:
    """Unit directions of all rays of a sweep, (num_beams * num_azimuths, 3), read-only."""
    elevation = np.radians(beam_elevations_deg(num_beams))
    azimuth = (np.arange(num_azimuths) + 0.5) * (2 * np.pi / num_azimuths) - np.pi
    el, az = np.meshgrid(elevation, azimuth, indexing="ij")
    grid = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
    grid = grid.reshape(-1, 3)
    grid.setflags(write=False)
    return grid


def beam_elevations_deg(num_beams: int) -> np.ndarray:
    """Elevation of each beam in degrees, ascending."""
    low, high = ELEVATION_RANGE_DEG
    steep = int(round(STEEP_BEAM_SHARE * num_beams))
    lower = np.linspace(low, STEEP_BEAM_LIMIT_DEG, steep, endpoint=False)
    return np.concatenate([lower, np.linspace(STEEP_BEAM_LIMIT_DEG, high, num_beams - steep)])


def _ground_intensity(points: np.ndarray, lane_phase: float) -> np.ndarray:
    """Asphalt is dark, sidewalks and grass brighter, lane paint retro-reflective."""
    x, y = points[:, 0], points[:, 1]
    on_road = (y >= sc.ROAD_RIGHT) & (y <= sc.ROAD_LEFT)
    on_walk = ((y >= sc.SIDEWALK_RIGHT[0]) & (y < sc.ROAD_RIGHT)) | (
        (y > sc.ROAD_LEFT) & (y <= sc.SIDEWALK_LEFT[1])
    )
    out = np.where(on_road, 0.08, np.where(on_walk, 0.25, 0.18))
    return np.where(sc.lane_marking_mask(x, y, lane_phase), 0.65, out)


#: Extra share of returns lost in each weather (wet or snow-covered surfaces scatter the beam).
_WEATHER_DROPOUT = {"rain": 0.1, "snow": 0.15}
#: Spurious near returns per sweep, and the farthest (metres) they come from: falling snow
#: returns far more, and from farther, than raindrops or fog backscatter.
_WEATHER_CLUTTER = {"rain": (40, 8.0), "fog": (80, 8.0), "snow": (400, 15.0)}


def _weather_clutter(scene: sc.Scene, origin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Spurious near returns off raindrops, fog or snowflakes."""
    count, farthest = _WEATHER_CLUTTER.get(scene.weather, (0, 0.0))
    if count == 0:
        return np.zeros((0, 3))
    direction = rng.normal(size=(count, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return origin + direction * rng.uniform(1.5, farthest, (count, 1))


_PCD_TYPES = {
    ("F", 4): "f4",
    ("F", 8): "f8",
    ("I", 1): "i1",
    ("I", 2): "i2",
    ("I", 4): "i4",
    ("I", 8): "i8",
    ("U", 1): "u1",
    ("U", 2): "u2",
    ("U", 4): "u4",
    ("U", 8): "u8",
}


def write_pcd(path: str | os.PathLike, points: np.ndarray, intensity: np.ndarray) -> int:
    """Write a binary PCD v0.7 file with fields ``x y z intensity``.

    Parameters
    ----------
    path : path-like
    points : ndarray of shape (N, 3)
    intensity : ndarray of shape (N,)

    Returns
    -------
    int
        Bytes written.
    """
    points = np.asarray(points)
    intensity = np.asarray(intensity)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    if intensity.shape != (len(points),):
        raise ValueError(
            f"intensity must have shape ({len(points)},) to match points, got {intensity.shape}"
        )
    n = len(points)
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\n"
        "VERSION 0.7\n"
        "FIELDS x y z intensity\n"
        "SIZE 4 4 4 4\n"
        "TYPE F F F F\n"
        "COUNT 1 1 1 1\n"
        f"WIDTH {n}\n"
        "HEIGHT 1\n"
        "VIEWPOINT 0 0 0 1 0 0 0\n"
        f"POINTS {n}\n"
        "DATA binary\n"
    ).encode("ascii")
    body = np.column_stack([points, intensity]).astype("<f4").tobytes()
    with open(path, "wb") as f:
        f.write(header)
        f.write(body)
    return len(header) + len(body)


def read_pcd(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an ``ascii`` or ``binary`` PCD file into ``{field name: array}``.

    Fields with ``COUNT`` > 1 come back as (N, COUNT) arrays. ``binary_compressed`` files
    are not supported.
    """
    with open(path, "rb") as f:
        raw = f.read()
    header: dict[str, list[str]] = {}
    offset = 0
    while True:
        end = raw.find(b"\n", offset)
        if end < 0:
            raise ValueError(f"{path}: PCD header has no DATA line")
        line = raw[offset:end].decode("ascii", errors="replace").strip()
        offset = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        header[key.upper()] = values
        if key.upper() == "DATA":
            break
    missing = {"FIELDS", "SIZE", "TYPE", "POINTS"} - set(header)
    if missing:
        raise ValueError(f"{path}: PCD header lacks {sorted(missing)}")
    names = header["FIELDS"]
    counts = [int(c) for c in header.get("COUNT", ["1"] * len(names))]
    try:
        dtype = np.dtype(
            [
                (name, "<" + _PCD_TYPES[(t, int(s))], (c,) if c > 1 else ())
                for name, t, s, c in zip(names, header["TYPE"], header["SIZE"], counts)
            ]
        )
    except KeyError as e:
        raise ValueError(f"{path}: unsupported PCD field type/size {e}") from None
    n = int(header["POINTS"][0])
    mode = header["DATA"][0].lower()
    if mode == "binary":
        if len(raw) - offset < n * dtype.itemsize:
            raise ValueError(
                f"{path}: expected {n} points of {dtype.itemsize} bytes, file is truncated"
            )
        data = np.frombuffer(raw, dtype=dtype, count=n, offset=offset)
    elif mode == "ascii":
        table = np.loadtxt(raw[offset:].decode("ascii").splitlines(), ndmin=2)
        if len(table) != n:
            raise ValueError(f"{path}: header says {n} points, found {len(table)} rows")
        data = np.zeros(n, dtype=dtype)
        column = 0
        for name, c in zip(names, counts):
            data[name] = table[:, column : column + c].reshape(data[name].shape)
            column += c
    else:
        raise ValueError(f"{path}: unsupported PCD DATA mode {mode!r}")
    return {name: np.array(data[name]) for name in names}
