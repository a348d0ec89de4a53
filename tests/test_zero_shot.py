"""Zero-shot scene categorization with a CLIP-style checkpoint: each scene takes the value of
the prompt closest to its image embedding, and no labeled scene is needed.

The checkpoint is a tiny random-init CLIP (no weights can be downloaded here): what it
predicts means nothing, so the tests check the wiring, not accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from annoloop.demo.dataset import load_demo_dataset
from annoloop.quality.scene_attributes import categorize_scenes
from annoloop.selection.embed import compute_embeddings
from annoloop.selection.zero_shot import prompt_embeddings
from fo_helpers import run_operator, unique_name

VALUES = ["day", "night"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> str:
    """A CLIP checkpoint with its image processor and a word-piece tokenizer."""
    import torch
    from transformers import BertTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip")
    tiny = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    config = CLIPConfig(
        vision_config=dict(image_size=32, patch_size=8, **tiny),
        text_config=dict(vocab_size=64, pad_token_id=0, bos_token_id=2, eos_token_id=3, **tiny),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    words = "[PAD] [UNK] [CLS] [SEP] [MASK] a photo of driving scene : day night".split()
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(path / "vocab.txt")).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def dataset(clip_dir):
    ds = load_demo_dataset(unique_name("zero-shot"), num_scenes=8, seed=2, image_size=(128, 64))
    compute_embeddings(ds, slices=["left"], model=f"hf:{clip_dir}", embeddings_field="clip",
                       group_field=None)
    compute_embeddings(ds, slices=["left"], embeddings_field="embedding", group_field=None)
    yield ds
    ds.delete()


def test_each_scene_takes_the_value_of_its_closest_prompt_on_every_slice(dataset, clip_dir):
    slice_name, prompts = prompt_embeddings(dataset, "clip", clip_dir, VALUES)
    assert slice_name == "left" and sorted(prompts) == VALUES

    result = categorize_scenes(dataset, "time_of_day", embeddings_field="clip",
                               slice_name=slice_name, text_embeddings=prompts)

    assert result["predictor"] == "zero_shot" and result["n_labeled"] == 0 and result["n_units"] == 8
    left = dataset.select_group_slices("left")
    groups, images, predicted, confidence = left.values(
        ["group.id", "clip", "predicted_time_of_day", "predicted_time_of_day_confidence"]
    )
    text = np.array([prompts[v] for v in VALUES])
    closest = [VALUES[int(np.argmax(text @ np.asarray(x)))] for x in images]
    assert predicted == closest
    assert all(0.5 <= c <= 1.0 for c in confidence)
    by_group = dict(zip(groups, predicted))
    for name in ("right", "pcd"):  # every slice of a scene carries the scene's value
        view = dataset.select_group_slices(name)
        assert [by_group[g] for g in view.values("group.id")] == view.values("predicted_time_of_day")


def test_prompts_are_refused_for_embeddings_another_model_wrote(dataset, clip_dir):
    with pytest.raises(ValueError, match="run compute_embeddings with model"):
        prompt_embeddings(dataset, "embedding", clip_dir, VALUES)
    with pytest.raises(ValueError, match="at least two"):
        prompt_embeddings(dataset, "clip", clip_dir, ["day"])


def test_the_form_runs_zero_shot_as_the_sdk_does(dataset, clip_dir):
    slice_name, prompts = prompt_embeddings(dataset, "clip", clip_dir, VALUES)
    categorize_scenes(dataset, "time_of_day", embeddings_field="clip", slice_name=slice_name,
                      text_embeddings=prompts, output_field="sdk_time")
    result = run_operator(
        "categorize_scenes",
        {"delegate": False, "attribute": "time_of_day", "predictor": "zero_shot",
         "model_path": clip_dir, "embeddings_field": "clip", "values": VALUES,
         "output_field": "form_time"},
        dataset=dataset,
    ).result
    assert result["predictor"] == "zero_shot"
    left = dataset.select_group_slices("left")
    assert left.values("form_time") == left.values("sdk_time")
