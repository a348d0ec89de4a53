"""The one autolabel detector interface and the registry of models that implement it.

A detector takes a batch of RGB images and a list of text prompts and returns, per image,
the boxes it finds: relative ``[x, y, w, h]`` (top-left corner and size, FiftyOne's
convention), a score in [0, 1], and the index of the prompt the box answers. Open-vocabulary
models (OWLv2, OWL-ViT, Grounding DINO, YOLO-World) detect the prompts themselves; a
closed-vocabulary detector (one trained by ``train_detector``) reports its own class names
and matches them to the prompts by name, with prompt ``-1`` for a class no prompt names, so
the caller can count such off-schema outputs instead of writing them.

Adding a model is one small module with two functions, ``resolve_checkpoint(checkpoint,
dataset)`` (cheap: finds the weights or raises a ``ValueError`` saying where it looked) and a
loader ``load_<name>(checkpoint, *, device, half, **options)`` returning a
:class:`ZeroShotDetector` subclass (it implements ``_detect``; the base class checks the
input), plus one :class:`ModelSpec` line in :data:`MODELS`. Modules are
imported only when their model is used, so listing models costs nothing.

Weights are never downloaded: a Hugging Face checkpoint is a local directory or a hub id
already in the Hugging Face cache; an Ultralytics checkpoint is a local ``.pt``.
"""

from __future__ import annotations

import importlib
import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MODELS",
    "NMS_IOU",
    "Box",
    "ModelSpec",
    "ZeroShotDetector",
    "as_pil",
    "boxes_from_centers",
    "check_confidence",
    "check_prompts",
    "hf_checkpoint",
    "load_detector",
    "normalise",
    "resolve_checkpoint",
    "resolve_device",
]

#: IoU above which a lower-scoring box of the same prompt is suppressed. OWL and Grounding
#: DINO emit one box per patch / query, so one object yields several overlapping boxes.
NMS_IOU = 0.5


@dataclass(frozen=True)
class Box:
    """One detection.

    Attributes
    ----------
    xywh : tuple of 4 floats
        Relative top-left ``x, y`` and size ``w, h``, clipped to the image.
    score : float
        Confidence in [0, 1].
    prompt : int
        Index into the prompts of the call; ``-1`` when the model's class matches none.
    text : str
        The prompt, or the model's own class name when ``prompt == -1``.
    """

    xywh: tuple[float, float, float, float]
    score: float
    prompt: int
    text: str


class ZeroShotDetector(ABC):
    """What every autolabel model provides; a runner implements :meth:`_detect`.

    Attributes
    ----------
    name : str
        Registry name of the model (``"owlv2"``, ...).
    checkpoint : str
        The weights it was loaded from (hub id, directory or file).
    """

    name: str
    checkpoint: str

    def detect(
        self, images: Sequence[Any], prompts: Sequence[str], min_confidence: float
    ) -> list[list[Box]]:
        """Boxes scoring at least ``min_confidence`` in each image, best first.

        Parameters
        ----------
        images : sequence of PIL.Image or (H, W, 3) uint8 RGB arrays
        prompts : sequence of str
            Non-empty texts; a :class:`Box`'s ``prompt`` indexes this.
        min_confidence : float
            In [0, 1].
        """
        prompts = check_prompts(prompts)
        min_confidence = check_confidence(min_confidence)
        if not len(images):
            return []
        return self._detect([as_pil(image) for image in images], prompts, min_confidence)

    @abstractmethod
    def _detect(self, images: list, prompts: list[str], min_confidence: float) -> list[list[Box]]:
        """:meth:`detect` on checked input: a non-empty list of PIL RGB images."""


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: where the runner lives and what it loads by default."""

    module: str
    loader: str
    default_checkpoint: str | None
    description: str


MODELS: dict[str, ModelSpec] = {
    "owlv2": ModelSpec(
        "owl", "load_owlv2", "google/owlv2-base-patch16-ensemble", "OWLv2 (transformers)"
    ),
    "owlvit": ModelSpec(
        "owl", "load_owlvit", "google/owlvit-base-patch32", "OWL-ViT (transformers)"
    ),
    "grounding_dino": ModelSpec(
        "grounding_dino",
        "load_grounding_dino",
        "IDEA-Research/grounding-dino-tiny",
        "Grounding DINO (transformers)",
    ),
    "yolo_world": ModelSpec(
        "yolo_world",
        "load_yolo_world",
        "yolov8s-worldv2.pt",
        "Ultralytics YOLO-World; prompts encoded by a transformers CLIP text model",
    ),
    "trained": ModelSpec(
        "trained",
        "load_trained",
        None,
        "A detector trained by train_detector (a run name or its .pt; default: the latest run)",
    ),
}


def _spec(model: str) -> ModelSpec:
    if model not in MODELS:
        raise ValueError(f"unknown autolabel model {model!r}; choose one of {sorted(MODELS)}")
    return MODELS[model]


def _module(spec: ModelSpec):
    return importlib.import_module(f".{spec.module}", __package__)


def resolve_checkpoint(model: str, checkpoint: str | None = None, dataset=None) -> str:
    """Locate the weights of ``model`` without loading them (cheap; nothing is downloaded).

    Parameters
    ----------
    model : str
        A key of :data:`MODELS`.
    checkpoint : str, optional
        Hub id, local directory or file, or (``trained``) a training run name; default the
        model's :attr:`ModelSpec.default_checkpoint`.
    dataset : Dataset, optional
        Needed by ``trained`` to read training run records.

    Returns
    -------
    str
        What the loader will read.

    Raises
    ------
    ValueError
        For an unknown model, or weights that are not on this machine; the message says
        where they were looked for.
    """
    spec = _spec(model)
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise ValueError(f"checkpoint must be a str; got {type(checkpoint).__name__}")
    return _module(spec).resolve_checkpoint(checkpoint or spec.default_checkpoint, dataset)


def load_detector(
    model: str,
    checkpoint: str | None = None,
    *,
    device: str | None = None,
    dataset=None,
    **options,
) -> ZeroShotDetector:
    """Build the detector ``model`` from local weights.

    Parameters
    ----------
    model : str
        A key of :data:`MODELS`.
    checkpoint : str, optional
        See :func:`resolve_checkpoint`.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"1"``; default CUDA when available. CUDA runs
        in float16, the CPU in float32.
    dataset : Dataset, optional
        For ``trained``.
    **options
        Model-specific loader options (e.g. ``text_encoder`` for ``yolo_world``, ``imgsz``
        for the Ultralytics models).

    Raises
    ------
    ValueError
        Unknown model or option, missing weights, or an unusable device.
    """
    spec = _spec(model)
    loader = getattr(_module(spec), spec.loader)
    accepted = [
        p.name
        for p in inspect.signature(loader).parameters.values()
        if p.kind == p.KEYWORD_ONLY and p.name not in ("device", "half")
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"model {model!r} has no options {unknown}; its options are {accepted}")
    source = resolve_checkpoint(model, checkpoint, dataset)
    torch_device, half = resolve_device(device)
    return loader(source, device=torch_device, half=half, **options)


def resolve_device(device: str | None = None) -> tuple[str, bool]:
    """``(torch device string, half precision)``: CUDA with float16 when present, else CPU.

    Raises
    ------
    ValueError
        When CUDA is asked for and not available, or the device string is not understood.
    """
    import torch

    text = str(device).strip().lower() if device not in (None, "") else ""
    if text.isdigit():
        text = f"cuda:{text}"
    if not text:
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return "cpu", False
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} needs CUDA, which is not available here; use 'cpu'")
        return text, True
    raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:<n>' or '<n>'; got {device!r}")


def normalise(name: str) -> str:
    """``name`` with case and runs of whitespace ignored, for matching class names."""
    return " ".join(str(name).split()).casefold()


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """``prompts`` as a list of stripped non-empty strings; ``ValueError`` otherwise."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
        raise ValueError(f"prompts must be a non-empty list of str; got {prompts!r}")
    bad = [p for p in prompts if not isinstance(p, str) or not p.strip()]
    if bad:
        raise ValueError(f"prompts must be non-empty strings; got {bad}")
    return [p.strip() for p in prompts]


def check_confidence(value, name: str = "min_confidence") -> float:
    """``value`` as a float in [0, 1]; ``ValueError`` otherwise (bools and NaN included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}")
    if math.isnan(value) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1]; got {value!r}")
    return float(value)


def as_pil(image):
    """A PIL RGB image from a PIL image or an (H, W, 3) uint8 RGB array.

    Ultralytics reads numpy arrays as BGR, so every runner gets PIL images.
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(
            f"images must be PIL images or (H, W, 3) uint8 RGB arrays; got {array.dtype} {array.shape}"
        )
    return Image.fromarray(array)


def boxes_from_centers(
    centers,
    scores,
    prompts,
    texts: Sequence[str],
    min_confidence: float,
    image_size: tuple[int, int],
    scale=(1.0, 1.0),
) -> list[Box]:
    """Turn one image's raw query outputs into :class:`Box` es.

    Keeps queries scoring ``>= min_confidence``, converts relative ``(cx, cy, w, h)`` to
    clipped ``[x, y, w, h]``, drops boxes narrower or shorter than one pixel once clipped,
    and suppresses overlaps of the same prompt above :data:`NMS_IOU`.

    Parameters
    ----------
    centers : torch.Tensor of shape (n, 4)
        Relative ``(cx, cy, w, h)`` of each query.
    scores : torch.Tensor of shape (n,)
    prompts : torch.Tensor of int64, shape (n,)
        Best prompt of each query.
    texts : sequence of str
        The prompts (``texts[prompts[i]]`` names box ``i``).
    min_confidence : float
    image_size : (int, int)
        Image width and height in pixels.
    scale : (float, float)
        Factors on x and y; e.g. OWLv2 predicts relative to the image padded to a square.
    """
    import torch
    from torchvision.ops import batched_nms

    keep = scores >= min_confidence
    centers, scores, prompts = centers[keep].float(), scores[keep].float(), prompts[keep]
    factor = torch.tensor([scale[0], scale[1], scale[0], scale[1]], device=centers.device)
    cx, cy, w, h = (centers * factor).unbind(-1)
    corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1).clamp(0.0, 1.0)
    width, height = image_size
    has_area = ((corners[:, 2] - corners[:, 0]) * width >= 1) & (
        (corners[:, 3] - corners[:, 1]) * height >= 1
    )
    corners, scores, prompts = corners[has_area], scores[has_area], prompts[has_area]
    kept = batched_nms(corners, scores, prompts, NMS_IOU)  # sorted by decreasing score
    out = []
    for (x0, y0, x1, y1), score, prompt in zip(
        corners[kept].tolist(), scores[kept].tolist(), prompts[kept].tolist()
    ):
        out.append(Box((x0, y0, x1 - x0, y1 - y0), float(score), int(prompt), texts[prompt]))
    return out


def hf_checkpoint(model: str, checkpoint: str) -> str:
    """A Hugging Face checkpoint that is on this machine: a directory, or a cached hub id.

    Raises
    ------
    ValueError
        Saying that ``model`` needs weights and where they were looked for (the directory
        and the Hugging Face cache). Nothing is downloaded.
    """
    from pathlib import Path

    from huggingface_hub import constants, try_to_load_from_cache

    path = Path(checkpoint).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{model} checkpoint directory {path} has no config.json")
        return str(path)
    try:
        cached = try_to_load_from_cache(checkpoint, "config.json")
    except ValueError:  # not a valid hub id (e.g. a path), so it cannot be cached either
        cached = None
    if isinstance(cached, str):
        return checkpoint
    raise ValueError(
        f"{model} needs weights, and {checkpoint!r} is not on this machine: there is no "
        f"directory {path.resolve()} and no copy in the Hugging Face cache "
        f"{constants.HF_HUB_CACHE}. Nothing is downloaded: save the checkpoint to a directory "
        "and pass its path, or copy it into that cache (e.g. `hf download <id>` on a machine "
        "with network access)."
    )
