"""Object crops ("patches") with a little context, ready for any image model.

Boxes come in FiftyOne's convention: ``[x, y, width, height]`` relative to the image, top-left
origin. Each crop is (optionally) squared around the box centre, widened by a context margin
on every side, clipped to the image and resized to ``size`` x ``size``. Squaring first keeps
the object's aspect ratio through the resize (a pedestrian stays tall and thin), and the
margin gives a model the edges and surroundings it needs to see the object at all.
"""

from __future__ import annotations

import numpy as np


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to ``size = (width, height)`` (bilinear, antialiased)."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def check_boxes(boxes) -> np.ndarray:
    """Relative ``[x, y, w, h]`` boxes as a (K, 4) float array, after checking them.

    Raises
    ------
    ValueError
        If the shape is not (K, 4), or some box is not finite, has a negative width or
        height, or does not overlap the image; the message counts the bad boxes and shows one.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:  # an empty list of boxes
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (K, 4) as [x, y, w, h], got {boxes.shape}")
    with np.errstate(invalid="ignore"):  # NaN rows are reported below, not warned about
        bad = ~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
        bad |= (
            (boxes[:, 0] >= 1)
            | (boxes[:, 1] >= 1)
            | (boxes[:, 0] + boxes[:, 2] <= 0)
            | (boxes[:, 1] + boxes[:, 3] <= 0)
        )
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of {len(boxes)} boxes are not finite [x, y, w, h] with w, h >= 0 "
            f"that overlap the image, e.g. row {int(np.argmax(bad))}: {boxes[bad][0].tolist()}"
        )
    return boxes


def patch_pixel_boxes(
    boxes: np.ndarray,
    width: int,
    height: int,
    *,
    margin: float = 0.1,
    square: bool = True,
) -> np.ndarray:
    """Pixel crop windows ``[x0, y0, x1, y1]`` (end-exclusive) for relative boxes.

    Parameters
    ----------
    boxes : array-like of shape (K, 4)
        ``[x, y, w, h]`` relative to the image. Boxes may stick out of the image but must
        overlap it; zero-size boxes are allowed.
    width, height : int
        Image size in pixels.
    margin : float, default=0.1
        Context added on each side, as a fraction of the (squared) box side.
    square : bool, default=True
        Grow the shorter side of each box to the longer one, about the centre, first.

    Returns
    -------
    ndarray of shape (K, 4), int64
        Windows clipped to the image, each at least 1 x 1 pixel.
    """
    boxes = check_boxes(boxes)
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if not margin >= 0:
        raise ValueError(f"margin must be non-negative, got {margin}")

    x, y = boxes[:, 0] * width, boxes[:, 1] * height
    w, h = boxes[:, 2] * width, boxes[:, 3] * height
    cx, cy = x + w / 2, y + h / 2
    if square:
        w = h = np.maximum(w, h)
    half_w, half_h = w * (0.5 + margin), h * (0.5 + margin)
    x0 = np.clip(np.floor(cx - half_w), 0, width - 1)
    y0 = np.clip(np.floor(cy - half_h), 0, height - 1)
    x1 = np.clip(np.ceil(cx + half_w), x0 + 1, width)
    y1 = np.clip(np.ceil(cy + half_h), y0 + 1, height)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


def crop_patches(
    image: np.ndarray,
    boxes: np.ndarray,
    *,
    margin: float = 0.1,
    size: int = 96,
    square: bool = True,
) -> list[np.ndarray]:
    """Crop every box (with context) out of an (H, W, 3) uint8 image, resized to size x size.

    See :func:`patch_pixel_boxes` for ``boxes``, ``margin`` and ``square``.

    Returns
    -------
    list of ndarray of shape (size, size, 3), uint8
        One crop per box, in box order.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be (H, W, 3) uint8, got shape {image.shape} and dtype {image.dtype}"
        )
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    windows = patch_pixel_boxes(boxes, image.shape[1], image.shape[0], margin=margin, square=square)
    return [
        resize_rgb(np.ascontiguousarray(image[y0:y1, x0:x1]), (size, size))
        for x0, y0, x1, y1 in windows
    ]
