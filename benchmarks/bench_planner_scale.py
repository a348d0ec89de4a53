"""Scale benchmark of the batch planner: a 1,000-row batch from a 1M x 512 float32 pool.

What it measures, each case in its own subprocess so that ``ru_maxrss`` is that case's peak:

* ``plan_batch`` at the full size (default n = 1,000,000 pool rows, d = 512, 10,000 failure
  queries, 1,000 labeled rows (the first batch), 1 % of the pool excluded, round 2 -> 30 %
  coverage / 70 % targeting);
* the failure neighbour search (the O(n * q) part) at a size where brute force fits
  (default n = 20,000): blocked search (``targeting.nearest_rows``) versus the brute-force
  baseline, the same search run as a single block, i.e. with the full n x q distance matrix
  in memory. The ratio of the two is printed.

Data: a Gaussian mixture (1,000 centres) in float32; failures are perturbed pool rows.
Data generation is excluded from the times but not from the peak RSS, so the table also
gives the RSS right after the data were made.

Usage (from the repository's parent package path)::

    PYTHONPATH=/tmp/annoloop_pkg python benchmarks/bench_planner_scale.py
    PYTHONPATH=/tmp/annoloop_pkg python benchmarks/bench_planner_scale.py --n 100000 --failures 2000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def _make_data(n: int, dim: int, n_failures: int, n_labeled: int, seed: int) -> dict:
    """A float32 Gaussian-mixture pool, labeled rows, failure queries and an exclusion mask."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dim), dtype=np.float32) * 4.0
    pool = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):  # chunked: no float64 temporaries of the whole pool
        stop = min(n, start + 65536)
        pool[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
        pool[start:stop] += centres[rng.integers(0, len(centres), stop - start)]
    labeled = centres[rng.integers(0, len(centres), n_labeled)] + rng.standard_normal(
        (n_labeled, dim), dtype=np.float32
    )
    failures = pool[rng.integers(0, n, n_failures)] + 0.5 * rng.standard_normal(
        (n_failures, dim), dtype=np.float32
    )
    kinds = rng.choice(["fn", "fn", "confusion", "fp"], size=n_failures).tolist()
    excluded = rng.random(n) < 0.01
    return dict(pool=pool, labeled=labeled, failures=failures, kinds=kinds, excluded=excluded)


def _rss_now_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _run_case(case: str, args: argparse.Namespace) -> dict:
    """Run one case in this process and return its measurements."""
    # Imported here: the parent process only spawns and tabulates.
    from annoloop.selection.algorithms import planner, targeting

    n = args.n if case == "plan" else args.brute_n
    data = _make_data(n, args.dim, args.failures, args.labeled, args.seed)
    data_rss = _rss_now_mib()
    start = time.perf_counter()
    if case == "plan":
        plan = planner.plan_batch(
            data["pool"],
            args.budget,
            labeled_embeddings=data["labeled"],
            excluded=data["excluded"],
            failure_embeddings=data["failures"],
            failure_kinds=data["kinds"],
            failure_ids=[f"failure-{i}" for i in range(args.failures)],
            round_index=2,
            seed=args.seed,
        )
        detail = f"{plan.n_coverage} coverage + {plan.n_targeting} targeting"
    else:
        block = targeting.DEFAULT_BLOCK_ELEMENTS if case == "blocked" else n * args.failures
        targeting.nearest_rows(data["pool"], data["failures"], args.k, block_elements=block)
        detail = f"top-{args.k} per query, block of {block:,} elements"
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(
        case=case, n=n, wall_s=wall, data_rss_mib=data_rss, peak_rss_mib=peak, detail=detail
    )


def _extra_mib(row: dict) -> float:
    """Peak RSS above what the generated data alone occupied."""
    return row["peak_rss_mib"] - row["data_rss_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="pool rows for the full plan")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--failures", type=int, default=10_000, help="failure queries")
    parser.add_argument("--labeled", type=int, default=1000, help="already-labeled rows")
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--brute-n", type=int, default=20_000, help="pool rows for the baseline")
    parser.add_argument("--k", type=int, default=16, help="neighbours per query (search cases)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case", choices=["plan", "blocked", "brute"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(_run_case(args.case, args)))
        return

    rows = {}
    for case in ("brute", "blocked", "plan"):
        child = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--case", case],
            check=True,
            capture_output=True,
            text=True,
        )
        rows[case] = json.loads(child.stdout.strip().splitlines()[-1])

    names = {
        "brute": "neighbour search, brute force (full n x q matrix)",
        "blocked": "neighbour search, blocked (targeting.nearest_rows)",
        "plan": f"plan_batch, budget {args.budget}, round 2",
    }
    print(f"pool d={args.dim} float32, {args.failures:,} failure queries, "
          f"{args.labeled:,} labeled rows, 1 % excluded\n")
    print("| case | n | wall s | RSS after data MiB | peak RSS MiB | detail |")
    print("|---|---:|---:|---:|---:|---|")
    for case in ("brute", "blocked", "plan"):
        r = rows[case]
        print(f"| {names[case]} | {r['n']:,} | {r['wall_s']:.2f} | {r['data_rss_mib']:.0f} | "
              f"{r['peak_rss_mib']:.0f} | {r['detail']} |")
    brute, blocked = rows["brute"], rows["blocked"]
    print(f"\nbrute / blocked at n={args.brute_n:,}: "
          f"time x{brute['wall_s'] / blocked['wall_s']:.2f}, "
          f"memory above the data x{_extra_mib(brute) / max(_extra_mib(blocked), 1.0):.1f} "
          f"({_extra_mib(brute):.0f} vs {_extra_mib(blocked):.0f} MiB)")
    # Brute force grows with n * q; the blocked search's working memory does not grow with n.
    print(f"brute force at n={args.n:,} would need ~"
          f"{_extra_mib(brute) * args.n / args.brute_n / 1024:.0f} GiB above the data")


if __name__ == "__main__":
    main()
