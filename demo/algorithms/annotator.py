"""A simulated annotator that turns oracle labels into imperfect human-like labels (pure).

Real annotation teams miss objects, draw boxes a little off, draw them loose, confuse
look-alike classes, drift over time (a guideline change renames ``van`` to ``vehicle``) and
occasionally box something that is not there. ``AnnotatorProfile`` sets those rates;
``DriftSchedule`` says which profile labels which batch, so QA tooling has real drift to
detect. The functions take flat arrays (one row per oracle object, with the index of the
image or sweep it belongs to) and a numpy ``Generator``, and return the annotated arrays
plus what was done to each oracle row.

Order of operations per oracle row: miss -> confuse -> rename -> box noise -> link error.
False positives are then added per image; they imitate real objects (label and size drawn
from the oracle rows) placed at random, and are renamed like everything else.

*Link errors* break the consistency of one sensor's labels with the others' (what the
cross-sensor check, :mod:`annoloop.quality.algorithms.linking`, must catch): a 2D box left
out while its cuboid stays (``link_drop_box_rate``), a cuboid left out while its 2D boxes stay
(``link_drop_cuboid_rate``), a class changed in one sensor only (``link_relabel_rate``) and a
2D box drawn off its object (``link_shift_rate``). Each slice is annotated on its own, so a
link error made on one slice is absent from the others. They hit only rows the caller marks
``link_eligible`` (default: all), at most one per row, and all default to 0, which leaves the
random stream and every other outcome as it was.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np


#: The profile's link-error rates (see the module docstring).
LINK_RATES = ("link_drop_box_rate", "link_drop_cuboid_rate", "link_relabel_rate", "link_shift_rate")
#: What :attr:`AnnotationResult.link_error` records per oracle row ("" for none).
LINK_ERRORS = ("dropped", "relabeled", "shifted")


@dataclass(frozen=True)
class AnnotatorProfile:
    """How one annotator (or one guideline era) labels.

    Parameters
    ----------
    miss_rate : float
        Probability that an oracle object is not labelled at all.
    box_jitter : float
        Standard deviation of box noise relative to the box size: the centre moves by
        ``N(0, box_jitter) * size`` and each extent scales by ``1 + N(0, box_jitter)``.
    looseness : float
        Relative growth of every box's extent (0.2 = boxes 20 % wider and taller), a
        systematic bias that jitter averages out but looseness does not.
    confusion : mapping of str to mapping of str to float
        ``{true_class: {other_class: probability}}``; the probabilities of one true class
        must sum to at most 1 (the rest keeps the true class).
    rename : mapping of str to str
        Class names written differently, e.g. ``{"van": "vehicle"}``; applied after
        confusion, to false positives too.
    false_positive_rate : float
        Expected number of spurious labels per image (Poisson).
    name : str
        A short name recorded in summaries.
    link_drop_box_rate : float
        Probability that a 2D box is left out while the object's cuboid is kept.
    link_drop_cuboid_rate : float
        Probability that a cuboid is left out while the object's 2D boxes are kept.
    link_relabel_rate : float
        Probability that a label gets another class (one of the other oracle classes of the
        call, uniformly) in this sensor only.
    link_shift_rate : float
        Probability that a 2D box is moved sideways, towards the image centre, by 45-60 % of
        its width (IoU with the object's true box 0.25-0.38).
    """

    miss_rate: float = 0.0
    box_jitter: float = 0.0
    looseness: float = 0.0
    confusion: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    rename: Mapping[str, str] = field(default_factory=dict)
    false_positive_rate: float = 0.0
    name: str = "custom"
    link_drop_box_rate: float = 0.0
    link_drop_cuboid_rate: float = 0.0
    link_relabel_rate: float = 0.0
    link_shift_rate: float = 0.0

    def __post_init__(self) -> None:
        for rate in LINK_RATES:
            if not 0.0 <= getattr(self, rate) <= 1.0:
                raise ValueError(f"{rate} must lie in [0, 1], got {getattr(self, rate)}")
        if self.link_drop_box_rate + self.link_relabel_rate + self.link_shift_rate > 1.0:
            raise ValueError(
                "link_drop_box_rate + link_relabel_rate + link_shift_rate must be <= 1 (one "
                "link error per 2D box)"
            )
        if self.link_drop_cuboid_rate + self.link_relabel_rate > 1.0:
            raise ValueError(
                "link_drop_cuboid_rate + link_relabel_rate must be <= 1 (one link error per cuboid)"
            )
        if not 0.0 <= self.miss_rate <= 1.0:
            raise ValueError(f"miss_rate must lie in [0, 1], got {self.miss_rate}")
        if not 0.0 <= self.box_jitter <= 1.0:
            raise ValueError(f"box_jitter must lie in [0, 1], got {self.box_jitter}")
        if not -0.5 < self.looseness <= 2.0:
            raise ValueError(f"looseness must lie in (-0.5, 2], got {self.looseness}")
        if not self.false_positive_rate >= 0.0:
            raise ValueError(
                f"false_positive_rate must be >= 0 labels per image, got {self.false_positive_rate}"
            )
        for true_class, row in self.confusion.items():
            probs = np.array(list(row.values()), dtype=float)
            if np.any(probs < 0) or probs.sum() > 1.0 + 1e-9:
                raise ValueError(
                    f"confusion[{true_class!r}] must be non-negative and sum to <= 1, "
                    f"got {dict(row)}"
                )
            if true_class in row:
                raise ValueError(f"confusion[{true_class!r}] must not map a class to itself")

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-friendly), e.g. for run records."""
        out = asdict(self)
        out["confusion"] = {k: dict(v) for k, v in self.confusion.items()}
        out["rename"] = dict(self.rename)
        return out


CLEAN = AnnotatorProfile(miss_rate=0.03, box_jitter=0.03, false_positive_rate=0.02, name="clean")
DRIFTED = AnnotatorProfile(
    miss_rate=0.15,
    box_jitter=0.05,
    looseness=0.2,
    confusion={"truck": {"van": 0.15}, "cyclist": {"pedestrian": 0.2}},
    rename={"van": "vehicle"},
    false_positive_rate=0.1,
    name="drifted",
)


@dataclass(frozen=True)
class DriftSchedule:
    """Which profile labels which batch: a step function of the batch index.

    ``steps`` maps a first batch index to the profile used from that batch on, until the
    next step. It must have a step at batch 0.
    """

    steps: Mapping[int, AnnotatorProfile]

    def __post_init__(self) -> None:
        if 0 not in self.steps:
            raise ValueError(
                f"a DriftSchedule needs a profile for batch 0, got steps at {sorted(self.steps)}"
            )
        for key, profile in self.steps.items():
            if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
                raise ValueError(f"DriftSchedule keys must be batch indices >= 0, got {key!r}")
            if not isinstance(profile, AnnotatorProfile):
                raise ValueError(
                    f"DriftSchedule values must be AnnotatorProfile, got {type(profile)}"
                )

    def profile_for(self, batch: int) -> AnnotatorProfile:
        """The profile in force for batch index ``batch`` (>= 0)."""
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 0:
            raise ValueError(f"batch must be an index >= 0, got {batch!r}")
        start = max(k for k in self.steps if k <= batch)
        return self.steps[start]


def default_drift_schedule() -> DriftSchedule:
    """Clean labels for batches 0 and 1; from batch 2 the guideline drifts (``DRIFTED``)."""
    return DriftSchedule({0: CLEAN, 2: DRIFTED})


@dataclass
class AnnotationResult:
    """Annotated labels (``m`` rows) and what happened to each oracle row (``n`` rows)."""

    labels: np.ndarray  # (m,) object (str)
    image_index: np.ndarray  # (m,) int
    source_row: np.ndarray  # (m,) int: the oracle row, -1 for a false positive
    boxes: np.ndarray | None  # (m, 4) relative [x, y, w, h], for 2D
    location: np.ndarray | None  # (m, 3), for 3D
    dimensions: np.ndarray | None  # (m, 3), for 3D
    rotation: np.ndarray | None  # (m, 3), for 3D
    missed: np.ndarray  # (n,) bool
    confused: np.ndarray  # (n,) bool: labelled as another class
    renamed: np.ndarray  # (n,) bool: the written name differs from the class drawn
    jittered: np.ndarray  # (n,) bool: the geometry differs from the oracle's
    link_error: np.ndarray  # (n,) object: "" or one of LINK_ERRORS

    @property
    def false_positive(self) -> np.ndarray:
        """(m,) bool: rows that match no oracle object."""
        return self.source_row < 0

    def counts(self) -> dict[str, int]:
        """Totals of each outcome, for summaries."""
        return {
            "oracle": int(len(self.missed)),
            "labels": int(len(self.labels)),
            "missed": int(self.missed.sum()),
            "confused": int(self.confused.sum()),
            "renamed": int(self.renamed.sum()),
            "jittered": int(self.jittered.sum()),
            "false_positives": int(self.false_positive.sum()),
            **{f"link_{kind}": int(np.count_nonzero(self.link_error == kind)) for kind in LINK_ERRORS},
        }


def annotate_boxes(
    labels: Sequence[str] | np.ndarray,
    boxes: np.ndarray,
    image_index: np.ndarray,
    num_images: int,
    profile: AnnotatorProfile,
    rng: np.random.Generator,
    link_eligible: np.ndarray | None = None,
) -> AnnotationResult:
    """Simulate annotating 2D boxes.

    Parameters
    ----------
    labels : sequence of str, length n
        Oracle class of each object.
    boxes : ndarray of shape (n, 4)
        Oracle boxes, relative ``[x, y, w, h]`` in [0, 1].
    image_index : ndarray of shape (n,)
        Which image (0 .. num_images - 1) each object is in.
    num_images : int
        Number of images annotated; false positives can land on any of them, including
        images without objects (as long as some image has an oracle object to imitate).
    profile : AnnotatorProfile
    rng : numpy.random.Generator
    link_eligible : ndarray of bool, shape (n,), optional
        Rows link errors may hit (default: all).

    Returns
    -------
    AnnotationResult
        With ``boxes`` set; boxes stay inside the image.
    """
    labels, image_index = _check_rows(labels, image_index, num_images)
    boxes = _check_array("boxes", boxes, (len(labels), 4))
    keep, written, confused, renamed = _label_outcomes(labels, profile, rng)

    kept = boxes[keep]
    new_boxes = kept.copy()  # exact copies when the profile leaves geometry alone
    if profile.looseness or profile.box_jitter:
        size = kept[:, 2:] * (1 + profile.looseness)
        centre = kept[:, :2] + kept[:, 2:] / 2
        if profile.box_jitter > 0:
            centre = centre + rng.normal(0.0, profile.box_jitter, size.shape) * kept[:, 2:]
            size = size * np.clip(1 + rng.normal(0.0, profile.box_jitter, size.shape), 0.5, None)
        new_boxes = _clip_boxes(np.hstack([centre - size / 2, size]))

    link, written = _link_errors(
        labels, keep, written, link_eligible, rng,
        dropped=profile.link_drop_box_rate,
        relabeled=profile.link_relabel_rate,
        shifted=profile.link_shift_rate,
    )
    on_kept = link[keep]
    shifted = on_kept == "shifted"
    if shifted.any():
        new_boxes[shifted] = _shift_sideways(new_boxes[shifted], rng)
    stay = on_kept != "dropped"
    written, new_boxes = written[stay], new_boxes[stay]
    out = keep & (link != "dropped")
    kept = boxes[out]

    fp_image, fp_source = _false_positive_slots(labels, image_index, num_images, profile, rng)
    fp_size = boxes[fp_source, 2:]
    fp_xy = rng.uniform(0.0, 1.0, fp_size.shape) * (1 - fp_size)
    fp_boxes = np.hstack([fp_xy, fp_size])

    jittered = np.zeros(len(labels), dtype=bool)
    jittered[out] = np.any(np.abs(new_boxes - kept) > 1e-9, axis=1)
    return AnnotationResult(
        labels=np.concatenate([written, _rename(labels[fp_source], profile)]).astype(object),
        image_index=np.concatenate([image_index[out], fp_image]),
        source_row=np.concatenate([np.flatnonzero(out), np.full(len(fp_image), -1)]),
        boxes=np.vstack([new_boxes, fp_boxes]) if len(fp_boxes) else new_boxes,
        location=None,
        dimensions=None,
        rotation=None,
        missed=~keep,
        confused=confused,
        renamed=renamed,
        jittered=jittered,
        link_error=link,
    )


def annotate_cuboids(
    labels: Sequence[str] | np.ndarray,
    location: np.ndarray,
    dimensions: np.ndarray,
    rotation: np.ndarray,
    image_index: np.ndarray,
    num_images: int,
    profile: AnnotatorProfile,
    rng: np.random.Generator,
    link_eligible: np.ndarray | None = None,
) -> AnnotationResult:
    """Simulate annotating 3D cuboids (FiftyOne convention: centre, extents, Euler angles).

    Looseness grows the extents; jitter moves the centre by ``N(0, box_jitter)`` times the
    extents, scales the extents and turns the yaw by ``N(0, box_jitter)`` radians. False
    positives copy the size, label and height of a random oracle cuboid and sit at a
    random ground position within the oracle cuboids' span.

    Parameters are as in ``annotate_boxes``, with ``location``, ``dimensions`` and
    ``rotation`` of shape (n, 3) instead of boxes.
    """
    labels, image_index = _check_rows(labels, image_index, num_images)
    n = len(labels)
    location = _check_array("location", location, (n, 3))
    dimensions = _check_array("dimensions", dimensions, (n, 3))
    rotation = _check_array("rotation", rotation, (n, 3))
    keep, written, confused, renamed = _label_outcomes(labels, profile, rng)

    loc = location[keep].copy()
    dims = dimensions[keep] * (1 + profile.looseness)
    rot = rotation[keep].copy()
    if profile.box_jitter > 0:
        loc += rng.normal(0.0, profile.box_jitter, loc.shape) * dimensions[keep]
        dims *= np.clip(1 + rng.normal(0.0, profile.box_jitter, dims.shape), 0.5, None)
        rot[:, 2] = _wrap(rot[:, 2] + rng.normal(0.0, profile.box_jitter, len(rot)))
    link, written = _link_errors(
        labels, keep, written, link_eligible, rng,
        dropped=profile.link_drop_cuboid_rate,
        relabeled=profile.link_relabel_rate,
    )
    stay = link[keep] != "dropped"
    written, loc, dims, rot = written[stay], loc[stay], dims[stay], rot[stay]
    out = keep & (link != "dropped")

    fp_image, fp_source = _false_positive_slots(labels, image_index, num_images, profile, rng)
    fp_loc = location[fp_source].copy()
    if len(fp_source):
        lo, hi = location[:, :2].min(axis=0), location[:, :2].max(axis=0)
        fp_loc[:, :2] = rng.uniform(lo, hi, (len(fp_source), 2))
    fp_rot = np.zeros((len(fp_source), 3))
    fp_rot[:, 2] = rng.uniform(-np.pi, np.pi, len(fp_source))

    jittered = np.zeros(n, dtype=bool)
    jittered[out] = (
        np.any(np.abs(loc - location[out]) > 1e-9, axis=1)
        | np.any(np.abs(dims - dimensions[out]) > 1e-9, axis=1)
        | np.any(np.abs(rot - rotation[out]) > 1e-9, axis=1)
    )
    return AnnotationResult(
        labels=np.concatenate([written, _rename(labels[fp_source], profile)]).astype(object),
        image_index=np.concatenate([image_index[out], fp_image]),
        source_row=np.concatenate([np.flatnonzero(out), np.full(len(fp_image), -1)]),
        boxes=None,
        location=np.vstack([loc, fp_loc]),
        dimensions=np.vstack([dims, dimensions[fp_source]]),
        rotation=np.vstack([rot, fp_rot]),
        missed=~keep,
        confused=confused,
        renamed=renamed,
        jittered=jittered,
        link_error=link,
    )


def clear_objects(
    projected: np.ndarray, image_index: np.ndarray, labelled: np.ndarray
) -> np.ndarray:
    """Which objects are *clear* in an image, so that a link error made on them is
    unambiguous: labelled there with an unoccluded, untruncated box, and their cuboid's
    projection touches no other cuboid's projection in that image.

    Parameters
    ----------
    projected : ndarray of shape (r, 4)
        Each object's cuboid projected into each image and clipped to it, relative
        ``[x, y, w, h]`` (NaN where it is not in view): one row per (object, image).
    image_index : ndarray of shape (r,)
    labelled : ndarray of bool, shape (r,)
        The object has an unoccluded, untruncated 2D box in that image.

    Returns
    -------
    ndarray of bool, shape (r,)

    Notes
    -----
    A box missing beside a neighbour, or in front of a hidden object, cannot be told from
    a right answer by geometry alone (the hidden object's projection takes its place), and
    a reviewer would hesitate too; link errors go where one sees them at once.
    """
    projected = np.asarray(projected, float).reshape(-1, 4)
    image_index = np.asarray(image_index)
    clear = np.asarray(labelled, bool).copy()
    if clear.shape != (len(projected),) or image_index.shape != clear.shape:
        raise ValueError(
            f"projected (r, 4), image_index (r,) and labelled (r,) must agree; got "
            f"{projected.shape}, {image_index.shape} and {clear.shape}"
        )
    for image in np.unique(image_index[clear]):
        rows = np.flatnonzero(image_index == image)
        b = np.nan_to_num(projected[rows], nan=-1.0)  # out of view: touches nothing
        lo, hi = b[:, :2], b[:, :2] + b[:, 2:]
        overlap = np.minimum(hi[:, None], hi[None]) - np.maximum(lo[:, None], lo[None])
        touching = (overlap > 0).all(axis=-1) & (b[:, None, 2] > 0) & (b[None, :, 2] > 0)
        np.fill_diagonal(touching, False)
        clear[rows] &= ~touching.any(axis=1)
    return clear


def _check_rows(labels, image_index, num_images) -> tuple[np.ndarray, np.ndarray]:
    if (
        isinstance(num_images, bool)
        or not isinstance(num_images, (int, np.integer))
        or num_images < 0
    ):
        raise ValueError(f"num_images must be an int >= 0, got {num_images!r}")
    labels = np.asarray(list(labels), dtype=object)
    image_index = np.asarray(image_index)
    if image_index.shape != (len(labels),):
        raise ValueError(
            f"image_index must have shape ({len(labels)},) to match labels, got {image_index.shape}"
        )
    if len(image_index):
        if not np.issubdtype(image_index.dtype, np.integer):
            raise ValueError(f"image_index must hold ints, got dtype {image_index.dtype}")
        if image_index.min() < 0 or image_index.max() >= num_images:
            raise ValueError(
                f"image_index must lie in [0, {num_images}), got values in "
                f"[{image_index.min()}, {image_index.max()}]"
            )
    return labels, image_index.astype(np.int64)


def _check_array(name: str, value, shape: tuple[int, int]) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.size == 0 and shape[0] == 0:
        return array.reshape(shape)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} must be finite; {int((~np.isfinite(array)).sum())} values are not"
        )
    return array


def _label_outcomes(labels: np.ndarray, profile: AnnotatorProfile, rng: np.random.Generator):
    """Misses, confusions and renames, vectorised per true class."""
    n = len(labels)
    keep = rng.random(n) >= profile.miss_rate
    drawn = labels.copy()
    confused = np.zeros(n, dtype=bool)
    u = rng.random(n)
    for true_class, row in profile.confusion.items():
        rows = keep & (labels == true_class)
        if not rows.any() or not row:
            continue
        others = np.array(list(row.keys()), dtype=object)
        edges = np.cumsum(list(row.values()))
        choice = np.searchsorted(edges, u[rows], side="right")
        switched = choice < len(others)
        target = np.flatnonzero(rows)[switched]
        drawn[target] = others[choice[switched]]
        confused[target] = True
    written = _rename(drawn, profile)
    renamed = keep & (written != drawn)
    return keep, written[keep], confused, renamed


def _link_errors(
    labels: np.ndarray,
    keep: np.ndarray,
    written: np.ndarray,
    eligible,
    rng: np.random.Generator,
    **rates: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``(link error per oracle row, written labels of the kept rows)`` for ``rates``
    ``{kind: probability}``: at most one error per kept, eligible row; a relabeled row gets
    another oracle class of the call. Draws nothing when every rate is 0."""
    n = len(labels)
    link = np.full(n, "", dtype=object)
    if not any(rates.values()) or n == 0:
        return link, written
    eligible = np.ones(n, bool) if eligible is None else np.asarray(eligible, bool)
    if eligible.shape != (n,):
        raise ValueError(f"link_eligible must have shape ({n},), got {eligible.shape}")
    u = rng.random(n)
    edges = np.cumsum(list(rates.values()))
    kind = np.searchsorted(edges, u, side="right")
    hit = keep & eligible & (kind < len(rates))
    link[hit] = np.array(list(rates), dtype=object)[kind[hit]]
    classes = np.unique(labels.astype(str))
    written = written.copy()
    relabel = np.flatnonzero(link[keep] == "relabeled")
    for row in relabel.tolist():
        others = classes[classes != labels[np.flatnonzero(keep)[row]]]
        if len(others):
            written[row] = others[rng.integers(len(others))]
        else:  # a call with one class has nothing to confuse it with
            link[np.flatnonzero(keep)[row]] = ""
    return link, written


def _shift_sideways(boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move boxes along x towards the image centre by 45-60 % of their width."""
    towards = np.where(boxes[:, 0] + boxes[:, 2] / 2 < 0.5, 1.0, -1.0)
    moved = boxes.copy()
    moved[:, 0] += towards * rng.uniform(0.45, 0.6, len(boxes)) * boxes[:, 2]
    return _clip_boxes(moved)


def _rename(labels: np.ndarray, profile: AnnotatorProfile) -> np.ndarray:
    if not profile.rename:
        return labels.astype(object)
    return np.array([profile.rename.get(label, label) for label in labels], dtype=object)


def _false_positive_slots(labels, image_index, num_images, profile, rng):
    """Images that get a spurious label, and the oracle row each one imitates."""
    if profile.false_positive_rate == 0 or len(labels) == 0 or num_images == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    per_image = rng.poisson(profile.false_positive_rate, num_images)
    images = np.repeat(np.arange(num_images), per_image)
    return images, rng.integers(0, len(labels), len(images))


def _clip_boxes(boxes: np.ndarray) -> np.ndarray:
    x0 = np.clip(boxes[:, 0], 0.0, 1.0)
    y0 = np.clip(boxes[:, 1], 0.0, 1.0)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0.0, 1.0)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0.0, 1.0)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi
