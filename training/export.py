"""Export the trainable samples of one camera slice to YOLO format, with FiftyOne's exporter.

*Trainable* means: on the chosen camera slice, labeled (the label field is set; an empty
``Detections`` is a labeled background image), not in a frozen split (``split:test`` or
``split:golden`` anywhere in its group) and not quarantined by the schema gate (see
:mod:`.views`). The exclusion happens here, whatever view the caller passes, and is
checked again on disk after the export: images are exported as symlinks, so the export
resolves every written link and refuses (:class:`ExportLeakError`) if one points at the
media of a frozen or quarantined sample, or if the written images are not exactly the
selected ones. Samples whose media file is also the media of a frozen sample (a duplicate
added twice) are refused up front for the same reason.

Every image to export must exist and be readable (checked before anything is written):
Ultralytics would skip the others as "corrupt" and train on fewer samples than the run
records.

The train/val split is a seeded permutation of the sorted sample ids, so the same labels
and seed give the same split on any machine.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import fiftyone as fo
import numpy as np

from ..core.media import unreadable_images
from ..core.names import DEFAULT_GT_FIELD, QUARANTINE_TAG
from ..core.views import camera_slice, frozen_media, frozen_slice, quarantined_ids, real_paths, root_dataset

__all__ = [
    "ExportLeakError",
    "TrainableSamples",
    "YoloExport",
    "YoloExportPlan",
    "export_yolo",
    "plan_yolo_export",
    "require_empty_dir",
    "select_trainable",
    "write_yolo_export",
]


class ExportLeakError(RuntimeError):
    """An export wrote an image it must not have (frozen or quarantined), or missed one."""


@dataclass(frozen=True)
class TrainableSamples:
    """The trainable samples of a slice and why the others were left out.

    Attributes
    ----------
    view : DatasetView
        Flat image view of the trainable samples.
    num_slice_samples : int
        Samples on the slice (in the collection that was passed).
    num_frozen, num_quarantined, num_unlabeled : int
        Samples left out because they are frozen (test/golden), quarantined (and not
        frozen), or have no label (and are neither).
    num_duplicates_of_frozen : int
        Samples left out because their media file is a frozen sample's media.
    """

    view: fo.core.view.DatasetView
    num_slice_samples: int
    num_frozen: int
    num_quarantined: int
    num_unlabeled: int
    num_duplicates_of_frozen: int


@dataclass(frozen=True)
class YoloExport:
    """What :func:`export_yolo` wrote.

    Attributes
    ----------
    yaml_path : str
        The Ultralytics ``dataset.yaml``.
    export_dir : str
        Root of the export (``images/{train,val}``, ``labels/{train,val}``).
    slice_name : str or None
        Camera slice exported.
    label_field : str
        Label field exported.
    classes : list of str
        Class list, index = YOLO class id.
    train_ids, val_ids : list of str
        Sample ids in each split.
    num_objects : int
        Boxes exported (both splits).
    batches : list of str
        Annotation batches of the exported labels (their ``batch`` attribute, as the
        annotators write it), sorted; empty when the labels carry none.
    num_frozen, num_quarantined, num_unlabeled, num_duplicates_of_frozen : int
        Slice samples left out, by reason (see :class:`TrainableSamples`).
    """

    yaml_path: str
    export_dir: str
    slice_name: str | None
    label_field: str
    classes: list[str]
    train_ids: list[str]
    val_ids: list[str]
    num_objects: int
    batches: list[str]
    num_frozen: int
    num_quarantined: int
    num_unlabeled: int
    num_duplicates_of_frozen: int

    @property
    def num_samples(self) -> int:
        """Labeled samples exported (train + val)."""
        return len(self.train_ids) + len(self.val_ids)

    def to_dict(self, include_ids: bool = False) -> dict:
        """JSON-serialisable summary; sample ids only when asked (they can be many)."""
        d = asdict(self)
        d["num_samples"] = self.num_samples
        if not include_ids:
            d["num_train"] = len(d.pop("train_ids"))
            d["num_val"] = len(d.pop("val_ids"))
        return d


def select_trainable(
    samples: fo.core.collections.SampleCollection,
    slice_name: str | None = None,
    label_field: str = DEFAULT_GT_FIELD,
) -> TrainableSamples:
    """The labeled, gate-passing, non-frozen samples of one camera slice of ``samples``.

    Parameters
    ----------
    samples : SampleCollection
        A dataset or view (grouped or flat). Frozen splits are looked up on its whole
        dataset, so a view that hides the split tags cannot bring frozen samples back.
    slice_name : str or None
        Camera slice of a grouped dataset; None for a flat image dataset.
    label_field : str
        A ``Detections`` field.

    Returns
    -------
    TrainableSamples
    """
    dataset = root_dataset(samples)
    view = camera_slice(samples, slice_name)
    detection_fields = view.get_field_schema(embedded_doc_type=fo.Detections)
    if label_field not in detection_fields:
        raise ValueError(
            f"label field {label_field!r} is not a Detections field of dataset "
            f"'{dataset.name}'; its Detections fields are {sorted(detection_fields)}"
        )
    frozen = set(frozen_slice(dataset, slice_name).values("id"))
    quarantined = set(quarantined_ids(view, label_field)) - frozen
    kept = view.exclude(sorted(frozen | quarantined))
    labeled = kept.exists(label_field)
    frozen_paths = frozen_media(dataset)
    ids, paths = labeled.values(["id", "filepath"])
    duplicates = [i for i, p in zip(ids, paths) if os.path.realpath(p) in frozen_paths]
    num_in_view = len(view)
    return TrainableSamples(
        view=labeled.exclude(duplicates),
        num_slice_samples=num_in_view,
        num_frozen=num_in_view - len(view.exclude(sorted(frozen))),
        num_quarantined=len(quarantined),
        num_unlabeled=len(kept) - len(ids),
        num_duplicates_of_frozen=len(duplicates),
    )


@dataclass(frozen=True)
class YoloExportPlan:
    """What :func:`plan_yolo_export` chose, checked, before anything is written.

    Attributes
    ----------
    trainable : TrainableSamples
        The trainable samples and the counts of those left out.
    slice_name, label_field : str or None, str
        Camera slice and label field to export.
    classes : list of str
        Class list, index = YOLO class id.
    train_ids, val_ids : list of str
        Sample ids of each split.
    """

    trainable: TrainableSamples
    slice_name: str | None
    label_field: str
    classes: list[str]
    train_ids: list[str]
    val_ids: list[str]


def plan_yolo_export(
    samples: fo.core.collections.SampleCollection,
    *,
    slice_name: str | None = None,
    label_field: str = DEFAULT_GT_FIELD,
    classes: list[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> YoloExportPlan:
    """Choose and check what :func:`export_yolo` writes; reads only, so a caller can refuse
    bad input before it claims a run or a folder.

    Parameters are :func:`export_yolo`'s (without ``export_dir``).

    Raises
    ------
    ValueError
        On fewer than 2 trainable samples, images missing or unreadable on disk (the count
        and a few paths), or labels outside ``classes``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1); got {val_fraction!r}")
    trainable = select_trainable(samples, slice_name, label_field)
    view = trainable.view
    ids = sorted(view.values("id"))
    if len(ids) < 2:
        raise ValueError(
            f"need at least 2 labeled samples to train (one for validation); found {len(ids)} "
            f"in '{label_field}' on slice {slice_name!r} of {trainable.num_slice_samples} "
            f"samples ({trainable.num_unlabeled} unlabeled, {trainable.num_frozen} frozen "
            f"test/golden, {trainable.num_quarantined} quarantined, "
            f"{trainable.num_duplicates_of_frozen} duplicates of frozen media)"
        )
    _check_images(view, len(ids), slice_name, label_field)
    if classes is None:
        # The dataset's declared classes keep YOLO class ids stable from round to round.
        dataset = root_dataset(samples)
        classes = dataset.classes.get(label_field) or dataset.default_classes or None
    classes = _resolve_classes(view, label_field, classes)

    order = np.random.default_rng(seed).permutation(len(ids))
    num_val = min(len(ids) - 1, max(1, round(val_fraction * len(ids))))
    return YoloExportPlan(
        trainable=trainable,
        slice_name=slice_name,
        label_field=label_field,
        classes=classes,
        train_ids=sorted(ids[i] for i in order[num_val:]),
        val_ids=sorted(ids[i] for i in order[:num_val]),
    )


def require_empty_dir(export_dir: str) -> None:
    """Refuse an ``export_dir`` that holds files: a stale export would mix old images into
    training."""
    if os.path.isdir(export_dir) and os.listdir(export_dir):
        raise ValueError(f"export_dir '{export_dir}' is not empty; pass a new directory")


def write_yolo_export(plan: YoloExportPlan, export_dir: str) -> YoloExport:
    """Write ``plan`` to ``export_dir`` (must not exist or be empty) and check the result on
    disk (:class:`ExportLeakError` on a leak)."""
    require_empty_dir(export_dir)
    view = plan.trainable.view
    for split, split_ids in (("train", plan.train_ids), ("val", plan.val_ids)):
        view.select(split_ids).export(
            export_dir=export_dir,
            dataset_type=fo.types.YOLOv5Dataset,
            label_field=plan.label_field,
            split=split,
            classes=plan.classes,
            export_media="symlink",
        )

    exported_view = view.select(plan.train_ids + plan.val_ids)
    _check_export(export_dir, exported_view, plan.slice_name, plan.label_field)
    trainable = plan.trainable
    return YoloExport(
        yaml_path=os.path.join(export_dir, "dataset.yaml"),
        export_dir=export_dir,
        slice_name=plan.slice_name,
        label_field=plan.label_field,
        classes=plan.classes,
        train_ids=plan.train_ids,
        val_ids=plan.val_ids,
        num_objects=int(exported_view.count(f"{plan.label_field}.detections")),
        batches=_batches(exported_view, plan.label_field),
        num_frozen=trainable.num_frozen,
        num_quarantined=trainable.num_quarantined,
        num_unlabeled=trainable.num_unlabeled,
        num_duplicates_of_frozen=trainable.num_duplicates_of_frozen,
    )


def export_yolo(
    samples: fo.core.collections.SampleCollection,
    export_dir: str,
    *,
    slice_name: str | None = None,
    label_field: str = DEFAULT_GT_FIELD,
    classes: list[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> YoloExport:
    """Export the trainable samples of one camera slice as an Ultralytics YOLO dataset.

    Parameters
    ----------
    samples : SampleCollection
        A dataset or view; see :func:`select_trainable` for what is kept.
    export_dir : str
        Directory to write; must not exist or be empty (a stale export would mix old
        images into training).
    slice_name : str or None
        Camera slice of a grouped dataset; None for a flat image dataset.
    label_field : str, default="ground_truth"
        ``Detections`` field to export.
    classes : list of str, optional
        Class list (YOLO class ids follow its order). Default: the dataset's classes for
        the field (``dataset.classes[label_field]``), else its ``default_classes``, else
        the sorted labels found. Every label found must be in it.
    val_fraction : float, default=0.2
        Share of samples held out for Ultralytics' validation, in (0, 1); at least one
        sample goes to each split.
    seed : int, default=0
        Seed of the train/val permutation.

    Returns
    -------
    YoloExport

    Raises
    ------
    ValueError
        On a non-empty ``export_dir`` or the problems :func:`plan_yolo_export` refuses;
        nothing is written then.
    """
    require_empty_dir(export_dir)
    plan = plan_yolo_export(
        samples,
        slice_name=slice_name,
        label_field=label_field,
        classes=classes,
        val_fraction=val_fraction,
        seed=seed,
    )
    return write_yolo_export(plan, export_dir)


def _check_images(view, num_samples: int, slice_name: str | None, label_field: str) -> None:
    """Refuse an export with images that are missing or unreadable on disk.

    Ultralytics would skip them and train on fewer samples than the run records.
    """
    bad = unreadable_images(view.values("filepath"))
    if bad:
        raise ValueError(
            f"{len(bad)} of {num_samples} images to train on ('{label_field}' on slice "
            f"{slice_name!r}) are missing or unreadable, e.g. {bad[:3]}; nothing was exported "
            f"or trained. Restore the files, or leave those samples out (tag them "
            f"'{QUARANTINE_TAG}' or delete them) and train again"
        )


def _resolve_classes(view, label_field: str, classes: list[str] | None) -> list[str]:
    found = sorted(view.distinct(f"{label_field}.detections.label"))
    if classes is None:
        if not found:
            raise ValueError(
                f"the labeled samples hold no boxes in '{label_field}'; pass `classes` to "
                "train on background images only"
            )
        return found
    classes = list(classes)
    if not classes or not all(isinstance(c, str) and c for c in classes):
        raise ValueError(f"classes must be a non-empty list of non-empty strings; got {classes!r}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be unique; got {classes!r}")
    unknown = [c for c in found if c not in set(classes)]
    if unknown:
        counts = view.count_values(f"{label_field}.detections.label")
        detail = ", ".join(f"{c!r} ({counts[c]} boxes)" for c in unknown)
        raise ValueError(
            f"labels in '{label_field}' are not in classes {classes}: {detail}; "
            "add them to classes or fix the labels"
        )
    return classes


def _batches(view, label_field: str) -> list[str]:
    # `distinct` reads the stored attribute whether or not the schema declares it.
    return sorted(str(b) for b in view.distinct(f"{label_field}.detections.batch"))


def _check_export(export_dir: str, exported_view, slice_name: str | None, label_field: str) -> None:
    """Re-read the export from disk and refuse it if it holds anything it must not."""
    written = []
    for split in ("train", "val"):
        image_dir = os.path.join(export_dir, "images", split)
        written += [os.path.join(image_dir, f) for f in os.listdir(image_dir)]
    written_media = real_paths(written)

    dataset = root_dataset(exported_view)
    whole_slice = camera_slice(dataset, slice_name)
    quarantined = whole_slice.select(quarantined_ids(whole_slice, label_field))
    forbidden = frozen_media(dataset) | real_paths(quarantined.values("filepath"))
    leaked = sorted(written_media & forbidden)
    if leaked:
        raise ExportLeakError(
            f"export '{export_dir}' holds {len(leaked)} frozen or quarantined images, "
            f"e.g. {leaked[:3]}; it must not be trained on"
        )
    expected = real_paths(exported_view.values("filepath"))
    if written_media != expected:
        raise ExportLeakError(
            f"export '{export_dir}' wrote {len(written_media)} images but {len(expected)} "
            f"were selected ({len(written_media - expected)} unexpected, "
            f"{len(expected - written_media)} missing)"
        )
