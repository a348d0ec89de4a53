"""OWLv2 and OWL-ViT (``transformers``): open-vocabulary detection by text query.

Every image patch predicts one box and a score per prompt; a box keeps its best prompt, then
:func:`.base.boxes_from_centers` thresholds it and suppresses same-prompt overlaps. OWLv2's
processor pads each image to a square (bottom and right) before resizing, so its boxes are
relative to that square and are rescaled to the image; OWL-ViT resizes without padding.
Prompts longer than the text model's context (16 tokens) are truncated.
"""

from __future__ import annotations

from .base import Box, ZeroShotDetector, boxes_from_centers, hf_checkpoint

#: registry name -> (transformers model_type, model class, processor class)
_VARIANTS = {
    "owlv2": ("owlv2", "Owlv2ForObjectDetection", "Owlv2Processor"),
    "owlvit": ("owlvit", "OwlViTForObjectDetection", "OwlViTProcessor"),
}


def resolve_checkpoint(checkpoint: str, dataset=None) -> str:
    """A local directory or cached hub id (see :func:`.base.hf_checkpoint`)."""
    return hf_checkpoint("OWL", checkpoint)


class OwlDetector(ZeroShotDetector):
    """An OWLv2 / OWL-ViT checkpoint behind the :class:`.base.ZeroShotDetector` interface."""

    def __init__(self, name: str, checkpoint: str, *, device: str, half: bool) -> None:
        import torch
        import transformers
        from transformers import AutoConfig

        model_type, model_class, processor_class = _VARIANTS[name]
        found = AutoConfig.from_pretrained(checkpoint, local_files_only=True).model_type
        if found != model_type:
            raise ValueError(
                f"checkpoint {checkpoint!r} is a {found!r} model, not {model_type!r}; "
                f"choose the matching autolabel model"
            )
        self.name = name
        self.checkpoint = checkpoint
        self.device = device
        self.dtype = torch.float16 if half else torch.float32
        self.model = getattr(transformers, model_class).from_pretrained(
            checkpoint, local_files_only=True
        )
        self.model.to(device, self.dtype).eval()
        self.processor = getattr(transformers, processor_class).from_pretrained(
            checkpoint, local_files_only=True
        )
        self.pads_to_square = name == "owlv2"

    def _detect(self, images: list, prompts: list[str], min_confidence: float) -> list[list[Box]]:
        import torch

        inputs = self.processor(
            text=[prompts] * len(images), images=images, return_tensors="pt", truncation=True
        )
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            out = self.model(**inputs)
        scores, best = out.logits.float().sigmoid().max(dim=-1)  # (batch, patches)
        results = []
        for i, image in enumerate(images):
            width, height = image.size
            side = max(width, height)
            scale = (side / width, side / height) if self.pads_to_square else (1.0, 1.0)
            results.append(
                boxes_from_centers(
                    out.pred_boxes[i], scores[i], best[i], prompts, min_confidence, image.size, scale
                )
            )
        return results


def load_owlv2(checkpoint: str, *, device: str, half: bool) -> OwlDetector:
    """OWLv2 from a local directory or cached hub id."""
    return OwlDetector("owlv2", checkpoint, device=device, half=half)


def load_owlvit(checkpoint: str, *, device: str, half: bool) -> OwlDetector:
    """OWL-ViT from a local directory or cached hub id."""
    return OwlDetector("owlvit", checkpoint, device=device, half=half)
