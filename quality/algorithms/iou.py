"""Intersection over union for 2D boxes and upright 3D cuboids, vectorised.

Conventions are FiftyOne's:

- 2D boxes are relative ``[x, y, w, h]``: top-left corner plus size, in image fractions.
- 3D cuboids are ``location`` ``[x, y, z]`` (the centre), ``dimensions`` ``[dx, dy, dz]``
  (full sizes along the box's own axes, all > 0) and a yaw in radians. Point clouds are
  z-up, so a cuboid is *upright* when it only rotates about z: yaw is ``rotation[2]``.
  FiftyOne builds the rotation with ``Rotation.from_rotvec``, so a positive yaw turns the
  box counter-clockwise seen from above, as here. Roll and pitch are ignored: for upright
  boxes this equals FiftyOne's general ``compute_cuboid_iou``, at array speed.

Upright-cuboid IoU is the bird's-eye-view (BEV) rotated-rectangle intersection area times
the vertical overlap, over the union of the two volumes. The BEV intersection of two convex
polygons is the convex polygon spanned by (a) the corners of each rectangle that lie inside
the other and (b) the crossings of their edges; its area is the shoelace formula over those
points sorted by angle around their centroid. Each pair has at most 4 + 4 + 16 candidate
points, so a whole batch of pairs is one fixed-shape array computation.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "as_boxes_2d",
    "as_cuboids",
    "box_iou_2d",
    "box_iou_2d_paired",
    "cuboid_iou_3d",
    "cuboid_iou_3d_paired",
]

# Pairs handled per vectorised step of the cuboid kernel: each pair needs ~24 candidate
# points and their temporaries (~2 KiB), so this bounds peak memory near 150 MiB.
_CUBOID_CHUNK = 1 << 16


def as_boxes_2d(boxes, name: str = "boxes") -> np.ndarray:
    """Validate 2D boxes and return them as a float64 ``(n, 4)`` array.

    Parameters
    ----------
    boxes : array-like of shape (n, 4)
        Relative ``[x, y, w, h]`` boxes.
    name : str
        Used in error messages.

    Raises
    ------
    ValueError
        If the shape is wrong, a value is not finite, or a width/height is negative.
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (n, 4) as [x, y, w, h]; got {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise ValueError(f"{name}: {int(bad.sum())} of {len(arr)} boxes have NaN/inf values")
    neg = (arr[:, 2] < 0) | (arr[:, 3] < 0)
    if neg.any():
        raise ValueError(f"{name}: {int(neg.sum())} of {len(arr)} boxes have negative size")
    return arr


def as_cuboids(location, dimensions, yaw, name: str = "cuboids"):
    """Validate upright cuboids; return float64 ``(n, 3)``, ``(n, 3)``, ``(n,)`` arrays.

    Raises
    ------
    ValueError
        On mismatched shapes, non-finite values, or a dimension that is not > 0.
    """
    loc = np.asarray(location, dtype=np.float64)
    dim = np.asarray(dimensions, dtype=np.float64)
    yaw = np.asarray(yaw, dtype=np.float64)
    if loc.size == 0 and dim.size == 0 and yaw.size == 0:
        return loc.reshape(0, 3), dim.reshape(0, 3), yaw.reshape(0)
    if loc.ndim != 2 or loc.shape[1] != 3:
        raise ValueError(f"{name}: location must have shape (n, 3); got {loc.shape}")
    n = len(loc)
    if dim.shape != (n, 3) or yaw.shape != (n,):
        raise ValueError(
            f"{name}: expected dimensions (n, 3) and yaw (n,) with n={n}; "
            f"got {dim.shape} and {yaw.shape}"
        )
    bad = ~(np.isfinite(loc).all(axis=1) & np.isfinite(dim).all(axis=1) & np.isfinite(yaw))
    if bad.any():
        raise ValueError(f"{name}: {int(bad.sum())} of {n} cuboids have NaN/inf values")
    nonpos = (dim <= 0).any(axis=1)
    if nonpos.any():
        raise ValueError(f"{name}: {int(nonpos.sum())} of {n} cuboids have a dimension <= 0")
    return loc, dim, yaw


def _iou_2d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of broadcast-compatible ``[..., 4]`` box arrays (already validated)."""
    w = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(w, 0.0, None) * np.clip(h, 0.0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    # Zero-area boxes have union 0 and IoU 0, as FiftyOne's safe_divide gives.
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.minimum(iou, 1.0)


def _box_iou_2d_indexed(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """IoU of ``a[ia[k]]`` with ``b[ib[k]]`` (validated boxes), shape ``(k,)``.

    Pairs whose x-ranges do not overlap are 0 before the full boxes are gathered: most
    same-image pairs are far apart, and gathering dominates the cost.
    """
    w = np.minimum(a[ia, 0] + a[ia, 2], b[ib, 0] + b[ib, 2]) - np.maximum(a[ia, 0], b[ib, 0])
    keep = np.flatnonzero(w > 0)
    out = np.zeros(len(ia))
    out[keep] = _iou_2d(a[ia[keep]], b[ib[keep]])
    return out


def box_iou_2d(a, b) -> np.ndarray:
    """Pairwise IoU between two sets of relative ``[x, y, w, h]`` boxes.

    Parameters
    ----------
    a : array-like of shape (n, 4)
    b : array-like of shape (m, 4)

    Returns
    -------
    ndarray of shape (n, m)
        ``iou[i, j]`` is the IoU of ``a[i]`` and ``b[j]``. Memory is O(n*m): call it per
        image (or see :mod:`.matching`, which only forms within-image pairs).
    """
    a = as_boxes_2d(a, "a")
    b = as_boxes_2d(b, "b")
    return _iou_2d(a[:, None, :], b[None, :, :])


def box_iou_2d_paired(a, b) -> np.ndarray:
    """IoU of ``a[k]`` with ``b[k]`` for every row ``k``; both of shape ``(k, 4)``."""
    a = as_boxes_2d(a, "a")
    b = as_boxes_2d(b, "b")
    if len(a) != len(b):
        raise ValueError(f"paired boxes need equal lengths; got {len(a)} and {len(b)}")
    return _iou_2d(a, b)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _bev_corners(loc, dim, yaw) -> np.ndarray:
    """Counter-clockwise BEV corners, shape ``(k, 4, 2)``."""
    sx = np.array([1.0, -1.0, -1.0, 1.0])
    sy = np.array([1.0, 1.0, -1.0, -1.0])
    lx = 0.5 * dim[:, 0:1] * sx
    ly = 0.5 * dim[:, 1:2] * sy
    c = np.cos(yaw)[:, None]
    s = np.sin(yaw)[:, None]
    x = loc[:, 0:1] + c * lx - s * ly
    y = loc[:, 1:2] + s * lx + c * ly
    return np.stack([x, y], axis=-1)


def _inside(points, loc, dim, yaw, tol) -> np.ndarray:
    """Whether each of ``points (k, p, 2)`` lies in rectangle k (closed, with tolerance)."""
    d = points - loc[:, None, :2]
    c = np.cos(yaw)[:, None]
    s = np.sin(yaw)[:, None]
    u = d[..., 0] * c + d[..., 1] * s
    v = -d[..., 0] * s + d[..., 1] * c
    t = tol[:, None]
    return (np.abs(u) <= 0.5 * dim[:, 0:1] + t) & (np.abs(v) <= 0.5 * dim[:, 1:2] + t)


def _bev_intersection_area(loc_a, dim_a, yaw_a, loc_b, dim_b, yaw_b) -> np.ndarray:
    """Area of the BEV intersection of rectangle a[k] with b[k], shape ``(k,)``."""
    k = len(loc_a)
    ca = _bev_corners(loc_a, dim_a, yaw_a)
    cb = _bev_corners(loc_b, dim_b, yaw_b)
    scale = np.maximum(dim_a[:, :2].max(axis=1), dim_b[:, :2].max(axis=1))
    tol = 1e-9 * scale

    # Edge crossings: edge i of a (p + t r) against edge j of b (q + u s), all 16 pairs.
    p = ca[:, :, None, :]
    r = (np.roll(ca, -1, axis=1) - ca)[:, :, None, :]
    q = cb[:, None, :, :]
    s = (np.roll(cb, -1, axis=1) - cb)[:, None, :, :]
    denom = _cross(r, s)
    qp = q - p
    parallel = np.abs(denom) <= 1e-12 * scale[:, None, None] ** 2
    safe = np.where(parallel, 1.0, denom)
    t = _cross(qp, s) / safe
    u = _cross(qp, r) / safe
    eps = 1e-9
    hit = ~parallel & (t >= -eps) & (t <= 1 + eps) & (u >= -eps) & (u <= 1 + eps)
    crossings = (p + t[..., None] * r).reshape(k, 16, 2)

    points = np.concatenate([ca, cb, crossings], axis=1)
    valid = np.concatenate(
        [
            _inside(ca, loc_b, dim_b, yaw_b, tol),
            _inside(cb, loc_a, dim_a, yaw_a, tol),
            hit.reshape(k, 16),
        ],
        axis=1,
    )
    count = valid.sum(axis=1)
    centroid = (points * valid[..., None]).sum(axis=1) / np.maximum(count, 1)[:, None]
    rel = points - centroid[:, None, :]
    angle = np.where(valid, np.arctan2(rel[..., 1], rel[..., 0]), np.inf)
    order = np.argsort(angle, axis=1)
    rel = np.take_along_axis(rel, order[..., None], axis=1)
    valid = np.take_along_axis(valid, order, axis=1)
    # Padding slots repeat the first point, so they add nothing to the shoelace sum and the
    # slot after the last real point closes the polygon.
    rel = np.where(valid[..., None], rel, rel[:, :1, :])
    area = 0.5 * np.abs(_cross(rel, np.roll(rel, -1, axis=1)).sum(axis=1))
    return np.where(count >= 3, area, 0.0)


def _cuboid_iou_indexed(a, b, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Upright-cuboid IoU of ``a[ia[k]]`` with ``b[ib[k]]`` (validated inputs), shape ``(k,)``.

    ``a`` and ``b`` are ``(location, dimensions, yaw)`` tuples. Pairs whose height ranges
    or BEV circumscribed circles do not overlap are 0 without entering the polygon kernel.
    """
    (la, da, ya), (lb, db, yb) = a, b
    iou = np.zeros(len(ia))
    for start in range(0, len(ia), _CUBOID_CHUNK):
        i = ia[start : start + _CUBOID_CHUNK]
        j = ib[start : start + _CUBOID_CHUNK]
        dz = np.minimum(la[i, 2] + da[i, 2] / 2, lb[j, 2] + db[j, 2] / 2) - np.maximum(
            la[i, 2] - da[i, 2] / 2, lb[j, 2] - db[j, 2] / 2
        )
        reach = 0.5 * (np.hypot(da[i, 0], da[i, 1]) + np.hypot(db[j, 0], db[j, 1]))
        dist = np.hypot(la[i, 0] - lb[j, 0], la[i, 1] - lb[j, 1])
        keep = np.flatnonzero((dz > 0) & (dist < reach))
        i, j = i[keep], j[keep]
        area = _bev_intersection_area(la[i], da[i], ya[i], lb[j], db[j], yb[j])
        inter = area * dz[keep]
        union = da[i].prod(axis=1) + db[j].prod(axis=1) - inter
        iou[start + keep] = np.clip(inter / union, 0.0, 1.0)
    return iou


def cuboid_iou_3d_paired(a_loc, a_dim, a_yaw, b_loc, b_dim, b_yaw) -> np.ndarray:
    """IoU of upright cuboid ``a[k]`` with ``b[k]`` for every row ``k``.

    Parameters
    ----------
    a_loc, b_loc : array-like of shape (k, 3)
        Centres.
    a_dim, b_dim : array-like of shape (k, 3)
        Full sizes, all > 0.
    a_yaw, b_yaw : array-like of shape (k,)
        Rotation about the vertical (z) axis, radians (FiftyOne's ``rotation[2]``).

    Returns
    -------
    ndarray of shape (k,)
    """
    a = as_cuboids(a_loc, a_dim, a_yaw, "a")
    b = as_cuboids(b_loc, b_dim, b_yaw, "b")
    k = len(a[0])
    if len(b[0]) != k:
        raise ValueError(f"paired cuboids need equal lengths; got {k} and {len(b[0])}")
    idx = np.arange(k)
    return _cuboid_iou_indexed(a, b, idx, idx)


def cuboid_iou_3d(a_loc, a_dim, a_yaw, b_loc, b_dim, b_yaw) -> np.ndarray:
    """Pairwise IoU between two sets of upright cuboids.

    Parameters
    ----------
    a_loc, a_dim : array-like of shape (n, 3)
    a_yaw : array-like of shape (n,)
    b_loc, b_dim : array-like of shape (m, 3)
    b_yaw : array-like of shape (m,)
        See :func:`cuboid_iou_3d_paired` for the conventions.

    Returns
    -------
    ndarray of shape (n, m)
        Memory is O(n*m): call it per sample (or see :mod:`.matching`, which only forms
        within-sample pairs).
    """
    a = as_cuboids(a_loc, a_dim, a_yaw, "a")
    b = as_cuboids(b_loc, b_dim, b_yaw, "b")
    n, m = len(a[0]), len(b[0])
    out = np.zeros((n, m))
    # Pre-filter on the full grid with cheap broadcasts so only plausible pairs are gathered.
    (la, da, _), (lb, db, _) = a, b
    near = np.hypot(la[:, None, 0] - lb[None, :, 0], la[:, None, 1] - lb[None, :, 1]) < 0.5 * (
        np.hypot(da[:, 0], da[:, 1])[:, None] + np.hypot(db[:, 0], db[:, 1])[None, :]
    )
    ii, jj = np.nonzero(near)
    out[ii, jj] = _cuboid_iou_indexed(a, b, ii, jj)
    return out
