"""Grounding DINO (``transformers``): open-vocabulary detection grounded in one caption.

The prompts are joined into Grounding DINO's caption format, ``"a car. a truck."``
(lower-cased; dots inside a prompt become spaces). The model scores every query box against
every caption token; a prompt's score is the maximum over its own tokens (found from the
tokenizer's character offsets), and a box keeps its best prompt. Prompts that do not fit in
one caption (``max_text_len`` tokens, 256 for the released models) are split over several
captions, one forward pass each, and their boxes pooled before non-maximum suppression.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Box, ZeroShotDetector, boxes_from_centers, hf_checkpoint


def resolve_checkpoint(checkpoint: str, dataset=None) -> str:
    """A local directory or cached hub id (see :func:`.base.hf_checkpoint`)."""
    return hf_checkpoint("Grounding DINO", checkpoint)


def caption(prompts: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The caption for ``prompts`` and each prompt's ``(start, end)`` characters in it."""
    spans, parts, at = [], [], 0
    for prompt in prompts:
        text = " ".join(prompt.replace(".", " ").split()).lower()
        spans.append((at, at + len(text)))
        parts.append(text)
        at += len(text) + 2  # ". "
    return ". ".join(parts) + ".", spans


class GroundingDinoDetector(ZeroShotDetector):
    """A Grounding DINO checkpoint behind the :class:`.base.ZeroShotDetector` interface."""

    name = "grounding_dino"

    def __init__(self, checkpoint: str, *, device: str, half: bool) -> None:
        import torch
        from transformers import AutoConfig, GroundingDinoForObjectDetection, GroundingDinoProcessor

        found = AutoConfig.from_pretrained(checkpoint, local_files_only=True).model_type
        if found != "grounding-dino":
            raise ValueError(f"checkpoint {checkpoint!r} is a {found!r} model, not Grounding DINO")
        self.checkpoint = checkpoint
        self.device = device
        self.dtype = torch.float16 if half else torch.float32
        self.model = GroundingDinoForObjectDetection.from_pretrained(checkpoint, local_files_only=True)
        self.model.to(device, self.dtype).eval()
        self.processor = GroundingDinoProcessor.from_pretrained(checkpoint, local_files_only=True)
        self.max_tokens = int(self.model.config.max_text_len)
        self._captions: dict[tuple, list] = {}

    def _groups(self, prompts: list[str]) -> list[tuple[list[int], str, object]]:
        """``(prompt indices, caption, token -> local prompt index)`` per caption; cached."""
        import torch

        key = tuple(prompts)
        if key not in self._captions:
            tokenizer = self.processor.tokenizer
            sizes = [
                len(tokenizer(caption([p])[0], add_special_tokens=False)["input_ids"])
                for p in prompts
            ]
            too_long = [p for p, n in zip(prompts, sizes) if n + 2 > self.max_tokens]
            if too_long:
                raise ValueError(
                    f"prompts {too_long} do not fit in Grounding DINO's {self.max_tokens} tokens"
                )
            groups, current, used = [], [], 2  # [CLS] and [SEP]
            for i, n in enumerate(sizes):
                if current and used + n > self.max_tokens:
                    groups.append(current)
                    current, used = [], 2
                current.append(i)
                used += n
            groups.append(current)
            self._captions[key] = []
            for members in groups:
                text, spans = caption([prompts[i] for i in members])
                offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
                token_prompt = torch.full((len(offsets),), -1, dtype=torch.long)
                for t, (start, end) in enumerate(offsets):
                    for local, (lo, hi) in enumerate(spans):
                        if end > start and lo <= start < hi:
                            token_prompt[t] = local
                self._captions[key].append((members, text, token_prompt))
        return self._captions[key]

    def _detect(self, images: list, prompts: list[str], min_confidence: float) -> list[list[Box]]:
        import torch

        centers, scores, best = [], [], []
        for members, text, token_prompt in self._groups(prompts):
            inputs = self.processor(images=images, text=[text] * len(images), return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
            with torch.inference_mode():
                out = self.model(**inputs)
            probs = out.logits.float().sigmoid()[..., : len(token_prompt)]  # (batch, queries, tokens)
            per_prompt = torch.stack(
                [probs[..., (token_prompt == j).to(probs.device)].amax(dim=-1) for j in range(len(members))],
                dim=-1,
            )
            score, local = per_prompt.max(dim=-1)
            centers.append(out.pred_boxes.float())
            scores.append(score)
            best.append(torch.as_tensor(members, device=local.device)[local])
        centers, scores, best = (torch.cat(t, dim=1) for t in (centers, scores, best))
        return [
            boxes_from_centers(centers[i], scores[i], best[i], prompts, min_confidence, image.size)
            for i, image in enumerate(images)
        ]


def load_grounding_dino(checkpoint: str, *, device: str, half: bool) -> GroundingDinoDetector:
    """Grounding DINO from a local directory or cached hub id."""
    return GroundingDinoDetector(checkpoint, device=device, half=half)
