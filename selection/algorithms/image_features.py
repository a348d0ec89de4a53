"""``baseline-colour-gradient``: an image descriptor that needs no model weights (numpy only).

This is the offline default for curation when no learned model (CLIP, DINOv2, a YOLO
backbone) is on disk. It is hand-made, not learned: it sees colour, layout and edges, not
semantics, so it separates day from night, empty roads from busy ones and near-duplicates
from the rest, but not "a cyclist" from "a pedestrian" of the same colours.

The descriptor concatenates five blocks, each of norm about 1 so that none dominates by its
size, then L2-normalises the whole:

1. **RGB histogram**: joint 4 x 4 x 4 colour bins over the image.
2. **HSV histograms**: hue (12 bins, weighted by saturation because grey pixels have no
   meaningful hue), saturation (8) and value (8).
3. **Colour layout**: mean RGB of each cell of a coarse spatial grid (default 4 x 4).
4. **Gradient orientations** (HOG-like): unsigned orientation histograms (default 9 bins,
   soft-assigned to the two nearest bins) weighted by gradient magnitude, per grid cell,
   normalised jointly over the grid so relative edge energy between cells is kept.
5. **Statistics**: per-channel mean and standard deviation, colourfulness, mean gradient
   magnitude, edge density and the log aspect ratio.

Histograms enter as the square root of their bin fractions (the Hellinger map), which has
unit norm and makes Euclidean distance behave like the Hellinger distance between
histograms. Large images are first reduced by block averaging to at most ``max_side``
pixels on their longer side, so cost is bounded and the descriptor barely depends on
resolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: The name under which this descriptor is recorded: never mistaken for a learned model.
BASELINE_MODEL_NAME = "baseline-colour-gradient"

_RGB_BINS = 4
_HUE_BINS, _SAT_BINS, _VAL_BINS = 12, 8, 8
_NUM_STATS = 10
# Gradient magnitude (intensities in [0, 1], central differences) above which a pixel
# counts as an edge for the edge-density statistic.
_EDGE_THRESHOLD = 0.1


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Scale vectors to unit L2 norm along ``axis``; all-zero vectors stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def baseline_dim(grid: tuple[int, int] = (4, 4), orientation_bins: int = 9) -> int:
    """Length of the baseline descriptor for a grid and an orientation bin count."""
    rows, cols = _validate_grid(grid)
    cells = rows * cols
    return (
        _RGB_BINS**3
        + _HUE_BINS
        + _SAT_BINS
        + _VAL_BINS
        + 3 * cells
        + orientation_bins * cells
        + _NUM_STATS
    )


def baseline_descriptors(
    images: Sequence[np.ndarray],
    *,
    grid: tuple[int, int] = (4, 4),
    orientation_bins: int = 9,
    max_side: int = 256,
) -> np.ndarray:
    """Compute the ``baseline-colour-gradient`` descriptor of each image.

    Parameters
    ----------
    images : sequence of ndarray
        Each of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) (alpha is ignored), either
        ``uint8`` or floating point in [0, 1]. Sizes may differ between images.
    grid : (rows, cols), default=(4, 4)
        Spatial grid for the colour layout and gradient blocks. Each image must be at least
        ``rows`` x ``cols`` pixels.
    orientation_bins : int, default=9
        Unsigned gradient-orientation bins over [0, pi).
    max_side : int, default=256
        Images whose longer side exceeds this are block-averaged down by an integer factor
        first.

    Returns
    -------
    ndarray of shape (len(images), baseline_dim(grid, orientation_bins)), float32
        Rows of unit L2 norm; the same image always gives the same row.
    """
    rows, cols = _validate_grid(grid)
    if orientation_bins < 2:
        raise ValueError(f"orientation_bins must be at least 2, got {orientation_bins}")
    if max_side < max(rows, cols):
        raise ValueError(f"max_side must be at least the grid size {grid}, got {max_side}")
    dim = baseline_dim(grid, orientation_bins)
    out = np.empty((len(images), dim), dtype=np.float32)
    for i, image in enumerate(images):
        rgb = _downscale(_as_float_rgb(image, i, (rows, cols)), max_side, (rows, cols))
        out[i] = _describe(rgb, rows, cols, orientation_bins)
    return out


def _validate_grid(grid: tuple[int, int]) -> tuple[int, int]:
    if len(grid) != 2 or min(grid) < 1:
        raise ValueError(f"grid must be two positive integers (rows, cols), got {grid}")
    return int(grid[0]), int(grid[1])


def _as_float_rgb(image: np.ndarray, index: int, grid: tuple[int, int]) -> np.ndarray:
    """The image as float32 RGB in [0, 1], after checking its shape, dtype and values."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"image {index} must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
            f"got {a.shape}"
        )
    min_rows, min_cols = max(grid[0], 2), max(grid[1], 2)  # gradients need two pixels
    if a.shape[0] < min_rows or a.shape[1] < min_cols:
        raise ValueError(
            f"image {index} is {a.shape[0]}x{a.shape[1]} pixels; a {grid[0]}x{grid[1]} grid "
            f"needs at least {min_rows}x{min_cols}"
        )
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    a = a[..., :3]
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(
            f"image {index} must be uint8 or floating point in [0, 1], got dtype {a.dtype}"
        )
    a = a.astype(np.float32)
    if not np.isfinite(a).all() or a.min() < 0.0 or a.max() > 1.0:
        raise ValueError(
            f"image {index} is floating point but not finite values in [0, 1] "
            f"(min {a.min()}, max {a.max()})"
        )
    return a


def _downscale(rgb: np.ndarray, max_side: int, grid: tuple[int, int]) -> np.ndarray:
    """Block-average by the smallest integer factor that brings the longer side to max_side.

    The factor is capped so that a very thin image still covers the grid (and two pixels).
    """
    h, w, _ = rgb.shape
    f = min(math.ceil(max(h, w) / max_side), h // max(grid[0], 2), w // max(grid[1], 2))
    if f <= 1:
        return rgb
    h2, w2 = h // f, w // f
    return rgb[: h2 * f, : w2 * f].reshape(h2, f, w2, f, 3).mean(axis=(1, 3))


def _hellinger(counts: np.ndarray) -> np.ndarray:
    """Square root of bin fractions: unit norm, or all zeros for an empty histogram."""
    total = counts.sum()
    return np.sqrt(counts / total) if total > 0 else np.zeros_like(counts, dtype=np.float64)


def _cell_sums(values: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Sum ``values`` (H, W, ...) over each cell of a rows x cols grid -> (rows, cols, ...)."""
    h, w = values.shape[:2]
    rb = np.linspace(0, h, rows + 1).astype(int)[:-1]
    cb = np.linspace(0, w, cols + 1).astype(int)[:-1]
    return np.add.reduceat(np.add.reduceat(values, rb, axis=0), cb, axis=1)


def _cell_index(h: int, w: int, rows: int, cols: int) -> np.ndarray:
    """Grid-cell number of every pixel, matching :func:`_cell_sums`' cell boundaries."""
    r = np.repeat(np.arange(rows), np.diff(np.linspace(0, h, rows + 1).astype(int)))
    c = np.repeat(np.arange(cols), np.diff(np.linspace(0, w, cols + 1).astype(int)))
    return r[:, None] * cols + c[None, :]


def _describe(rgb: np.ndarray, rows: int, cols: int, orientation_bins: int) -> np.ndarray:
    h, w, _ = rgb.shape
    n = h * w
    # Contiguous channel planes: reductions over a length-3 axis are slow in numpy.
    r, g, b = (np.ascontiguousarray(rgb[..., c]).ravel() for c in range(3))

    # 1. Joint RGB histogram.
    qr, qg, qb = (np.minimum((c * _RGB_BINS).astype(np.int64), _RGB_BINS - 1) for c in (r, g, b))
    rgb_hist = np.bincount((qr * _RGB_BINS + qg) * _RGB_BINS + qb, minlength=_RGB_BINS**3)

    # 2. HSV histograms.
    cmax, cmin = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    delta = cmax - cmin
    sat = np.where(cmax > 0, delta / np.where(cmax > 0, cmax, 1.0), 0.0)
    safe = np.where(delta > 0, delta, 1.0)
    hue = (
        np.where(
            cmax == r,
            ((g - b) / safe) % 6.0,
            np.where(cmax == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
        )
        / 6.0
    )
    hue_bin = np.minimum((hue * _HUE_BINS).astype(np.int64), _HUE_BINS - 1)
    hsv = np.concatenate(
        [
            _hellinger(np.bincount(hue_bin, weights=sat, minlength=_HUE_BINS)),
            _hellinger(
                np.bincount(
                    np.minimum((sat * _SAT_BINS).astype(np.int64), _SAT_BINS - 1),
                    minlength=_SAT_BINS,
                )
            ),
            _hellinger(
                np.bincount(
                    np.minimum((cmax * _VAL_BINS).astype(np.int64), _VAL_BINS - 1),
                    minlength=_VAL_BINS,
                )
            ),
        ]
    ) / math.sqrt(3.0)

    # 3. Colour layout: mean colour per cell, scaled so the block norm is at most sqrt(3).
    counts = _cell_sums(np.ones((h, w), dtype=np.float64), rows, cols)
    layout = (
        _cell_sums(rgb.astype(np.float64), rows, cols) / counts[..., None]
    ).ravel() / math.sqrt(rows * cols)

    # 4. Gradient-orientation histograms per cell, soft-binned over [0, pi).
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    gy, gx = np.gradient(gray)
    mag = np.hypot(gx, gy)
    pos = (np.arctan2(gy, gx) % np.pi) / (np.pi / orientation_bins) - 0.5
    lo = np.floor(pos)
    frac = pos - lo
    lo = lo.astype(np.int64) % orientation_bins
    hi = (lo + 1) % orientation_bins
    cell = _cell_index(h, w, rows, cols) * orientation_bins
    length = rows * cols * orientation_bins
    hog = np.bincount((cell + lo).ravel(), weights=(mag * (1.0 - frac)).ravel(), minlength=length)
    hog += np.bincount((cell + hi).ravel(), weights=(mag * frac).ravel(), minlength=length)

    # 5. Statistics, each roughly in [0, 1].
    colourfulness = math.hypot((r - g).std(), (0.5 * (r + g) - b).std()) + 0.3 * math.hypot(
        (r - g).mean(), (0.5 * (r + g) - b).mean()
    )
    stats = np.concatenate(
        [
            [r.mean(), g.mean(), b.mean()],
            [r.std() * 2.0, g.std() * 2.0, b.std() * 2.0],
            [
                colourfulness,
                mag.mean() * 4.0,
                np.count_nonzero(mag > _EDGE_THRESHOLD) / n,
                math.log(w / h) / 4.0,
            ],
        ]
    )

    descriptor = np.concatenate(
        [_hellinger(rgb_hist.astype(np.float64)), hsv, layout, _hellinger(hog), stats]
    )
    return l2_normalize(descriptor)
