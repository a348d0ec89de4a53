"""Detectors trained by ``train_detector`` (Ultralytics YOLO), as autolabelers.

The checkpoint is a training run's name (its record must be ``completed``; the weights are
read from the record), a local ``.pt`` path, or nothing for the dataset's latest completed
run. A trained detector has a closed vocabulary: each of its class names is matched to the
prompt that names it (ignoring case and spacing), and boxes of a class no prompt names come
back with prompt ``-1`` so that the caller drops and counts them.

:class:`UltralyticsDetector` is shared with :mod:`.yolo_world`, which sets the vocabulary
from the prompts instead.
"""

from __future__ import annotations

from pathlib import Path

from .base import Box, ZeroShotDetector, normalise


def resolve_checkpoint(checkpoint: str | None, dataset=None) -> str:
    """The ``.pt`` of a training run (by name; default the latest completed) or a path."""
    from .. import runs

    if checkpoint and (checkpoint.endswith(".pt") or "/" in checkpoint or "\\" in checkpoint):
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ValueError(f"the trained detector needs weights: {path.resolve()} does not exist")
        return str(path.resolve())
    if dataset is None:
        raise ValueError("a training run name needs the dataset whose run records hold it")
    if checkpoint:
        record = runs.get_run(dataset, checkpoint)
        if record.status != runs.STATUS_COMPLETED:
            raise ValueError(f"training run '{checkpoint}' is {record.status}; it has no weights")
    else:
        done = runs.list_runs(dataset, status=runs.STATUS_COMPLETED)
        if not done:
            raise ValueError(
                f"dataset '{dataset.name}' has no completed training run; train a detector "
                "first (train_detector) or pass a .pt checkpoint"
            )
        record = done[-1]
    if not record.weights or not Path(record.weights).is_file():
        raise ValueError(
            f"the weights of training run '{record.name}' are missing ({record.weights}); "
            "this machine cannot see that run's files"
        )
    return record.weights


class UltralyticsDetector(ZeroShotDetector):
    """An Ultralytics detector behind the :class:`.base.ZeroShotDetector` interface.

    Parameters
    ----------
    name, checkpoint : str
        Registry name and weights file.
    model : ultralytics.YOLO
    device : str
        Torch device string.
    half : bool
        Float16 inference (CUDA).
    imgsz : int, optional
        Inference size; default the size the checkpoint was trained at.
    """

    def __init__(self, name: str, checkpoint: str, model, *, device: str, half: bool, imgsz=None):
        if imgsz is not None and (isinstance(imgsz, bool) or int(imgsz) != imgsz or imgsz < 32):
            raise ValueError(f"imgsz must be an integer >= 32; got {imgsz!r}")
        self.name = name
        self.checkpoint = checkpoint
        self.model = model
        self.device = device
        self.half = half
        self.imgsz = imgsz

    def _prompt_of_class(self, prompts: list[str]) -> list[int]:
        """Prompt index of each model class (``-1``: no prompt names it)."""
        index = {}
        for i, prompt in enumerate(prompts):
            index.setdefault(normalise(prompt), i)
        names = self.model.names
        return [index.get(normalise(names[c]), -1) for c in range(len(names))]

    def _detect(self, images: list, prompts: list[str], min_confidence: float) -> list[list[Box]]:
        prompt_of_class = self._prompt_of_class(prompts)
        import torch

        extra = {} if self.imgsz is None else {"imgsz": int(self.imgsz)}
        threads = torch.get_num_threads()
        try:
            results = self.model.predict(
                images,
                conf=min_confidence,
                device=self.device,
                quantize=16 if self.half else 32,
                batch=len(images),
                verbose=False,
                **extra,
            )
        finally:
            # Ultralytics' device selection leaves torch one CPU thread short, process-wide.
            torch.set_num_threads(threads)
        names = self.model.names
        out = []
        for result in results:
            boxes = []
            for (x0, y0, x1, y1), score, cls in zip(
                result.boxes.xyxyn.tolist(), result.boxes.conf.tolist(), result.boxes.cls.tolist()
            ):
                prompt = prompt_of_class[int(cls)]
                text = prompts[prompt] if prompt >= 0 else str(names[int(cls)])
                boxes.append(Box((x0, y0, x1 - x0, y1 - y0), float(score), prompt, text))
            out.append(boxes)
        return out


def load_trained(checkpoint: str, *, device: str, half: bool, imgsz: int | None = None):
    """A YOLO detector from a trained ``.pt``."""
    from ultralytics import YOLO

    return UltralyticsDetector(
        "trained", checkpoint, YOLO(checkpoint), device=device, half=half, imgsz=imgsz
    )
