"""How many optimizer steps, at which resolution, does the demo detector need to learn?

Builds the main job's demo (same scenes, splits and seed), gives ``--labels`` random pool
scenes their true (oracle) labels, then trains each ``--models`` detector through the
``train_detector`` operator for each step count, at the images' native 384x128 with
rectangular batches, and once at 256 px square with mosaic (the first default) with the same
steps as the main job; each model is evaluated on the frozen test split. This is the curve
the main job's ``--steps``, ``--imgsz`` and model defaults were read from.

    bash scripts/run.sh python benchmarks/bench_training_steps.py --steps 50 150 300
    bash scripts/run.sh python benchmarks/bench_training_steps.py --models yolov8n-lite0 yolov8n --no-square
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from annoloop.loop.demo_loop import LoopConfig, night_recall, run_operator


def main(argv: list[str] | None = None) -> int:
    defaults = LoopConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 150, 300])
    parser.add_argument("--labels", type=int, default=60, help="labeled training scenes")
    parser.add_argument(
        "--square-steps", type=int, default=defaults.steps, help="steps of the 256 px square run"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--models", nargs="+", default=[defaults.model], help="detectors to compare (MODEL_CHOICES)"
    )
    parser.add_argument(
        "--freeze", type=int, nargs="+", default=[0], help="frozen layers to compare (1: Lite0's backbone)"
    )
    parser.add_argument("--no-square", action="store_true", help="skip the 256 px square run")
    args = parser.parse_args(argv)

    import fiftyone as fo

    from annoloop.core.views import pool_set

    name = "bench-training-steps"
    run_operator(
        "load_demo_dataset", name=name, num_scenes=defaults.scenes,
        night_fraction=defaults.night_fraction, seed=args.seed, overwrite=True,
    )
    dataset = fo.load_dataset(name)
    run_operator(
        "create_splits", dataset, test=defaults.test_fraction, mining=defaults.mining_fraction,
        golden=defaults.golden_scenes, seed=args.seed, source_field="oracle",
    )
    pool = pool_set(dataset, "left")
    ids = np.random.default_rng(args.seed).permutation(pool.values("id"))[: args.labels]
    labeled = pool.select(ids.tolist())
    labeled.set_values("ground_truth", labeled.values("oracle"))

    detectors = [(model, freeze) for model in args.models for freeze in args.freeze]
    settings = [(*detector, steps, 384, True) for detector in detectors for steps in args.steps]
    if not args.no_square:
        settings += [(*detector, args.square_steps, 256, False) for detector in detectors]
    rows = []
    for model, freeze, steps, imgsz, rect in settings:
        run_name = (
            f"{model.replace('-', '_')}_freeze{freeze}_steps{steps}_{imgsz}{'_rect' if rect else ''}"
        )
        started = time.perf_counter()
        trained = run_operator(
            "train_detector", dataset, run_name=run_name, slice="left", model=model, freeze=freeze,
            steps=steps, imgsz=imgsz, rect=rect, batch=defaults.train_batch, val_fraction=0.1,
            val_each_epoch=False, warmup_epochs=1.0, seed=args.seed, overwrite=True,
        )
        seconds = time.perf_counter() - started
        run_operator("apply_detector", dataset, run_name=run_name, target="test", conf=0.05)
        evaluation = run_operator(
            "evaluate_model", dataset, run_name=run_name, gt_field="oracle", record=False
        )
        rows.append(
            (model, freeze, steps, imgsz, rect, trained["epochs"], seconds, evaluation["map"],
             night_recall(dataset))
        )
        print(f"{run_name}: test mAP {evaluation['map']:.4f} in {seconds:.0f} s", flush=True)
    fo.delete_dataset(name)

    print(f"\n{args.labels} labeled demo scenes, seed {args.seed}, test split of the main job\n")
    print("| model | frozen layers | steps | imgsz | batches | epochs | train s | test mAP | night recall |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for model, freeze, steps, imgsz, rect, epochs, seconds, map_, night in rows:
        night_cell = "-" if night is None else f"{night:.3f}"
        print(
            f"| {model} | {freeze} | {steps} | {imgsz} | {'rectangular' if rect else 'square, mosaic'} "
            f"| {epochs} | {seconds:.0f} | {map_:.4f} | {night_cell} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
