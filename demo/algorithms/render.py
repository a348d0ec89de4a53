"""Camera images and their 2D labels for a scene (pure: numpy and Pillow).

The renderer is a painter's algorithm over the scene's boxes (object parts and clutter):
visible faces are flat-shaded, fogged by distance, sorted far to near and filled with
Pillow. An id image drawn alongside says which object owns each pixel, which gives each
object's visible fraction, hence the ``occluded`` flag, exactly. Boxes are the projected
3D cuboids clipped to the frame, with ``truncated`` set where the frame cut them.

Night is dark, bluish and low in contrast with glowing head/tail lights and street lamps;
fog fades everything towards grey with distance; rain darkens, blurs and adds streaks;
snow covers grass and sidewalks (the road is grey slush), greys the sky, hazes the distance,
adds falling flakes and flattens the contrast.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from . import scenes as sc
from ...core.algorithms.pinhole import NEAR_PLANE
from .camera import CAMERA_HEIGHT, PinholeCamera, project_cuboids

# Labelling thresholds, in the spirit of KITTI's "too small / fully occluded" rules.
MIN_VISIBLE_FRACTION = 0.10
MIN_VISIBLE_PIXELS = 12
MIN_BOX_WIDTH, MIN_BOX_HEIGHT = 3.0, 5.0
OCCLUDED_BELOW = 0.8  # visible fraction under which an object counts as occluded
TRUNCATED_BELOW = 0.98  # in-frame share of the projected box under which it is truncated

# Corner indices (see scenes.cuboid_corners) of the six faces, and their local normals.
_FACES = np.array(
    [[0, 2, 6, 4], [1, 3, 7, 5], [0, 1, 5, 4], [2, 3, 7, 6], [0, 1, 3, 2], [4, 5, 7, 6]]
)
_NORMALS = np.array(
    [[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]], dtype=float
)
_SUN = np.array([0.35, 0.45, 0.82]) / np.linalg.norm([0.35, 0.45, 0.82])
_CLUTTER_ID = 255
_LAMP_COLOUR = (255, 225, 170)


@dataclass
class CameraLabels:
    """The 2D labels of one camera image; one row per labelled object."""

    rows: np.ndarray  # (m,) int, the object's row in the scene
    boxes: np.ndarray  # (m, 4) relative [x, y, w, h] in [0, 1]
    occluded: np.ndarray  # (m,) bool
    truncated: np.ndarray  # (m,) bool
    visible_fraction: np.ndarray  # (m,) float


@dataclass(frozen=True)
class _Look:
    """Colours and lighting of a time of day."""

    sky_top: np.ndarray
    sky_horizon: np.ndarray
    grass: np.ndarray
    road: np.ndarray
    sidewalk: np.ndarray
    fog: np.ndarray
    albedo_scale: float
    ambient: float
    diffuse: float
    tint: np.ndarray
    noise_sigma: float


_DAY = _Look(
    sky_top=np.array([95.0, 150, 215]),
    sky_horizon=np.array([190.0, 210, 230]),
    grass=np.array([95.0, 120, 70]),
    road=np.array([88.0, 88, 92]),
    sidewalk=np.array([150.0, 148, 142]),
    fog=np.array([190.0, 192, 195]),
    albedo_scale=1.0,
    ambient=0.55,
    diffuse=0.5,
    tint=np.zeros(3),
    noise_sigma=2.5,
)
_NIGHT = _Look(
    sky_top=np.array([4.0, 6, 16]),
    sky_horizon=np.array([18.0, 20, 32]),
    grass=np.array([12.0, 14, 12]),
    road=np.array([20.0, 20, 24]),
    sidewalk=np.array([28.0, 28, 30]),
    fog=np.array([38.0, 38, 44]),
    albedo_scale=0.22,
    ambient=0.7,
    diffuse=0.25,
    tint=np.array([4.0, 6, 12]),
    noise_sigma=5.0,
)


#: Snow on the ground: a snow look replaces these colours of the time of day's look.
_SNOW_GROUND = {
    "day": dict(
        sky_top=np.array([170.0, 175, 185]),
        sky_horizon=np.array([205.0, 208, 214]),
        grass=np.array([228.0, 230, 236]),
        road=np.array([140.0, 140, 146]),
        sidewalk=np.array([215.0, 218, 225]),
        fog=np.array([215.0, 217, 222]),
    ),
    "night": dict(
        sky_top=np.array([20.0, 22, 30]),
        sky_horizon=np.array([45.0, 47, 56]),
        grass=np.array([62.0, 64, 74]),
        road=np.array([34.0, 34, 40]),
        sidewalk=np.array([56.0, 58, 68]),
        fog=np.array([52.0, 54, 62]),
    ),
}
#: Share of the image blended towards the haze colour in snow: lower contrast overall.
_SNOW_CONTRAST_LOSS = 0.3


@functools.lru_cache(maxsize=4)
def _look(time_of_day: str, weather: str) -> _Look:
    base = _NIGHT if time_of_day == "night" else _DAY
    return replace(base, **_SNOW_GROUND[time_of_day]) if weather == "snow" else base


def render_camera(
    scene: sc.Scene, camera: PinholeCamera, parts: sc.Parts | None = None
) -> tuple[np.ndarray, CameraLabels]:
    """Render one camera's view of a scene and derive its 2D labels.

    Parameters
    ----------
    scene : Scene
    camera : PinholeCamera
    parts : Parts, optional
        ``scenes.expand_parts(scene)``; pass it to share the work between cameras.

    Returns
    -------
    image : ndarray of shape (height, width, 3), uint8
    labels : CameraLabels
    """
    parts = sc.expand_parts(scene) if parts is None else parts
    rng = np.random.default_rng(
        np.random.SeedSequence(scene.render_seed, spawn_key=(zlib.crc32(camera.name.encode()),))
    )
    look = _look(scene.time_of_day, scene.weather)
    size = (camera.width, camera.height)

    canvas = Image.fromarray(_background(scene, camera, look))
    ids = Image.new("L", size, 0)
    night = scene.time_of_day == "night"
    glow = Image.new("RGB", size, (0, 0, 0))  # light sources only, occluded like the rest
    draw, draw_ids, draw_glow = ImageDraw.Draw(canvas), ImageDraw.Draw(ids), ImageDraw.Draw(glow)
    faces = _visible_faces(parts, camera, look, scene)
    masks = [Image.new("1", size, 0) for _ in range(len(scene.class_index))]
    silhouettes = [ImageDraw.Draw(mask) for mask in masks]
    for polygon, colour, owner, emissive in faces:
        draw.polygon(polygon, fill=colour)
        draw_ids.polygon(polygon, fill=_CLUTTER_ID if owner < 0 else owner + 1)
        if owner >= 0:
            silhouettes[owner].polygon(polygon, fill=1)
        if night:
            draw_glow.polygon(polygon, fill=colour if emissive else (0, 0, 0))
    if night:
        _draw_lamps(scene, camera, draw_glow)

    # The finishing passes stay in Pillow's C loops: a few full-image float passes in
    # numpy would cost more than drawing the whole scene.
    if night:
        halo = glow.filter(ImageFilter.GaussianBlur(radius=2.5))
        canvas = ImageChops.add(canvas, halo.point(_scale_lut(1.4) * 3))
    exposure = scene.exposure
    if scene.weather == "rain":
        canvas = _rain(canvas, rng, look)
        exposure *= 0.85
    elif scene.weather == "snow":
        canvas = _snow(canvas, rng, look)
    lut = [v for c in range(3) for v in _scale_lut(exposure, look.tint[c])]
    canvas = ImageChops.add(
        canvas.point(lut), _noise_image(size, look.noise_sigma, rng), offset=-128
    )
    image = np.array(canvas)

    visible = np.bincount(np.asarray(ids).ravel(), minlength=256)[1 : len(scene.class_index) + 1]
    silhouette = np.array([np.count_nonzero(np.asarray(m)) for m in masks], dtype=np.int64)
    return image, _labels(scene, camera, visible, silhouette)


def _background(scene: sc.Scene, camera: PinholeCamera, look: _Look) -> np.ndarray:
    """Sky, grass, road, sidewalks and lane markings, fogged row by row."""
    image = Image.fromarray(_static_background(camera, scene.time_of_day, scene.weather == "snow"))
    draw = ImageDraw.Draw(image)
    # Dashed markings move with the scene's lane phase; project all their quads at once.
    first = np.floor((_NEAR_GROUND + scene.lane_phase) / sc.DASH_PERIOD)
    starts = np.arange(first, first + 120 / sc.DASH_PERIOD) * sc.DASH_PERIOD - scene.lane_phase
    starts = starts[starts + sc.DASH_LENGTH > _NEAR_GROUND]
    x0 = np.maximum(starts, _NEAR_GROUND)
    x1 = starts + sc.DASH_LENGTH
    white = _rgb(np.array([235.0, 235, 230]) * look.albedo_scale)
    for centre, half, dashed, _ in sc.MARKINGS:
        if dashed:
            for quad in _ground_quads(camera, x0, x1, centre - half, centre + half):
                draw.polygon(quad, fill=white)
    out = np.asarray(image)
    if np.isfinite(scene.fog_visibility):
        rows = np.arange(camera.height, dtype=float) + 0.5
        below = rows - camera.cy
        depth = camera.fy * CAMERA_HEIGHT / np.where(below > 0, below, np.nan)
        amount = np.nan_to_num(1 - np.exp(-depth / scene.fog_visibility), nan=1.0)[:, None, None]
        out = (out * (1 - amount) + look.fog * amount).astype(np.uint8)
    return out


_NEAR_GROUND, _FAR_GROUND = 1.0, 400.0


@functools.lru_cache(maxsize=8)
def _static_background(camera: PinholeCamera, time_of_day: str, snow: bool) -> np.ndarray:
    """The part of the background that is the same in every scene of a camera and hour, on
    snow-covered or bare ground."""
    look = _look(time_of_day, "snow" if snow else "clear")
    width, height = camera.width, camera.height
    rows = np.arange(height, dtype=float) + 0.5
    t = np.clip(rows / max(camera.cy, 1.0), 0, 1)[:, None]
    sky = look.sky_top * (1 - t) + look.sky_horizon * t
    column = np.where((rows < camera.cy)[:, None], sky, look.grass)
    base = np.broadcast_to(column[:, None, :], (height, width, 3)).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(base))
    draw = ImageDraw.Draw(image)
    near, far = np.array([_NEAR_GROUND]), np.array([_FAR_GROUND])
    for lo, hi in (sc.SIDEWALK_RIGHT, sc.SIDEWALK_LEFT):
        draw.polygon(_ground_quads(camera, near, far, lo, hi)[0], fill=_rgb(look.sidewalk))
    draw.polygon(
        _ground_quads(camera, near, far, sc.ROAD_RIGHT, sc.ROAD_LEFT)[0], fill=_rgb(look.road)
    )
    white = _rgb(np.array([235.0, 235, 230]) * look.albedo_scale)
    yellow = _rgb(np.array([230.0, 190, 40]) * look.albedo_scale)
    for centre, half, dashed, is_yellow in sc.MARKINGS:
        if not dashed:
            quad = _ground_quads(camera, near, np.array([150.0]), centre - half, centre + half)[0]
            draw.polygon(quad, fill=yellow if is_yellow else white)
    out = np.asarray(image)
    out.setflags(write=False)  # shared by every call through the cache
    return out


def _ground_quads(camera: PinholeCamera, x0: np.ndarray, x1: np.ndarray, y0: float, y1: float):
    """Pixel polygons of ground rectangles [x0, x1] x [y0, y1] (one per x0/x1 pair)."""
    xs = np.stack([x0, x1, x1, x0], axis=1)
    ys = np.broadcast_to(np.array([y0, y0, y1, y1]), xs.shape)
    uv, _ = camera.project(np.stack([xs, ys, np.zeros_like(xs)], axis=-1))
    return [[tuple(p) for p in quad] for quad in uv.tolist()]


def _visible_faces(parts: sc.Parts, camera: PinholeCamera, look: _Look, scene: sc.Scene):
    """Camera-facing faces, shaded and fogged, sorted far to near.

    Yields (polygon, rgb, owner, emissive) tuples in drawing order.
    """
    if len(parts.owner) == 0:
        return []
    corners = sc.cuboid_corners(parts.center, parts.size, parts.yaw)  # (p, 8, 3)
    quads = corners[:, _FACES]  # (p, 6, 4, 3)
    centres = quads.mean(axis=2)  # (p, 6, 3)
    c, s = np.cos(parts.yaw)[:, None], np.sin(parts.yaw)[:, None]
    normals = np.stack(
        [
            c * _NORMALS[:, 0] - s * _NORMALS[:, 1],
            s * _NORMALS[:, 0] + c * _NORMALS[:, 1],
            np.broadcast_to(_NORMALS[:, 2], c.shape[:1] + (6,)),
        ],
        axis=-1,
    )  # (p, 6, 3)
    to_cam = np.asarray(camera.position) - centres
    facing = np.einsum("pfk,pfk->pf", normals, to_cam) > 0
    uv, depth = camera.project(quads)  # (p, 6, 4, 2), (p, 6, 4)
    with np.errstate(invalid="ignore"):  # NaN pixels behind the camera fail every test
        lo, hi = uv.min(axis=2), uv.max(axis=2)
        in_frame = (
            (hi[..., 0] > 0)
            & (lo[..., 0] < camera.width)
            & (hi[..., 1] > 0)
            & (lo[..., 1] < camera.height)
        )
    drawable = facing & in_frame & np.all(depth > NEAR_PLANE, axis=2)
    dist = np.linalg.norm(to_cam, axis=2)

    emissive_role = (parts.role == sc.HEADLIGHT) | (parts.role == sc.TAILLIGHT)
    albedo = parts.color.astype(float)[:, None, :]  # (p, 1, 3)
    light = look.ambient + look.diffuse * np.clip(normals @ _SUN, 0, None)  # (p, 6)
    shaded = albedo * look.albedo_scale * light[..., None]
    lit = np.broadcast_to(albedo, shaded.shape)  # lights glow at any hour
    colour = np.where(emissive_role[:, None, None], lit, shaded)
    if np.isfinite(scene.fog_visibility):
        amount = (1 - np.exp(-dist / scene.fog_visibility))[..., None]
        colour = colour * (1 - amount) + look.fog * amount

    p_idx, f_idx = np.nonzero(drawable)
    order = np.argsort(-dist[p_idx, f_idx], kind="stable")
    p_idx, f_idx = p_idx[order], f_idx[order]
    rgb = np.clip(np.round(colour[p_idx, f_idx]), 0, 255).astype(int).tolist()
    polygons = uv[p_idx, f_idx].tolist()
    return [
        ([tuple(pt) for pt in polygon], tuple(c), owner, emissive)
        for polygon, c, owner, emissive in zip(
            polygons, rgb, parts.owner[p_idx].tolist(), emissive_role[p_idx].tolist()
        )
    ]


def _draw_lamps(scene: sc.Scene, camera: PinholeCamera, draw_glow: ImageDraw.ImageDraw) -> None:
    """Street lamps on top of the poles: bright blobs that are not objects."""
    poles = scene.clutter_kind == sc.POLE
    if not poles.any():
        return
    tops = scene.clutter_location[poles].copy()
    tops[:, 2] += scene.clutter_dimensions[poles, 2] / 2
    uv, depth = camera.project(tops)
    for (u, v), d in zip(uv, depth):
        if d > NEAR_PLANE:
            r = max(1.0, 0.3 * camera.fx / d)
            draw_glow.ellipse([u - r, v - r, u + r, v + r], fill=_LAMP_COLOUR)


def _rain(image: Image.Image, rng: np.random.Generator, look: _Look) -> Image.Image:
    """Soften the image and draw rain streaks over it."""
    width, height = image.size
    streaks = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(streaks)
    count = int(0.004 * width * height)
    starts = rng.uniform([0, 0], [width, height], size=(count, 2))
    lengths = rng.uniform(0.04, 0.1, size=count) * height
    slant = rng.normal(0.25, 0.05)
    for (u, v), length in zip(starts.tolist(), lengths.tolist()):
        draw.line([(u, v), (u + slant * length, v + length)], fill=255, width=1)
    soft = image.filter(ImageFilter.GaussianBlur(radius=0.6))
    colour = Image.new(
        "RGB", image.size, _rgb(np.maximum(look.sky_horizon, 120.0 * look.albedo_scale + 40))
    )
    return Image.composite(colour, soft, streaks.point(_scale_lut(0.35)))


def _snow(image: Image.Image, rng: np.random.Generator, look: _Look) -> Image.Image:
    """Flatten the contrast towards the haze colour and draw falling flakes over it."""
    width, height = image.size
    haze = Image.new("RGB", image.size, _rgb(look.fog))
    flat = Image.blend(image.filter(ImageFilter.GaussianBlur(radius=0.5)), haze, _SNOW_CONTRAST_LOSS)
    flakes = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(flakes)
    count = int(0.006 * width * height)
    centres = rng.uniform([0, 0], [width, height], size=(count, 2))
    # Near flakes are bigger; most are specks.
    radii = rng.choice([0.5, 1.0, 1.5], size=count, p=[0.6, 0.3, 0.1])
    for (u, v), r in zip(centres.tolist(), radii.tolist()):
        draw.ellipse([u - r, v - r, u + r, v + r], fill=230)
    white = Image.new("RGB", image.size, _rgb(np.maximum(look.fog + 30, 200 * look.albedo_scale)))
    return Image.composite(white, flat, flakes)


def _scale_lut(gain: float, offset: float = 0.0) -> list[int]:
    """A 256-entry lookup table for ``clip(gain * v + offset)``."""
    return np.clip(np.round(gain * np.arange(256) + offset), 0, 255).astype(int).tolist()


@functools.lru_cache(maxsize=4)
def _noise_bank(sigma: float) -> bytes:
    """Gaussian pixel noise around 128, drawn once per sigma; images take random windows."""
    bank = np.random.default_rng(0).normal(128.0, sigma, 2**21)
    return np.clip(np.round(bank), 0, 255).astype(np.uint8).tobytes()


def _noise_image(size: tuple[int, int], sigma: float, rng: np.random.Generator) -> Image.Image:
    """An RGB image of noise centred on 128 (add it with offset -128)."""
    count = size[0] * size[1] * 3
    bank = _noise_bank(float(sigma))
    if count > len(bank):
        values = np.clip(np.round(rng.normal(128.0, sigma, count)), 0, 255).astype(np.uint8)
        return Image.frombytes("RGB", size, values.tobytes())
    start = int(rng.integers(len(bank) - count + 1))
    return Image.frombytes("RGB", size, bank[start : start + count])


def _labels(
    scene: sc.Scene, camera: PinholeCamera, visible: np.ndarray, silhouette: np.ndarray
) -> CameraLabels:
    n = len(scene.class_index)
    corners = sc.cuboid_corners(scene.location, scene.dimensions, scene.yaw)
    boxes, valid = project_cuboids(camera, corners) if n else (np.zeros((0, 4)), np.zeros(0, bool))
    size = np.array([camera.width, camera.height, camera.width, camera.height], dtype=float)
    clipped = np.clip(np.nan_to_num(boxes), 0, size)
    clipped_w = clipped[:, 2] - clipped[:, 0]
    clipped_h = clipped[:, 3] - clipped[:, 1]
    full_area = np.nan_to_num((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    in_frame = np.divide(clipped_w * clipped_h, full_area, out=np.zeros(n), where=full_area > 0)
    fraction = np.divide(visible, silhouette, out=np.zeros(n), where=silhouette > 0)
    keep = (
        valid
        & (fraction >= MIN_VISIBLE_FRACTION)
        & (visible >= MIN_VISIBLE_PIXELS)
        & (clipped_w >= MIN_BOX_WIDTH)
        & (clipped_h >= MIN_BOX_HEIGHT)
    )
    rows = np.flatnonzero(keep)
    rel = clipped[rows] / size
    return CameraLabels(
        rows=rows,
        boxes=np.stack([rel[:, 0], rel[:, 1], rel[:, 2] - rel[:, 0], rel[:, 3] - rel[:, 1]], 1),
        occluded=fraction[rows] < OCCLUDED_BELOW,
        truncated=in_frame[rows] < TRUNCATED_BELOW,
        visible_fraction=fraction[rows],
    )


def _rgb(values: np.ndarray) -> tuple[int, int, int]:
    v = np.clip(np.round(values), 0, 255).astype(int)
    return int(v[0]), int(v[1]), int(v[2])
