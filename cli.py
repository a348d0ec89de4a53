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

    from .loop.demo_loop import LoopConfig, run_demo_loop
    from .loop.report import ledger_table, timing_table, write_report

    config = LoopConfig(
        name=args.name,
        scenes=args.scenes,
        rounds=args.rounds,
        budget=args.budget,
        epochs=args.epochs,
        imgsz=args.imgsz,
        seed=args.seed,
    )
    result = run_demo_loop(config)
    summarize_demo(fo.load_dataset(args.name))
    print("\nLedger (same label budget per strategy; test mAP on the frozen test set)\n")
    print(ledger_table(result))
    print("\nSeconds per stage\n")
    print(timing_table(result))
    paths = write_report(result, os.path.join(args.out, args.name))
    print("\nWrote " + ", ".join(paths))
    print(
        "\nNext steps"
        f"\n  Open it in the App:   bash scripts/run.sh fiftyone app launch {args.name}"
        f"\n  (the random baseline is the dataset '{args.name}-random')"
        "\n  Start a worker:       bash scripts/worker.sh   (runs scheduled annoloop operations)"
        f"\n  Database:             {fo.config.database_uri or 'embedded (FiftyOne default)'}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    from .loop.demo_loop import LoopConfig as LoopDefaults

    parser = argparse.ArgumentParser(prog="annoloop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    loop = sub.add_parser("loop", help="build the demo dataset and run the loop on it")
    loop.add_argument("--name", default="annoloop-demo", help="dataset name (replaced if it exists)")
    loop.add_argument("--scenes", type=int, default=200, help="number of scenes (groups)")
    loop.add_argument("--seed", type=int, default=51)
    loop.add_argument("--rounds", type=int, default=LoopDefaults.rounds, help="labeling rounds per strategy")
    loop.add_argument("--budget", type=int, default=LoopDefaults.budget, help="scenes labeled per round")
    loop.add_argument("--epochs", type=int, default=LoopDefaults.epochs, help="YOLO epochs per round")
    loop.add_argument("--imgsz", type=int, default=LoopDefaults.imgsz, help="YOLO image size")
    loop.add_argument("--out", default="runs", help="folder for the plots and result.json")
    loop.set_defaults(func=cmd_loop)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
