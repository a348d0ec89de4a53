"""ZCore scoring speed, memory and fidelity against the plain per-sample reference loop.

For each pool size a fresh subprocess generates 512-d float32 embeddings, then measures

* fast: ``zcore.zcore_scores`` (numpy backend, ``--workers`` threads) -- setup (one draw)
  and the marginal cost per sample, ``(T(n_sample) - T(1)) / (n_sample - 1)``;
* fast at full density: the same marginal cost of ``zcore.coverage_redundancy_scores`` on
  ``--n-sample`` consecutive draws (in subspace order) of a default 1e6-sample run. A run
  scores its draws in that order, so consecutive draws share subspace columns far more
  often than among a few thousand draws (~1,950 draws per first dimension at 512-d instead
  of ~8); this is the per-sample cost a default run pays, and what the time estimate uses;
* reference: ``zcore_reference.reference_raw_scores`` with the reference script's default
  ``argsort`` on ``--ref-samples`` of the same draws, per sample the same way;
* peak memory: the child's peak RSS above its RSS once the embeddings exist;
* a default run (``n_sample=1e6``), for real up to ``--full-max`` rows, else estimated;
* FiftyOne Brain's ``compute_uniqueness`` on the same embeddings, in its own process, up to
  ``--uniqueness-max`` rows (its k-NN step is quadratic in N).

The speedup is the ratio of per-sample costs (CPU seconds, robust on a shared machine; wall
too). Fidelity, on scikit-learn's digits (real data): Spearman rank correlation of fast
scores with reference scores drawn under another seed, next to reference-vs-reference for
two seeds (the run-to-run noise of the method itself), and fast vs reference under the same
seed (same draws), where they should agree up to float rounding.

Run from the repository root with the bundle importable as ``annoloop``::

    PYTHONPATH=/tmp/annoloop_pkg python -m benchmarks.bench_zcore --sizes 10000,100000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np


def make_embeddings(n_rows: int, dim: int, kind: str, seed: int = 0) -> np.ndarray:
    """float32 embeddings, generated in row chunks so no float64 copy of the pool exists.

    "clustered": 100 Gaussian clusters, rows L2-normalised like CLIP-style embeddings;
    "random": i.i.d. standard normal.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n_rows, dim), dtype=np.float32)
    centres = rng.standard_normal((100, dim), dtype=np.float32)
    for start in range(0, n_rows, 65536):
        part = out[start : start + 65536]
        rng.standard_normal(part.shape, dtype=np.float32, out=part)
        if kind == "clustered":
            part *= 0.5
            part += centres[rng.integers(0, len(centres), len(part))]
            part /= np.linalg.norm(part, axis=1, keepdims=True)
    return out


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(key + ":"))
    return int(line.split()[1]) * 1024  # reported in kB


def _reset_peak_rss() -> None:
    """Restart the peak-RSS counter (Linux), so a peak belongs to what follows."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss_bytes() -> int:
    return _status_bytes("VmHWM")


def _current_rss_bytes() -> int:
    return _status_bytes("VmRSS")


def child(cfg: dict) -> dict:
    """One pool size, in its own process so peak RSS belongs to this size alone."""
    from annoloop.selection.algorithms import zcore
    from annoloop.selection.algorithms.zcore_reference import reference_raw_scores

    x = make_embeddings(cfg["size"], cfg["dim"], cfg["data"])
    base_rss = _current_rss_bytes()
    _reset_peak_rss()
    one = zcore.ZCoreParams(n_sample=1, n_workers=cfg["workers"])
    many = zcore.ZCoreParams(n_sample=cfg["n_sample"], n_workers=cfg["workers"])
    setup_wall, setup_cpu = _timed(lambda: zcore.zcore_scores(x, one))
    total_wall, total_cpu = _timed(lambda: zcore.zcore_scores(x, many))
    peak_extra = _peak_rss_bytes() - base_rss
    n_marginal = cfg["n_sample"] - 1
    full = zcore.draw_samples(x, zcore.ZCoreParams(n_sample=1_000_000))
    order = np.lexsort(full.dims.T[::-1])
    window = order[len(order) // 3 :][: cfg["n_sample"]]
    dense_one, dense_all = (
        zcore.ZCoreDraws(full.dims[w], full.points[w]) for w in (window[:1], window)
    )
    one_wall, one_cpu = _timed(lambda: zcore.coverage_redundancy_scores(x, dense_one, many))
    all_wall, all_cpu = _timed(lambda: zcore.coverage_redundancy_scores(x, dense_all, many))
    result = {
        "size": cfg["size"],
        "setup_wall": setup_wall,
        "fast_wall": (total_wall - setup_wall) / n_marginal,
        "fast_cpu": (total_cpu - setup_cpu) / n_marginal,
        "dense_wall": (all_wall - one_wall) / n_marginal,
        "dense_cpu": (all_cpu - one_cpu) / n_marginal,
        "peak_extra": peak_extra,
        "embeddings_bytes": x.nbytes,
    }
    if cfg["ref_samples"] > 1:
        draws = zcore.draw_samples(x, zcore.ZCoreParams(n_sample=cfg["ref_samples"]))
        first = zcore.ZCoreDraws(draws.dims[:1], draws.points[:1])

        def reference(d: zcore.ZCoreDraws) -> None:
            reference_raw_scores(x, d, sort_kind="quicksort")

        one_wall, one_cpu = _timed(lambda: reference(first))
        all_wall, all_cpu = _timed(lambda: reference(draws))
        result["ref_wall"] = (all_wall - one_wall) / (cfg["ref_samples"] - 1)
        result["ref_cpu"] = (all_cpu - one_cpu) / (cfg["ref_samples"] - 1)
    if cfg["full"]:
        default = zcore.ZCoreParams(n_workers=cfg["workers"])
        result["full_wall"], result["full_cpu"] = _timed(lambda: zcore.zcore_scores(x, default))
    return result


def uniqueness_child(cfg: dict) -> dict:
    """FiftyOne Brain's ``compute_uniqueness`` on the same embeddings, end to end.

    The samples are bare file paths (no media is read: the embeddings are passed in); the
    time covers what a user waits for: the k-NN index, the scores and their write-back.
    """
    import uuid

    import fiftyone as fo
    import fiftyone.brain as fob

    x = make_embeddings(cfg["size"], cfg["dim"], cfg["data"])
    dataset = fo.Dataset(f"bench-zcore-uniqueness-{uuid.uuid4().hex[:8]}")
    try:
        dataset.add_samples(
            [fo.Sample(filepath=f"/bench/{i:08d}.jpg") for i in range(len(x))], progress=False
        )
        base_rss = _current_rss_bytes()
        _reset_peak_rss()
        wall, cpu = _timed(lambda: fob.compute_uniqueness(dataset, embeddings=x, progress=False))
        peak_extra = _peak_rss_bytes() - base_rss
        scored = dataset.count("uniqueness")
    finally:
        dataset.delete()
    if scored != len(x):
        raise RuntimeError(f"compute_uniqueness scored {scored} of {len(x)} samples")
    return {"size": cfg["size"], "wall": wall, "cpu": cpu, "peak_extra": peak_extra}


def fidelity(n_sample: int) -> dict:
    """Rank agreement on real data (scikit-learn digits, standardised pixels)."""
    from scipy.stats import spearmanr
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    from annoloop.selection.algorithms import zcore
    from annoloop.selection.algorithms.zcore_reference import reference_zcore_scores

    x = StandardScaler().fit_transform(load_digits().data).astype(np.float32)
    params = [zcore.ZCoreParams(n_sample=n_sample, seed=seed) for seed in (0, 1)]
    fast = [zcore.zcore_scores(x, p) for p in params]
    ref = [reference_zcore_scores(x, p) for p in params]
    return {
        "fast0_vs_ref1": spearmanr(fast[0], ref[1]).statistic,
        "ref0_vs_ref1": spearmanr(ref[0], ref[1]).statistic,
        "fast0_vs_fast1": spearmanr(fast[0], fast[1]).statistic,
        "fast0_vs_ref0": spearmanr(fast[0], ref[0]).statistic,
        "fast0_vs_ref0_maxdiff": float(np.abs(fast[0] - ref[0]).max()),
    }


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def _run_child(cfg: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(cfg)],
        capture_output=True,
        text=True,
        check=True,
    )
    print(f"done {cfg['task']} N={cfg['size']}", file=sys.stderr, flush=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _full_run_seconds(r: dict) -> tuple[float, str]:
    """Wall seconds of a default (1e6-sample) ZCore run: measured, else estimated."""
    if "full_wall" in r:
        return r["full_wall"], "measured"
    return r["setup_wall"] + 1e6 * r["dense_wall"], "est."


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--data", choices=("clustered", "random"), default="clustered")
    # 2 * 2048 + 1: beyond the one-draw setup run, exactly one sweep per block of 2048 draws.
    parser.add_argument("--n-sample", type=int, default=4097, help="fast draws per size")
    parser.add_argument("--ref-samples", type=int, default=40, help="reference draws per size")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--fidelity-samples", type=int, default=50000, help="0 skips fidelity")
    parser.add_argument(
        "--uniqueness-max",
        type=int,
        default=100_000,
        help="largest N given to FiftyOne Brain's compute_uniqueness (O(N^2); 0 skips it)",
    )
    parser.add_argument(
        "--full-max",
        type=int,
        default=0,
        help="largest N scored for real with the default 1e6 samples (else estimated)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        cfg = json.loads(args.child)
        run = uniqueness_child if cfg["task"] == "uniqueness" else child
        print(json.dumps(run(cfg)))
        return

    rows, uniqueness = [], {}
    for size in (int(s) for s in args.sizes.split(",")):
        cfg = {
            "task": "zcore",
            "size": size,
            "dim": args.dim,
            "data": args.data,
            "n_sample": args.n_sample,
            "ref_samples": args.ref_samples,
            "workers": args.workers,
            "full": size <= args.full_max,
        }
        rows.append(_run_child(cfg))
        if size <= args.uniqueness_max:
            uniqueness[size] = _run_child({**cfg, "task": "uniqueness"})

    print(
        f"\nZCore, {args.dim}-d {args.data} float32, redund_nn=1000, sample_dim=2; fast: "
        f"{args.n_sample} draws, {args.workers} worker(s); reference: {args.ref_samples} "
        "draws (reference script's argsort). Per-sample costs are marginal (setup excluded)."
    )
    print(
        "\n| N | setup s | fast ms/sample (cpu) | fast ms/sample (wall) | reference ms/sample "
        "(cpu) | reference ms/sample (wall) | speedup (cpu) | speedup (wall) | "
        "fast at full density ms/sample (cpu) | speedup at full density (cpu) | "
        "fast, 1e6 samples (est. h) | peak extra MiB | embeddings MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        est_hours = (r["setup_wall"] + 1e6 * r["dense_wall"]) / 3600
        ref = (
            f"{1e3 * r['ref_cpu']:.2f} | {1e3 * r['ref_wall']:.2f} | "
            f"{r['ref_cpu'] / r['fast_cpu']:.1f}x | {r['ref_wall'] / r['fast_wall']:.1f}x"
            if "ref_cpu" in r
            else "- | - | - | -"
        )
        dense_ratio = f"{r['ref_cpu'] / r['dense_cpu']:.1f}x" if "ref_cpu" in r else "-"
        print(
            f"| {r['size']:,} | {r['setup_wall']:.1f} | {1e3 * r['fast_cpu']:.3f} | "
            f"{1e3 * r['fast_wall']:.3f} | {ref} | {1e3 * r['dense_cpu']:.3f} | {dense_ratio} | "
            f"{est_hours:.2f} | {_mib(r['peak_extra'])} | {_mib(r['embeddings_bytes'])} |"
        )

    print(
        f"\nA default run (the paper's n_sample=1e6), wall seconds, {args.workers} worker(s): "
        "ZCore measured where marked, else setup + 1e6 x its full-density cost; the reference "
        "as 1e6 x its per-sample cost; FiftyOne Brain's compute_uniqueness measured end to "
        "end on the same embeddings (k-NN index, scores, write-back), where it was run.\n"
    )
    print(
        "| N | ZCore s | reference s (est.) | ZCore speedup | compute_uniqueness s (cpu s) "
        "| ZCore / uniqueness | uniqueness peak extra MiB |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        seconds, how = _full_run_seconds(r)
        ref = (
            f"{1e6 * r['ref_wall']:,.0f} | {1e6 * r['ref_wall'] / seconds:.1f}x"
            if "ref_wall" in r
            else "- | -"
        )
        u = uniqueness.get(r["size"])
        versus = (
            f"{u['wall']:,.1f} ({u['cpu']:,.1f}) | {seconds / u['wall']:.2f} | "
            f"{_mib(u['peak_extra'])}"
            if u
            else "not run | - | -"
        )
        print(f"| {r['size']:,} | {seconds:,.1f} ({how}) | {ref} | {versus} |")

    if args.fidelity_samples:
        f = fidelity(args.fidelity_samples)
        print(
            f"\nFidelity on scikit-learn digits (1,797 x 64, standardised), "
            f"{args.fidelity_samples:,} draws: Spearman rank correlation of final scores.\n"
        )
        print("| comparison | value |")
        print("|---|---|")
        print(f"| fast (seed 0) vs reference (seed 1) | {f['fast0_vs_ref1']:.4f} |")
        print(f"| reference (seed 0) vs reference (seed 1) | {f['ref0_vs_ref1']:.4f} |")
        print(f"| fast (seed 0) vs fast (seed 1) | {f['fast0_vs_fast1']:.4f} |")
        print(f"| fast vs reference, same seed (same draws) | {f['fast0_vs_ref0']:.4f} |")
        print(f"| same seed: max abs score difference | {f['fast0_vs_ref0_maxdiff']:.2e} |")

if __name__ == "__main__":
    main()
