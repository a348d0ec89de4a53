"""Ultralytics YOLO: fine-tune on a YOLO export, predict into FiftyOne ``Detections``.

Model source, in order: an explicit ``checkpoint`` (a local ``.pt``; missing is an error),
else ``<model>.pt`` when it is present in the working directory or Ultralytics' weights
directory, else ``<model>.yaml`` built with random weights, except ``yolov8n-lite0``
(:mod:`.lite0_detector`), whose backbone starts from ImageNet weights installed with a pip
package. Nothing is downloaded, so the same code runs offline and with real checkpoints; the
result records which source was used.

Training runs on the first CUDA device when there is one, else on the CPU, with Ultralytics'
plots off (they would try to download fonts). A ``progress(fraction, label)`` callback is
called from Ultralytics' ``on_fit_epoch_end`` hook (after each epoch's validation).
Ultralytics and torch are imported inside the functions: FiftyOne imports the plugin for
every operator call.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import fiftyone as fo
from fiftyone import ViewField as F

from ..core.efficientnet_lite0 import missing_efficientnet_message
from ..core.media import unreadable_images
from ..core.runs import Progress
from ..core.names import DEFAULT_PRED_FIELD
from ..core.views import camera_slice
from .lite0_detector import LITE0_DETECTOR, LITE0_DETECTOR_YAML, register_lite0_backbone

__all__ = [
    "MODEL_CHOICES",
    "PredictResult",
    "TrainResult",
    "predict_detections",
    "resolve_model_source",
    "select_device",
    "train_yolo",
]

#: Model names offered in forms; any Ultralytics detection model name works in the SDK.
MODEL_CHOICES = (
    LITE0_DETECTOR, "yolov8n", "yolov8s", "yolov8m", "yolo11n", "yolo11s", "yolo11m"
)
#: Samples whose predictions are written to the database in one bulk ``set_values``.
_WRITE_CHUNK = 1024


@dataclass(frozen=True)
class TrainResult:
    """A finished training.

    Attributes
    ----------
    weights : str
        Best checkpoint (``best.pt``; ``last.pt`` when no best was saved).
    save_dir : str
        Ultralytics' run directory.
    metrics : dict of str to float
        Final validation metrics (keys as Ultralytics names them, dots replaced).
    epochs : int
        Epochs trained.
    epoch_seconds : list of float
        Wall time of each epoch, training plus validation.
    device : str
        Device used (``"cpu"``, ``"0"``, ...).
    model_source : str
        What the model was built from: a ``.pt`` path or a ``.yaml`` name (random init).
    """

    weights: str
    save_dir: str
    metrics: dict[str, float]
    epochs: int
    epoch_seconds: list[float] = field(default_factory=list)
    device: str = "cpu"
    model_source: str = ""

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


@dataclass(frozen=True)
class PredictResult:
    """What :func:`predict_detections` wrote.

    Attributes
    ----------
    label_field : str
        Field written.
    num_samples : int
        Samples predicted.
    num_detections : int
        Boxes written.
    seconds : float
        Wall time, loading the model included.
    """

    label_field: str
    num_samples: int
    num_detections: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.num_samples / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return {**asdict(self), "images_per_second": self.images_per_second}


def select_device(device: str | None = None) -> str:
    """``device`` when given, else ``"0"`` (first CUDA device) when CUDA works, else ``"cpu"``."""
    if device:
        return str(device)
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


def resolve_model_source(model: str = LITE0_DETECTOR, checkpoint: str | None = None) -> str:
    """The file or model YAML to build the detector from (see the module docstring).

    Parameters
    ----------
    model : str, default="yolov8n-lite0"
        Ultralytics model name, without extension.
    checkpoint : str, optional
        A local ``.pt`` file; it must exist.

    Returns
    -------
    str
        A checkpoint path, or the model's YAML (random weights, but for the Lite0 backbone).
    """
    if checkpoint:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ValueError(f"checkpoint '{checkpoint}' does not exist (or is not a file)")
        return str(path.resolve())
    if not model or any(sep in model for sep in ("/", "\\")) or model.endswith((".pt", ".yaml")):
        raise ValueError(
            f"model must be a bare Ultralytics model name such as 'yolov8n'; got {model!r} "
            "(pass a file as `checkpoint`)"
        )
    if model == LITE0_DETECTOR:
        missing = missing_efficientnet_message(f"model '{LITE0_DETECTOR}'")
        if missing:
            raise ValueError(missing)
        return str(LITE0_DETECTOR_YAML)
    from ultralytics.utils import WEIGHTS_DIR

    for directory in (Path.cwd(), Path(WEIGHTS_DIR)):
        candidate = directory / f"{model}.pt"
        if candidate.is_file():
            return str(candidate.resolve())
    from ultralytics.nn.tasks import yaml_model_load

    try:
        yaml_model_load(f"{model}.yaml")
    except FileNotFoundError:
        raise ValueError(
            f"unknown model {model!r}: Ultralytics has no {model}.yaml; choose one of "
            f"{list(MODEL_CHOICES)}"
        ) from None
    return f"{model}.yaml"


def train_yolo(
    data_yaml: str,
    output_dir: str,
    *,
    model: str = LITE0_DETECTOR,
    checkpoint: str | None = None,
    epochs: int = 10,
    imgsz: int = 640,
    batch: int = 16,
    warmup_epochs: float = 3.0,
    freeze: int = 0,
    rect: bool = False,
    mosaic: float = 1.0,
    val_each_epoch: bool = True,
    device: str | None = None,
    seed: int = 0,
    workers: int = 0,
    progress: Progress | None = None,
) -> TrainResult:
    """Fine-tune (or train from scratch) an Ultralytics detector on a YOLO export.

    Parameters
    ----------
    data_yaml : str
        ``dataset.yaml`` written by :func:`.export.export_yolo`.
    output_dir : str
        Ultralytics writes its run (weights, ``results.csv``) to ``output_dir/train``.
    model : str, default="yolov8n-lite0"
        Model name; see :func:`resolve_model_source`.
    checkpoint : str, optional
        Local ``.pt`` to start from (e.g. the previous round's ``best.pt``).
    epochs, imgsz, batch : int
        Ultralytics' training parameters (``imgsz`` is rounded up to the model stride).
        One optimizer step per batch: Ultralytics' nominal batch of 64 would accumulate
        gradients over ``64 / batch`` batches, leaving a labeling round of a few dozen images
        with a handful of steps (measured on the demo: test mAP stayed 0 until ~130 steps).
    warmup_epochs : float, default=3.0
        Learning-rate warm-up; fine-tuning a previous round's weights needs little.
    freeze : int, default=0
        Ultralytics' ``freeze``: the first ``freeze`` layers keep their starting weights.
        ``yolov8n-lite0``'s layer 0 is its whole ImageNet backbone, so 1 trains only the neck
        and head: steps ~1.8x faster on the demo, and test mAP 0.155 against 0.229 after
        150 steps (``bench_training_steps.py``).
    rect : bool, default=False
        Rectangular batches: wide images keep their aspect ratio instead of being
        letterboxed into a square, so small objects keep their pixels (the demo's 384x128
        images: 3x fewer pixels per step, and 8-15 px objects stay 8-15 px).
    mosaic : float, default=1.0
        Ultralytics' mosaic augmentation probability (rectangular batches do not use it).
    val_each_epoch : bool, default=True
        Validate after every epoch (``best.pt`` is then the best epoch); False validates
        only after the last one, which saves most of a short round's time.
    device : str, optional
        Ultralytics device string; default :func:`select_device`.
    seed : int, default=0
        Ultralytics' seed (deterministic mode on).
    workers : int, default=0
        Dataloader worker processes (0 loads in the training process).
    progress : callable, optional
        ``progress(fraction, label)``, called after every epoch.

    Returns
    -------
    TrainResult
    """
    _check_positive(epochs=epochs, imgsz=imgsz, batch=batch)
    if isinstance(warmup_epochs, bool) or not 0 <= float(warmup_epochs) <= 100:
        raise ValueError(f"warmup_epochs must be a number in [0, 100]; got {warmup_epochs!r}")
    if isinstance(freeze, bool) or int(freeze) != freeze or freeze < 0:
        raise ValueError(f"freeze must be an integer >= 0; got {freeze!r}")
    if isinstance(workers, bool) or int(workers) != workers or workers < 0:
        raise ValueError(f"workers must be an integer >= 0; got {workers!r}")
    if not os.path.isfile(data_yaml):
        raise ValueError(f"data_yaml '{data_yaml}' does not exist; export the samples first")
    source = resolve_model_source(model, checkpoint)
    device = select_device(device)

    from ultralytics import YOLO

    # Fine-tuning rebuilds the model from the YAML a checkpoint carries, Lite0's included.
    register_lite0_backbone()
    detector = YOLO(source)

    epoch_seconds: list[float] = []
    started: list[float] = []

    def on_epoch_start(trainer) -> None:
        started.append(time.perf_counter())

    def on_epoch_end(trainer) -> None:
        # Ultralytics fires this hook once more after the last epoch, for the final
        # validation of best.pt, with `epoch` stepped past the end.
        final = trainer.epoch >= trainer.epochs
        if not final:
            epoch_seconds.append(time.perf_counter() - started[-1])
        if progress is not None:
            fitness = trainer.metrics.get("metrics/mAP50-95(B)")
            tail = "" if fitness is None else f"val mAP50-95 {float(fitness):.3f}"
            if final:
                progress(1.0, f"best weights: {tail}")
            else:
                done = trainer.epoch + 1
                progress(done / trainer.epochs, f"epoch {done}/{trainer.epochs}, {tail}")

    detector.add_callback("on_train_epoch_start", on_epoch_start)
    detector.add_callback("on_fit_epoch_end", on_epoch_end)
    detector.train(
        data=data_yaml,
        epochs=int(epochs),
        imgsz=int(imgsz),
        batch=int(batch),
        nbs=int(batch),
        warmup_epochs=float(warmup_epochs),
        freeze=int(freeze),
        rect=bool(rect),
        mosaic=float(mosaic),
        val=bool(val_each_epoch),
        device=device,
        workers=int(workers),
        seed=int(seed),
        deterministic=True,
        plots=False,
        project=str(Path(output_dir).resolve()),
        name="train",
        exist_ok=True,
        verbose=False,
    )
    trainer = detector.trainer
    weights = trainer.best if Path(trainer.best).is_file() else trainer.last
    if not Path(weights).is_file():
        raise RuntimeError(f"Ultralytics finished without writing weights to {trainer.save_dir}")
    metrics = {key.replace(".", "_"): float(value) for key, value in trainer.metrics.items()}
    return TrainResult(
        weights=str(weights),
        save_dir=str(trainer.save_dir),
        metrics=metrics,
        epochs=len(epoch_seconds),
        epoch_seconds=epoch_seconds,
        device=device,
        model_source=source,
    )


def predict_detections(
    samples: fo.core.collections.SampleCollection,
    weights: str,
    *,
    slice_name: str | None = None,
    label_field: str = DEFAULT_PRED_FIELD,
    imgsz: int = 640,
    conf: float = 0.25,
    iou: float = 0.7,
    batch_size: int = 16,
    device: str | None = None,
    progress: Progress | None = None,
) -> PredictResult:
    """Predict boxes for one camera slice of ``samples`` and store them as ``Detections``.

    Images go through the model ``batch_size`` at a time; predictions are written in bulk
    (``set_values``) every ``1024`` samples, so memory stays bounded on large views.

    Parameters
    ----------
    samples : SampleCollection
        Dataset or view to predict on.
    weights : str
        A trained ``.pt`` (e.g. :attr:`TrainResult.weights`).
    slice_name : str or None
        Camera slice of a grouped dataset; None for a flat image dataset.
    label_field : str, default="predictions"
        Field to write. A field holding labels without confidences (annotations) is
        refused, so ground truth is never overwritten.
    imgsz : int, default=640
        Inference size (use the training size).
    conf, iou : float
        Confidence threshold and NMS IoU threshold, in (0, 1].
    batch_size : int, default=16
        Images per forward pass.
    device : str, optional
        Ultralytics device string; default :func:`select_device`.
    progress : callable, optional
        ``progress(fraction, label)`` after every batch.

    Returns
    -------
    PredictResult

    Raises
    ------
    ValueError
        On bad thresholds or sizes, missing weights, a field holding annotations, or
        images missing or unreadable on disk; nothing is written then.
    """
    _check_positive(imgsz=imgsz, batch_size=batch_size)
    for name, value in (("conf", conf), ("iou", iou)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{name} must lie in (0, 1]; got {value!r}")
    if not weights or not os.path.isfile(weights):
        raise ValueError(f"weights '{weights}' do not exist; train a detector first")
    view = camera_slice(samples, slice_name)
    _check_writable(view, label_field)
    bad = unreadable_images(view.values("filepath"))
    if bad:
        raise ValueError(
            f"{len(bad)} of {len(view)} images to predict on are missing or unreadable, e.g. "
            f"{bad[:3]}; nothing was predicted. Restore the files or predict on a view "
            "without them"
        )
    device = select_device(device)

    from fiftyone.utils.ultralytics import to_detections
    from ultralytics import YOLO

    start = time.perf_counter()
    detector = YOLO(weights)
    ids, paths = view.values(["id", "filepath"])
    pending: dict[str, fo.Detections] = {}
    num_detections = 0
    for begin in range(0, len(ids), batch_size):
        chunk = paths[begin : begin + batch_size]
        results = detector.predict(
            chunk, imgsz=imgsz, conf=conf, iou=iou, device=device, batch=len(chunk), verbose=False
        )
        detections = to_detections(list(results))
        num_detections += sum(len(d.detections) for d in detections)
        pending.update(zip(ids[begin : begin + batch_size], detections))
        if len(pending) >= _WRITE_CHUNK:
            view.set_values(label_field, pending, key_field="id")
            pending = {}
        if progress is not None:
            done = min(begin + batch_size, len(ids))
            progress(done / len(ids), f"predicted {done}/{len(ids)} images")
    if pending:
        view.set_values(label_field, pending, key_field="id")
    return PredictResult(
        label_field=label_field,
        num_samples=len(ids),
        num_detections=num_detections,
        seconds=time.perf_counter() - start,
    )


def _check_writable(view, label_field: str) -> None:
    if not label_field or not label_field.replace("_", "").isalnum():
        raise ValueError(f"label_field must be a plain field name; got {label_field!r}")
    existing = view.get_field(label_field)
    if existing is None:
        return
    if view.get_field_schema(embedded_doc_type=fo.Detections).get(label_field) is None:
        raise ValueError(f"field '{label_field}' exists and is not a Detections field")
    annotations = view.filter_labels(label_field, F("confidence") == None, only_matches=True)
    if len(annotations):
        raise ValueError(
            f"field '{label_field}' holds labels without confidences on {len(annotations)} "
            "samples (annotations?); choose another field for predictions"
        )


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
