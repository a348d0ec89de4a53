"""A level stereo pair of pinhole cameras in the ego frame (pure: numpy only).

The cameras look along +x (forward) with image u to the right (-y) and v down (-z), like
KITTI's rectified stereo pair: same intrinsics, same height, offset only along y by the
baseline, so a point's disparity is ``fx * baseline / depth``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.algorithms import pinhole

STEREO_BASELINE = 0.54  # metres, as in KITTI
CAMERA_HEIGHT = 1.65  # metres above the ground
HORIZONTAL_FOV_DEG = 80.0
#: Ego (x forward, y left, z up) to camera (x right, y down, z forward) axes.
_EGO_TO_CAMERA = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics plus the camera centre in the ego frame."""

    name: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    position: tuple[float, float, float]

    @property
    def intrinsics(self) -> np.ndarray:
        """The 3x3 intrinsics matrix ``K`` (pixels)."""
        return pinhole.intrinsics_matrix(self.fx, self.fy, self.cx, self.cy)

    @property
    def extrinsics(self) -> np.ndarray:
        """The 4x4 ego-to-camera transform (see :mod:`annoloop.core.algorithms.pinhole`)."""
        return pinhole.extrinsics_matrix(
            _EGO_TO_CAMERA, -_EGO_TO_CAMERA @ np.asarray(self.position, float)
        )

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """Ego-frame points (..., 3) to camera coordinates (right, down, forward)."""
        return pinhole.camera_points(points, self.extrinsics)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (..., 2) and depth (...,) of ego-frame points.

        Points at or behind the near plane get non-finite pixel coordinates; callers
        check ``depth > NEAR_PLANE`` before using them.
        """
        return pinhole.project_points(points, self.intrinsics, self.extrinsics)


def stereo_rig(image_size: tuple[int, int]) -> tuple[PinholeCamera, PinholeCamera]:
    """The ``left`` and ``right`` cameras for images of ``(width, height)`` pixels.

    The horizon sits a little above the image centre so that most rows show road.
    """
    width, height = image_size
    focal = (width / 2) / np.tan(np.radians(HORIZONTAL_FOV_DEG) / 2)
    cams = []
    for name, y in (("left", STEREO_BASELINE / 2), ("right", -STEREO_BASELINE / 2)):
        cams.append(
            PinholeCamera(
                name=name,
                width=int(width),
                height=int(height),
                fx=float(focal),
                fy=float(focal),
                cx=width / 2,
                cy=0.42 * height,
                position=(0.0, y, CAMERA_HEIGHT),
            )
        )
    return cams[0], cams[1]


def project_cuboids(camera: PinholeCamera, corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image-space extent of cuboids from their corners.

    Parameters
    ----------
    camera : PinholeCamera
    corners : ndarray of shape (n, 8, 3)
        Ego-frame corners, e.g. from ``scenes.cuboid_corners``.

    Returns
    -------
    boxes : ndarray of shape (n, 4)
        Unclipped pixel boxes ``(x0, y0, x1, y1)``; NaN where ``valid`` is False.
    valid : ndarray of shape (n,)
        True where every corner is in front of the near plane.
    """
    boxes, valid, _ = pinhole.project_corners(corners, camera.intrinsics, camera.extrinsics)
    boxes[~valid] = np.nan
    return boxes, valid
