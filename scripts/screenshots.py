"""Make the README's panel screenshots from a real, small run of the loop.

    bash scripts/run.sh python scripts/screenshots.py [--scenes N] [--rounds R] [--steps S]

It builds the demo dataset ``annoloop-screenshots`` in FiftyOne's configured database and runs
the main job's loop on it (:func:`annoloop.loop.demo_loop.run_demo_loop`: the annoloop and
random strategies through annoloop's own operators), smaller than the main job so it takes
minutes; every number the panels show is measured by that run, the random strategy's ledger
being the baseline. Then it opens the App over the dataset in headless Chromium (the browser
tests' helpers, ``tests/app_browser.py``) and writes ``docs/annotation_loop_panel.png`` and,
after a click on "Preview (dry run)", ``docs/batch_planner_panel.png``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The App and browser helpers live beside the tests that use them most.
sys.path.insert(0, str(REPO / "tests"))

from app_browser import app_in_browser, chromium_executable  # noqa: E402

from annoloop.loop.demo_loop import (  # noqa: E402
    add_config_arguments,
    config_from_arguments,
    run_demo_loop,
)

DATASET = "annoloop-screenshots"
# A few minutes on a 2-core CPU, with a pool left for the planner's preview after three
# rounds; the README's caption names these sizes.
DEFAULTS = {"scenes": 200, "rounds": 3, "budget": 20, "steps": 60}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_config_arguments(parser)
    parser.set_defaults(**DEFAULTS)
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="folder for the PNGs")
    args = parser.parse_args(argv)

    executable = chromium_executable()
    if executable is None:
        print("Debian's chromium is missing: run `apt-get install -y chromium`", file=sys.stderr)
        return 1
    log_dir = Path(tempfile.mkdtemp(prefix="annoloop-screenshots-"))
    config = config_from_arguments(args, name=DATASET, log_file=str(log_dir / "loop.log"))
    print(
        f"Running the loop on {config.scenes} scenes: {config.rounds} rounds of {config.budget} "
        f"scenes, {config.steps} training steps each; training output goes to {config.log_file}"
    )
    run_demo_loop(config, log=lambda line: print(line, flush=True))

    import fiftyone as fo

    import annoloop

    dataset = fo.load_dataset(DATASET)
    # The planner draws its picks on the latest embeddings map; the loop makes none.
    annoloop.compute_visualization(
        dataset, embeddings="embedding", slice_name="left", overwrite=True
    )
    args.out.mkdir(parents=True, exist_ok=True)
    with app_in_browser(dataset, executable, log_dir) as app:
        app.show_panel("annotation_loop", "Ledger of rounds", "Golden set", "Quarantine")
        app.wait_for_cells(lambda cells: "batch:v1" in cells)  # the tables came too
        print("Wrote", app.screenshot(args.out / "annotation_loop_panel.png"))
        app.show_panel("batch_planner", "next batch", "Preview (dry run)")
        app.click_button("Preview")
        app.wait_for_text("Preview of")
        app.wait_for_cells(lambda cells: "1" in cells)  # the picks table's first row
        print("Wrote", app.screenshot(args.out / "batch_planner_panel.png"))
        # Read before the server stops: its shutdown logs cancelled connections.
        server_log = (log_dir / "app-server.log").read_text()
    if "Traceback" in server_log:
        print(f"The App server logged an error:\n{server_log[-3000:]}", file=sys.stderr)
        return 1
    print(f"Open it yourself: bash scripts/run.sh fiftyone app launch {DATASET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
