"""Command line entry points: ``python -m annoloop.cli loop`` is the README's main job."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter


def _print_table(title: str, rows: list[tuple], headers: tuple[str, ...]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    print(f"\n{title}")
    print("  " + "  ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
    for row in rows:
        print("  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths)))


def summarize_demo(dataset) -> None:
    """Print what the demo dataset holds: scenes, slices, day/night, classes."""
    from fiftyone import ViewField as F

    left = dataset.select_group_slices("left")
    scenes = Counter(zip(left.values("time_of_day"), left.values("weather")))
    rows = [(tod, weather, n) for (tod, weather), n in sorted(scenes.items())]
    _print_table("Scenes by time of day and weather", rows, ("time", "weather", "scenes"))

    classes = Counter(left.values("oracle.detections.label", unwind=True))
    night = left.match(F("time_of_day") == "night")
    night_classes = Counter(night.values("oracle.detections.label", unwind=True))
    rows = [(c, n, night_classes.get(c, 0)) for c, n in classes.most_common()]
    _print_table("Objects in the left camera (oracle)", rows, ("class", "all", "at night"))

    dups = sum(v is not None for v in left.values("near_duplicate_of"))
    print(f"\nNear-duplicate scenes: {dups} of {len(left)}")


def cmd_loop(args: argparse.Namespace) -> int:
    import fiftyone as fo

    from .loop.demo_loop import config_from_arguments, run_demo_loop
    from .loop.report import comparison_table, ledger_table, timing_table, write_report

    out_dir = os.path.join(args.out, args.name)
    os.makedirs(out_dir, exist_ok=True)
    log_file = os.path.join(out_dir, "loop.log")
    open(log_file, "w").close()
    config = config_from_arguments(
        args,
        name=args.name,
        seed=args.seed,
        strategies=tuple(args.strategies.split(",")),
        log_file=log_file,
    )
    print(f"Training and FiftyOne output goes to {log_file}")
    result = run_demo_loop(config, log=lambda line: print(line, flush=True))
    summarize_demo(fo.load_dataset(args.name))
    print("\nLedger (same label budget per strategy; test mAP on the frozen test set)\n")
    print(ledger_table(result))
    print("\nComparison at equal labels (frozen test set; one seed)\n")
    print(comparison_table(result))
    print("\nSeconds per stage\n")
    print(timing_table(result))
    paths = write_report(result, out_dir)
    print("\nWrote " + ", ".join(paths))
    others = [f"'{args.name}-{s}'" for s in config.strategies[1:]]
    print(
        "\nNext steps"
        f"\n  Open it in the App:   bash scripts/run.sh fiftyone app launch {args.name}"
        + (f"\n  (the other strategies are the datasets {', '.join(others)})" if others else "")
        + "\n  Several seeds, every strategy: bash scripts/run.sh python benchmarks/bench_loop.py"
        "\n  Start a worker:       bash scripts/worker.sh   (runs scheduled annoloop operations)"
        f"\n  Database:             {fo.config.database_uri or 'embedded (FiftyOne default)'}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    from .loop.demo_loop import DEFAULT_STRATEGIES, STRATEGY_PLANS, add_config_arguments

    parser = argparse.ArgumentParser(prog="annoloop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    loop = sub.add_parser("loop", help="build the demo dataset and run the loop on it")
    loop.add_argument("--name", default="annoloop-demo", help="dataset name (replaced if it exists)")
    loop.add_argument("--seed", type=int, default=51)
    add_config_arguments(loop)
    loop.add_argument(
        "--strategies",
        default=",".join(DEFAULT_STRATEGIES),
        help=f"comma-separated, from: {', '.join(STRATEGY_PLANS)}",
    )
    loop.add_argument("--out", default="runs", help="folder for the plots, result.json and loop.log")
    loop.set_defaults(func=cmd_loop)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
