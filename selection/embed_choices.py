"""What a caller chooses when embedding: the image-model kind, the spec it names, the objects.

:data:`MODEL_KINDS` are the image models :func:`.embed.compute_embeddings` can run (through
:func:`.embeddings.models.load_image_model`); :func:`model_spec` turns a kind and a path into
that loader's spec. :func:`default_patches_field` picks the label field whose objects are
embedded when none is named.
"""

from __future__ import annotations

import fiftyone as fo
from fiftyone import ViewField as F

from .embeddings.models import EFFICIENTNET_LITE0

__all__ = ["MODEL_KINDS", "SELF_CONTAINED_KINDS", "default_patches_field", "model_spec"]

#: Image-model kind -> what it is.
MODEL_KINDS = {
    "baseline": "Baseline (colour + gradient histograms; no weights, offline)",
    EFFICIENTNET_LITE0: (
        "EfficientNet-Lite0, ImageNet-pretrained (weights ship in a pip package; offline)"
    ),
    "hf": "Hugging Face checkpoint (CLIP, SigLIP, DINOv2, ViT): hub id or local directory",
    "ultralytics": "Ultralytics YOLO backbone: a .pt checkpoint or a model .yaml",
    "zoo": "FiftyOne zoo model (its weights must already be downloaded)",
}
#: Kinds that name one model, so they need no model path.
SELF_CONTAINED_KINDS = ("baseline", EFFICIENTNET_LITE0)
_PREFERRED_PATCH_FIELDS = ("ground_truth", "oracle")


def model_spec(kind: str, path: str | None) -> str:
    """The :func:`~.embeddings.models.load_image_model` spec of a model kind and path.

    Parameters
    ----------
    kind : str
        One of :data:`MODEL_KINDS`.
    path : str or None
        Checkpoint id, path or zoo name; required unless ``kind`` is self-contained.

    Returns
    -------
    str
        ``kind`` for a self-contained kind, else ``"<kind>:<path>"``.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"model_kind must be one of {sorted(MODEL_KINDS)}, got {kind!r}")
    if kind in SELF_CONTAINED_KINDS:
        return kind
    path = (path or "").strip()
    if not path:
        raise ValueError(
            f"model_kind '{kind}' needs model_path (a checkpoint id, path or zoo name)"
        )
    return f"{kind}:{path}"


def _has_labels(samples: fo.core.collections.SampleCollection, field: str) -> bool:
    """Whether any sample (of the active slice) has at least one detection in ``field``."""
    return len(samples.match(F(f"{field}.detections").length() > 0).limit(1)) > 0


def default_patches_field(
    samples: fo.core.collections.SampleCollection, fields: list[str]
) -> str | None:
    """Of the Detections ``fields``: ``ground_truth`` if it has labels, else ``oracle``, else
    any field with labels, else the first one (None when there is none)."""
    ordered = [f for f in _PREFERRED_PATCH_FIELDS if f in fields] + [
        f for f in fields if f not in _PREFERRED_PATCH_FIELDS
    ]
    return next((f for f in ordered if _has_labels(samples, f)), fields[0] if fields else None)
