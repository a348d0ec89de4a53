"""Throughput of the embedding runners on demo camera images and LiDAR sweeps.

Measures, on images rendered by the demo generator (384 x 128 by default, in memory, so JPEG
decoding is excluded) in batches of ``--batch-size``:

* ``baseline-colour-gradient`` (numpy; the reference every ratio is taken against);
* a randomly initialised DINOv2-small-sized ViT (ViT-S/14 at 224 px: hidden 384, 12 layers,
  6 heads) through the Hugging Face runner; random weights cost what trained ones do;
* the Ultralytics ``yolov8n.yaml`` backbone (random init), letterboxed to ``--imgsz``;
* ``efficientnet_lite0`` (ImageNet-pretrained, 224 px; needs its pip packages);

and point clouds per second of the ``fpfh-geometry`` descriptor on simulated sweeps.
One warm-up batch runs before each timed model. Prints a markdown table.

Usage (with the checkout importable as ``annoloop``)::

    python benchmarks/bench_embeddings.py                       # 64 images, 16 sweeps
    python benchmarks/bench_embeddings.py --images 256 --clouds 64 --imgsz 640
    python benchmarks/bench_embeddings.py --models baseline yolo --images 32
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

MODELS = ("baseline", "dinov2-s", "yolo", "efficientnet_lite0")


def demo_data(num_images: int, num_clouds: int, image_size: tuple[int, int], seed: int):
    """Camera images (two per scene) and LiDAR point arrays from the demo generator."""
    from annoloop.demo.algorithms import scenes as sc
    from annoloop.demo.algorithms.camera import stereo_rig
    from annoloop.demo.algorithms.pointcloud import simulate_lidar
    from annoloop.demo.algorithms.render import render_camera

    scenes = sc.sample_scenes(max((num_images + 1) // 2, num_clouds), seed)
    cameras = stereo_rig(image_size)
    images = [render_camera(scene, camera)[0] for scene in scenes for camera in cameras][
        :num_images
    ]
    clouds = [simulate_lidar(scene).points for scene in scenes[:num_clouds]]
    return images, clouds


def build(model: str, imgsz: int, workdir: str):
    from annoloop.selection.embeddings.models import load_image_model

    if model in ("baseline", "efficientnet_lite0"):  # built-in specs, nothing to build
        return load_image_model(model)
    if model == "dinov2-s":
        from transformers import Dinov2Config, Dinov2Model

        config = Dinov2Config(
            hidden_size=384,
            num_hidden_layers=12,
            num_attention_heads=6,
            intermediate_size=1536,
            image_size=224,
            patch_size=14,
        )
        Dinov2Model(config).save_pretrained(f"{workdir}/dinov2-s")
        return load_image_model(f"hf:{workdir}/dinov2-s")
    from annoloop.selection.embeddings.models import UltralyticsEmbedder

    return UltralyticsEmbedder("yolov8n.yaml", imgsz=imgsz)


def images_per_second(embedder, images: list[np.ndarray], batch_size: int) -> tuple[float, int]:
    embedder.embed(images[:batch_size])  # warm-up: lazy init, allocator, kernels
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        dim = embedder.embed(images[start : start + batch_size]).shape[1]
    return len(images) / (time.perf_counter() - started), dim


def clouds_per_second(clouds: list[np.ndarray]) -> tuple[float, int, float]:
    from annoloop.selection.embeddings.pointcloud import pointcloud_descriptor

    pointcloud_descriptor(clouds[0])  # warm-up: open3d import
    started = time.perf_counter()
    for points in clouds:
        dim = len(pointcloud_descriptor(points))
    return (
        len(clouds) / (time.perf_counter() - started),
        dim,
        float(np.mean([len(c) for c in clouds])),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="camera images to embed per model")
    parser.add_argument("--clouds", type=int, default=16, help="LiDAR sweeps to describe")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--imgsz", type=int, default=320, help="YOLO letterbox size (multiple of 32)"
    )
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    images, clouds = demo_data(args.images, args.clouds, (args.width, args.height), args.seed)
    models = ["baseline"] + [m for m in args.models if m != "baseline"]  # the reference runs first
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for model in models:
            embedder = build(model, args.imgsz, workdir)
            rate, dim = images_per_second(embedder, images, args.batch_size)
            rows.append((model, embedder.name, dim, rate))
    reference = rows[0][3]

    import torch

    print(
        f"{len(images)} images of {args.width}x{args.height}, batch {args.batch_size}, "
        f"torch {torch.__version__} on {'cuda' if torch.cuda.is_available() else 'cpu'} "
        f"({torch.get_num_threads()} threads)\n"
    )
    print("| model | runner name | dim | images/s | vs baseline |")
    print("|---|---|---:|---:|---:|")
    for model, name, dim, rate in rows:
        print(f"| {model} | `{name}` | {dim} | {rate:.1f} | {rate / reference:.2f}x |")
    if args.clouds:
        rate, dim, mean_points = clouds_per_second(clouds)
        print(
            f"\n| 3D descriptor | dim | mean points | point clouds/s |\n|---|---:|---:|---:|\n"
            f"| `fpfh-geometry` | {dim} | {mean_points:.0f} | {rate:.2f} |"
        )


if __name__ == "__main__":
    main()
