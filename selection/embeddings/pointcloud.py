"""``fpfh-geometry``: a global descriptor of a point cloud (LiDAR sweep), built with open3d.

Two kinds of evidence, concatenated and L2-normalised:

* **Local shape, pooled.** The cloud is voxel-downsampled (so dense near-range returns do
  not outvote the rest), normals are estimated and oriented (an unoriented normal's sign is
  arbitrary, which would make FPFH arbitrary too) towards a viewpoint high above the origin:
  that turns ground normals up and wall normals towards the vertical axis through the
  sensor, whatever the sensor's height in the frame (KITTI puts the ground at z = -1.73,
  ego frames at z = 0, where a viewpoint *at* the origin would lie on the ground). Then
  FPFH (33 bins per point: three 11-bin angle histograms) is computed. The per-point
  features are pooled over the cloud by **mean** (as a Hellinger map: square roots of the
  mean bin fractions) and **standard deviation**. Standard deviation rather than max:
  the max of a histogram bin over points grows with the number of points, so it would
  partly encode density rather than shape.
* **Layout statistics** in the sensor frame (x forward, y left, z up):
  robust extent along x, y and z (2nd to 98th percentile, log-scaled), a histogram of
  height above the lowest points (1st percentile of z, a sensor-height-free stand-in for
  the ground), a histogram of horizontal range from the sensor, and the point count
  (log-scaled).

The descriptor is invariant to point order (up to floating-point summation order).

Tiny clouds (documented fallback rather than an error, so one sparse sweep does not stop
a dataset-wide run): with fewer than :data:`MIN_FPFH_POINTS` finite points the FPFH blocks
are zero and only the layout statistics remain; an empty cloud gives the zero vector.
Non-finite points (no-return markers in some LiDAR formats) are dropped first.

open3d is imported inside the functions that need it: importing this module is cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..algorithms.image_features import l2_normalize

#: The name under which this descriptor is recorded.
POINTCLOUD_DESCRIPTOR_NAME = "fpfh-geometry"
#: Below this many finite points, FPFH is not computed (see the module docstring).
MIN_FPFH_POINTS = 8
_FPFH_BINS = 33
_FPFH_PARTS = 3  # FPFH is three 11-bin histograms, each summing to 100 per point
_ORIENTATION_VIEWPOINT = np.array([0.0, 0.0, 1000.0])


@dataclass(frozen=True)
class PointCloudDescriptorConfig:
    """Parameters of the ``fpfh-geometry`` descriptor; defaults suit driving LiDAR in metres.

    Attributes
    ----------
    voxel_size : float
        Voxel edge for downsampling; normals use a radius of 2 voxels, FPFH of 5 (open3d's
        usual ratios).
    max_range : float
        Upper edge of the range histogram; farther points fall into its last bin.
    max_height : float
        Upper edge of the height histogram (height above the lowest points).
    range_bins, height_bins : int
        Histogram bin counts.
    """

    voxel_size: float = 0.3
    max_range: float = 80.0
    max_height: float = 6.0
    range_bins: int = 16
    height_bins: int = 16

    def __post_init__(self) -> None:
        for name in ("voxel_size", "max_range", "max_height"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value}")
        for name in ("range_bins", "height_bins"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def dim(self) -> int:
        """Length of the descriptor."""
        return 2 * _FPFH_BINS + 3 + self.height_bins + self.range_bins + 1


def read_point_cloud(path: str | Path) -> np.ndarray:
    """Read the xyz coordinates of a point-cloud file (.pcd, .ply, .xyz, ...) with open3d.

    Returns
    -------
    ndarray of shape (N, 3), float64
    """
    import open3d as o3d

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no point-cloud file at {path}")
    cloud = o3d.t.io.read_point_cloud(str(path))
    if "positions" not in cloud.point:
        return np.zeros((0, 3))
    return cloud.point.positions.numpy().astype(np.float64, copy=False)


def pointcloud_descriptor(
    points: np.ndarray, config: PointCloudDescriptorConfig | None = None
) -> np.ndarray:
    """The ``fpfh-geometry`` descriptor of one point cloud.

    Parameters
    ----------
    points : array-like of shape (N, 3) or (N, C >= 3)
        Coordinates in metres in the sensor frame (z up, sensor at the origin); columns
        after the third (intensity, ring, ...) are ignored. N may be 0.
    config : PointCloudDescriptorConfig, optional
        Defaults to :class:`PointCloudDescriptorConfig()`.

    Returns
    -------
    ndarray of shape (config.dim,), float32
        Unit L2 norm, or all zeros for a cloud without finite points.
    """
    config = config or PointCloudDescriptorConfig()
    xyz = np.asarray(points)
    if xyz.ndim != 2 or xyz.shape[1] < 3:
        raise ValueError(f"points must have shape (N, 3) or (N, C >= 3), got {xyz.shape}")
    if not np.issubdtype(xyz.dtype, np.number):
        raise ValueError(f"points must be numeric, got dtype {xyz.dtype}")
    xyz = xyz[:, :3].astype(np.float64)
    xyz = xyz[np.isfinite(xyz).all(axis=1)]
    if len(xyz) == 0:
        return np.zeros(config.dim, dtype=np.float32)
    descriptor = np.concatenate([_pooled_fpfh(xyz, config.voxel_size), _layout(xyz, config)])
    return l2_normalize(descriptor)


def _pooled_fpfh(xyz: np.ndarray, voxel_size: float) -> np.ndarray:
    """Mean (Hellinger map) and standard deviation of per-point FPFH over the cloud."""
    if len(xyz) < MIN_FPFH_POINTS:
        return np.zeros(2 * _FPFH_BINS)
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz))
    down = cloud.voxel_down_sample(voxel_size)
    if len(down.points) < MIN_FPFH_POINTS:  # the cloud is smaller than a few voxels
        down = cloud
    search = o3d.geometry.KDTreeSearchParamHybrid
    down.estimate_normals(search(radius=2.0 * voxel_size, max_nn=30))
    down.orient_normals_towards_camera_location(_ORIENTATION_VIEWPOINT)
    fpfh = o3d.pipelines.registration.compute_fpfh_feature(
        down, search(radius=5.0 * voxel_size, max_nn=50)
    )
    # Per point, each 11-bin part sums to 100 (or to 0 for a point without neighbours).
    features = np.asarray(fpfh.data).T / 100.0
    mean = np.sqrt(features.mean(axis=0)) / math.sqrt(_FPFH_PARTS)
    return np.concatenate([mean, features.std(axis=0)])


def _layout(xyz: np.ndarray, config: PointCloudDescriptorConfig) -> np.ndarray:
    """Extent, height and range histograms and point count, each scaled to about [0, 1]."""
    lo, hi = np.percentile(xyz, [2.0, 98.0], axis=0)
    extent = np.log1p(hi - lo) / math.log1p(config.max_range)
    height = xyz[:, 2] - np.percentile(xyz[:, 2], 1.0)
    horizontal_range = np.hypot(xyz[:, 0], xyz[:, 1])
    height_hist = _clipped_histogram(height, config.max_height, config.height_bins)
    range_hist = _clipped_histogram(horizontal_range, config.max_range, config.range_bins)
    count = math.log10(1.0 + len(xyz)) / 7.0  # 1.0 at ten million points
    return np.concatenate([extent, height_hist, range_hist, [count]])


def _clipped_histogram(values: np.ndarray, upper: float, bins: int) -> np.ndarray:
    """Hellinger map of a histogram over [0, upper); values outside go to the edge bins."""
    index = np.clip((values * (bins / upper)).astype(np.int64), 0, bins - 1)
    return np.sqrt(np.bincount(index, minlength=bins) / len(values))
