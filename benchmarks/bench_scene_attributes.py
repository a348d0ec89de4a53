"""Scene categorization on the demo dataset: how many labeled scenes per value the attribute
probe needs for time of day and weather, against the majority-class baseline.

For each of ``--seeds`` seeds a demo pool of ``--pool`` scenes (the default scene mix: 10 %
night; clear, rain and fog) is built and embedded with ``compute_embeddings`` (``--model``;
the probe reads the scene vector ``group_embedding``). For each attribute and each ``k`` of
``--per-value``, ``k`` scenes of each value are drawn at random (seeded) and their true value
copied into a known field, as a user would label them; ``categorize_scenes`` predicts every
scene and the predictions are scored on the scenes nobody labeled against the demo's true
values: accuracy, balanced accuracy (mean recall over the values) and the recall of the
rarest value. The baseline, on the same scenes, answers the most frequent true value of
those scenes for every scene (accuracy = its share, balanced accuracy = 1 / values).

Near-duplicate scenes (10 % of the demo) may have their original among the labeled scenes;
that is how real pools look too.

Usage (``annoloop`` importable, e.g. after ``source scripts/env.sh``)::

    python benchmarks/bench_scene_attributes.py
    python benchmarks/bench_scene_attributes.py --seeds 5 --per-value 1 2 5 10 20 --pool 400
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections import Counter

import numpy as np

ATTRIBUTES = ("time_of_day", "weather")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def score(predicted: list, true: list) -> dict:
    """Accuracy, balanced accuracy and the rarest value's recall of ``predicted``."""
    predicted, true = np.asarray(predicted), np.asarray(true)
    counts = Counter(true.tolist())
    recall = {v: float(np.mean(predicted[true == v] == v)) for v in counts}
    rarest = min(counts, key=lambda v: (counts[v], v))
    return {
        "accuracy": float(np.mean(predicted == true)),
        "balanced": float(np.mean(list(recall.values()))),
        "rarest": rarest,
        "rarest_recall": recall[rarest],
    }


def one_seed(seed: int, args) -> list[dict]:
    from annoloop.demo.dataset import load_demo_dataset
    from annoloop.quality.scene_attributes import categorize_scenes
    from annoloop.selection.embed import compute_embeddings

    dataset = load_demo_dataset(
        f"bench-attr-{uuid.uuid4().hex[:8]}", num_scenes=args.pool, seed=seed,
        image_size=tuple(args.image_size),
    )
    rows = []
    try:
        compute_embeddings(dataset, model=args.model)
        left = dataset.select_group_slices("left")
        ids, scenes = left.values(["id", "group.id"])
        rng = np.random.default_rng(seed)
        for attribute in ATTRIBUTES:
            true = dict(zip(scenes, left.values(attribute)))
            by_value = {v: sorted(s for s in scenes if true[s] == v) for v in set(true.values())}
            for k in args.per_value:
                labeled = {
                    s for v, members in sorted(by_value.items())
                    for s in rng.choice(members, size=min(k, len(members) - 1), replace=False)
                }
                known, output = f"known_{attribute}_{k}", f"predicted_{attribute}_{k}"
                left.set_values(
                    known, {i: true[s] for i, s in zip(ids, scenes) if s in labeled}, key_field="id"
                )
                start = time.perf_counter()
                categorize_scenes(dataset, attribute, known_field=known, output_field=output,
                                  min_per_value=1)
                seconds = time.perf_counter() - start
                predicted = dict(zip(scenes, left.values(output)))
                rest = [s for s in scenes if s not in labeled]
                truth = [true[s] for s in rest]
                majority = Counter(truth).most_common(1)[0][0]
                rows.append({
                    "seed": seed, "attribute": attribute, "k": k, "n_labeled": len(labeled),
                    "n_values": len(by_value), "n_scored": len(rest), "seconds": seconds,
                    "probe": score([predicted[s] for s in rest], truth),
                    "majority": score([majority] * len(rest), truth),
                })
                log(f"seed {seed} {attribute} k={k}: {rows[-1]['probe']}")
    finally:
        dataset.delete()
    return rows


def mean_sd(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.3f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pool", type=int, default=160, help="scenes per seed")
    parser.add_argument("--per-value", type=int, nargs="+", default=(2, 5, 10),
                        help="labeled scenes per value")
    parser.add_argument("--model", default="baseline")
    parser.add_argument("--image-size", type=int, nargs=2, default=(192, 64))
    args = parser.parse_args(argv)

    start = time.perf_counter()
    rows = [row for i in range(args.seeds) for row in one_seed(61 + i, args)]
    print(
        f"\n## Scene attributes on the demo ({args.model}, {args.pool} scenes per seed, "
        f"{args.seeds} seeds, {args.image_size[0]}x{args.image_size[1]} images; mean ± sd "
        "over seeds, scored on the scenes nobody labeled)\n"
    )
    print("| attribute | labeled per value | labeled scenes | probe accuracy | majority accuracy "
          "| probe balanced acc. | majority balanced acc. | rarest value recall | fit + write s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for attribute in ATTRIBUTES:
        for k in args.per_value:
            group = [r for r in rows if r["attribute"] == attribute and r["k"] == k]
            rarest = Counter(r["probe"]["rarest"] for r in group).most_common(1)[0][0]
            print(
                f"| {attribute} | {k} | {np.mean([r['n_labeled'] for r in group]):.0f} "
                f"| {mean_sd([r['probe']['accuracy'] for r in group])} "
                f"| {mean_sd([r['majority']['accuracy'] for r in group])} "
                f"| {mean_sd([r['probe']['balanced'] for r in group])} "
                f"| {mean_sd([r['majority']['balanced'] for r in group])} "
                f"| {rarest}: {mean_sd([r['probe']['rarest_recall'] for r in group])} "
                f"| {np.mean([r['seconds'] for r in group]):.2f} |"
            )
    print(f"\nTotal {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
