"""Does the targeting share land where the model fails? Night scenes on the demo dataset.

Builds the grouped demo dataset (``--scenes`` scenes, default 400; about 10 % at night),
embeds its ``left`` camera images with :func:`annoloop.selection.embed.compute_embeddings`
(``--model``: the weight-free baseline by default, or any ``load_image_model`` spec such as
``efficientnet_lite0``), then for each of ``--seeds`` seeds, on a fresh copy:

1. freezes a mining split (the frozen split whose failures targeting may use; the test
   split's may not): ``--test-fraction`` of the day scenes and of the night scenes, tagged
   ``split:mining`` on every slice, ground truth copied from the ``oracle``;
2. fabricates a model that is blind at night: its predictions on the mining split are the
   oracle's boxes by day and nothing at night, evaluated with the real
   :func:`annoloop.training.evaluate.evaluate_split` (so every failure is a false
   negative on a night scene);
3. plans a ``--budget`` batch with :func:`annoloop.selection.batches.plan_batch`
   (dry run, ``--coverage-fraction`` coverage, the rest targeting) and, as the baseline, a
   uniform random pick of the targeting share's size from the same selectable pool.

It reports the fraction of night scenes in the targeting share, in the coverage share, in
the random pick and in the pool (the base rate), and the lifts over the base rate and over
random, per seed and as the mean. Prints a markdown table.

Usage (``annoloop`` importable, e.g. after ``source scripts/env.sh``)::

    python benchmarks/bench_targeting_demo.py                        # 400 scenes, 5 seeds
    python benchmarks/bench_targeting_demo.py --scenes 100 --seeds 2 --budget 20
    python benchmarks/bench_targeting_demo.py --model efficientnet_lite0
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid

import numpy as np


def freeze_mining_split(dataset, fraction: float, rng: np.random.Generator) -> None:
    """Tag a share of the day and of the night scenes ``split:mining``; copy their oracle."""
    from annoloop.core.names import MINING_SPLIT_TAG

    left = dataset.select_group_slices("left")
    groups, times = left.values(["group.id", "time_of_day"])
    groups, times = np.array(groups), np.array(times)
    test = []
    for time_of_day in ("day", "night"):
        members = groups[times == time_of_day]
        count = int(round(fraction * len(members)))
        test.extend(rng.choice(members, size=count, replace=False).tolist())
    frozen = dataset.select_groups(test)
    for name in dataset.group_slices:
        frozen.select_group_slices(name).tag_samples(MINING_SPLIT_TAG)
    frozen_left = frozen.select_group_slices("left")
    frozen_left.set_values("ground_truth", frozen_left.values("oracle"))


def blind_at_night(dataset) -> None:
    """Predictions on the mining split: the oracle by day, nothing at night; evaluated."""
    import fiftyone as fo

    from annoloop.training.evaluate import evaluate_split
    from annoloop.core.views import split_set

    test = split_set(dataset, "left", "mining")
    oracle, times = test.values(["oracle", "time_of_day"])
    predictions = []
    for labels, time_of_day in zip(oracle, times):
        boxes = [] if time_of_day == "night" else labels.detections
        predictions.append(
            fo.Detections(
                detections=[
                    fo.Detection(label=d.label, bounding_box=d.bounding_box, confidence=0.9)
                    for d in boxes
                ]
            )
        )
    test.set_values("predictions", predictions)
    evaluate_split(
        dataset, "predictions", split="mining", slice_name="left", eval_key="eval_mining"
    )


def night_fraction(night: dict, units) -> float:
    units = list(units)
    return float(np.mean([night[u] for u in units])) if units else float("nan")


def run_seed(base, seed: int, args) -> dict:
    from annoloop.selection.batches import plan_batch

    rng = np.random.default_rng(seed)
    dataset = base.clone(f"{base.name}-seed{seed}")
    try:
        freeze_mining_split(dataset, args.test_fraction, rng)
        blind_at_night(dataset)
        left = dataset.select_group_slices("left")
        groups, times = left.values(["group.id", "time_of_day"])
        night = {g: t == "night" for g, t in zip(groups, times)}
        started = time.perf_counter()
        plan = plan_batch(
            dataset,
            args.budget,
            embeddings_field="embedding",
            coverage_fraction=args.coverage_fraction,
            seed=seed,
            dry_run=True,
        )
        seconds = time.perf_counter() - started
        pool = left.match_tags("split:mining", bool=False).values("group.id")
        targeted = [u for u, s in zip(plan["ids"], plan["sources"]) if s == "targeting"]
        covered = [u for u, s in zip(plan["ids"], plan["sources"]) if s == "coverage"]
        random_pick = rng.choice(pool, size=len(targeted), replace=False)
        return {
            "seed": seed,
            "pool": len(pool),
            "pool_night": sum(night[u] for u in pool),
            "failures": plan["counts"]["failures"]["queries"],
            "n_targeting": len(targeted),
            "night_targeted": sum(night[u] for u in targeted),
            "night_random": int(sum(night[u] for u in random_pick)),
            "base": night_fraction(night, pool),
            "targeting": night_fraction(night, targeted),
            "coverage": night_fraction(night, covered),
            "random": night_fraction(night, random_pick),
            "seconds": seconds,
            "fallback": plan["fallback_reason"],
        }
    finally:
        dataset.delete()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=400, help="demo scenes")
    parser.add_argument("--seeds", type=int, default=5, help="test splits / random picks")
    parser.add_argument("--budget", type=int, default=40, help="scenes per batch")
    parser.add_argument("--coverage-fraction", type=float, default=0.3)
    parser.add_argument(
        "--test-fraction", type=float, default=0.25, help="share of scenes in the mining split"
    )
    parser.add_argument("--demo-seed", type=int, default=51, help="seed of the demo scenes")
    parser.add_argument("--model", default="baseline", help="image model spec for the embeddings")
    args = parser.parse_args(argv)

    from annoloop.demo.dataset import load_demo_dataset
    from annoloop.selection.embed import compute_embeddings

    name = f"bench-targeting-{uuid.uuid4().hex[:8]}"
    media = tempfile.mkdtemp(prefix="bench-targeting-")
    started = time.perf_counter()
    dataset = load_demo_dataset(name, num_scenes=args.scenes, seed=args.demo_seed, media_dir=media)
    built = time.perf_counter() - started
    try:
        started = time.perf_counter()
        summary = compute_embeddings(
            dataset, slices=["left"], model=args.model, group_field=None
        )
        embedded = time.perf_counter() - started
        rows = [run_seed(dataset, seed, args) for seed in range(args.seeds)]
    finally:
        dataset.delete()
        shutil.rmtree(media, ignore_errors=True)

    print(
        f"\n{args.scenes} demo scenes (built in {built:.1f} s), left images embedded with "
        f"{summary['model']} (dim {summary['slices']['left']['dim']}, {embedded:.1f} s); "
        f"budget {args.budget}, coverage fraction {args.coverage_fraction}, mining fraction "
        f"{args.test_fraction}; failures = false negatives on night mining scenes\n"
    )
    print(
        "| seed | pool scenes | night in pool | failure queries | targeting picks "
        "| night picked: targeting / random / best possible "
        "| night: pool (base rate) | night: targeting | night: coverage | night: random "
        "| targeting / base | targeting / random | plan s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        best = min(r["pool_night"], r["n_targeting"])
        print(
            f"| {r['seed']} | {r['pool']} | {r['pool_night']} | {r['failures']} "
            f"| {r['n_targeting']} | {r['night_targeted']} / {r['night_random']} / {best} "
            f"| {r['base']:.3f} | {r['targeting']:.3f} | {r['coverage']:.3f} "
            f"| {r['random']:.3f} | {r['targeting'] / r['base']:.2f} "
            f"| {_ratio(r['targeting'], r['random'])} | {r['seconds']:.2f} |"
        )
    keys = ("base", "targeting", "coverage", "random", "seconds")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    print(
        f"| **mean** | | | | | | {mean['base']:.3f} | {mean['targeting']:.3f} "
        f"| {mean['coverage']:.3f} | {mean['random']:.3f} | {mean['targeting'] / mean['base']:.2f} "
        f"| {_ratio(mean['targeting'], mean['random'])} | {mean['seconds']:.2f} |"
    )
    for r in rows:
        if r["fallback"]:
            print(f"\nseed {r['seed']}: {r['fallback']}")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "inf (random found no night scene)"


if __name__ == "__main__":
    main()
