"""Apply the simulated annotator to samples of a FiftyOne collection (glue).

``annotate_batch`` reads the ``oracle`` labels of the chosen slices in bulk, runs
``annotator.annotate_boxes`` / ``annotate_cuboids`` and writes the result to a label field
with one ``set_values`` call per slice. Every written label carries ``annotator =
"simulated"`` and ``batch = <batch name>`` so QA tooling can group by batch.
"""

from __future__ import annotations

import re
import zlib
from typing import Sequence

import fiftyone as fo
import numpy as np

from ..core.views import slice_views
from ..quality.labels import MEDIA_3D
from .algorithms import annotator as an

ORACLE_FIELD = "oracle"

_COUNT_KEYS = (
    "num_samples",
    "oracle",
    "labels",
    "missed",
    "confused",
    "renamed",
    "jittered",
    "false_positives",
)


def annotate_batch(
    collection,
    batch: int | str,
    *,
    label_field: str = "ground_truth",
    profile: an.AnnotatorProfile | None = None,
    schedule: an.DriftSchedule | None = None,
    seed: int = 0,
    slices: Sequence[str] = ("left", "right", "pcd"),
) -> dict:
    """Label every sample of ``collection`` (on ``slices``) with the simulated annotator.

    Parameters
    ----------
    collection : Dataset or DatasetView
        Grouped or not. For a grouped collection the chosen ``slices`` of every group in it
        are labelled (a grouped view otherwise acts on its active slice only).
    batch : int or str
        The batch being labelled. An int ``i`` is named ``"batch-{i:03d}"``; a str is used
        as the name, and its trailing digits (if any) give the index the schedule needs.
    label_field : str
        Field to write; existing values on these samples are replaced. Every labelled
        sample gets a ``Detections`` (empty if the annotator missed everything), so None
        keeps meaning "not annotated".
    profile : AnnotatorProfile, optional
        Use this profile. Mutually exclusive with ``schedule``.
    schedule : DriftSchedule, optional
        Pick the profile by batch index; defaults to ``annotator.default_drift_schedule()``
        when neither ``profile`` nor ``schedule`` is given.
    seed : int
        Same seed, batch and collection: same labels.
    slices : sequence of str
        Group slices to label; ignored for collections that are not grouped.

    Returns
    -------
    dict
        ``batch``, ``profile`` (as a dict), ``label_field``, ``num_samples``, totals of
        ``oracle``, ``labels``, ``missed``, ``confused``, ``renamed``, ``jittered`` and
        ``false_positives``, and the same per slice under ``per_slice``.
    """
    name, index = _batch_name(batch)
    profile = _resolve_profile(batch, index, profile, schedule)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not isinstance(label_field, str) or not label_field or label_field == ORACLE_FIELD:
        raise ValueError(
            f"label_field must be a field name other than {ORACLE_FIELD!r}, got {label_field!r}"
        )
    if collection.get_field(ORACLE_FIELD) is None:
        raise ValueError(f"the collection has no {ORACLE_FIELD!r} field to annotate from")

    views = _slice_views(collection, slices)
    per_slice = {}
    for slice_name, (view, is_3d) in views.items():
        rng = np.random.default_rng(
            [int(seed), zlib.crc32(name.encode()), zlib.crc32(slice_name.encode())]
        )
        per_slice[slice_name] = _annotate_view(view, is_3d, label_field, profile, name, rng)

    totals = {k: sum(s[k] for s in per_slice.values()) for k in _COUNT_KEYS}
    return {
        "batch": name,
        "profile": profile.to_dict(),
        "label_field": label_field,
        **totals,
        "per_slice": per_slice,
    }


def _resolve_profile(batch, index: int | None, profile, schedule) -> an.AnnotatorProfile:
    """The profile given, or the schedule's (default drift schedule) for the batch index."""
    if profile is not None and schedule is not None:
        raise ValueError("pass either profile or schedule, not both")
    if profile is None:
        schedule = schedule or an.default_drift_schedule()
        if index is None:
            raise ValueError(
                f"batch {batch!r} has no trailing number to look up in the schedule; "
                "pass an int batch or a profile"
            )
        profile = schedule.profile_for(index)
    if not isinstance(profile, an.AnnotatorProfile):
        raise ValueError(f"profile must be an AnnotatorProfile, got {type(profile).__name__}")
    return profile


def _batch_name(batch) -> tuple[str, int | None]:
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer, str)):
        raise ValueError(f"batch must be an int >= 0 or a non-empty str, got {batch!r}")
    if isinstance(batch, str):
        if not batch.strip():
            raise ValueError("batch must be an int >= 0 or a non-empty str, got ''")
        digits = re.search(r"(\d+)$", batch)
        return batch, int(digits.group(1)) if digits else None
    if batch < 0:
        raise ValueError(f"batch must be an int >= 0 or a non-empty str, got {batch}")
    return f"batch-{int(batch):03d}", int(batch)


def _slice_views(collection, slices: Sequence[str]) -> dict:
    """``{slice name: (flat view, is_3d)}`` of the samples to label (``"samples"`` when flat)."""
    if collection.media_type != "group":
        is_3d = collection.media_type in MEDIA_3D
        return {"samples": (collection, is_3d)}
    if isinstance(slices, str) or not slices:
        raise ValueError(f"slices must be a non-empty sequence of slice names, got {slices!r}")
    media_types = collection.group_media_types
    return {
        s: (view, media_types[s] in MEDIA_3D)
        for s, view in slice_views(collection, slices).items()
    }


def _annotate_view(view, is_3d: bool, label_field: str, profile, batch_name: str, rng) -> dict:
    """Read the oracle of one flat view, annotate, write ``label_field`` in one call."""
    paths = ["id", f"{ORACLE_FIELD}.detections.label"]
    if is_3d:
        paths += [f"{ORACLE_FIELD}.detections.{k}" for k in ("location", "dimensions", "rotation")]
    else:
        paths.append(f"{ORACLE_FIELD}.detections.bounding_box")
    ids, labels, *geometry = view.values(paths)
    per_sample = [len(x) if x else 0 for x in labels]
    image_index = np.repeat(np.arange(len(ids)), per_sample)
    flat_labels = [label for row in labels if row for label in row]

    def flat(values, width):
        rows = [v for row in values if row for v in row]
        return np.asarray(rows, dtype=float).reshape(-1, width)

    if is_3d:
        result = an.annotate_cuboids(
            flat_labels,
            flat(geometry[0], 3),
            flat(geometry[1], 3),
            flat(geometry[2], 3),
            image_index,
            len(ids),
            profile,
            rng,
        )
    else:
        result = an.annotate_boxes(
            flat_labels, flat(geometry[0], 4), image_index, len(ids), profile, rng
        )

    detections: list[list[fo.Detection]] = [[] for _ in ids]
    for row in np.argsort(result.image_index, kind="stable"):
        geometry_kwargs = (
            {
                "location": result.location[row].tolist(),
                "dimensions": result.dimensions[row].tolist(),
                "rotation": result.rotation[row].tolist(),
            }
            if is_3d
            else {"bounding_box": result.boxes[row].tolist()}
        )
        detections[result.image_index[row]].append(
            fo.Detection(
                label=str(result.labels[row]),
                annotator="simulated",
                batch=batch_name,
                **geometry_kwargs,
            )
        )
    view.set_values(
        label_field,
        {i: fo.Detections(detections=d) for i, d in zip(ids, detections)},
        key_field="id",
        dynamic=True,  # declare annotator / batch so the App can filter on them
    )
    return {"num_samples": len(ids), **result.counts()}
