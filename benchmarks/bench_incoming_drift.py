"""Proof on the demo dataset: a new batch holding a novel domain (snow) raises the incoming-
drift alarm and its snow scenes score as novel; in-distribution batches raise no alarm.

For each of ``--seeds`` seeds a demo pool of ``--pool`` scenes (the default weather mix,
which never snows) is built. First ``--iid`` in-distribution batches of ``--iid-size``
scenes arrive one after another (``add_demo_scenes`` with the default mix, a new seed each)
and each is checked against everything before it (``check_incoming``): none should alarm.
Then a batch arrives with ``--batch`` scenes of which ``--snow-share`` are snow scenes (two
arrivals, ``incoming:main`` from the default mix and ``incoming:snow`` all snow, checked as
one view). Reported: the sample-level AUROC of the novelty score for snow vs not, the
batch's permutation p-value (alarm at p < ``--alpha``), how many snow scenes were flagged
and what the largest novel cluster was named; and the share of in-distribution batches
without an alarm. Every sample is embedded with ``compute_embeddings`` (``--model``; the
scene vector ``group_embedding`` is compared).

Targets (issue 18): AUROC >= 0.9, p < 0.01 for the snowy batch; >= 95 % of in-distribution
batches without an alarm.

Usage (``annoloop`` importable, e.g. after ``source scripts/env.sh``)::

    python benchmarks/bench_incoming_drift.py
    python benchmarks/bench_incoming_drift.py --seeds 5 --iid 10 --model efficientnet_lite0
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

import numpy as np
from sklearn.metrics import roc_auc_score

SNOW_ONLY = {"clear": 0.0, "rain": 0.0, "fog": 0.0, "snow": 1.0}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def one_seed(seed: int, args) -> dict:
    from annoloop.core.runs import load_results
    from annoloop.demo.algorithms import scenes as sc
    from annoloop.demo.dataset import add_demo_scenes, load_demo_dataset
    from annoloop.quality.incoming import check_incoming
    from annoloop.selection.embed import compute_embeddings

    size = tuple(args.image_size)
    dataset = load_demo_dataset(
        f"bench-incoming-{uuid.uuid4().hex[:8]}", num_scenes=args.pool, seed=seed, image_size=size
    )
    check = dict(n_permutations=args.permutations, seed=seed, alpha=args.alpha)
    try:
        compute_embeddings(dataset, model=args.model)
        iid_p = []
        for j in range(args.iid):
            tag = add_demo_scenes(dataset, args.iid_size, seed=1000 * seed + j, name=f"iid-{j}")["tag"]
            compute_embeddings(dataset, model=args.model)
            iid_p.append(check_incoming(dataset, tag, **check)["p_value"])
            log(f"seed {seed}: in-distribution batch {j}: p = {iid_p[-1]:.3f}")

        n_snow = int(round(args.batch * args.snow_share))
        add_demo_scenes(dataset, args.batch - n_snow, seed=1000 * seed + 500, name="main")
        add_demo_scenes(
            dataset, n_snow, seed=1000 * seed + 501, name="snow",
            scene_config=sc.SceneConfig(weather_probs=SNOW_ONLY),
        )
        compute_embeddings(dataset, model=args.model)
        batch = dataset.match_tags(["incoming:main", "incoming:snow"])
        start = time.perf_counter()
        result = check_incoming(
            dataset, batch, name="snowy", describe_by=["weather", "time_of_day"], **check
        )
        seconds = time.perf_counter() - start
        stored = load_results(dataset, result["run_key"])
        left = dataset.select_group_slices("left")
        weather = dict(zip(left.values("group.id"), left.values("weather")))
        is_snow = np.array([weather[u] == "snow" for u in stored.batch_units])
        novel = set(stored.novel_units)
        flagged = np.array([u in novel for u in stored.batch_units])
        return {
            "seed": seed,
            "auroc": float(roc_auc_score(is_snow, stored.scores)),
            "p_value": result["p_value"],
            "alarm": result["alarm"],
            "snow": int(is_snow.sum()),
            "snow_flagged": int((flagged & is_snow).sum()),
            "other_flagged": int((flagged & ~is_snow).sum()),
            "cluster": result["clusters"][0]["name"] if result["clusters"] else "-",
            "check_s": seconds,
            "iid_p": iid_p,
        }
    finally:
        dataset.delete()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pool", type=int, default=150, help="pool scenes per seed")
    parser.add_argument("--iid", type=int, default=7, help="in-distribution batches per seed")
    parser.add_argument("--iid-size", type=int, default=30, help="scenes per in-distribution batch")
    parser.add_argument("--batch", type=int, default=100, help="scenes of the snowy batch")
    parser.add_argument("--snow-share", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--permutations", type=int, default=999)
    parser.add_argument("--model", default="baseline")
    parser.add_argument("--image-size", type=int, nargs=2, default=(192, 64))
    args = parser.parse_args(argv)

    start = time.perf_counter()
    rows = [one_seed(51 + i, args) for i in range(args.seeds)]
    iid = [p for row in rows for p in row["iid_p"]]
    quiet = float(np.mean([p >= args.alpha for p in iid]))

    print(
        f"\n## Incoming-data drift on the demo ({args.model}, pool {args.pool} scenes, "
        f"batch {args.batch} scenes with {args.snow_share:.0%} snow, {args.image_size[0]}x"
        f"{args.image_size[1]} images)\n"
    )
    print("| seed | snow AUROC | batch p | alarm | snow flagged | others flagged | largest novel cluster | check s |")
    print("|---:|---:|---:|---|---:|---:|---|---:|")
    for r in rows:
        print(
            f"| {r['seed']} | {r['auroc']:.3f} | {r['p_value']:.3f} | {'yes' if r['alarm'] else 'no'} "
            f"| {r['snow_flagged']}/{r['snow']} | {r['other_flagged']} | {r['cluster']} | {r['check_s']:.2f} |"
        )
    print(
        f"\nIn-distribution batches ({len(iid)} of {args.iid_size} scenes): "
        f"{quiet:.0%} without an alarm at p < {args.alpha}; p-values "
        f"min {min(iid):.3f}, median {float(np.median(iid)):.3f}."
    )
    print(f"\nTotal {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
