"""Cross-sensor consistency on a grouped dataset (glue): 3D cuboids against each camera's boxes.

:func:`check_sensor_links` reads, for every scene (group) of a collection, the cuboids of its
point-cloud slice, the 2D boxes of its camera slices and each camera sample's calibration
(``camera_intrinsics``, ``camera_extrinsics``: flat and row-major, KITTI-style, see
:func:`annoloop.core.algorithms.pinhole.calibration`) and image size (``metadata``), calls the
pure kernel :func:`.algorithms.linking.link_labels` once over every camera image, and
quarantines what it finds exactly as the schema gate does (:mod:`.quarantine`):

- a violation becomes a record on *both* sides: on the camera sample (naming the 2D box, or
  no label for ``link_missing_box``) and on the point-cloud sample (naming the cuboid, or no
  label for ``link_missing_cuboid``), each with the camera slice in its detail;
- named labels and their samples are tagged ``qa:quarantine``; the check owns only the
  ``link_*`` records of its field, so the gate's records stay and the gate keeps these;
- the run's counts go into a FiftyOne custom run ``annoloop_links_<field>`` (method
  ``annoloop.links``), which the panel sums with the gate's.

Scenes where either side is unlabeled (the field unset) are not checked; camera images
without a usable calibration or size, and labels too malformed to project (the gate reports
those), are skipped and counted. Validate first, read and plan under the dataset's lock,
write last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import fiftyone as fo
import numpy as np

from ..core.algorithms.pinhole import calibration
from ..core.locks import dataset_lock
from ..core.runs import Progress, load_record, now, save_record
from ..core.views import root_dataset
from .algorithms.linking import LINK_RULES, LinkParams, link_labels
from .labels import LabelRows, checkable_slice_views, detections_field
from .quarantine import (
    DEFAULT_VIOLATIONS_FIELD,
    SlicePlan,
    check_violations_field,
    declare_violations_field,
    plan_changes,
    read_slice,
    write_plan,
)

__all__ = [
    "DEFAULT_EXTRINSICS_FIELD",
    "DEFAULT_INTRINSICS_FIELD",
    "LINK_RUN_METHOD",
    "check_sensor_links",
    "link_record",
    "link_run_key",
]

#: Camera-sample fields of the calibration the demo writes and the check reads by default.
DEFAULT_INTRINSICS_FIELD = "camera_intrinsics"
DEFAULT_EXTRINSICS_FIELD = "camera_extrinsics"
#: FiftyOne custom-run method of the check's summaries.
LINK_RUN_METHOD = "annoloop.links"
#: Violations listed in the result (the records on the dataset hold all of them).
_LISTED = 50


def link_run_key(label_field: str) -> str:
    """FiftyOne run key of the check's summary for ``label_field``."""
    return "annoloop_links_" + label_field.replace(".", "__")


def link_record(dataset: fo.Dataset, label_field: str) -> dict | None:
    """The stored summary of the last check of ``label_field`` (as returned), or None."""
    return load_record(dataset, link_run_key(label_field))


def check_sensor_links(
    samples,
    label_field: str = "ground_truth",
    *,
    cuboid_slice: str | None = None,
    camera_slices: Sequence[str] | None = None,
    intrinsics_field: str = DEFAULT_INTRINSICS_FIELD,
    extrinsics_field: str = DEFAULT_EXTRINSICS_FIELD,
    params: LinkParams | None = None,
    violations_field: str = DEFAULT_VIOLATIONS_FIELD,
    progress: Progress | None = None,
) -> dict:
    """Check that every scene's cuboids and 2D boxes agree; quarantine what does not.

    Parameters
    ----------
    samples : Dataset or DatasetView
        A grouped collection with one point-cloud (or 3D) slice and camera slices. Scenes
        outside it keep their state.
    label_field : str, default "ground_truth"
        A ``Detections`` field holding cuboids on the point-cloud slice and 2D boxes on the
        camera slices.
    cuboid_slice : str, optional
        The slice of the cuboids; default the collection's only point-cloud / 3D slice.
    camera_slices : sequence of str, optional
        Camera slices to check against; default every image slice.
    intrinsics_field, extrinsics_field : str
        Camera-sample fields of ``K`` (9 numbers) and of the cuboids' frame -> camera
        transform (16 numbers), row-major.
    params : LinkParams, optional
        The kernel's thresholds (default :class:`.algorithms.linking.LinkParams`).
    violations_field : str, default "qa_violations"
    progress : callable, optional
        ``progress(fraction, message)``.

    Returns
    -------
    dict
        ``label_field``, ``run_key``, ``checked_at``, ``cuboid_slice``, ``camera_slices``,
        ``params``, ``total`` (``n_images``, ``n_cuboids``, ``n_boxes``, ``n_violations``,
        ``by_rule``), ``per_slice`` (records and quarantined samples per slice),
        ``skipped`` (``unlabeled_images``, ``uncalibrated_images``, ``unsized_images``: no
        ``metadata`` size, run ``compute_metadata()``; ``malformed_labels``),
        ``quarantined``, ``newly_tagged``, ``released`` (samples, all slices) and
        ``violations`` (the first 50: rule, camera slice, scene sample ids, label, detail).

    Raises
    ------
    ValueError
        On a flat dataset, a missing or non-Detections field, unknown or ambiguous slices,
        missing calibration fields, or a bad ``violations_field``. Nothing is written then.

    Examples
    --------
    >>> import annoloop
    >>> result = annoloop.check_sensor_links(dataset, "ground_truth")  # doctest: +SKIP
    >>> result["total"]["by_rule"]  # doctest: +SKIP
    {'link_missing_box': 0, 'link_missing_cuboid': 1, 'link_class_mismatch': 0, ...}
    """
    report = progress or (lambda fraction, message: None)
    dataset = root_dataset(samples)
    params = LinkParams() if params is None else params
    if not isinstance(params, LinkParams):
        raise ValueError(f"params must be a LinkParams; got {type(params).__name__}")
    cuboid_slice, views = _validate(
        samples, label_field, cuboid_slice, camera_slices,
        intrinsics_field, extrinsics_field, violations_field,
    )
    # Planning diffs against stored tags and records, so read, plan and write are one step
    # under the lock (as the gate's are): two checks never leave a mix of their results.
    with dataset_lock(dataset, "check_sensor_links"):
        dataset.reload()
        report(0.05, f"reading {cuboid_slice} cuboids and {len(views) - 1} camera slices")
        scene = _read_scene_labels(
            dataset, views, cuboid_slice, label_field, intrinsics_field,
            extrinsics_field, violations_field,
        )
        report(0.3, f"projecting cuboids into {len(scene.images)} camera images")
        links = _link(scene, params)
        plans = _plans(scene, links, label_field)
        report(0.8, "writing quarantine tags and records")
        declare_violations_field(dataset, violations_field)
        for plan in plans.values():
            write_plan(plan, violations_field)
        summary = _summary(scene, links, plans, label_field, cuboid_slice, params)
        summary["violations_field"] = violations_field
        save_record(dataset, summary["run_key"], LINK_RUN_METHOD, summary)
    report(1.0, f"{summary['total']['n_violations']} link violations")
    return summary


# ------------------------------------------------------------------------------ validation


def _validate(samples, label_field, cuboid_slice, camera_slices, intrinsics_field,
              extrinsics_field, violations_field):
    """``(cuboid slice, {camera slice: flat view})`` once every parameter checks out."""
    dataset = root_dataset(samples)
    if dataset.media_type != "group":
        raise ValueError(
            f"dataset '{dataset.name}' is not grouped: the cross-sensor check needs scenes "
            "(groups) with a point-cloud slice and camera slices"
        )
    detections_field(samples, label_field)
    check_violations_field(dataset, violations_field, label_field)
    views = checkable_slice_views(samples)
    in_3d = sorted(s for s, (_, is_3d) in views.items() if is_3d)
    images = sorted(s for s, (_, is_3d) in views.items() if not is_3d)
    if cuboid_slice is None:
        if len(in_3d) != 1:
            raise ValueError(
                f"choose the cuboids' slice (cuboid_slice): the collection has "
                f"{len(in_3d)} point-cloud / 3D slices {in_3d}"
            )
        cuboid_slice = in_3d[0]
    elif cuboid_slice not in in_3d:
        raise ValueError(f"cuboid_slice {cuboid_slice!r} is not a point-cloud / 3D slice; choose one of {in_3d}")
    cameras = images if camera_slices is None else list(camera_slices)
    unknown = [s for s in cameras if s not in images]
    if unknown or not cameras:
        raise ValueError(f"camera_slices must be image slices of the collection {images}; got {cameras}")
    for name, path in (("intrinsics_field", intrinsics_field), ("extrinsics_field", extrinsics_field)):
        if not isinstance(path, str) or dataset.get_field(path) is None:
            raise ValueError(
                f"{name} {path!r} is not a field of dataset '{dataset.name}': store each camera "
                "sample's calibration (K as 9 numbers, the cuboid frame -> camera transform as "
                "16, row-major) and name the fields"
            )
    return cuboid_slice, {s: views[s][0] for s in [cuboid_slice, *cameras]}


# ----------------------------------------------------------------------------------- reading


@dataclass
class _SceneLabels:
    """The slices' labels and the camera images to check, as the kernel's flat arrays."""

    cuboid_slice: str
    cameras: list  # camera slice names
    rows: dict  # slice name -> LabelRows
    views: dict  # slice name -> flat view
    images: list  # (camera slice, camera sample index, cuboid sample index) per image
    K: np.ndarray  # (m, 3, 3)
    T: np.ndarray  # (m, 4, 4)
    size: np.ndarray  # (m, 2)
    cuboid_rows: np.ndarray  # kernel cuboid row -> row of the cuboid slice's LabelRows
    cuboid_image: np.ndarray
    box_slice: list  # kernel box row -> camera slice
    box_rows: np.ndarray  # kernel box row -> row of that slice's LabelRows
    box_image: np.ndarray
    skipped: dict


def _projectable(rows: LabelRows, is_3d: bool) -> np.ndarray:
    """Rows the kernel can take (the malformed ones are the gate's to report)."""
    geometry = rows.geometry
    ok = np.isfinite(geometry).all(axis=1) & np.array([isinstance(x, str) for x in rows.label], bool)
    if is_3d:
        return ok & (rows.kind == "cuboid") & (geometry[:, 3:6] > 0).all(axis=1)
    return ok & (rows.kind == "detection") & (geometry[:, 2:4] >= 0).all(axis=1)


def _read_scene_labels(dataset, views, cuboid_slice, label_field, intrinsics_field,
                       extrinsics_field, violations_field) -> _SceneLabels:
    group = {"group": f"{dataset.group_field}.id"}
    camera_extra = {
        **group,
        "K": intrinsics_field,
        "T": extrinsics_field,
        "width": "metadata.width",
        "height": "metadata.height",
    }
    rows = {
        name: read_slice(view, name == cuboid_slice, label_field, violations_field,
                         group if name == cuboid_slice else camera_extra)
        for name, view in views.items()
    }
    cub = rows[cuboid_slice]
    cuboid_ok = _projectable(cub, True)
    by_scene = {g: i for i, g in enumerate(cub.extra["group"]) if cub.present[i]}
    # each cuboid sample's projectable rows (rows follow sample order)
    starts = np.searchsorted(cub.sample, np.arange(len(cub.sample_ids) + 1))
    skipped = {
        "unlabeled_images": 0,
        "uncalibrated_images": 0,
        "unsized_images": 0,  # no metadata.width / height: run dataset.compute_metadata()
        "malformed_labels": int((~cuboid_ok).sum()),
    }
    images, K, T, size = [], [], [], []
    cuboid_rows, cuboid_image, box_slice, box_rows, box_image = [], [], [], [], []
    cameras = [s for s in views if s != cuboid_slice]
    for name in cameras:
        cam = rows[name]
        box_ok = _projectable(cam, False)
        skipped["malformed_labels"] += int((~box_ok).sum())
        box_starts = np.searchsorted(cam.sample, np.arange(len(cam.sample_ids) + 1))
        for i, g in enumerate(cam.extra["group"]):
            c = by_scene.get(g)
            if c is None or not cam.present[i]:
                skipped["unlabeled_images"] += 1
                continue
            try:
                k_mat, t_mat = calibration(cam.extra["K"][i], cam.extra["T"][i])
            except (TypeError, ValueError):
                skipped["uncalibrated_images"] += 1
                continue
            width, height = cam.extra["width"][i], cam.extra["height"][i]
            if not (width and height):
                skipped["unsized_images"] += 1
                continue
            image = len(images)
            images.append((name, i, c))
            K.append(k_mat)
            T.append(t_mat)
            size.append((width, height))
            mine = np.arange(starts[c], starts[c + 1])
            mine = mine[cuboid_ok[mine]]
            cuboid_rows.append(mine)
            cuboid_image.append(np.full(len(mine), image))
            boxes = np.arange(box_starts[i], box_starts[i + 1])
            boxes = boxes[box_ok[boxes]]
            box_slice.extend([name] * len(boxes))
            box_rows.append(boxes)
            box_image.append(np.full(len(boxes), image))

    def cat(parts):
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    return _SceneLabels(
        cuboid_slice=cuboid_slice,
        cameras=cameras,
        rows=rows,
        views=views,
        images=images,
        K=np.array(K, float).reshape(-1, 3, 3),
        T=np.array(T, float).reshape(-1, 4, 4),
        size=np.array(size, float).reshape(-1, 2),
        cuboid_rows=cat(cuboid_rows),
        cuboid_image=cat(cuboid_image),
        box_slice=box_slice,
        box_rows=cat(box_rows),
        box_image=cat(box_image),
        skipped=skipped,
    )


# ------------------------------------------------------------------------- linking, planning


def _link(scene: _SceneLabels, params: LinkParams):
    cub = scene.rows[scene.cuboid_slice]
    # One gather per camera slice (its boxes' rows), not one per box.
    of_slice = np.array(scene.box_slice, dtype=object)
    box_label = np.empty(len(of_slice), dtype=object)
    boxes = np.zeros((len(of_slice), 4))
    for name in scene.cameras:
        at = of_slice == name
        box_label[at] = scene.rows[name].label[scene.box_rows[at]]
        boxes[at] = scene.rows[name].geometry[scene.box_rows[at]]
    return link_labels(
        scene.cuboid_image,
        cub.label[scene.cuboid_rows],
        cub.geometry[scene.cuboid_rows],
        scene.box_image,
        box_label,
        boxes,
        scene.K,
        scene.T,
        scene.size,
        params,
    )


def _plans(scene: _SceneLabels, links, label_field: str) -> dict[str, SlicePlan]:
    """Each slice's writes: every violation recorded on its camera and its cuboid sample."""
    cub = scene.rows[scene.cuboid_slice]
    new: dict[str, dict[int, list]] = {name: {} for name in scene.rows}
    for rule, c, b, image, detail in zip(
        links.rule.tolist(), links.cuboid_row.tolist(), links.box_row.tolist(),
        links.image.tolist(), links.detail.tolist(),
    ):
        camera, cam_sample, cub_sample = scene.images[image]
        cam = scene.rows[camera]
        cuboid = int(scene.cuboid_rows[c]) if c >= 0 else None
        box = int(scene.box_rows[b]) if b >= 0 else None
        label = cam.label[box] if box is not None else cub.label[cuboid]
        text = f"{camera} camera: {detail}"
        new[camera].setdefault(cam_sample, []).append(
            _record(label_field, rule, label, None if box is None else cam.label_id[box], text)
        )
        new[scene.cuboid_slice].setdefault(cub_sample, []).append(
            _record(label_field, rule, label, None if cuboid is None else cub.label_id[cuboid], text)
        )
    plans = {}
    for name, rows in scene.rows.items():
        records = sum(len(v) for v in new[name].values())
        plans[name] = plan_changes(
            scene.views[name],
            rows,
            label_field,
            new[name],
            lambda r: r["field"] == label_field and r["rule"] in LINK_RULES,
            {"n_samples": len(rows.sample_ids), "n_violations": records},
        )
    return plans


def _record(field: str, rule: str, label, label_id, detail: str) -> dict:
    return {"field": field, "rule": rule, "label": label, "label_id": label_id, "detail": detail}


def _summary(scene, links, plans, label_field, cuboid_slice, params) -> dict:
    cub = scene.rows[scene.cuboid_slice]
    listed = []
    for rule, c, b, image, detail in list(
        zip(links.rule, links.cuboid_row, links.box_row, links.image, links.detail)
    )[:_LISTED]:
        camera, cam_sample, cub_sample = scene.images[image]
        listed.append(
            {
                "rule": rule,
                "camera_slice": camera,
                "camera_sample_id": scene.rows[camera].sample_ids[cam_sample],
                "cuboid_sample_id": cub.sample_ids[cub_sample],
                "detail": detail,
            }
        )
    for plan in plans.values():
        plan.summary["quarantined"] = plan.quarantined
    return {
        "label_field": label_field,
        "run_key": link_run_key(label_field),
        "checked_at": now(),
        "cuboid_slice": cuboid_slice,
        "camera_slices": scene.cameras,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()},
        "total": {
            "n_images": len(scene.images),
            "n_cuboids": int(len(np.unique(scene.cuboid_rows))),
            "n_boxes": int(len(scene.box_rows)),
            "n_violations": int(len(links.rule)),
            "by_rule": links.counts(),
        },
        "per_slice": {name: plan.summary for name, plan in plans.items()},
        "skipped": scene.skipped,
        "quarantined": sum(p.quarantined for p in plans.values()),
        "newly_tagged": sum(len(p.to_tag) for p in plans.values()),
        "released": sum(len(p.to_untag) for p in plans.values()),
        "violations": listed,
    }
