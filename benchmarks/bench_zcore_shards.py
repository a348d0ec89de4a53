"""One sharded ZCore run on one worker against the same run on two: wall time to completion.

A persistent pool of clustered float32 embeddings is scored by ``compute_zcore`` with
``--shards`` shards (delegated operations on FiftyOne's queue), once with one real worker
(``scripts/worker.sh``, as the README starts one) and once with two, each worker counting
from the moment the run is queued to the moment its record says ``completed``. Every shard
scores with one thread (``n_workers=1``), so the comparison is between workers, not BLAS
threads. The same seed gives the same scores either way (checked). The one-process time of
the same draws (``compute_zcore`` unsharded, in this process) is the baseline both pay on
top of: queue polling, a child process per operation, and the combine step.

Usage (from the repository root)::

    bash scripts/run.sh python benchmarks/bench_zcore_shards.py --rows 100000 --shards 4
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

import fiftyone as fo
import fiftyone.operators as foo

from annoloop.core.runs import load_record
from annoloop.selection.scoring import compute_zcore, zcore_run, zcore_run_key
from annoloop.selection.algorithms.zcore import ZCoreParams

REPO = Path(__file__).resolve().parents[1]
OPERATOR = "@annoloop/annoloop/compute_zcore"


def make_pool(rows: int, dim: int, seed: int) -> fo.Dataset:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (32, dim))
    x = (centres[rng.integers(0, 32, rows)] + rng.normal(0, 1, (rows, dim))).astype(np.float32)
    dataset = fo.Dataset(f"bench-zcore-shards-{uuid.uuid4().hex[:8]}", persistent=True)
    dataset.add_samples([fo.Sample(filepath=f"/pool/{i:07d}.jpg") for i in range(rows)])
    dataset.set_values("embedding", list(x))
    return dataset


def start_worker(log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            ["bash", str(REPO / "scripts" / "worker.sh")],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)


def status(dataset: fo.Dataset) -> str | None:
    dataset.reload()
    return (load_record(dataset, zcore_run_key()) or {}).get("status")


def sharded_run(dataset, settings: dict, shards: int, workers: int, logs: Path, timeout: float):
    """Seconds from queueing the run to its completed record with ``workers`` workers, the
    shards' records and the scores."""
    dataset.delete_run(zcore_run_key())  # the clock stops at *this* run's completed record
    started = [start_worker(logs / f"w{workers}-{i}.log") for i in range(workers)]
    try:
        time.sleep(15)  # the workers are up and polling before the clock starts
        t0 = time.perf_counter()
        foo.execute_operator(
            OPERATOR,
            ctx={"dataset": dataset, "params": {**settings, "shards": shards, "overwrite": True}},
        )
        while status(dataset) != "completed":
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"not completed after {timeout:.0f} s; logs in {logs}")
            if any(w.poll() is not None for w in started):
                raise RuntimeError(f"a worker exited; logs in {logs}")
            time.sleep(0.5)
        wall = time.perf_counter() - t0
    finally:
        for w in started:
            stop(w)
    done = zcore_run(dataset)["shards"]["done"]
    return wall, done, np.array(dataset.values("zcore"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--n-sample", type=int, default=200_000, help="draws of the whole run")
    parser.add_argument("--redund-nn", type=int, default=100)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()

    settings = {"n_sample": args.n_sample, "redund_nn": args.redund_nn, "seed": args.seed,
                "n_workers": 1, "backend": "numpy", "delegate": True}
    dataset = make_pool(args.rows, args.dim, args.seed)
    logs = Path(tempfile.mkdtemp(prefix="bench-zcore-shards-"))
    try:
        t0 = time.perf_counter()
        params = ZCoreParams(n_sample=args.n_sample, redund_nn=args.redund_nn, seed=args.seed, n_workers=1)
        compute_zcore(dataset, params=params, backend="numpy", overwrite=True)
        one_process = time.perf_counter() - t0
        unsharded = np.array(dataset.values("zcore"))
        rows = []
        scores = {}
        for workers in (1, 2):
            load = os.getloadavg()[0]
            wall, done, scores[workers] = sharded_run(dataset, settings, args.shards, workers, logs, args.timeout)
            by_pid = {}
            for d in done.values():
                by_pid[d["parent_pid"]] = by_pid.get(d["parent_pid"], 0) + 1
            rows.append((workers, wall, sorted(by_pid.values()), sum(d["seconds"] for d in done.values()), load))
        same = np.array_equal(scores[1], scores[2])
        gap = float(np.abs(scores[1] - unsharded).max())
        base = rows[0][1]
        print(f"\nSharded ZCore, {args.rows:,} x {args.dim} float32, {args.n_sample:,} draws, "
              f"redund_nn {args.redund_nn}, {args.shards} shards, one thread per shard; "
              f"scores identical across worker counts: {same} (max gap to the unsharded run {gap:.1e}); "
              f"the unsharded run in one process: {one_process:.1f} s\n")
        print("| workers | wall s (queued -> completed) | x one worker | shards per worker | "
              "shard seconds (sum) | load avg at start |")
        print("|---:|---:|---:|---|---:|---:|")
        for workers, wall, split, busy, load in rows:
            print(f"| {workers} | {wall:.1f} | {wall / base:.2f} | {split} | {busy:.1f} | {load:.1f} |")
    finally:
        dataset.delete()


if __name__ == "__main__":
    main()
