"""Image-model runners on real (tiny, randomly initialised) models, loaded without a network."""

from __future__ import annotations

import numpy as np
import pytest

from annoloop.selection.algorithms.image_features import BASELINE_MODEL_NAME, baseline_dim
from annoloop.selection.embeddings.models import (
    BaselineEmbedder,
    TransformersEmbedder,
    UltralyticsEmbedder,
    load_image_model,
)

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (128, 384, 3), dtype=np.uint8)
    tall = rng.integers(0, 256, (90, 40, 3), dtype=np.uint8)
    flat = np.full((64, 64, 3), 120, np.uint8)
    return [wide, tall, flat]


@pytest.fixture(scope="module")
def dinov2_dir(tmp_path_factory) -> str:
    """A ViT-style checkpoint without a preprocessor config (the runner's fallback path)."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("dinov2")
    Dinov2Model(Dinov2Config(image_size=56, patch_size=14, **TINY)).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> str:
    """A CLIP checkpoint with its image processor: embeddings come from get_image_features."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip")
    config = CLIPConfig(
        vision_config=dict(image_size=32, patch_size=8, **TINY),
        text_config=dict(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        ),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(path)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(path)
    return str(path)


def assert_unit_rows(out: np.ndarray, n: int, dim: int) -> None:
    assert out.shape == (n, dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_baseline_spec_gives_the_weight_free_baseline(images):
    embedder = load_image_model("baseline")
    assert isinstance(embedder, BaselineEmbedder) and embedder.name == BASELINE_MODEL_NAME
    assert_unit_rows(embedder.embed(images), 3, baseline_dim())


def test_a_vit_style_checkpoint_directory_embeds_as_its_cls_token(dinov2_dir, images):
    embedder = load_image_model(dinov2_dir)
    assert isinstance(embedder, TransformersEmbedder) and embedder.name == f"hf:{dinov2_dir}"
    assert embedder.device.type == "cpu"
    out = embedder.embed(images)
    assert_unit_rows(out, 3, 32)
    np.testing.assert_allclose(embedder.embed(images[:1]), out[:1], atol=1e-5)
    assert np.linalg.norm(out[0] - out[2]) > 1e-3


def test_a_clip_checkpoint_embeds_through_its_projected_image_features(clip_dir, images):
    embedder = load_image_model(f"hf:{clip_dir}")
    assert isinstance(embedder, TransformersEmbedder)
    assert_unit_rows(embedder.embed(images), 3, 16)


def test_a_yolo_yaml_gives_a_pooled_random_init_backbone(images):
    embedder = load_image_model("yolov8n.yaml")
    assert isinstance(embedder, UltralyticsEmbedder) and embedder.name == "ultralytics:yolov8n.yaml"
    out = embedder.embed(images)
    assert_unit_rows(out, 3, 256)  # yolov8n's SPPF has 256 channels
    assert np.linalg.norm(out[0] - out[2]) > 1e-3


def test_a_yolo_embedding_does_not_depend_on_the_other_images_in_the_batch(images):
    embedder = UltralyticsEmbedder("yolov8n.yaml", imgsz=128)
    together = embedder.embed(images + images[:1])
    alone = np.concatenate([embedder.embed([image]) for image in images])
    np.testing.assert_allclose(together[:3], alone, atol=1e-4)
    np.testing.assert_allclose(together[3], together[0], atol=1e-5)


def test_the_yolo_input_size_must_be_a_multiple_of_its_stride():
    with pytest.raises(ValueError, match="multiple of 32"):
        UltralyticsEmbedder("yolov8n.yaml", imgsz=100)


def test_a_missing_hugging_face_model_says_where_it_looked(tmp_path):
    from huggingface_hub import constants

    with pytest.raises(FileNotFoundError, match="not on disk") as error:
        load_image_model("annoloop-tests/no-such-model")
    assert constants.HF_HUB_CACHE in str(error.value)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing-here")):
        load_image_model(f"hf:{tmp_path / 'nothing-here'}")


def test_a_missing_yolo_checkpoint_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="looked at") as error:
        load_image_model("annoloop-missing.pt")
    assert str(tmp_path / "annoloop-missing.pt") in str(error.value)


def test_a_zoo_model_without_downloaded_weights_is_refused_with_its_location():
    import fiftyone as fo

    with pytest.raises(FileNotFoundError, match="not downloaded") as error:
        load_image_model("zoo:clip-vit-base32-torch")
    assert fo.config.model_zoo_dir in str(error.value)


@pytest.mark.parametrize("spec", ["", "   ", None, 3])
def test_a_model_spec_must_be_a_non_empty_string(spec):
    with pytest.raises(ValueError, match="non-empty string"):
        load_image_model(spec)
