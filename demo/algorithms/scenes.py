"""Sampling of synthetic driving scenes in 3D (pure: numpy only).

A scene is a road in front of an ego car with labelled objects (cars, vans, trucks,
pedestrians, cyclists) and unlabelled clutter (buildings, poles, trees). Everything lives
in one ego frame: x forward, y left, z up, the ground at z = 0 under the LiDAR. Objects are
cuboids in FiftyOne's 3D detection convention: ``location`` is the cuboid centre,
``dimensions`` its extent along its own (x, y, z) axes, i.e. (length, width, height), and
``rotation`` the Euler angles (0, 0, yaw) about those axes.

The class mix is deliberately long-tailed (cars common, cyclists rare, cyclists at night
rarer still), about one scene in ten is night, and about one in ten is a jittered copy of an
earlier scene (``near_duplicate_of``): the traps that curation and QA have to find.

Each scene is drawn from its own random stream (``SeedSequence(seed, spawn_key=(i,))``), so
scene ``i`` is the same whatever ``num_scenes`` is.

Over ~400 lines because it is one generative model (layout, classes, lighting, night scenes)
whose parameters are documented where they are drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ...core.algorithms import pinhole

CLASSES: tuple[str, ...] = ("car", "van", "truck", "pedestrian", "cyclist")

# Mean and spread of (length, width, height) in metres per class, roughly KITTI's.
CLASS_SIZE_MEAN = np.array(
    [[3.9, 1.65, 1.5], [4.9, 1.95, 2.1], [8.5, 2.5, 3.3], [0.6, 0.6, 1.72], [1.75, 0.6, 1.72]]
)
CLASS_SIZE_STD = np.array(
    [[0.3, 0.08, 0.08], [0.35, 0.1, 0.15], [1.5, 0.1, 0.3], [0.1, 0.08, 0.1], [0.1, 0.05, 0.08]]
)

# Road layout (metres, ego frame). The ego lane is centred on y = 0; traffic keeps right,
# so the two lanes with y > 1.75 carry oncoming traffic.
ROAD_RIGHT, ROAD_LEFT = -5.25, 8.75
SIDEWALK_RIGHT, SIDEWALK_LEFT = (-8.75, ROAD_RIGHT), (ROAD_LEFT, 12.25)
LANES = np.array([-3.5, 0.0, 3.5, 7.0])
# (lateral centre, half width, dashed, yellow)
MARKINGS: tuple[tuple[float, float, bool, bool], ...] = (
    (-5.05, 0.08, False, False),
    (-1.75, 0.07, True, False),
    (1.65, 0.06, False, True),
    (1.85, 0.06, False, True),
    (5.25, 0.07, True, False),
    (8.55, 0.08, False, False),
)
DASH_PERIOD, DASH_LENGTH = 9.0, 3.0

# Part roles: which colour a part takes and how it reflects LiDAR.
PAINT, SECONDARY, TERTIARY, GLASS, TYRE, HEADLIGHT, TAILLIGHT = range(7)

# Each class is drawn as a few boxes in its own unit frame: (centre x, centre y, centre z
# from the bottom) and (size x, size y, size z) as fractions of (length, width, height),
# then a role. Distinct silhouettes and colours make the classes learnable.
_PARTS: dict[str, tuple[tuple[tuple[float, ...], tuple[float, ...], int], ...]] = {
    "car": (
        ((0.0, 0.0, 0.34), (1.0, 1.0, 0.44), PAINT),
        ((-0.06, 0.0, 0.765), (0.52, 0.86, 0.41), GLASS),
        ((-0.06, 0.0, 0.985), (0.52, 0.86, 0.03), PAINT),
        ((0.31, 0.0, 0.09), (0.17, 1.02, 0.18), TYRE),
        ((-0.31, 0.0, 0.09), (0.17, 1.02, 0.18), TYRE),
        ((0.505, 0.33, 0.44), (0.01, 0.2, 0.09), HEADLIGHT),
        ((0.505, -0.33, 0.44), (0.01, 0.2, 0.09), HEADLIGHT),
        ((-0.505, 0.36, 0.46), (0.01, 0.16, 0.08), TAILLIGHT),
        ((-0.505, -0.36, 0.46), (0.01, 0.16, 0.08), TAILLIGHT),
    ),
    "van": (
        ((0.0, 0.0, 0.55), (1.0, 1.0, 0.9), PAINT),
        ((0.505, 0.0, 0.76), (0.01, 0.86, 0.26), GLASS),
        ((0.1, 0.505, 0.76), (0.6, 0.01, 0.22), GLASS),
        ((0.1, -0.505, 0.76), (0.6, 0.01, 0.22), GLASS),
        ((-0.505, 0.0, 0.74), (0.01, 0.8, 0.2), GLASS),
        ((0.33, 0.0, 0.085), (0.15, 1.02, 0.17), TYRE),
        ((-0.33, 0.0, 0.085), (0.15, 1.02, 0.17), TYRE),
        ((0.505, 0.36, 0.36), (0.01, 0.18, 0.07), HEADLIGHT),
        ((0.505, -0.36, 0.36), (0.01, 0.18, 0.07), HEADLIGHT),
        ((-0.505, 0.42, 0.4), (0.01, 0.1, 0.15), TAILLIGHT),
        ((-0.505, -0.42, 0.4), (0.01, 0.1, 0.15), TAILLIGHT),
    ),
    "truck": (
        ((0.39, 0.0, 0.42), (0.22, 1.0, 0.64), PAINT),
        ((0.505, 0.0, 0.6), (0.01, 0.85, 0.2), GLASS),
        ((-0.11, 0.0, 0.56), (0.78, 1.0, 0.88), SECONDARY),
        ((0.0, 0.0, 0.1), (1.0, 0.9, 0.06), TYRE),
        ((0.36, 0.0, 0.065), (0.1, 1.02, 0.13), TYRE),
        ((-0.2, 0.0, 0.065), (0.1, 1.02, 0.13), TYRE),
        ((-0.36, 0.0, 0.065), (0.1, 1.02, 0.13), TYRE),
        ((0.505, 0.38, 0.22), (0.01, 0.16, 0.05), HEADLIGHT),
        ((0.505, -0.38, 0.22), (0.01, 0.16, 0.05), HEADLIGHT),
        ((-0.505, 0.42, 0.16), (0.01, 0.1, 0.05), TAILLIGHT),
        ((-0.505, -0.42, 0.16), (0.01, 0.1, 0.05), TAILLIGHT),
    ),
    "pedestrian": (
        ((0.0, 0.2, 0.25), (0.4, 0.32, 0.5), SECONDARY),
        ((0.0, -0.2, 0.25), (0.4, 0.32, 0.5), SECONDARY),
        ((0.0, 0.0, 0.66), (0.55, 0.85, 0.32), PAINT),
        ((0.0, 0.0, 0.91), (0.4, 0.42, 0.16), TERTIARY),
    ),
    "cyclist": (
        ((0.31, 0.0, 0.2), (0.36, 0.14, 0.4), TYRE),
        ((-0.31, 0.0, 0.2), (0.36, 0.14, 0.4), TYRE),
        ((0.0, 0.0, 0.4), (0.55, 0.08, 0.08), SECONDARY),
        ((0.02, 0.0, 0.5), (0.18, 0.55, 0.22), TYRE),
        ((-0.06, 0.0, 0.72), (0.3, 0.7, 0.26), PAINT),
        ((0.02, 0.0, 0.93), (0.16, 0.45, 0.12), TERTIARY),
    ),
}

# Colour palettes per class: (primary, secondary, tertiary) choices, RGB.
_PALETTES: dict[str, tuple[tuple[tuple[int, int, int], ...], ...]] = {
    "car": (
        (
            (170, 20, 25),
            (25, 60, 150),
            (180, 180, 185),
            (235, 235, 235),
            (30, 30, 35),
            (20, 90, 50),
            (200, 160, 30),
            (110, 110, 120),
        ),
    ),
    "van": (((240, 240, 240), (200, 200, 205), (150, 190, 220), (230, 200, 40), (60, 90, 140)),),
    "truck": (
        ((200, 30, 30), (240, 240, 240), (30, 80, 160), (230, 150, 20)),
        ((225, 120, 20), (235, 235, 230), (40, 120, 60), (60, 70, 160), (150, 40, 40)),
    ),
    "pedestrian": (
        (
            (120, 40, 40),
            (50, 60, 110),
            (90, 90, 90),
            (160, 140, 110),
            (40, 80, 60),
            (200, 200, 200),
            (140, 60, 110),
        ),
        ((30, 30, 40), (40, 50, 80), (70, 60, 50), (20, 20, 20)),
        ((230, 190, 160), (190, 140, 100), (120, 80, 55), (245, 210, 180)),
    ),
    "cyclist": (
        ((250, 220, 0), (120, 230, 30), (255, 120, 0), (230, 30, 160), (0, 200, 220)),
        ((220, 20, 20), (20, 20, 20), (240, 240, 240), (30, 90, 220)),
        ((250, 250, 250), (250, 60, 20), (20, 20, 20), (250, 220, 0)),
    ),
}

# Unlabelled clutter kinds.
BUILDING, POLE, TRUNK, CROWN = range(4)
_CLUTTER_COLOURS = {
    BUILDING: ((150, 140, 130), (180, 170, 150), (120, 110, 105), (170, 120, 90), (200, 195, 185)),
    POLE: ((90, 90, 95), (120, 120, 125)),
    TRUNK: ((90, 65, 40), (70, 50, 35)),
    CROWN: ((40, 100, 40), (60, 120, 50), (30, 80, 35)),
}

TIMES_OF_DAY = ("day", "night")
#: ``snow`` is the novel domain: absent by default (probability 0), so a pool built with the
#: defaults never holds it and a batch sampled with it is new data (issue 18).
WEATHERS = ("clear", "rain", "fog", "snow")
MAX_OBJECTS_PER_SCENE = 1000  # object ids are scene_index * 1000 + k


def _default_class_probs() -> dict[str, float]:
    return {"car": 0.55, "van": 0.1, "truck": 0.07, "pedestrian": 0.22, "cyclist": 0.06}


def _default_weather_probs() -> dict[str, float]:
    return {"clear": 0.7, "rain": 0.15, "fog": 0.15, "snow": 0.0}


@dataclass(frozen=True)
class SceneConfig:
    """Knobs of the scene distribution.

    Parameters
    ----------
    night_fraction : float
        Probability that a scene is shot at night.
    weather_probs : mapping of str to float
        Probability of each weather in ``WEATHERS``; must sum to 1.
    class_probs : mapping of str to float
        Probability of each class in ``CLASSES`` for one object; must sum to 1.
    night_cyclist_factor : float
        Multiplier of the cyclist probability at night (then renormalised): cyclists at
        night are the rarest slice of the data.
    near_duplicate_fraction : float
        Probability that a scene (after the first) is a jittered copy of an earlier one.
    min_objects, max_objects : int
        Range of labelled objects placed per scene (fewer if placement fails).
    max_distance : float
        Farthest object centre ahead of the ego car, in metres.
    """

    night_fraction: float = 0.10
    weather_probs: Mapping[str, float] = field(default_factory=_default_weather_probs)
    class_probs: Mapping[str, float] = field(default_factory=_default_class_probs)
    night_cyclist_factor: float = 0.25
    near_duplicate_fraction: float = 0.10
    min_objects: int = 2
    max_objects: int = 8
    max_distance: float = 60.0

    def __post_init__(self) -> None:
        for name in ("night_fraction", "near_duplicate_fraction", "night_cyclist_factor"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        _check_probs("weather_probs", self.weather_probs, WEATHERS)
        _check_probs("class_probs", self.class_probs, CLASSES)
        if not 1 <= self.min_objects <= self.max_objects < MAX_OBJECTS_PER_SCENE:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects < {MAX_OBJECTS_PER_SCENE}, got "
                f"{self.min_objects} and {self.max_objects}"
            )
        if not self.max_distance > 10.0:
            raise ValueError(f"max_distance must exceed 10 m, got {self.max_distance}")


def _check_probs(name: str, probs: Mapping[str, float], keys: tuple[str, ...]) -> None:
    if set(probs) != set(keys):
        raise ValueError(f"{name} must have exactly the keys {keys}, got {sorted(probs)}")
    values = np.array([probs[k] for k in keys], dtype=float)
    if np.any(values < 0) or not np.isclose(values.sum(), 1.0):
        raise ValueError(f"{name} must be non-negative and sum to 1, got {dict(probs)}")


@dataclass
class Scene:
    """One sampled scene: labelled objects, clutter and the conditions it is shot in.

    Arrays have one row per labelled object (``n``) or clutter box (``k``).
    """

    index: int
    scene_id: str
    time_of_day: str
    weather: str
    near_duplicate_of: str | None
    class_index: np.ndarray  # (n,) int, into CLASSES
    object_id: np.ndarray  # (n,) int, unique in the dataset
    location: np.ndarray  # (n, 3) cuboid centres
    dimensions: np.ndarray  # (n, 3) length, width, height
    yaw: np.ndarray  # (n,) heading about z, radians in [-pi, pi]
    colors: np.ndarray  # (n, 3, 3) uint8 primary / secondary / tertiary RGB
    clutter_kind: np.ndarray  # (k,) int
    clutter_location: np.ndarray  # (k, 3)
    clutter_dimensions: np.ndarray  # (k, 3)
    clutter_yaw: np.ndarray  # (k,)
    clutter_colors: np.ndarray  # (k, 3) uint8
    lane_phase: float  # offset of the dashed lane markings along x, metres
    fog_visibility: float  # metres; inf unless foggy or snowing
    exposure: float  # global brightness multiplier of the camera images
    render_seed: int  # seeds pixel noise, rain streaks and LiDAR noise

    @property
    def labels(self) -> list[str]:
        """Class names of the labelled objects."""
        return [CLASSES[i] for i in self.class_index]

    @property
    def rotation(self) -> np.ndarray:
        """FiftyOne ``rotation`` of each object: (0, 0, yaw), shape (n, 3)."""
        rot = np.zeros((len(self.yaw), 3))
        rot[:, 2] = self.yaw
        return rot


@dataclass
class Parts:
    """Every box the renderer and the LiDAR see, objects' parts and clutter alike.

    ``owner`` is the labelled object's row in the scene, or -1 for clutter.
    """

    center: np.ndarray  # (p, 3)
    size: np.ndarray  # (p, 3)
    yaw: np.ndarray  # (p,)
    owner: np.ndarray  # (p,) int
    role: np.ndarray  # (p,) int, one of the part roles (clutter: PAINT)
    color: np.ndarray  # (p, 3) uint8 base colour
    clutter_kind: np.ndarray  # (p,) int, -1 for object parts


def scene_id(index: int) -> str:
    """Stable scene name, e.g. ``scene-000042``."""
    return f"scene-{index:06d}"


def sample_scenes(
    num_scenes: int, seed: int, config: SceneConfig | None = None, first_index: int = 0
) -> list[Scene]:
    """Sample ``num_scenes`` scenes, deterministically for a seed.

    Parameters
    ----------
    num_scenes : int
        Number of scenes, > 0.
    seed : int
        Non-negative seed. Scene ``i`` depends only on ``seed``, ``i`` and the earlier
        scene it may duplicate, not on ``num_scenes``.
    config : SceneConfig, optional
        The scene distribution; defaults to ``SceneConfig()``.
    first_index : int, default=0
        Index (and so id) of the first scene: a later batch continues an existing
        numbering. Near-duplicates copy earlier scenes of this call only.

    Returns
    -------
    list of Scene
    """
    check_count("num_scenes", num_scenes)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if isinstance(first_index, bool) or not isinstance(first_index, (int, np.integer)):
        raise ValueError(f"first_index must be a non-negative int, got {first_index!r}")
    if first_index < 0:
        raise ValueError(f"first_index must be a non-negative int, got {first_index}")
    config = config or SceneConfig()
    scenes: list[Scene] = []
    originals: list[int] = []
    for position, index in enumerate(range(int(first_index), int(first_index) + num_scenes)):
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(index,)))
        # Every scene after the first draws the duplicate coin, as a full build would, so a
        # later batch's non-duplicate scenes are the ones a larger build would have had.
        coin = index > 0 and rng.random() < config.near_duplicate_fraction
        duplicate = coin and bool(originals)
        if duplicate:
            source = scenes[originals[int(rng.integers(len(originals)))]]
            scenes.append(_jittered_copy(source, index, rng))
        else:
            scenes.append(_sample_scene(index, rng, config))
            originals.append(position)
    return scenes


def check_count(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a positive int (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")


def _sample_scene(index: int, rng: np.random.Generator, config: SceneConfig) -> Scene:
    night = rng.random() < config.night_fraction
    weather = WEATHERS[rng.choice(len(WEATHERS), p=[config.weather_probs[w] for w in WEATHERS])]
    class_p = np.array([config.class_probs[c] for c in CLASSES])
    if night:
        class_p[CLASSES.index("cyclist")] *= config.night_cyclist_factor
        class_p /= class_p.sum()
    num = int(rng.integers(config.min_objects, config.max_objects + 1))
    wanted = rng.choice(len(CLASSES), size=num, p=class_p)

    placed: list[tuple[int, np.ndarray, np.ndarray, float]] = []
    for cls in wanted:
        dims = np.maximum(
            rng.normal(CLASS_SIZE_MEAN[cls], CLASS_SIZE_STD[cls]), 0.5 * CLASS_SIZE_MEAN[cls]
        )
        for _ in range(20):  # rejection sampling against overlaps; give up quietly
            x, y, yaw = _propose_pose(CLASSES[cls], dims, rng, config.max_distance)
            footprint = (x, y, dims[0], dims[1], yaw)
            if not any(_footprints_overlap(footprint, other) for other in _footprints(placed)):
                placed.append((int(cls), np.array([x, y, dims[2] / 2]), dims, yaw))
                break
    colors = (
        np.stack([_object_colors(CLASSES[c], rng) for c, *_ in placed])
        if placed
        else (np.zeros((0, 3, 3), np.uint8))
    )
    clutter = _sample_clutter(rng)
    return Scene(
        index=index,
        scene_id=scene_id(index),
        time_of_day="night" if night else "day",
        weather=str(weather),
        near_duplicate_of=None,
        class_index=np.array([p[0] for p in placed], dtype=np.int64),
        object_id=index * MAX_OBJECTS_PER_SCENE + np.arange(len(placed), dtype=np.int64),
        location=np.array([p[1] for p in placed]).reshape(-1, 3),
        dimensions=np.array([p[2] for p in placed]).reshape(-1, 3),
        yaw=np.array([_wrap(p[3]) for p in placed]),
        colors=colors,
        clutter_kind=clutter[0],
        clutter_location=clutter[1],
        clutter_dimensions=clutter[2],
        clutter_yaw=clutter[3],
        clutter_colors=clutter[4],
        lane_phase=float(rng.uniform(0, DASH_PERIOD)),
        fog_visibility=_visibility(str(weather), rng),
        exposure=float(rng.uniform(0.85, 1.1)),
        render_seed=int(rng.integers(2**62)),
    )


def _visibility(weather: str, rng: np.random.Generator) -> float:
    """Metres of visibility: fog is thick; falling snow is a lighter haze; else unlimited.

    Only fog and snow draw from ``rng``, so the scenes of the other weathers (and every
    default-config seed) are the same as before snow existed.
    """
    if weather == "fog":
        return float(rng.uniform(25, 60))
    if weather == "snow":
        return float(rng.uniform(70, 140))
    return float("inf")


def _jittered_copy(source: Scene, index: int, rng: np.random.Generator) -> Scene:
    """A near-duplicate: the same objects nudged a little, new pixel noise."""
    n = len(source.class_index)
    location = source.location.copy()
    location[:, :2] += rng.normal(0.0, 0.15, size=(n, 2))
    return Scene(
        index=index,
        scene_id=scene_id(index),
        time_of_day=source.time_of_day,
        weather=source.weather,
        near_duplicate_of=source.scene_id,
        class_index=source.class_index.copy(),
        object_id=index * MAX_OBJECTS_PER_SCENE + np.arange(n, dtype=np.int64),
        location=location,
        dimensions=source.dimensions.copy(),
        yaw=_wrap(source.yaw + rng.normal(0.0, 0.03, size=n)),
        colors=source.colors.copy(),
        clutter_kind=source.clutter_kind.copy(),
        clutter_location=source.clutter_location.copy(),
        clutter_dimensions=source.clutter_dimensions.copy(),
        clutter_yaw=source.clutter_yaw.copy(),
        clutter_colors=source.clutter_colors.copy(),
        lane_phase=source.lane_phase + float(rng.normal(0.0, 0.2)),
        fog_visibility=source.fog_visibility,
        exposure=source.exposure * float(rng.uniform(0.97, 1.03)),
        render_seed=int(rng.integers(2**62)),
    )


def _wrap(angle):
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def _propose_pose(
    name: str, dims: np.ndarray, rng: np.random.Generator, max_distance: float
) -> tuple[float, float, float]:
    """Where an object of this class plausibly stands: lanes, kerbs, sidewalks, crossings."""
    length, width = dims[0], dims[1]
    if name in ("car", "van", "truck"):
        x = rng.uniform(4.0 + length / 2, max_distance)
        if rng.random() < 0.15:  # parked at a kerb
            if rng.random() < 0.6:
                return x, ROAD_RIGHT + width / 2 + 0.2, rng.normal(0.0, 0.05)
            return x, ROAD_LEFT - width / 2 - 0.2, np.pi + rng.normal(0.0, 0.05)
        lane = LANES[rng.choice(len(LANES), p=[0.3, 0.2, 0.3, 0.2])]
        if lane == 0.0:
            x = max(x, 8.0 + length / 2)  # keep a gap to the ego car
        heading = 0.0 if lane < 1.75 else np.pi
        return x, lane + rng.normal(0.0, 0.25), heading + rng.normal(0.0, 0.06)
    if name == "pedestrian":
        x = rng.uniform(5.0, min(40.0, max_distance))
        if rng.random() < 0.7:
            lo, hi = SIDEWALK_RIGHT if rng.random() < 0.5 else SIDEWALK_LEFT
            heading = 0.0 if rng.random() < 0.5 else np.pi
            return x, rng.uniform(lo + 0.4, hi - 0.4), heading + rng.normal(0.0, 0.3)
        heading = np.pi / 2 if rng.random() < 0.5 else -np.pi / 2
        return x, rng.uniform(ROAD_RIGHT + 0.3, ROAD_LEFT - 0.3), heading + rng.normal(0.0, 0.2)
    # cyclist: a bike lane along either kerb, or crossing
    x = rng.uniform(6.0, min(45.0, max_distance))
    if rng.random() < 0.6:
        if rng.random() < 0.5:
            return x, ROAD_RIGHT + 0.65 + rng.normal(0.0, 0.15), rng.normal(0.0, 0.05)
        return x, ROAD_LEFT - 0.65 + rng.normal(0.0, 0.15), np.pi + rng.normal(0.0, 0.05)
    heading = np.pi / 2 if rng.random() < 0.5 else -np.pi / 2
    return x, rng.uniform(ROAD_RIGHT + 0.3, ROAD_LEFT - 0.3), heading + rng.normal(0.0, 0.2)


def _footprints(placed):
    return [(p[1][0], p[1][1], p[2][0], p[2][1], p[3]) for p in placed]


def _rect_corners(x: float, y: float, length: float, width: float, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    local = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [length / 2, width / 2]
    return local @ np.array([[c, s], [-s, c]]) + [x, y]


def _footprints_overlap(a, b, margin: float = 0.3) -> bool:
    """Separating-axis test of two rotated ground rectangles grown by ``margin``."""
    ca = _rect_corners(a[0], a[1], a[2] + 2 * margin, a[3] + 2 * margin, a[4])
    cb = _rect_corners(b[0], b[1], b[2] + 2 * margin, b[3] + 2 * margin, b[4])
    for corners in (ca, cb):
        for edge in (corners[1] - corners[0], corners[3] - corners[0]):
            axis = np.array([-edge[1], edge[0]])
            pa, pb = ca @ axis, cb @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def _object_colors(name: str, rng: np.random.Generator) -> np.ndarray:
    palettes = _PALETTES[name]
    picks = [np.array(p[rng.integers(len(p))], float) for p in palettes]
    while len(picks) < 3:
        picks.append(picks[0])
    shade = rng.uniform(0.85, 1.1)
    return np.clip(np.stack(picks) * shade, 0, 255).astype(np.uint8)


def _sample_clutter(rng: np.random.Generator):
    """Buildings, poles and trees beside the road: unlabelled, but they occlude and reflect."""
    kinds, locs, dims, yaws, colours = [], [], [], [], []

    def add(kind, x, y, z_bottom, size, yaw=0.0):
        kinds.append(kind)
        locs.append((x, y, z_bottom + size[2] / 2))
        dims.append(size)
        yaws.append(yaw)
        palette = _CLUTTER_COLOURS[kind]
        colours.append(palette[rng.integers(len(palette))])

    for _ in range(rng.integers(2, 6)):
        size = (rng.uniform(8, 25), rng.uniform(6, 12), rng.uniform(5, 18))
        if rng.random() < 0.5:
            y = SIDEWALK_RIGHT[0] - 1.0 - size[1] / 2 - rng.uniform(0, 8)
        else:
            y = SIDEWALK_LEFT[1] + 1.0 + size[1] / 2 + rng.uniform(0, 8)
        add(BUILDING, rng.uniform(10, 90), y, 0.0, size, rng.normal(0.0, 0.05))
    for _ in range(rng.integers(2, 7)):
        y = SIDEWALK_RIGHT[0] + 0.3 if rng.random() < 0.5 else SIDEWALK_LEFT[1] - 0.3
        add(POLE, rng.uniform(3, 70), y, 0.0, (0.25, 0.25, rng.uniform(4, 7)))
    for _ in range(rng.integers(0, 5)):
        x = rng.uniform(5, 70)
        y = SIDEWALK_RIGHT[0] - 0.5 if rng.random() < 0.5 else SIDEWALK_LEFT[1] + 0.5
        trunk = rng.uniform(1.8, 3.0)
        crown = rng.uniform(2.0, 3.5)
        add(TRUNK, x, y, 0.0, (0.35, 0.35, trunk))
        add(CROWN, x, y, trunk, (crown, crown, crown * rng.uniform(0.8, 1.3)))
    return (
        np.array(kinds, dtype=np.int64),
        np.array(locs, dtype=float).reshape(-1, 3),
        np.array(dims, dtype=float).reshape(-1, 3),
        np.array(yaws, dtype=float),
        np.array(colours, dtype=np.uint8).reshape(-1, 3),
    )


def expand_parts(scene: Scene) -> Parts:
    """Break every object into its coloured parts and append the clutter boxes."""
    centers, sizes, yaws, owners, roles, colours = [], [], [], [], [], []
    for row, cls in enumerate(scene.class_index):
        table = _PARTS[CLASSES[cls]]
        offset = np.array([t[0] for t in table])
        frac = np.array([t[1] for t in table])
        role = np.array([t[2] for t in table])
        dims = scene.dimensions[row]
        yaw = scene.yaw[row]
        c, s = np.cos(yaw), np.sin(yaw)
        local = offset * dims - [0.0, 0.0, dims[2] / 2]  # offsets are from the bottom
        rotated = np.stack(
            [c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1], local[:, 2]],
            axis=1,
        )
        centers.append(scene.location[row] + rotated)
        sizes.append(frac * dims)
        yaws.append(np.full(len(table), yaw))
        owners.append(np.full(len(table), row))
        roles.append(role)
        colours.append(_role_colors(role, scene.colors[row]))
    k = len(scene.clutter_kind)
    centers.append(scene.clutter_location)
    sizes.append(scene.clutter_dimensions)
    yaws.append(scene.clutter_yaw)
    owners.append(np.full(k, -1))
    roles.append(np.full(k, PAINT))
    colours.append(scene.clutter_colors)
    num_object_parts = sum(len(o) for o in owners[:-1])
    return Parts(
        center=np.concatenate(centers).reshape(-1, 3),
        size=np.concatenate(sizes).reshape(-1, 3),
        yaw=np.concatenate(yaws),
        owner=np.concatenate(owners).astype(np.int64),
        role=np.concatenate(roles).astype(np.int64),
        color=np.concatenate(colours).reshape(-1, 3).astype(np.uint8),
        clutter_kind=np.concatenate([np.full(num_object_parts, -1), scene.clutter_kind]).astype(
            np.int64
        ),
    )


_FIXED_ROLE_COLORS = {
    GLASS: (40, 55, 75),
    TYRE: (25, 25, 28),
    HEADLIGHT: (250, 245, 210),
    TAILLIGHT: (200, 20, 20),
}


def _role_colors(role: np.ndarray, palette: np.ndarray) -> np.ndarray:
    out = np.empty((len(role), 3), dtype=np.uint8)
    for i, r in enumerate(role):
        out[i] = palette[r] if r <= TERTIARY else _FIXED_ROLE_COLORS[int(r)]
    return out


def cuboid_corners(center: np.ndarray, size: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Corners of yawed boxes, shape (n, 8, 3) (:func:`..core.algorithms.pinhole.cuboid_corners`).

    Corner order: bit 0 of the index picks -x/+x, bit 1 -y/+y, bit 2 -z/+z (local axes).
    """
    yaw = np.asarray(yaw, float).reshape(-1)
    rotation = np.stack([np.zeros_like(yaw), np.zeros_like(yaw), yaw], axis=1)
    return pinhole.cuboid_corners(center, size, rotation)


def lane_marking_mask(x: np.ndarray, y: np.ndarray, lane_phase: float) -> np.ndarray:
    """Whether ground points (x, y) fall on a painted lane marking."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    mask = np.zeros(np.broadcast(x, y).shape, dtype=bool)
    on_dash = np.mod(x + lane_phase, DASH_PERIOD) < DASH_LENGTH
    for center, half_width, dashed, _ in MARKINGS:
        line = np.abs(y - center) <= half_width
        mask |= line & on_dash if dashed else line
    return mask
