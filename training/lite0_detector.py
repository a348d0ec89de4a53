"""A YOLO detector on an ImageNet-pretrained backbone that installs offline: ``yolov8n-lite0``.

No pretrained detector can be had offline, and a YOLOv8n from random weights needs a few
hundred optimizer steps on the demo before it finds anything (``bench_training_steps.py``),
so every labeling round paid for the climb. EfficientNet-Lite0's ImageNet weights ship in a
pip package (:mod:`annoloop.core.efficientnet_lite0`); this model puts YOLOv8n's neck and
detection head on its stages.

It is an ordinary Ultralytics model YAML (``yolov8n-lite0.yaml`` beside this module):
Ultralytics' ``TorchVision`` layer builds a torchvision model by name and, with ``split``,
returns every stage's output, from which ``Index`` layers take strides 8, 16 and 32.
:func:`register_lite0_backbone` registers the Lite0 stages under that name with torchvision's
model registry, so Ultralytics trains, fine-tunes (it rebuilds the model from the YAML a
checkpoint carries) and saves it like any of its own. The input statistics Lite0 was trained
with are folded into its stem convolution, so the model reads Ultralytics' 0-1 pixels and a
checkpoint holds only torch and ``efficientnet_lite_pytorch`` modules: it loads for prediction
wherever that package is installed, without annoloop.
"""

from __future__ import annotations

from pathlib import Path

from ..core.efficientnet_lite0 import LITE0_MEAN, LITE0_STD, load_efficientnet_lite0

__all__ = ["LITE0_DETECTOR", "LITE0_DETECTOR_YAML", "lite0_stages", "register_lite0_backbone"]

LITE0_DETECTOR = "yolov8n-lite0"
LITE0_DETECTOR_YAML = Path(__file__).with_name(f"{LITE0_DETECTOR}.yaml")
#: The torchvision model name the YAML's TorchVision layer asks for.
_BACKBONE = "annoloop_efficientnet_lite0"
#: The YAML's weights argument for ImageNet weights.
_IMAGENET = "imagenet"


def lite0_stages(*, pretrained: bool = True):
    """EfficientNet-Lite0 without its classifier, as ``Sequential(stem, stage 1, ..., stage 7)``.

    Each stage is the run of blocks that share an output width (strides 1, 2, 2, 2, 1, 2, 1
    after a stride-2 stem: the stages end at strides 2, 4, 8, 16, 16, 32 and 32 with 16, 24,
    40, 80, 112, 192 and 320 channels). The stem takes 0-1 pixels: Lite0's normalisation
    ``(x - mean) / std`` is folded into its convolution's weights and a new bias.
    """
    import torch

    network = load_efficientnet_lite0(pretrained=pretrained, purpose=f"model '{LITE0_DETECTOR}'")
    conv = network._conv_stem
    mean = torch.tensor(LITE0_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(LITE0_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        weight = conv.weight / std
        # Zero padding now pads raw black rather than normalised zero: a one-pixel border.
        conv.bias = torch.nn.Parameter(-(weight * mean).sum(dim=(1, 2, 3)))
        conv.weight.copy_(weight)
    stages: list[list] = []
    for block in network._blocks:
        width = block._block_args.output_filters
        if not stages or stages[-1][-1]._block_args.output_filters != width:
            stages.append([])
        stages[-1].append(block)
    stem = torch.nn.Sequential(conv, network._bn0, torch.nn.ReLU6())
    return torch.nn.Sequential(stem, *(torch.nn.Sequential(*blocks) for blocks in stages))


def _build_backbone(weights: str | None = None, **_ignored):
    if weights not in (None, _IMAGENET):
        raise ValueError(f"{_BACKBONE} has weights None or {_IMAGENET!r}; got {weights!r}")
    return lite0_stages(pretrained=weights == _IMAGENET)


def register_lite0_backbone() -> None:
    """Make the Lite0 stages buildable by name for Ultralytics' ``TorchVision`` layer.

    Idempotent; needed in any process that builds the model from its YAML (training and
    fine-tuning do; loading a checkpoint to predict does not).
    """
    # torchvision's registry is the lookup Ultralytics' TorchVision layer uses
    # (torchvision.models.get_model); register_model refuses a name twice.
    from torchvision.models import _api

    if _BACKBONE not in _api.BUILTIN_MODELS:
        _api.register_model(_BACKBONE)(_build_backbone)
