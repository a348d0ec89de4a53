"""IoU of 2D boxes and upright 3D cuboids against closed forms and a reference clipper."""

import math

import numpy as np
import pytest

from annoloop.quality.algorithms import iou


def _rect(cx, cy, dx, dy, yaw):
    c, s = math.cos(yaw), math.sin(yaw)
    pts = [(dx / 2, dy / 2), (-dx / 2, dy / 2), (-dx / 2, -dy / 2), (dx / 2, -dy / 2)]
    return [(cx + c * x - s * y, cy + s * x + c * y) for x, y in pts]


def _clip_area(subject, clip):
    """Reference: Sutherland-Hodgman clipping of two CCW convex polygons, then shoelace."""
    out = subject
    for i in range(len(clip)):
        a, b = clip[i], clip[(i + 1) % len(clip)]

        def inside(p):
            return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]) >= 0

        def cross_point(p, q):
            x1, y1, x2, y2 = p[0], p[1], q[0], q[1]
            x3, y3, x4, y4 = a[0], a[1], b[0], b[1]
            d = (x1 - x2) * (y3 - y4) - (y1 - y2) * (x3 - x4)
            t = ((x1 - x3) * (y3 - y4) - (y1 - y3) * (x3 - x4)) / d
            return (x1 + t * (x2 - x1), y1 + t * (y2 - y1))

        src, out = out, []
        for j in range(len(src)):
            p, q = src[j - 1], src[j]
            if inside(q):
                if not inside(p):
                    out.append(cross_point(p, q))
                out.append(q)
            elif inside(p):
                out.append(cross_point(p, q))
        if not out:
            return 0.0
    return 0.5 * abs(
        sum(out[k - 1][0] * out[k][1] - out[k][0] * out[k - 1][1] for k in range(len(out)))
    )


def _reference_cuboid_iou(la, da, ya, lb, db, yb):
    area = _clip_area(_rect(la[0], la[1], da[0], da[1], ya), _rect(lb[0], lb[1], db[0], db[1], yb))
    dz = max(
        0.0, min(la[2] + da[2] / 2, lb[2] + db[2] / 2) - max(la[2] - da[2] / 2, lb[2] - db[2] / 2)
    )
    inter = area * dz
    return inter / (np.prod(da) + np.prod(db) - inter)


def test_box_iou_2d_matches_closed_forms():
    a = [[0.0, 0.0, 0.5, 0.5]]
    b = [
        [0.0, 0.0, 0.5, 0.5],  # identical
        [0.25, 0.0, 0.5, 0.5],  # half overlap: 1/8 / (1/4 + 1/4 - 1/8)
        [0.5, 0.0, 0.5, 0.5],  # touching edge
        [0.6, 0.6, 0.1, 0.1],  # disjoint
        [0.1, 0.1, 0.2, 0.2],  # contained: 0.04 / 0.25
    ]
    np.testing.assert_allclose(iou.box_iou_2d(a, b), [[1.0, 1 / 3, 0.0, 0.0, 0.16]])


def test_box_iou_2d_is_symmetric_and_shaped_n_by_m():
    rng = np.random.default_rng(0)
    a = np.hstack([rng.uniform(0, 0.7, (7, 2)), rng.uniform(0.01, 0.3, (7, 2))])
    b = np.hstack([rng.uniform(0, 0.7, (5, 2)), rng.uniform(0.01, 0.3, (5, 2))])
    m = iou.box_iou_2d(a, b)
    assert m.shape == (7, 5)
    np.testing.assert_allclose(m, iou.box_iou_2d(b, a).T)
    np.testing.assert_allclose(iou.box_iou_2d_paired(a[:5], b), np.diag(m[:5]))


def test_box_iou_2d_gives_zero_for_zero_area_boxes():
    assert iou.box_iou_2d([[0.2, 0.2, 0.0, 0.0]], [[0.2, 0.2, 0.0, 0.0]])[0, 0] == 0.0


@pytest.mark.parametrize(
    "boxes, message",
    [
        ([[0, 0, 1]], "shape"),
        ([[0, 0, np.nan, 1]], "NaN"),
        ([[0, 0, -0.1, 1]], "negative size"),
    ],
)
def test_box_iou_2d_rejects_malformed_boxes(boxes, message):
    with pytest.raises(ValueError, match=message):
        iou.box_iou_2d(boxes, [[0, 0, 1, 1]])


def test_cuboid_iou_axis_aligned_matches_product_of_interval_overlaps():
    rng = np.random.default_rng(1)
    la, da = rng.uniform(0, 3, (40, 3)), rng.uniform(0.5, 3, (40, 3))
    lb, db = rng.uniform(0, 3, (30, 3)), rng.uniform(0.5, 3, (30, 3))
    lo = np.maximum(la[:, None] - da[:, None] / 2, lb[None] - db[None] / 2)
    hi = np.minimum(la[:, None] + da[:, None] / 2, lb[None] + db[None] / 2)
    inter = np.clip(hi - lo, 0, None).prod(axis=2)
    expected = inter / (da.prod(1)[:, None] + db.prod(1)[None] - inter)
    got = iou.cuboid_iou_3d(la, da, np.zeros(40), lb, db, np.zeros(30))
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_cuboid_iou_quarter_turn_equals_swapped_dimensions():
    a = iou.cuboid_iou_3d([[0, 0, 0]], [[4, 2, 1]], [np.pi / 2], [[0.5, 0.3, 0]], [[2, 3, 1]], [0])
    b = iou.cuboid_iou_3d([[0, 0, 0]], [[2, 4, 1]], [0], [[0.5, 0.3, 0]], [[2, 3, 1]], [0])
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_cuboid_iou_of_unit_cube_and_its_45_degree_turn_is_the_octagon_ratio():
    octagon = 2 * (math.sqrt(2) - 1)  # area of the square ∩ its 45° rotation
    got = iou.cuboid_iou_3d([[0, 0, 0]], [[1, 1, 1]], [0], [[0, 0, 0]], [[1, 1, 1]], [np.pi / 4])
    np.testing.assert_allclose(got, [[octagon / (2 - octagon)]])


def test_cuboid_iou_of_rotated_box_shifted_half_along_its_own_axis_is_one_third():
    yaw = 0.7
    shift = [0.5 * 2 * math.cos(yaw), 0.5 * 2 * math.sin(yaw), 0.0]  # half the 2 m length
    got = iou.cuboid_iou_3d(
        [[1, 1, 1]], [[2, 1, 1]], [yaw], [np.add([1, 1, 1], shift)], [[2, 1, 1]], [yaw]
    )
    np.testing.assert_allclose(got, [[1 / 3]])


def test_cuboid_iou_counts_only_the_vertical_overlap():
    got = iou.cuboid_iou_3d([[0, 0, 0]], [[1, 1, 2]], [0.3], [[0, 0, 1]], [[1, 1, 2]], [0.3])
    np.testing.assert_allclose(got, [[1 / 3]])
    assert (
        iou.cuboid_iou_3d([[0, 0, 0]], [[1, 1, 1]], [0], [[0, 0, 1.5]], [[1, 1, 1]], [0])[0, 0] == 0
    )


def test_cuboid_iou_matches_reference_polygon_clipping_on_random_rotations():
    rng = np.random.default_rng(2)
    n = 300
    la, da, ya = (
        rng.uniform(0, 2, (n, 3)),
        rng.uniform(0.3, 2.5, (n, 3)),
        rng.uniform(-np.pi, np.pi, n),
    )
    lb, db, yb = (
        rng.uniform(0, 2, (n, 3)),
        rng.uniform(0.3, 2.5, (n, 3)),
        rng.uniform(-np.pi, np.pi, n),
    )
    got = iou.cuboid_iou_3d_paired(la, da, ya, lb, db, yb)
    expected = [_reference_cuboid_iou(*args) for args in zip(la, da, ya, lb, db, yb)]
    assert (got > 0).sum() > 100  # the sample exercises real overlaps
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_cuboid_iou_is_invariant_to_turning_the_whole_scene():
    rng = np.random.default_rng(3)
    la, da, ya = rng.uniform(0, 2, (50, 3)), rng.uniform(0.5, 2, (50, 3)), rng.uniform(-3, 3, 50)
    lb, db, yb = rng.uniform(0, 2, (50, 3)), rng.uniform(0.5, 2, (50, 3)), rng.uniform(-3, 3, 50)
    turn = 1.1
    rot = np.array(
        [[math.cos(turn), -math.sin(turn), 0], [math.sin(turn), math.cos(turn), 0], [0, 0, 1]]
    )
    before = iou.cuboid_iou_3d_paired(la, da, ya, lb, db, yb)
    after = iou.cuboid_iou_3d_paired(la @ rot.T, da, ya + turn, lb @ rot.T, db, yb + turn)
    np.testing.assert_allclose(before, after, atol=1e-9)


def test_cuboid_iou_pairwise_diagonal_equals_paired():
    rng = np.random.default_rng(4)
    l, d, y = rng.uniform(0, 2, (20, 3)), rng.uniform(0.5, 2, (20, 3)), rng.uniform(-3, 3, 20)
    l2 = l + rng.normal(0, 0.2, l.shape)
    full = iou.cuboid_iou_3d(l, d, y, l2, d, y)
    np.testing.assert_allclose(np.diag(full), iou.cuboid_iou_3d_paired(l, d, y, l2, d, y))
    np.testing.assert_allclose(np.diag(iou.cuboid_iou_3d(l, d, y, l, d, y)), 1.0)


def test_cuboid_iou_rejects_non_positive_dimensions():
    with pytest.raises(ValueError, match="dimension <= 0"):
        iou.cuboid_iou_3d([[0, 0, 0]], [[1, 0, 1]], [0], [[0, 0, 0]], [[1, 1, 1]], [0])


def test_cuboid_iou_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="yaw"):
        iou.cuboid_iou_3d([[0, 0, 0]], [[1, 1, 1]], [0, 1], [[0, 0, 0]], [[1, 1, 1]], [0])
