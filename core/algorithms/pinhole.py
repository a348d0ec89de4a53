"""Calibrated pinhole cameras and 3D cuboids (pure: numpy only).

One implementation of the projection that both the demo's renderer and the cross-sensor
check (:mod:`annoloop.quality.algorithms.linking`) use, in KITTI's and OpenCV's conventions:

- **Source frame**: the ego / LiDAR frame the cuboids live in (the demo's is x forward,
  y left, z up, metres).
- **Extrinsics** ``T``: a 4x4 rigid transform taking homogeneous source-frame points to the
  camera frame, ``p_cam = T @ [x, y, z, 1]`` (KITTI's ``Tr_velo_to_cam``, rectification
  folded in).
- **Camera frame**: x right, y down, z forward along the optical axis (depth).
- **Intrinsics** ``K``: 3x3 ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in pixels;
  ``u = (K @ p_cam)[0] / z`` grows to the right and ``v`` downwards, with ``(0, 0)`` the
  top-left corner of the image and ``(width, height)`` its bottom-right corner, so a pixel
  box divided by the image size is FiftyOne's relative ``[x, y, w, h]``.
- **Cuboids** follow FiftyOne's 3D detection convention: ``location`` is the centre,
  ``dimensions`` the full extents ``(l, w, h)`` along the box's own x, y, z axes and
  ``rotation`` the Euler angles ``(roll, pitch, yaw)`` in radians, composed as FiftyOne's
  ``fiftyone.utils.utils3d.corners_from_euler`` does (``R = Rx(roll) Ry(pitch) Rz(yaw)``,
  scipy's extrinsic ``"zyx"``); an upright box only has a yaw.

Geometry at or behind the near plane (``z <= near``) does not project; a cuboid that crosses
it is clipped there, so its box covers the part in front of the camera.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "NEAR_PLANE",
    "calibration",
    "camera_points",
    "cuboid_corners",
    "extrinsics_matrix",
    "intrinsics_matrix",
    "project_corners",
    "project_points",
    "rotation_matrices",
]

#: Metres in front of the camera below which nothing projects.
NEAR_PLANE = 0.2

# Corner i has bit 0 -> +x, bit 1 -> +y, bit 2 -> +z (local axes); the 12 edges join the
# corners that differ in one bit.
_SIGNS = np.array([[(i & 1) * 2 - 1, (i >> 1 & 1) * 2 - 1, (i >> 2 & 1) * 2 - 1] for i in range(8)])
_EDGES = np.array([(i, i | bit) for i in range(8) for bit in (1, 2, 4) if not i & bit])


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float, skew: float = 0.0) -> np.ndarray:
    """The 3x3 intrinsics ``K`` of focal lengths and principal point (pixels)."""
    return np.array([[fx, skew, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=float)


def extrinsics_matrix(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """The 4x4 transform ``[[R, t], [0, 1]]`` (source frame -> camera frame)."""
    out = np.eye(4)
    out[:3, :3] = np.asarray(rotation, float)
    out[:3, 3] = np.asarray(translation, float)
    return out


def calibration(intrinsics, extrinsics) -> tuple[np.ndarray, np.ndarray]:
    """``(K, T)`` from stored calibration: 9 and 16 numbers row-major, or 3x3 and 4x4.

    Datasets store them flat, as KITTI's calib files do (FiftyOne keeps a nested list's
    element type only one level deep).

    Raises
    ------
    ValueError
        If either holds the wrong number of values or a non-finite one.
    """
    out = []
    for name, value, n in (("intrinsics", intrinsics, 3), ("extrinsics", extrinsics, 4)):
        matrix = np.asarray(value, dtype=float)
        if matrix.size != n * n or not np.isfinite(matrix).all():
            raise ValueError(
                f"camera {name} must be {n * n} finite numbers ({n}x{n} row-major), "
                f"got {matrix.size} values"
            )
        out.append(matrix.reshape(n, n))
    return out[0], out[1]


def rotation_matrices(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(n, 3, 3)`` of FiftyOne Euler angles ``(n, 3)`` (roll, pitch, yaw)."""
    rotation = np.asarray(rotation, float).reshape(-1, 3)
    (cr, cp, cy), (sr, sp, sy) = np.cos(rotation).T, np.sin(rotation).T
    one, zero = np.ones_like(cr), np.zeros_like(cr)
    rx = np.stack([one, zero, zero, zero, cr, -sr, zero, sr, cr], -1).reshape(-1, 3, 3)
    ry = np.stack([cp, zero, sp, zero, one, zero, -sp, zero, cp], -1).reshape(-1, 3, 3)
    rz = np.stack([cy, -sy, zero, sy, cy, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return rx @ ry @ rz


def cuboid_corners(location, dimensions, rotation) -> np.ndarray:
    """Corners ``(n, 8, 3)`` of cuboids in their source frame.

    Parameters
    ----------
    location, dimensions, rotation : array-like of shape (n, 3)
        FiftyOne's ``location`` (centre), ``dimensions`` (l, w, h) and ``rotation``
        (roll, pitch, yaw).

    Notes
    -----
    Corner ``i`` lies at ``+dimension / 2`` along local axis ``b`` when bit ``b`` of ``i`` is
    set, else at ``-dimension / 2``.
    """
    location = np.asarray(location, float).reshape(-1, 3)
    dimensions = np.asarray(dimensions, float).reshape(-1, 3)
    local = _SIGNS[None] * dimensions[:, None, :] / 2
    return np.einsum("nij,nkj->nki", rotation_matrices(rotation), local) + location[:, None, :]


def camera_points(points: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """Source-frame points ``(..., 3)`` in the camera frame; ``extrinsics`` is ``(4, 4)`` or
    broadcasts against the points' leading axes as ``(..., 4, 4)``."""
    extrinsics = np.asarray(extrinsics, float)
    points = np.asarray(points, float)
    return np.einsum("...ij,...j->...i", extrinsics[..., :3, :3], points) + extrinsics[..., :3, 3]


def _pixels(cam: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Pixel coordinates ``(..., 2)`` of camera-frame points (no depth check)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        normal = cam / cam[..., 2:3]
    return np.einsum("...ij,...j->...i", np.asarray(intrinsics, float)[..., :2, :], normal)


def project_points(
    points: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray, near: float = NEAR_PLANE
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``(..., 2)`` and depth ``(...,)`` of source-frame points.

    Points at or behind the near plane get NaN pixel coordinates; check ``depth > near``
    before using them.
    """
    cam = camera_points(points, extrinsics)
    depth = cam[..., 2]
    uv = _pixels(cam, intrinsics)
    uv[~(depth > near)] = np.nan
    return uv, depth


def project_corners(
    corners: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray, near: float = NEAR_PLANE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image extent of cuboids: the pixel box of each one's part in front of the camera.

    Parameters
    ----------
    corners : ndarray of shape (n, 8, 3)
        Source-frame corners, from :func:`cuboid_corners`.
    intrinsics : ndarray of shape (3, 3) or (n, 3, 3)
    extrinsics : ndarray of shape (4, 4) or (n, 4, 4)
        One camera for all cuboids, or one per cuboid.
    near : float
        Near-plane depth, metres.

    Returns
    -------
    boxes : ndarray of shape (n, 4)
        Unclipped pixel boxes ``(x0, y0, x1, y1)`` of the cuboid clipped to ``z > near``
        (corners in front plus the edges' crossings of the near plane); NaN where the
        cuboid lies wholly behind it.
    in_front : ndarray of shape (n,)
        True where every corner is in front of the near plane (the box is the full
        projection).
    depth : ndarray of shape (n,)
        Depth of each cuboid's centre (mean of its corners) in the camera frame.
    """
    corners = np.asarray(corners, float)
    if corners.ndim != 3 or corners.shape[1:] != (8, 3):
        raise ValueError(f"corners must have shape (n, 8, 3), got {corners.shape}")
    n = len(corners)
    k = np.broadcast_to(np.asarray(intrinsics, float), (n, 3, 3))
    t = np.broadcast_to(np.asarray(extrinsics, float), (n, 4, 4))
    cam = camera_points(corners, t[:, None])  # (n, 8, 3)
    z = cam[..., 2]
    front = z > near
    a, b = cam[:, _EDGES[:, 0]], cam[:, _EDGES[:, 1]]  # (n, 12, 3) edge ends
    crossing = front[:, _EDGES[:, 0]] != front[:, _EDGES[:, 1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(crossing, (near - a[..., 2]) / (b[..., 2] - a[..., 2]), 0.0)
    cut = a + share[..., None] * (b - a)
    cut[..., 2] = near  # exactly on the plane, whatever the rounding
    points = np.concatenate([cam, cut], axis=1)  # (n, 20, 3)
    keep = np.concatenate([front, crossing], axis=1)
    uv = _pixels(points, k[:, None])
    lo = np.where(keep[..., None], uv, np.inf).min(axis=1)
    hi = np.where(keep[..., None], uv, -np.inf).max(axis=1)
    boxes = np.concatenate([lo, hi], axis=1)
    boxes[~keep.any(axis=1)] = np.nan
    return boxes, front.all(axis=1), z.mean(axis=1)
