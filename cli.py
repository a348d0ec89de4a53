"""Command line entry points: ``python -m annoloop.cli loop`` is the README's main job."""

from __future__ import annotations

import argparse
import sys
import time
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

    from .demo.dataset import load_demo_dataset

    started = time.perf_counter()
    print(f"Building demo dataset '{args.name}' ({args.scenes} scenes, seed {args.seed}) ...")
    dataset = load_demo_dataset(
        name=args.name, num_scenes=args.scenes, seed=args.seed, overwrite=True
    )
    print(f"  done in {time.perf_counter() - started:.1f}s; slices: {', '.join(dataset.group_slices)}")
    summarize_demo(dataset)

    print(
        "\nNext steps"
        f"\n  Open it in the App:   bash scripts/run.sh fiftyone app launch {dataset.name}"
        "\n  Start a worker:       bash scripts/worker.sh   (runs scheduled annoloop operations)"
        f"\n  Database:             {fo.config.database_uri or 'embedded (FiftyOne default)'}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="annoloop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    loop = sub.add_parser("loop", help="build the demo dataset and run the loop on it")
    loop.add_argument("--name", default="annoloop-demo", help="dataset name (replaced if it exists)")
    loop.add_argument("--scenes", type=int, default=200, help="number of scenes (groups)")
    loop.add_argument("--seed", type=int, default=51)
    loop.set_defaults(func=cmd_loop)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
