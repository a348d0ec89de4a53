"""Cross-sensor consistency ("LiDAR linking") of 3D cuboids and 2D boxes (pure: numpy only).

Every cuboid of a scene is projected into each calibrated camera image
(:mod:`annoloop.core.algorithms.pinhole`: FiftyOne's 3D convention, KITTI's calibration) and
its projection, clipped to the image, is matched with that image's drawn 2D boxes by IoU. The
matching is class-agnostic and greedy (:func:`.matching.match_detections`, boxes visited in
descending order of their best IoU with any projection), so geometry decides who pairs with
whom and class is what gets checked. Four rules, each its own violation:

``link_missing_box``
    A cuboid that should be visible in the image has no 2D box. *Should be visible* means:
    wholly in front of the camera, its clipped projection at least ``min_box_px`` wide and
    high and at least ``min_in_frame`` of its projection inside the image, and at least
    ``min_visible`` of its silhouette (``min_visible_px`` pixels) not
    hidden by nearer cuboids. The silhouette is the union of the cuboid's projected faces,
    rasterised at pixel centres and painted far to near by centre depth. Objects that are
    mostly occluded, tiny or cut by the near plane may rightly have no box and are never
    flagged; occluders nobody labelled (buildings, poles, trees) are not known here, which
    is why ``min_visible`` leaves a wide margin.
``link_missing_cuboid``
    A 2D box overlaps no cuboid's projection by at least ``match_iou``.
``link_class_mismatch``
    A linked pair's classes differ.
``link_misaligned``
    A linked pair's IoU is below ``iou_threshold`` (a gross misalignment: the box was drawn
    off the object, or the cuboid is misplaced).

A pair can break both of the last two rules. Boxes are FiftyOne's relative ``[x, y, w, h]``;
everything in pixels (``min_box_px``, reports' ``projected_px``) uses the image sizes given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.algorithms.pinhole import (
    NEAR_PLANE,
    camera_points,
    cuboid_corners,
    project_corners,
    project_points,
)
from .iou import as_boxes_2d, box_iou_2d
from .matching import as_label_array, match_detections

__all__ = [
    "LINK_RULES",
    "LinkParams",
    "LinkReport",
    "link_labels",
]

#: The linking rules, in the order reports list them.
LINK_RULES = ("link_missing_box", "link_missing_cuboid", "link_class_mismatch", "link_misaligned")

# Corner indices (see pinhole.cuboid_corners) of the six faces.
_FACES = np.array(
    [[0, 2, 6, 4], [1, 3, 7, 5], [0, 1, 5, 4], [2, 3, 7, 6], [0, 1, 3, 2], [4, 5, 7, 6]]
)


@dataclass(frozen=True)
class LinkParams:
    """Thresholds of :func:`link_labels`.

    Parameters
    ----------
    iou_threshold : float, default 0.5
        A linked pair below this IoU is ``link_misaligned``; in (0, 1].
    match_iou : float, default 0.1
        Least IoU at which a box and a projection are linked at all; in (0, iou_threshold].
    min_visible : float, default 0.6
        Unoccluded share of the silhouette above which a cuboid must have a box; in (0, 1].
    min_visible_px : int, default 12
        Unoccluded silhouette pixels a cuboid needs to be expected (the demo labels objects
        from 12 visible pixels on).
    min_box_px : (float, float), default (3, 5)
        Least width and height, in pixels, of the clipped projection of an expected cuboid
        (the demo's labelling rule).
    min_in_frame : float, default 0.5
        Share of the projected box inside the image an expected cuboid needs: an object
        mostly outside the frame may rightly have no box.
    near : float
        Near-plane depth in metres.
    """

    iou_threshold: float = 0.5
    match_iou: float = 0.1
    min_visible: float = 0.6
    min_visible_px: int = 12
    min_box_px: tuple[float, float] = (3.0, 5.0)
    min_in_frame: float = 0.5
    near: float = NEAR_PLANE

    def __post_init__(self) -> None:
        def bad(name, value, bound):
            return ValueError(f"{name} must be {bound}; got {value!r}")

        for name in ("iou_threshold", "min_visible", "min_in_frame"):
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 < value <= 1.0:
                raise bad(name, value, "a number in (0, 1]")
        if not _is_number(self.match_iou) or not 0.0 < self.match_iou <= self.iou_threshold:
            raise bad("match_iou", self.match_iou, f"a number in (0, iou_threshold={self.iou_threshold}]")
        if not _is_number(self.min_visible_px) or self.min_visible_px < 0:
            raise bad("min_visible_px", self.min_visible_px, "a number >= 0")
        size = self.min_box_px
        if not (
            isinstance(size, (tuple, list))
            and len(size) == 2
            and all(_is_number(v) and v >= 0 for v in size)
        ):
            raise bad("min_box_px", size, "(width, height) in pixels, both >= 0")
        if not _is_number(self.near) or self.near <= 0:
            raise bad("near", self.near, "a positive depth in metres")


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.number)) and np.isfinite(value)


@dataclass
class LinkReport:
    """Outcome of :func:`link_labels`; row indices refer to its inputs.

    Attributes
    ----------
    projected : ndarray (n_cuboids, 4)
        Each cuboid's projection clipped to its image, relative ``[x, y, w, h]``; NaN where
        nothing of it is in front of the camera.
    visible_fraction : ndarray (n_cuboids,)
        Share of its silhouette that nearer cuboids leave visible (0 when not projectable).
    expected : ndarray of bool (n_cuboids,)
        Whether the cuboid should have a box in its image.
    cuboid_match, box_match : ndarray of int64
        The linked row on the other side, -1 where none.
    pair_iou : ndarray (n_boxes,)
        IoU of each box with its linked projection (NaN where unlinked).
    best_iou_cuboid, best_iou_box : ndarray
        Each row's best IoU with any row on the other side of its image.
    rule, cuboid_row, box_row, image, detail : ndarray (n_violations,)
        One entry per violation: the rule, the rows involved (-1 for none), the image and a
        sentence saying what is wrong.
    """

    projected: np.ndarray
    visible_fraction: np.ndarray
    expected: np.ndarray
    cuboid_match: np.ndarray
    box_match: np.ndarray
    pair_iou: np.ndarray
    best_iou_cuboid: np.ndarray
    best_iou_box: np.ndarray
    rule: np.ndarray
    cuboid_row: np.ndarray
    box_row: np.ndarray
    image: np.ndarray
    detail: np.ndarray

    def counts(self) -> dict[str, int]:
        """Violations per rule (every rule listed, zeros included)."""
        return {r: int(np.count_nonzero(self.rule == r)) for r in LINK_RULES}


def link_labels(
    cuboid_image,
    cuboid_label,
    cuboids,
    box_image,
    box_label,
    boxes,
    intrinsics,
    extrinsics,
    image_size,
    params: LinkParams | None = None,
) -> LinkReport:
    """Link the cuboids and 2D boxes of a batch of camera images; see the module docstring.

    Parameters
    ----------
    cuboid_image : array-like of int, shape (n,)
        Camera image (0 .. m-1) each cuboid row is checked in: a scene's cuboids appear once
        per camera image of the scene.
    cuboid_label : array-like of str, shape (n,)
    cuboids : array-like, shape (n, 9)
        ``location + dimensions + rotation`` in the frame the extrinsics map from.
    box_image : array-like of int, shape (k,)
    box_label : array-like of str, shape (k,)
    boxes : array-like, shape (k, 4)
        Relative ``[x, y, w, h]`` boxes.
    intrinsics : array-like, shape (m, 3, 3)
    extrinsics : array-like, shape (m, 4, 4)
        Source frame -> camera frame of each image.
    image_size : array-like, shape (m, 2)
        ``(width, height)`` of each image in pixels.
    params : LinkParams, optional

    Returns
    -------
    LinkReport

    Raises
    ------
    ValueError
        On mismatched shapes, non-finite geometry or calibration, a non-positive cuboid
        dimension or image size, or an image index out of range.
    """
    params = params or LinkParams()
    k_mat, t_mat, size = _calibration(intrinsics, extrinsics, image_size)
    m = len(size)
    c_img = _image_index(cuboid_image, m, "cuboid_image")
    b_img = _image_index(box_image, m, "box_image")
    n, k = len(c_img), len(b_img)
    c_label = as_label_array(cuboid_label, n, "cuboid_label")
    b_label = as_label_array(box_label, k, "box_label")
    geometry = _cuboids(cuboids, n)
    rel = as_boxes_2d(boxes, "boxes")
    if len(rel) != k:
        raise ValueError(f"boxes must have shape ({k}, 4) to match box_image; got {rel.shape}")

    corners = cuboid_corners(geometry[:, 0:3], geometry[:, 3:6], geometry[:, 6:9])
    px, in_front, _ = project_corners(corners, k_mat[c_img], t_mat[c_img], params.near)
    wh = np.tile(size[c_img], 2)
    clipped = np.clip(np.nan_to_num(px, nan=0.0), 0.0, wh)
    clipped_w, clipped_h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    on_image = np.isfinite(px[:, 0]) & (clipped_w > 0) & (clipped_h > 0)
    full_area = np.nan_to_num((px[:, 2] - px[:, 0]) * (px[:, 3] - px[:, 1]))
    projected = np.full((n, 4), np.nan)
    projected[on_image] = np.hstack([clipped[on_image, :2], np.stack([clipped_w, clipped_h], 1)[on_image]])
    projected[on_image] /= wh[on_image]

    fraction, visible_px = _visibility(corners, c_img, in_front & on_image, k_mat, t_mat, size)
    expected = (
        in_front
        & on_image
        & (clipped_w >= params.min_box_px[0])
        & (clipped_h >= params.min_box_px[1])
        & (fraction >= params.min_visible)
        & (visible_px >= params.min_visible_px)
        & (clipped_w * clipped_h >= params.min_in_frame * full_area)
    )

    best_c, best_b = _best_ious(projected, on_image, c_img, rel, b_img)
    linkable = np.flatnonzero(on_image)
    result = match_detections(
        c_img[linkable],
        np.zeros(len(linkable), np.int64),  # class-agnostic: geometry links, class is checked
        projected[linkable],
        b_img,
        np.zeros(k, np.int64),
        rel,
        pred_conf=np.where(best_b > 0, best_b, np.nan),
        iou_threshold=params.match_iou,
    )
    cuboid_match = np.full(n, -1, np.int64)
    box_match = np.full(k, -1, np.int64)
    pair_iou = np.full(k, np.nan)
    cuboid_match[linkable[result.gt_index]] = result.pred_index
    box_match[result.pred_index] = linkable[result.gt_index]
    pair_iou[result.pred_index] = result.iou

    violations = _violations(
        params, c_label, b_label, c_img, b_img, px, fraction, expected,
        cuboid_match, box_match, pair_iou, best_c, best_b,
    )
    return LinkReport(
        projected, fraction, expected, cuboid_match, box_match, pair_iou, best_c, best_b,
        *violations,
    )


def _calibration(intrinsics, extrinsics, image_size):
    k_mat = np.asarray(intrinsics, dtype=float)
    t_mat = np.asarray(extrinsics, dtype=float)
    size = np.asarray(image_size, dtype=float)
    if size.ndim != 2 or size.shape[1] != 2:
        raise ValueError(f"image_size must have shape (m, 2) as (width, height); got {size.shape}")
    m = len(size)
    if k_mat.shape != (m, 3, 3) or t_mat.shape != (m, 4, 4):
        raise ValueError(
            f"intrinsics must have shape ({m}, 3, 3) and extrinsics ({m}, 4, 4), one per "
            f"image; got {k_mat.shape} and {t_mat.shape}"
        )
    for name, value in (("intrinsics", k_mat), ("extrinsics", t_mat), ("image_size", size)):
        if not np.isfinite(value).all():
            raise ValueError(f"{name} must be finite; some values are NaN or inf")
    if (size <= 0).any():
        raise ValueError("image_size must be positive (width, height) pixels")
    return k_mat, t_mat, size


def _image_index(values, m: int, name: str) -> np.ndarray:
    index = np.asarray(values)
    if index.size == 0:
        return np.zeros(0, np.int64)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D array of image indices; got {index.dtype} {index.shape}")
    if index.min() < 0 or index.max() >= m:
        raise ValueError(f"{name} must lie in [0, {m}); got values in [{index.min()}, {index.max()}]")
    return index.astype(np.int64)


def _cuboids(cuboids, n: int) -> np.ndarray:
    geometry = np.asarray(cuboids, dtype=float)
    if geometry.size == 0 and n == 0:
        return geometry.reshape(0, 9)
    if geometry.shape != (n, 9):
        raise ValueError(
            f"cuboids must have shape ({n}, 9) as location + dimensions + rotation; "
            f"got {geometry.shape}"
        )
    bad = ~np.isfinite(geometry).all(axis=1)
    if bad.any():
        raise ValueError(f"cuboids: {int(bad.sum())} of {n} have NaN/inf values")
    if (geometry[:, 3:6] <= 0).any():
        raise ValueError("cuboids: every dimension must be > 0")
    return geometry


def _visibility(corners, c_img, drawable, k_mat, t_mat, size):
    """Unoccluded share and pixel count of each cuboid's silhouette.

    Faces are painted far to near by the depth of their centres, as a renderer's painter's
    algorithm does, so the pixels each cuboid keeps are the ones it would show.
    """
    n = len(corners)
    fraction, visible_px = np.zeros(n), np.zeros(n, np.int64)
    for image in np.unique(c_img[drawable]):
        rows = np.flatnonzero(drawable & (c_img == image))
        width, height = (int(np.ceil(v)) for v in size[image])
        uv, _ = project_points(corners[rows], k_mat[image], t_mat[image])  # (r, 8, 2)
        faces = uv[:, _FACES].reshape(-1, 4, 2)  # (r * 6, 4, 2)
        face_depth = camera_points(corners[rows][:, _FACES].mean(axis=2), t_mat[image])
        order = np.argsort(-np.linalg.norm(face_depth, axis=-1).ravel(), kind="stable")
        owner = np.full((height, width), -1, np.int64)
        area = np.zeros((height, width, len(rows)), bool)
        for f in order.tolist():
            quad = faces[f]
            x0, y0 = np.maximum(np.floor(quad.min(axis=0)).astype(int), 0)
            x1, y1 = np.minimum(np.ceil(quad.max(axis=0)).astype(int), [width, height])
            if x1 <= x0 or y1 <= y0:
                continue
            inside = _inside_quad(quad, x0, y0, x1, y1)
            owner[y0:y1, x0:x1][inside] = f // 6
            area[y0:y1, x0:x1, f // 6] |= inside
        silhouette = area.sum(axis=(0, 1))
        seen = np.bincount(owner[owner >= 0], minlength=len(rows))
        visible_px[rows] = seen
        fraction[rows] = np.divide(seen, silhouette, out=np.zeros(len(rows)), where=silhouette > 0)
    return fraction, visible_px


def _inside_quad(quad: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Pixel centres of the window [x0, x1) x [y0, y1) inside the convex quad (4, 2)."""
    xs, ys = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    edge = np.roll(quad, -1, axis=0) - quad  # (4, 2)
    cross = edge[:, 0] * (ys[..., None] - quad[:, 1]) - edge[:, 1] * (xs[..., None] - quad[:, 0])
    return (cross >= 0).all(-1) | (cross <= 0).all(-1)


def _best_ious(projected, on_image, c_img, rel, b_img):
    """Each cuboid's and each box's best IoU with the other side of its image."""
    best_c, best_b = np.zeros(len(projected)), np.zeros(len(rel))
    for image in np.intersect1d(c_img[on_image], b_img):
        ci = np.flatnonzero(on_image & (c_img == image))
        bi = np.flatnonzero(b_img == image)
        iou = box_iou_2d(projected[ci], rel[bi])
        best_c[ci] = iou.max(axis=1)
        best_b[bi] = iou.max(axis=0)
    return best_c, best_b


def _violations(
    params, c_label, b_label, c_img, b_img, px, fraction, expected,
    cuboid_match, box_match, pair_iou, best_c, best_b,
):
    rule, c_row, b_row, image, detail = [], [], [], [], []

    def add(name, c, b, img, text):
        rule.append(name)
        c_row.append(c)
        b_row.append(b)
        image.append(img)
        detail.append(text)

    for c in np.flatnonzero(expected & (cuboid_match < 0)).tolist():
        x0, y0, x1, y1 = (round(float(v), 1) for v in px[c])
        add(
            "link_missing_box", c, -1, int(c_img[c]),
            f"cuboid '{c_label[c]}' projects to pixels [{x0}, {y0}, {x1}, {y1}], "
            f"{fraction[c]:.0%} unoccluded, but no 2D box covers it (best IoU {best_c[c]:.2f})",
        )
    for b in range(len(b_label)):
        c = int(box_match[b])
        if c < 0:
            add(
                "link_missing_cuboid", -1, b, int(b_img[b]),
                f"2D box '{b_label[b]}' matches no cuboid's projection "
                f"(best IoU {best_b[b]:.2f} < {params.match_iou})",
            )
            continue
        if c_label[c] != b_label[b]:
            add(
                "link_class_mismatch", c, b, int(b_img[b]),
                f"2D box '{b_label[b]}' is linked to cuboid '{c_label[c]}' (IoU {pair_iou[b]:.2f})",
            )
        if pair_iou[b] < params.iou_threshold:
            add(
                "link_misaligned", c, b, int(b_img[b]),
                f"2D box '{b_label[b]}' overlaps its cuboid's projection with IoU "
                f"{pair_iou[b]:.2f} < {params.iou_threshold}",
            )
    order = np.lexsort((np.array(b_row, np.int64), np.array(c_row, np.int64), np.array(image, np.int64))) if rule else np.zeros(0, np.int64)
    return (
        np.array(rule, dtype=object)[order],
        np.array(c_row, np.int64)[order],
        np.array(b_row, np.int64)[order],
        np.array(image, np.int64)[order],
        np.array(detail, dtype=object)[order],
    )
