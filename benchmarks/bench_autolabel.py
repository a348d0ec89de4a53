"""Images per second of every autolabel model, randomly initialised, through ``detect``.

Each model is built from a config with random weights (nothing is downloaded; random
weights cost what trained ones do), saved, and loaded back through
:func:`annoloop.training.autolabel.base.load_detector`, the code path a real checkpoint
takes. Two sizes:

* ``real``: the released architectures at their released input sizes: OWLv2 B/16 at 960 px
  (``google/owlv2-base-patch16-ensemble``), OWL-ViT B/32 at 768 px
  (``google/owlvit-base-patch32``), Grounding DINO tiny (Swin-T + BERT-base, shortest side
  800 px; ``IDEA-Research/grounding-dino-tiny``), YOLO-World v2-s at 640 px with a CLIP
  ViT-B/32 text tower, and the loop's own detector, YOLOv8n at 640 px (``trained``);
* ``tiny``: the test-suite models (hidden size 32, 64 px inputs; YOLO n-scale at 128 px).

Images are demo camera images (384 x 128 by default) rendered in memory, so decoding is not
timed; the prompts are the demo's five classes. One warm-up image runs before each timed
run. ``trained`` (YOLOv8n, a plain closed-vocabulary detector) is the reference: the last
column is each model's speed over its speed at the same size and batch size. Prints a
markdown table.

:func:`random_checkpoint` is also what the tests use to build their tiny models.

Usage (with the checkout importable as ``annoloop``)::

    python benchmarks/bench_autolabel.py                          # both sizes, batch 1 and 8
    python benchmarks/bench_autolabel.py --sizes tiny --images 64
    python benchmarks/bench_autolabel.py --models owlv2 trained --sizes real --images 8
"""

from __future__ import annotations

import argparse
import string
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = ("trained", "owlv2", "owlvit", "grounding_dino", "yolo_world")
SIZES = ("tiny", "real")
PROMPTS = ["car", "van", "truck", "pedestrian", "cyclist"]


def clip_tokenizer():
    """A character-level CLIP tokenizer (no merges): every word spells itself out.

    OWL ignores a text query whose first token id is 0, so id 0 is a filler character.
    """
    from transformers import CLIPTokenizer

    vocab = {"!": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}
    for c in string.ascii_lowercase + string.digits + ".,'-":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)


def bert_tokenizer(out: Path):
    """A character-level WordPiece tokenizer, as Grounding DINO's BERT expects."""
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."]
    words += [*string.ascii_lowercase, *("##" + c for c in string.ascii_lowercase)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(words) + "\n")
    return BertTokenizer(vocab=str(out / "vocab.txt"))


def _owl(kind: str, size: str, out: Path) -> str:
    import torch
    import transformers

    tokenizer = clip_tokenizer()
    special = dict(bos_token_id=1, eos_token_id=2, pad_token_id=2, max_position_embeddings=16)
    if size == "tiny":
        text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=2, **special)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, image_size=64, patch_size=16)
        projection = 32
    else:  # CLIP B/16 (OWLv2, 960 px) or B/32 (OWL-ViT, 768 px) towers, CLIP's text tower
        text = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                    num_hidden_layers=12, num_attention_heads=8, **special)
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                      num_attention_heads=12, image_size=960 if kind == "owlv2" else 768,
                      patch_size=16 if kind == "owlv2" else 32)
        projection = 512
    side = {"height": vision["image_size"], "width": vision["image_size"]}
    if kind == "owlv2":
        config = transformers.Owlv2Config(text_config=text, vision_config=vision, projection_dim=projection)
        model = transformers.Owlv2ForObjectDetection(config)
        image_processor = transformers.Owlv2ImageProcessor(size=side)
        processor = transformers.Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer)
    else:
        config = transformers.OwlViTConfig(text_config=text, vision_config=vision, projection_dim=projection)
        model = transformers.OwlViTForObjectDetection(config)
        image_processor = transformers.OwlViTImageProcessor(size=side, crop_size=side)
        processor = transformers.OwlViTProcessor(image_processor=image_processor, tokenizer=tokenizer)
    # A random box head predicts degenerate boxes; zeroing its last layer leaves the model's
    # box bias (one box per patch), well-formed boxes as a trained head gives.
    with torch.no_grad():
        model.box_head.dense2.weight.zero_()
        model.box_head.dense2.bias.zero_()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return str(out)


def _grounding_dino(size: str, out: Path) -> str:
    import transformers

    tokenizer = bert_tokenizer(out)
    if size == "tiny":
        config = transformers.GroundingDinoConfig(
            backbone_config=transformers.SwinConfig(
                embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4, image_size=64,
                out_features=["stage1", "stage2"],
            ),
            text_config=transformers.BertConfig(
                vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
            ),
            d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64,
            decoder_ffn_dim=64, encoder_attention_heads=2, decoder_attention_heads=2,
            num_queries=20, num_feature_levels=2, max_text_len=32, encoder_n_points=2,
            decoder_n_points=2,
        )
        edges = {"shortest_edge": 64, "longest_edge": 128}
    else:  # the defaults are grounding-dino-tiny: Swin-T, BERT-base, 900 queries, 6 + 6 layers
        config = transformers.GroundingDinoConfig()
        edges = {"shortest_edge": 800, "longest_edge": 1333}
    transformers.GroundingDinoForObjectDetection(config).save_pretrained(out)
    image_processor = transformers.GroundingDinoImageProcessor(size=edges)
    processor = transformers.GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    processor.save_pretrained(out)
    return str(out)


def _clip_text(size: str, out: Path) -> str:
    import transformers

    tokenizer = clip_tokenizer()
    layers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    if size == "real":  # CLIP ViT-B/32's text tower
        layers = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8)
    config = transformers.CLIPTextConfig(
        vocab_size=len(tokenizer) if size == "tiny" else 49408, max_position_embeddings=16,
        projection_dim=512, bos_token_id=1, eos_token_id=2, pad_token_id=2, **layers,
    )
    transformers.CLIPTextModelWithProjection(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def random_checkpoint(model: str, size: str, out: Path, seed: int = 0) -> tuple[str, dict]:
    """Build ``model`` at ``size`` with random weights under ``out``.

    Returns
    -------
    (checkpoint, options)
        What :func:`annoloop.training.autolabel.base.load_detector` takes.
    """
    import torch

    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}; got {size!r}")
    torch.manual_seed(seed)
    out = Path(out)
    imgsz = 128 if size == "tiny" else 640
    if model in ("owlv2", "owlvit"):
        return _owl(model, size, out / f"{model}-{size}"), {}
    if model == "grounding_dino":
        return _grounding_dino(size, out / f"gdino-{size}"), {}
    if model == "yolo_world":
        from ultralytics import YOLOWorld

        weights = out / f"world-{size}.pt"
        YOLOWorld("yolov8n-worldv2.yaml" if size == "tiny" else "yolov8s-worldv2.yaml").save(str(weights))
        return str(weights), {"text_encoder": _clip_text(size, out / f"clip-text-{size}"), "imgsz": imgsz}
    if model == "trained":
        from ultralytics import YOLO

        weights = out / f"yolov8n-{size}.pt"
        YOLO("yolov8n.yaml").save(str(weights))
        return str(weights), {"imgsz": imgsz}
    raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")


def demo_images(num_images: int, image_size: tuple[int, int], seed: int) -> list[np.ndarray]:
    """Camera images of demo scenes (two per scene), rendered in memory."""
    from annoloop.demo.algorithms import scenes as sc
    from annoloop.demo.algorithms.camera import stereo_rig
    from annoloop.demo.algorithms.render import render_camera

    cameras = stereo_rig(image_size)
    scenes = sc.sample_scenes((num_images + 1) // 2, seed)
    return [render_camera(scene, camera)[0] for scene in scenes for camera in cameras][:num_images]


def images_per_second(detector, images: list[np.ndarray], batch_size: int) -> tuple[float, float]:
    """``(images/s, boxes per image)`` of ``detector.detect`` over ``images``."""
    detector.detect(images[:1], PROMPTS, 0.3)  # warm-up: lazy init, kernels, the vocabulary
    boxes = 0
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        boxes += sum(map(len, detector.detect(images[start : start + batch_size], PROMPTS, 0.3)))
    return len(images) / (time.perf_counter() - started), boxes / len(images)


def main() -> None:
    from annoloop.training.autolabel.base import load_detector

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--images", type=int, default=16, help="images timed per model and batch size")
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    import torch

    threads = torch.get_num_threads()
    images = demo_images(args.images, (args.width, args.height), args.seed)
    models = ["trained"] + [m for m in args.models if m != "trained"]  # the reference first
    rates = {}
    with tempfile.TemporaryDirectory() as workdir:
        for size in args.sizes:
            for model in models:
                checkpoint, options = random_checkpoint(model, size, Path(workdir))
                torch.set_num_threads(threads)  # every model gets the same CPU threads
                detector = load_detector(model, checkpoint, device=args.device, **options)
                for batch_size in args.batch_sizes:
                    rates[size, model, batch_size] = images_per_second(detector, images, batch_size)
                del detector

    print(
        f"{len(images)} demo images of {args.width}x{args.height} per run, prompts {PROMPTS}, "
        f"torch {torch.__version__} on {args.device} ({threads} threads)\n"
    )
    print("| model | size | batch | images/s | boxes/image (conf >= 0.3) | vs trained (YOLOv8n) |")
    print("|---|---|---:|---:|---:|---:|")
    for (size, model, batch_size), (rate, boxes) in rates.items():
        reference = rates[size, "trained", batch_size][0]
        print(f"| {model} | {size} | {batch_size} | {rate:.2f} | {boxes:.1f} | {rate / reference:.3f}x |")


if __name__ == "__main__":
    main()
