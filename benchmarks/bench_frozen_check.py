"""The frozen-split check (``require_frozen``) against the label-object read it replaced.

Builds the demo with ``--scenes`` scenes, freezes its splits, then times per repeat:

* ``require_frozen``: reads the frozen samples' labels as stored documents and fingerprints
  them (what training, evaluation and planning run first);
* baseline: the same samples read as FiftyOne label objects (``values(field)``) and
  fingerprinted with ``label.to_dict()``, the way the check read them before.

Both must give the same digests (checked). Usage::

    bash scripts/run.sh python benchmarks/bench_frozen_check.py --scenes 300 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

import numpy as np

from fiftyone import ViewField as F

from annoloop.core.names import FROZEN_SPLIT_TAGS
from annoloop.core.views import slice_views
from annoloop.demo.dataset import load_demo_dataset
from annoloop.quality.frozen import create_splits
from annoloop.quality.frozen_check import bookkeeping_keys, owned_fingerprint, require_frozen


def digests(dataset, fields, raw: bool) -> dict:
    ignore = bookkeeping_keys(dataset, fields)
    out = {}
    for view in slice_views(dataset).values():
        frozen = view.match_tags(list(FROZEN_SPLIT_TAGS))
        cols = frozen.values(["id", *(F(f) if raw else f for f in fields)])
        for i, sid in enumerate(cols[0]):
            out[sid] = [owned_fingerprint(col[i], ignore) for col in cols[1:]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dataset = load_demo_dataset(f"bench-frozen-{uuid.uuid4().hex[:6]}", num_scenes=args.scenes,
                                seed=1, image_size=(128, 64))
    try:
        create_splits(dataset, test=0.25, mining=0.15)
        fields = ["oracle"]
        n = len(digests(dataset, fields, raw=True))
        assert digests(dataset, fields, raw=True) == digests(dataset, fields, raw=False)
        times = {"require_frozen (stored documents)": [], "label objects (baseline)": []}
        for _ in range(args.repeats):
            t = time.perf_counter()
            require_frozen(dataset, "benchmark")
            times["require_frozen (stored documents)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            digests(dataset, fields, raw=False)
            times["label objects (baseline)"].append(time.perf_counter() - t)
        base = np.median(times["label objects (baseline)"])
        print(f"\n{args.scenes} demo scenes, {n} frozen samples (all slices), {args.repeats} repeats, "
              f"load average {os.getloadavg()[0]:.1f}; digests identical both ways\n")
        print("| read | median s | ms per frozen sample | x baseline |\n|---|---:|---:|---:|")
        for name, ts in times.items():
            m = float(np.median(ts))
            print(f"| {name} | {m:.2f} | {1000 * m / n:.2f} | {m / base:.2f} |")
    finally:
        dataset.delete()


if __name__ == "__main__":
    main()
