"""Scale benchmark of the batch planner: 1,000 picks from 10^5-10^6 x 512 float32 rows.

Two ways in, each timed for this checkout ("new") and for a baseline git ref ("old", default
``main``, extracted with ``git archive``) in the same run, every case in its own subprocess so
that ``ru_maxrss`` is that case's peak:

* ``pure``: :func:`selection.algorithms.planner.plan_batch` on arrays (data generation is
  excluded from the time, not from the peak; the table gives the RSS after the data too);
* ``operator``: the ``plan_batch`` operator through FiftyOne's executor
  (``foo.execute_operator``, dry run, so every case sees the same dataset) on a persistent
  flat dataset in MongoDB (one dataset: each larger size adds pool rows to it; deleted at the
  end unless ``--keep``). It reads the pool's embeddings, the catalog and the evaluation's
  failures from the database. The rows were just written, so MongoDB's cache is warm for
  every case; imports are not timed. The new version is timed three ways, each in a new
  process, sharing one vector cache folder (:mod:`annoloop.core.vector_cache`, removed at
  the end): ``operator`` with the cache empty (the first plan on a dataset: it reads
  MongoDB and writes the cache), ``operator-cached`` (the next plan, nothing changed), and
  ``operator-after-batch`` (1,000 pool samples tagged as a batch first, untimed, as a round
  does, and untagged afterwards).

The setting is round 2 (30 % coverage / 70 % targeting): a pool of ``n`` unlabeled rows
(1 % quarantined), 1,000 labeled rows (the first batch), and 10,000 failures. Pure: failure
queries are perturbed pool rows. Operator: a frozen mining split of 10,000 samples (plus a
1,000-sample test split), each with one ground-truth box and no prediction, evaluated with
annoloop's ``evaluate_split``: 10,000 false negatives (and 10 golden samples), whose sample embeddings are the
queries. Data: a Gaussian mixture (1,000 centres); failures sit near pool rows.

Usage (inside annoloop's environment; the operator cases use FiftyOne's configured MongoDB)::

    bash scripts/run.sh python benchmarks/bench_planner_scale.py --sizes 100000 1000000
    bash scripts/run.sh python benchmarks/bench_planner_scale.py --sizes 100000 300000 1000000 \
        --old-sizes 100000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
N_CENTRES = 1000
DATASET_NAME = "annoloop-bench-plan-scale"
GOLDEN = 10  # golden samples of the operator's dataset (create_splits needs some)


def _mixture(rng: np.random.Generator, centres: np.ndarray, n: int, scale: float = 1.0):
    """``n`` float32 rows around random ``centres``, made in chunks (no float64 temporaries)."""
    out = np.empty((n, centres.shape[1]), dtype=np.float32)
    for start in range(0, n, 65536):
        stop = min(n, start + 65536)
        out[start:stop] = rng.standard_normal((stop - start, centres.shape[1]), dtype=np.float32)
        out[start:stop] *= scale
        out[start:stop] += centres[rng.integers(0, len(centres), stop - start)]
    return out


def _make_data(args: argparse.Namespace, n: int) -> dict:
    """Pool, labeled rows, failure queries (perturbed pool rows) and the exclusion mask."""
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((N_CENTRES, args.dim), dtype=np.float32) * 4.0
    pool = _mixture(rng, centres, n)
    labeled = _mixture(rng, centres, args.labeled)
    failures = pool[rng.integers(0, n, args.failures)] + 0.5 * rng.standard_normal(
        (args.failures, args.dim), dtype=np.float32
    )
    kinds = rng.choice(["fn", "fn", "confusion", "fp"], size=args.failures).tolist()
    excluded = rng.random(n) < 0.01
    return dict(pool=pool, labeled=labeled, failures=failures, kinds=kinds, excluded=excluded)


def _rss_now_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the dataset --------------------------------------------------------------------------


def _build(args: argparse.Namespace, n: int) -> dict:
    """The operator's dataset for a pool of ``n`` rows (see the module docstring)."""
    import fiftyone as fo

    from annoloop.quality.frozen import create_splits
    from annoloop.training.evaluate import evaluate_split

    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((N_CENTRES, args.dim), dtype=np.float32) * 4.0
    setting = [args.dim, args.failures, args.test, args.labeled, args.seed]
    if fo.dataset_exists(DATASET_NAME):
        dataset = fo.load_dataset(DATASET_NAME)
        if dataset.info.get("bench_setting") == setting and dataset.info["bench_pool"] <= n:
            # A larger size only adds pool rows: the splits and the evaluation stay.
            _add_pool(dataset, centres, dataset.info["bench_pool"], n, args.seed)
            return dict(case="build", n=n, samples=len(dataset),
                        wall_s=time.perf_counter() - start)
        dataset.delete()
    dataset = fo.Dataset(DATASET_NAME, persistent=True)
    box = [0.2, 0.2, 0.3, 0.3]
    n_frozen = args.failures + args.test + GOLDEN
    # Frozen splits first, on labeled samples only; the pool is added afterwards.
    frozen = _mixture(rng, centres, n_frozen)
    dataset.add_samples(
        [
            fo.Sample(
                filepath=f"/bench/frozen/{i:07d}.jpg",
                embedding=frozen[i],
                ground_truth=fo.Detections(detections=[fo.Detection(label="car", bounding_box=box)]),
            )
            for i in range(n_frozen)
        ],
        progress=False,
    )
    create_splits(
        dataset, test=args.test, mining=args.failures, golden=GOLDEN, strata_fields=[],
        duplicate_field="", seed=args.seed,
    )
    dataset.set_values("predictions", [fo.Detections(detections=[])] * n_frozen)
    evaluate_split(dataset, "predictions", split="mining")
    labeled = _mixture(rng, centres, args.labeled)
    dataset.add_samples(
        [
            fo.Sample(
                filepath=f"/bench/labeled/{i:07d}.jpg",
                embedding=labeled[i],
                ground_truth=fo.Detections(detections=[fo.Detection(label="car", bounding_box=box)]),
            )
            for i in range(args.labeled)
        ],
        progress=False,
    )
    dataset.info["bench_setting"], dataset.info["bench_pool"] = setting, 0
    dataset.save()  # _add_pool reloads the dataset
    _add_pool(dataset, centres, 0, n, args.seed)
    return dict(case="build", n=n, samples=len(dataset), wall_s=time.perf_counter() - start)


def _add_pool(dataset, centres: np.ndarray, first: int, stop: int, seed: int) -> None:
    """Add pool rows ``first`` .. ``stop - 1`` (1 % quarantined) as raw documents cloned from
    one sample FiftyOne wrote: add_samples would build 10^6 Sample objects."""
    import fiftyone as fo
    from bson import ObjectId

    from annoloop.core.names import QUARANTINE_TAG

    rng = np.random.default_rng([seed, first])
    template_id = dataset.add_sample(
        fo.Sample(filepath="/bench/pool/template.jpg", embedding=centres[0])
    )
    collection = dataset._sample_collection
    template = collection.find_one({"_id": ObjectId(template_id)})
    collection.delete_one({"_id": template["_id"]})
    field = dataset.get_field("embedding")
    for chunk_start in range(first, stop, 65536):
        rows = _mixture(rng, centres, min(65536, stop - chunk_start))
        quarantined = rng.random(len(rows)) < 0.01
        docs = []
        for j, row in enumerate(rows):
            doc = dict(template, _id=ObjectId(), filepath=f"/bench/pool/{chunk_start + j:07d}.jpg")
            doc["embedding"] = field.to_mongo(row)
            doc["tags"] = [QUARANTINE_TAG] if quarantined[j] else []
            docs.append(doc)
        collection.insert_many(docs, ordered=False)
    dataset.reload()
    dataset.info["bench_pool"] = stop
    dataset.save()


def _operator(foo, dataset, args: argparse.Namespace) -> str:
    """One dry-run plan_batch through FiftyOne's executor; a summary of its plan."""
    params = {"budget": args.budget, "embeddings_field": "embedding", "dry_run": True,
              "round_index": 2}
    if args.coverage_method:
        params["coverage_method"] = args.coverage_method
    result = foo.execute_operator(
        "@annoloop/annoloop/plan_batch", ctx=dict(dataset=dataset, params=params)
    )
    result.raise_exceptions()
    plan = result.result
    return f"{plan['n_coverage']} coverage + {plan['n_targeting']} targeting"


# --- the cases ----------------------------------------------------------------------------


#: The operator's cases, by version: the old one has no vector cache to warm.
OPERATOR_CASES = {"new": ["operator", "operator-cached", "operator-after-batch"], "old": ["operator"]}
BENCH_BATCH_TAG = "batch:bench"


def _run_case(case: str, n: int, args: argparse.Namespace) -> dict:
    """Run one case in this process and return its measurements."""
    if case == "build":
        return _build(args, n)
    if case.startswith("operator"):
        import fiftyone as fo
        import fiftyone.operators as foo

        dataset = fo.load_dataset(DATASET_NAME)  # imports and loading are not timed
        batch = dataset.match_tags(BENCH_BATCH_TAG)
        if case == "operator-after-batch":
            batch = dataset.match(fo.ViewField("filepath").starts_with("/bench/pool/")).take(
                args.budget, seed=args.seed
            )
            batch.tag_samples(BENCH_BATCH_TAG)
        data_rss = _rss_now_mib()
        start = time.perf_counter()
        detail = _operator(foo, dataset, args)
        wall = time.perf_counter() - start
        batch.untag_samples(BENCH_BATCH_TAG)
        return dict(case=case, n=n, wall_s=wall, data_rss_mib=data_rss,
                    peak_rss_mib=_peak_mib(), detail=detail)
    else:
        from annoloop.selection.algorithms import planner

        data = _make_data(args, n)
        data_rss = _rss_now_mib()
        start = time.perf_counter()
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
            **({"coverage_method": args.coverage_method} if args.coverage_method else {}),
        )
        detail = f"{plan.n_coverage} coverage + {plan.n_targeting} targeting"
    wall = time.perf_counter() - start
    return dict(case=case, n=n, wall_s=wall, data_rss_mib=data_rss, peak_rss_mib=_peak_mib(),
                detail=detail)


def _package_dir(root: Path) -> str:
    """A folder holding only a link ``annoloop`` -> ``root``: importable and a plugin dir."""
    folder = Path(tempfile.mkdtemp(prefix="annoloop-bench-pkg-"))
    (folder / "annoloop").symlink_to(root)
    return str(folder)


def _baseline(ref: str) -> Path:
    """The tree of git ``ref``, extracted into a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="annoloop-bench-baseline-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def _spawn(case: str, n: int, package_dir: str, cache_dir: str) -> dict:
    # ``package_dir`` first: its ``annoloop`` wins over the one the environment points at.
    path = os.pathsep.join(p for p in (package_dir, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path, FIFTYONE_PLUGINS_DIR=package_dir,
               ANNOLOOP_VECTOR_CACHE=cache_dir)
    child = subprocess.run(
        [sys.executable, __file__, *sys.argv[1:], "--case", case, "--case-n", str(n)],
        capture_output=True, text=True, env=env,
    )
    if child.returncode:
        sys.exit(f"case {case} at n={n} failed:\n{child.stderr[-4000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--failures", type=int, default=10_000, help="failures (mining samples)")
    parser.add_argument("--test", type=int, default=1000, help="test split samples (operator)")
    parser.add_argument("--labeled", type=int, default=1000, help="already-labeled rows")
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--baseline", default="main", help="git ref of the 'old' path")
    parser.add_argument("--old-sizes", type=int, nargs="*",
                        help="sizes at which the baseline is timed too (default: all)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the dataset (a later run with larger sizes only adds rows)")
    parser.add_argument("--cases", nargs="+", default=["pure", "operator"],
                        choices=["pure", "operator"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--coverage-method", help="the planner's coverage method (default: its own)")
    parser.add_argument("--case", choices=["pure", "build", *OPERATOR_CASES["new"]],
                        help=argparse.SUPPRESS)
    parser.add_argument("--case-n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(_run_case(args.case, args.case_n, args)))
        return

    from annoloop.core.vector_cache import CLOCK_MARGIN

    versions = {"new": _package_dir(REPO), "old": _package_dir(_baseline(args.baseline))}
    old_sizes = set(args.sizes if args.old_sizes is None else args.old_sizes)
    print(f"d={args.dim} float32, budget {args.budget} (round 2: 30 % coverage / 70 % "
          f"targeting), {args.failures:,} failures, {args.labeled:,} labeled rows, 1 % of the "
          f"pool excluded; coverage {args.coverage_method or 'default'}; old = {args.baseline}\n")
    print("| case | pool rows | version | wall s | RSS before the call MiB | peak RSS MiB | detail |")
    print("|---|---:|---|---:|---:|---:|---|")
    ratios = []
    cache_dir = tempfile.mkdtemp(prefix="annoloop-bench-vectors-")
    try:
        for n in args.sizes:
            if "operator" in args.cases:
                built = _spawn("build", n, versions["new"], cache_dir)
                print(f"| (dataset built) | {n:,} | | {built['wall_s']:.0f} | | | "
                      f"{built['samples']:,} samples |", flush=True)
                # A read looks again at what was written within CLOCK_MARGIN before the
                # previous one began; rounds are further apart than the build and the run.
                time.sleep(CLOCK_MARGIN.total_seconds())
            for case in args.cases:
                rows = {}
                for version, package_dir in versions.items():
                    if version == "old" and n not in old_sizes:
                        continue
                    shutil.rmtree(cache_dir, ignore_errors=True)  # each size starts cold
                    for name in OPERATOR_CASES[version] if case == "operator" else [case]:
                        r = rows[version, name] = _spawn(name, n, package_dir, cache_dir)
                        print(f"| {name} | {n:,} | {version} | {r['wall_s']:.1f} | "
                              f"{r['data_rss_mib']:.0f} | {r['peak_rss_mib']:.0f} | "
                              f"{r['detail']} |", flush=True)
                if ("old", case) in rows:
                    old = rows["old", case]
                    for (version, name), new in rows.items():
                        if version == "new":
                            ratios.append(f"{name} at {n:,}: old / new time x"
                                          f"{old['wall_s'] / new['wall_s']:.1f}, peak RSS x"
                                          f"{old['peak_rss_mib'] / new['peak_rss_mib']:.2f}")
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
        if "operator" in args.cases and not args.keep:
            _cleanup()
    print("\n" + "\n".join(ratios))


def _cleanup() -> None:
    code = (f"import fiftyone as fo\nif fo.dataset_exists({DATASET_NAME!r}):\n"
            f"    fo.delete_dataset({DATASET_NAME!r})\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


if __name__ == "__main__":
    main()
