"""Defaults and validation of a detector's training, prediction and evaluation parameters.

What ``train_detector``, ``apply_detector`` and ``evaluate_model`` (:mod:`.detector`) accept,
checked before anything is written: the camera slice, the next free run name, the image size
a slice needs, the prediction targets and evaluation splits, and the whole set of training
parameters as they are recorded on the run.
"""

from __future__ import annotations

import datetime
import math
import os

import fiftyone as fo

from ..core.names import DEFAULT_EVAL_KEY, DEFAULT_GT_FIELD, MINING_EVAL_KEY
from ..core.views import camera_slice, default_camera_slice
from ..quality.labels import detections_field
from . import runs
from .lite0_detector import LITE0_DETECTOR

__all__ = [
    "DEFAULT_MODEL",
    "SPLITS",
    "TARGETS",
    "TARGET_MINING",
    "TARGET_POOL",
    "TARGET_SLICE",
    "TARGET_TEST",
    "TARGET_VIEW",
    "TRAIN_PARAMS",
    "check_slice",
    "default_imgsz",
    "next_run_name",
    "split_eval_key",
    "train_params",
]

DEFAULT_MODEL = LITE0_DETECTOR
TARGET_TEST = "test"
TARGET_MINING = "mining"
TARGET_POOL = "pool"
TARGET_SLICE = "slice"
TARGET_VIEW = "view"
#: Where ``apply_detector`` can predict: target -> what it is for.
TARGETS = {
    TARGET_TEST: "Frozen test set of the slice (what the ledger's evaluation needs)",
    TARGET_MINING: "Frozen mining set of the slice (what failure targeting needs)",
    TARGET_POOL: "Unlabeled pool of the slice (what uncertainty targeting needs)",
    TARGET_SLICE: "Every sample of the slice",
    TARGET_VIEW: "The current view's samples of the slice",
}
#: The frozen splits ``evaluate_model`` scores.
SPLITS = ("test", "mining")
#: Keyword parameters of :func:`train_params` (and ``train_detector``) besides the dataset
#: and ``slice_name``: the operator's parameters of the same names.
TRAIN_PARAMS = (
    "run_name",
    "label_field",
    "model",
    "checkpoint",
    "epochs",
    "steps",
    "imgsz",
    "batch",
    "warmup_epochs",
    "freeze",
    "rect",
    "val_fraction",
    "val_each_epoch",
    "seed",
    "overwrite",
    "output_dir",
)


def check_slice(dataset: fo.Dataset, slice_name: str | None) -> str | None:
    """Validate a camera-slice choice; a grouped dataset falls back to its default camera slice.

    Parameters
    ----------
    dataset : fiftyone.core.dataset.Dataset
        The dataset the slice belongs to.
    slice_name : str or None
        A camera slice of a grouped dataset; None for a flat one (or the default slice).

    Returns
    -------
    str or None
        The slice in effect.
    """
    if dataset.media_type == "group" and not slice_name:
        slice_name = default_camera_slice(dataset)
    camera_slice(dataset, slice_name)
    return slice_name


def split_eval_key(split: str) -> str:
    """The evaluation key a frozen split's evaluation is stored under by default."""
    return MINING_EVAL_KEY if split == "mining" else DEFAULT_EVAL_KEY


def next_run_name(dataset: fo.Dataset) -> str:
    """The first free ``round_<n>`` name, counting from the number of recorded runs."""
    taken = {r.name for r in runs.list_runs(dataset)}
    index = len(taken)
    while f"round_{index}" in taken:
        index += 1
    return f"round_{index}"


def default_imgsz(dataset: fo.Dataset, slice_name: str | None) -> int:
    """The slice's largest image side, rounded up to the model stride (32), at most 640."""
    view = camera_slice(dataset, slice_name)
    sides = [v for v in (view.bounds("metadata.width")[1], view.bounds("metadata.height")[1]) if v]
    if not sides:
        return 640
    return min(640, 32 * math.ceil(max(sides) / 32))


def train_params(
    dataset: fo.Dataset,
    *,
    slice_name: str | None = None,
    run_name: str | None = None,
    label_field: str | None = None,
    model: str | None = None,
    checkpoint: str | None = None,
    epochs: int = 20,
    steps: int | None = None,
    imgsz: int | None = None,
    batch: int = 16,
    warmup_epochs: float = 3.0,
    freeze: int = 0,
    rect: bool = False,
    val_fraction: float = 0.2,
    val_each_epoch: bool = True,
    seed: int = 0,
    overwrite: bool = False,
    output_dir: str | None = None,
) -> dict:
    """Validated, JSON-serialisable training parameters with defaults filled in.

    Empty values take the defaults: the next free run name, the dataset's default camera
    slice, ``ground_truth``, :data:`DEFAULT_MODEL`, the slice's image size and a fresh
    directory under FiftyOne's dataset directory.

    Returns
    -------
    dict
        The parameters as the run records them (keys as the operator's parameters, with
        ``slice`` for the slice).

    Raises
    ------
    ValueError
        For a taken run name (without ``overwrite``), an unknown slice or label field, or a
        count or share out of range.
    """
    run_name = run_name or next_run_name(dataset)
    runs.run_key(run_name)
    overwrite = bool(overwrite)
    if not overwrite and dataset.has_run(runs.run_key(run_name)) and not runs.is_stale(dataset, run_name):
        raise ValueError(f"training run '{run_name}' already exists; choose another name or overwrite it")
    slice_name = check_slice(dataset, slice_name)
    label_field = label_field or DEFAULT_GT_FIELD
    detections_field(dataset, label_field)
    counts = {"epochs": epochs, "imgsz": imgsz or default_imgsz(dataset, slice_name), "batch": batch}
    if steps is not None:
        counts["steps"] = steps
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    if isinstance(freeze, bool) or not isinstance(freeze, (int, float)) or int(freeze) != freeze or freeze < 0:
        raise ValueError(f"freeze must be an integer >= 0 (layers kept frozen); got {freeze!r}")
    val_fraction = float(val_fraction)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1); got {val_fraction!r}")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    output_dir = output_dir or os.path.join(
        fo.config.default_dataset_dir, "annoloop", dataset.name, "train", f"{run_name}-{stamp}"
    )
    return {
        "run_name": run_name,
        "overwrite": overwrite,
        "slice": slice_name,
        "label_field": label_field,
        "model": model or DEFAULT_MODEL,
        "checkpoint": checkpoint or None,
        "steps": None,
        **{k: int(v) for k, v in counts.items()},
        "val_fraction": val_fraction,
        "rect": bool(rect),
        "val_each_epoch": bool(val_each_epoch),
        "warmup_epochs": float(warmup_epochs),
        "freeze": int(freeze),
        "seed": int(seed),
        "output_dir": output_dir,
    }
