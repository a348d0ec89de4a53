"""Does the loop buy more model per label than random selection? Measured over seeds.

For each seed the demo is built and prepared once (frozen test, mining and golden splits,
embeddings, ZCore), then every strategy spends the same label budget on its own copy through
annoloop's operators (:mod:`annoloop.loop.demo_loop`): the annoloop schedule (coverage, then
targeting of the mining split's failures), random, coverage only (k-center), targeting only,
and pool-uncertainty targeting. Everything is scored on the frozen test split, which no
selection input ever touches.

Prints, per strategy and round, test mAP and night (rare-slice) recall as mean +/- sd over
seeds, then the final round against random: the mAP ratio and the label-efficiency ratio
(labels a strategy needs to reach random's final test mAP, by interpolation on its curve,
over random's labels; < 1 is better).

    bash scripts/run.sh python benchmarks/bench_loop.py --seeds 51 52 53
    bash scripts/run.sh python benchmarks/bench_loop.py --strategies annoloop,random --rounds 2

Takes about 7 minutes per strategy and seed at the defaults on a 2-core CPU (training is
most of it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from annoloop.loop.demo_loop import (
    STRATEGY_PLANS,
    add_config_arguments,
    config_from_arguments,
    run_demo_loop,
)
from annoloop.loop.algorithms.efficiency import label_efficiency, mean_sd
from annoloop.loop.report import curve


def _cell(values) -> str:
    mean, sd, n = mean_sd(values)
    if mean is None:
        return "-"
    return f"{mean:.3f} ± {sd:.3f}" if n > 1 else f"{mean:.3f}"


def per_round_table(results: list[dict], strategies: list[str]) -> str:
    rounds = len(results[0]["strategies"][strategies[0]]["rounds"])
    lines = [
        "| strategy | round | labels | test mAP | night recall | night picks | coverage / targeting |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for strategy in strategies:
        for i in range(rounds):
            rows = [res["strategies"][strategy]["rounds"][i] for res in results]
            shares = {f"{r['n_coverage']}/{r['n_targeting']}" for r in rows}
            lines.append(
                f"| {strategy} | {i + 1} | {rows[0]['labels']} | {_cell([r['map'] for r in rows])} "
                f"| {_cell([r['night_recall'] for r in rows])} "
                f"| {_cell([r.get('night_picks') for r in rows])} | {', '.join(sorted(shares))} |"
            )
    return "\n".join(lines)


def final_table(results: list[dict], strategies: list[str], baseline: str = "random") -> str:
    lines = [
        f"| strategy | final test mAP | mAP - {baseline} | mAP / {baseline} | night recall "
        f"| night - {baseline} | labels to reach {baseline}'s final mAP / {baseline}'s labels |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for strategy in strategies:
        maps, nights, diffs, ratios, night_diffs, efficiencies = [], [], [], [], [], []
        for res in results:
            run, base = res["strategies"][strategy], res["strategies"][baseline]
            final, base_final = run["rounds"][-1], base["rounds"][-1]
            maps.append(final["map"])
            nights.append(final["night_recall"])
            diffs.append(final["map"] - base_final["map"])
            ratios.append(final["map"] / base_final["map"] if base_final["map"] > 0 else None)
            if final["night_recall"] is not None and base_final["night_recall"] is not None:
                night_diffs.append(final["night_recall"] - base_final["night_recall"])
            efficiencies.append(label_efficiency(*curve(run), *curve(base)))
        reached = [e for e in efficiencies if e is not None]
        efficiency = _cell(reached) + (
            f" (reached in {len(reached)}/{len(efficiencies)})" if len(reached) < len(efficiencies) else ""
        )
        lines.append(
            f"| {strategy} | {_cell(maps)} | {_cell(diffs)} | {_cell(ratios)} | {_cell(nights)} "
            f"| {_cell(night_diffs)} | {efficiency} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[51, 52, 53])
    parser.add_argument("--strategies", default=",".join(STRATEGY_PLANS))
    add_config_arguments(parser)
    parser.add_argument("--out", default=None, help="write every seed's full result as JSON here")
    parser.add_argument(
        "--report",
        nargs="+",
        default=None,
        metavar="JSON",
        help="print the tables of earlier --out files (seeds pooled) instead of running",
    )
    args = parser.parse_args(argv)
    if args.report:
        results = [r for path in args.report for r in json.load(open(path))]
        ran = [list(r["strategies"]) for r in results]
        strategies = [s for s in ran[0] if all(s in r for r in ran)]
        print_tables(results, strategies)
        return 0
    strategies = args.strategies.split(",")
    if "random" not in strategies:
        strategies.append("random")  # the baseline every ratio is taken against

    import fiftyone as fo

    log_file = os.path.join(tempfile.mkdtemp(prefix="bench-loop-"), "loop.log")
    print(f"Training and FiftyOne output goes to {log_file}", flush=True)
    results = []
    started = time.perf_counter()
    for seed in args.seeds:
        config = config_from_arguments(
            args,
            name=f"bench-loop-{seed}",
            seed=seed,
            strategies=tuple(strategies),
            log_file=log_file,
        )
        result = run_demo_loop(config, log=lambda line, s=seed: print(f"[seed {s}] {line}", flush=True))
        results.append(result)
        for name in [config.name, *(f"{config.name}-{s}" for s in strategies[1:])]:
            if fo.dataset_exists(name):
                fo.delete_dataset(name)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1, default=str)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    print_tables(results, strategies)
    return 0


def print_tables(results: list[dict], strategies: list[str]) -> None:
    config = results[0]["config"]
    seeds = [r["config"]["seed"] for r in results]
    print(
        f"\nDemo loop, {len(seeds)} seeds ({', '.join(map(str, seeds))}), {config['scenes']} "
        f"scenes ({config['night_fraction']:.0%} night), {config['rounds']} rounds x "
        f"{config['budget']} scenes, {config.get('model', 'yolov8n')} "
        f"({config.get('freeze', 0)} frozen layers), {config['steps']} steps per round at imgsz "
        f"{config['imgsz']}, {config.get('coverage_method', 'kcenter')} coverage\n"
    )
    print(per_round_table(results, strategies))
    print()
    print(final_table(results, strategies))


if __name__ == "__main__":
    sys.exit(main())
