"""Apply the simulated annotator to samples of a FiftyOne collection (glue).

``annotate_batch`` reads the ``oracle`` labels of the chosen slices in bulk, runs
``annotator.annotate_boxes`` / ``annotate_cuboids`` and writes the result to a label field
with one ``set_values`` call per slice. Every written label carries ``annotator =
"simulated"`` and ``batch = <batch name>`` so QA tooling can group by batch; each written
``Detections`` carries ``simulated_digest``, the fingerprint of what it wrote
(:func:`..quality.frozen_check.owned_fingerprint`), so a later call can tell its own labels
from labels a person added or corrected since, and leaves those alone.

Frozen splits: test and mining samples are refused (their labels are the yardstick), and so
is a field the splits record. Golden samples may be annotated into any other field: that is
how golden QA scores the annotator.
"""

from __future__ import annotations

import re
import zlib
from typing import Sequence

import fiftyone as fo
import numpy as np

from ..core.locks import dataset_lock
from ..core.views import root_dataset, slice_views
from ..quality.frozen_check import (
    bookkeeping_keys,
    frozen_fields,
    frozen_sample_ids,
    owned_fingerprint,
)
from ..quality.labels import MEDIA_3D, detections_field
from .algorithms import annotator as an

ORACLE_FIELD = "oracle"
#: ``Detections`` attribute holding the fingerprint of what the annotator wrote there.
DIGEST_ATTR = "simulated_digest"
SIMULATED = "simulated"

_COUNT_KEYS = (
    "num_samples",
    "oracle",
    "labels",
    "missed",
    "confused",
    "renamed",
    "jittered",
    "false_positives",
    "left_alone",
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
    overwrite: bool = False,
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
        Field to write; not a field the frozen splits record. A sample's value is replaced
        when it is empty or exactly what this annotator wrote there; labels a person added
        or corrected are left alone (counted in ``left_alone``) unless ``overwrite``. Every
        labelled sample gets a ``Detections`` (empty if the annotator missed everything),
        so None keeps meaning "not annotated".
    profile : AnnotatorProfile, optional
        Use this profile. Mutually exclusive with ``schedule``.
    schedule : DriftSchedule, optional
        Pick the profile by batch index; defaults to ``annotator.default_drift_schedule()``
        when neither ``profile`` nor ``schedule`` is given.
    seed : int
        Same seed, batch and collection: same labels.
    slices : sequence of str
        Group slices to label; ignored for collections that are not grouped.
    overwrite : bool, default False
        Replace every sample's labels, a person's included (never on frozen test or mining
        samples).

    Returns
    -------
    dict
        ``batch``, ``profile`` (as a dict), ``label_field``, ``num_samples``, totals of
        ``oracle``, ``labels``, ``missed``, ``confused``, ``renamed``, ``jittered``,
        ``false_positives`` and ``left_alone`` (samples whose labels a person made, not
        written), and the same per slice under ``per_slice``.

    Raises
    ------
    ValueError
        On bad arguments, a frozen ``label_field``, or test or mining samples in the
        collection (on the chosen slices). Nothing is written then.
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
    if root_dataset(collection).get_field(label_field) is not None:  # a new field is fine
        detections_field(collection, label_field)
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be a bool, got {overwrite!r}")

    dataset = root_dataset(collection)
    with dataset_lock(dataset, "simulate_annotation"):  # read what is writable, write, atomically
        dataset.reload()
        views = _slice_views(collection, slices)
        _refuse_frozen(dataset, views, label_field)
        ignore = bookkeeping_keys(dataset, [label_field]) | {DIGEST_ATTR}
        per_slice = {}
        for slice_name, (view, is_3d) in views.items():
            todo, left_alone = _writable(dataset, view, label_field, overwrite, ignore)
            rng = np.random.default_rng(
                [int(seed), zlib.crc32(name.encode()), zlib.crc32(slice_name.encode())]
            )
            counts = _annotate_view(todo, is_3d, label_field, profile, name, rng, ignore)
            per_slice[slice_name] = {**counts, "left_alone": left_alone}

    totals = {k: sum(s[k] for s in per_slice.values()) for k in _COUNT_KEYS}
    return {
        "batch": name,
        "profile": profile.to_dict(),
        "label_field": label_field,
        **totals,
        "per_slice": per_slice,
    }


def _refuse_frozen(dataset: fo.Dataset, views: dict, label_field: str) -> None:
    """Raise on a frozen label field, or on test or mining samples among ``views``."""
    if label_field in frozen_fields(dataset):
        raise ValueError(
            f"label_field {label_field!r} holds the frozen splits' recorded labels; "
            "choose another label_field (e.g. ground_truth)"
        )
    frozen = frozen_sample_ids(dataset, ["test", "mining"])
    blocked = [sid for view, _ in views.values() for sid in view.values("id") if sid in frozen]
    if blocked:
        raise ValueError(
            f"{len(blocked)} samples to annotate are in the frozen test or mining splits "
            f"(e.g. {', '.join(blocked[:3])}), whose labels are the yardstick; annotate a "
            "view without them, e.g. view.match_tags(['split:test', 'split:mining'], bool=False)"
        )


def _written_here(labels, ignore: frozenset) -> bool:
    """Whether ``labels`` is empty or exactly what the simulated annotator wrote."""
    if labels is None:
        return True
    if not hasattr(labels, "detections"):
        return False
    if labels.has_field(DIGEST_ATTR):
        return labels[DIGEST_ATTR] == owned_fingerprint(labels, ignore)
    # Written before digests were: trust the provenance attribute.
    return all(getattr(d, "annotator", None) == SIMULATED for d in labels.detections)


def _writable(dataset, view, label_field: str, overwrite: bool, ignore: frozenset) -> tuple:
    """``(the samples of view the annotator may write, how many it must leave alone)``."""
    if overwrite or dataset.get_field(label_field) is None:
        return view, 0
    ids, labels = view.values(["id", label_field])
    ours = [sid for sid, lab in zip(ids, labels) if _written_here(lab, ignore)]
    if len(ours) == len(ids):
        return view, 0
    return view.select(ours), len(ids) - len(ours)


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


def _annotate_view(
    view, is_3d: bool, label_field: str, profile, batch_name: str, rng, ignore: frozenset
) -> dict:
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
                annotator=SIMULATED,
                batch=batch_name,
                **geometry_kwargs,
            )
        )
    written = {}
    for sid, labels in zip(ids, detections):
        written[sid] = fo.Detections(detections=labels)
        written[sid][DIGEST_ATTR] = owned_fingerprint(written[sid], ignore)
    if written:
        view.set_values(
            label_field,
            written,
            key_field="id",
            dynamic=True,  # declare annotator / batch so the App can filter on them
        )
    return {"num_samples": len(ids), **result.counts()}
