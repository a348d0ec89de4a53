"""Ultralytics YOLO-World: real-time open-vocabulary detection from a local checkpoint.

YOLO-World conditions its head on one CLIP text embedding per class. Ultralytics computes
them with OpenAI's ``clip`` package, which downloads its weights; here they come from a
``transformers`` CLIP text model instead (``CLIPTextModelWithProjection``, default
``openai/clip-vit-base-patch32``: the ViT-B/32 text tower the released YOLO-World models were
trained with), loaded from a local directory or the Hugging Face cache. Its L2-normalised
``text_embeds`` are what ``clip``'s ``encode_text`` gives, so both routes produce the same
vocabulary. Embeddings are computed once per prompt list.
"""

from __future__ import annotations

from pathlib import Path

from .base import hf_checkpoint
from .trained import UltralyticsDetector

DEFAULT_TEXT_ENCODER = "openai/clip-vit-base-patch32"


def resolve_checkpoint(checkpoint: str, dataset=None) -> str:
    """A local YOLO-World ``.pt``: the path itself, else the file in Ultralytics' weights dir."""
    from ultralytics.utils import WEIGHTS_DIR

    path = Path(checkpoint).expanduser()
    if path.suffix != ".pt":
        raise ValueError(f"a YOLO-World checkpoint is a .pt file; got {checkpoint!r}")
    candidates = [path.resolve(), (Path(WEIGHTS_DIR) / path.name).resolve()]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise ValueError(
        f"YOLO-World needs weights: {checkpoint!r} is neither {candidates[0]} nor "
        f"{candidates[1]} (Ultralytics' weights directory). Nothing is downloaded; copy the "
        ".pt to one of them."
    )


class YoloWorldDetector(UltralyticsDetector):
    """YOLO-World with its vocabulary set from the prompts of each call."""

    def __init__(self, checkpoint: str, model, text_encoder: str, *, device: str, half: bool, imgsz):
        super().__init__("yolo_world", checkpoint, model, device=device, half=half, imgsz=imgsz)
        from transformers import AutoTokenizer, CLIPTextModelWithProjection

        source = hf_checkpoint("YOLO-World's text encoder", text_encoder)
        self.text_encoder = source
        self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        self.encoder = CLIPTextModelWithProjection.from_pretrained(source, local_files_only=True)
        self.encoder.to(device).eval()
        expected = int(model.model.txt_feats.shape[-1])
        if self.encoder.config.projection_dim != expected:
            raise ValueError(
                f"text encoder {text_encoder!r} gives {self.encoder.config.projection_dim}-d "
                f"embeddings; this YOLO-World checkpoint expects {expected}-d (CLIP ViT-B/32)"
            )
        self._vocabulary: tuple[str, ...] = ()

    def _prompt_of_class(self, prompts: list[str]) -> list[int]:
        if tuple(prompts) != self._vocabulary:
            import torch

            tokens = self.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
            with torch.inference_mode():
                embeds = self.encoder(**tokens.to(self.device)).text_embeds
            embeds = torch.nn.functional.normalize(embeds.float(), dim=-1)
            world = self.model.model
            world.txt_feats = embeds.reshape(1, len(prompts), -1)
            world.model[-1].nc = len(prompts)
            world.names = list(prompts)
            self.model.predictor = None  # the predictor caches the class names
            self._vocabulary = tuple(prompts)
        return list(range(len(prompts)))


def load_yolo_world(
    checkpoint: str,
    *,
    device: str,
    half: bool,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    imgsz: int | None = None,
) -> YoloWorldDetector:
    """YOLO-World from a local ``.pt`` and a local CLIP text model."""
    from ultralytics import YOLOWorld

    model = YOLOWorld(checkpoint)
    if not hasattr(model.model, "txt_feats"):
        raise ValueError(f"{checkpoint} is not a YOLO-World checkpoint (no text-conditioned head)")
    return YoloWorldDetector(checkpoint, model, text_encoder, device=device, half=half, imgsz=imgsz)
