"""Does a 30/70 batch beat random and coverage-only batches on real data? (sklearn digits)

Two simulated rounds of the loop on scikit-learn's ``load_digits`` (1,797 real 8x8 images),
with the 64 pixel values as embeddings. Per seed the data split into a frozen test set (30 %),
a validation set (20 %, the "evaluation" whose errors are the failures) and the pool (the rest):

1. Round 1: a coverage-only batch (5 % of the pool) from ``plan_batch(round_index=0)``;
   a logistic regression is trained on it.
2. Failures: the validation errors. Each misclassified image is an ``fn`` query (its pixel
   vector); each confused (true -> predicted) class pair is a ``confusion`` query at the
   midpoint of the two classes' labeled means (the blurred boundary).
3. Round 2: a second batch of the same size, three ways: the 30/70 plan (``round_index=2``),
   random rows, and a coverage-only plan. The model is retrained on both batches.

Reported: test accuracy after round 2 and the mean test recall of the 3 classes with the
lowest validation recall after round 1 (the classes the failures point at), mean +/- std over
the seeds; for each coverage method (``kcenter``, ``typical``, and ``zcore`` scores from
``selection.zcore`` when that module exists). The baseline is measured in the same run.

With ``--model`` (a ``load_image_model`` spec such as ``efficientnet_lite0``), the planner and
the failure queries work in that model's embedding of the digits as ``--image-size`` RGB
images instead of in pixel space; the learner still reads the pixels.

Usage::

    PYTHONPATH=/tmp/annoloop_pkg python benchmarks/bench_planner_digits.py [--seeds 10]
    python -m benchmarks.bench_planner_digits --model efficientnet_lite0   # from the repo root
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.model_selection import train_test_split

from annoloop.selection.algorithms import planner

try:
    from annoloop.selection.algorithms import zcore
except ImportError:  # the ZCore module is optional for this comparison
    zcore = None

STRATEGIES = ("random", "coverage only", "30/70 plan")


def _train(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    return LogisticRegression(max_iter=2000).fit(x, y)


def _failures(pred, y_val, x_val, x_lab, y_lab) -> dict:
    """Validation errors as fn queries plus one confusion query per confused class pair.

    ``pred`` are the model's validation predictions; ``x_val`` and ``x_lab`` the embeddings
    of the validation and labeled rows, where the queries live.
    """
    wrong = np.flatnonzero(pred != y_val)
    embeddings = [x_val[i] for i in wrong]
    kinds = ["fn"] * len(wrong)
    ids = [f"val-{i}" for i in wrong]
    for true, guess in sorted({(int(y_val[i]), int(pred[i])) for i in wrong}):
        if (y_lab == true).any():  # the boundary needs both classes among the labels
            embeddings.append((x_lab[y_lab == true].mean(0) + x_lab[y_lab == guess].mean(0)) / 2)
            kinds.append("confusion")
            ids.append(f"confusion-{true}->{guess}")
    return dict(
        failure_embeddings=np.asarray(embeddings, dtype=np.float32).reshape(-1, x_val.shape[1]),
        failure_kinds=kinds,
        failure_ids=ids,
    )


def _zcore_scores(pool: np.ndarray, seed: int, n_sample: int) -> np.ndarray:
    """ZCore coverage scores of the pool (reference hyperparameters but ``n_sample``)."""
    return zcore.zcore_scores(pool, zcore.ZCoreParams(n_sample=n_sample, seed=seed))


def _run_seed(x, y, z, seed: int, method: str, args: argparse.Namespace) -> dict:
    """Test accuracy and worst-3 recall after round 2 for each strategy, one seed.

    ``x`` is what the learner reads (pixels), ``z`` what the planner and the failure queries
    work in (the same pixels, or an image model's embeddings of them).
    """
    rows_rest, rows_test = train_test_split(
        np.arange(len(y)), test_size=0.3, stratify=y, random_state=seed
    )
    rows_pool, rows_val = train_test_split(
        rows_rest, test_size=2 / 7, stratify=y[rows_rest], random_state=seed
    )
    x_pool, x_val, x_test = x[rows_pool], x[rows_val], x[rows_test]
    y_pool, y_val, y_test = y[rows_pool], y[rows_val], y[rows_test]
    z_pool, z_val = z[rows_pool], z[rows_val]
    batch = round(args.batch_fraction * len(x_pool))
    scores = _zcore_scores(z_pool, seed, args.zcore_samples) if method == "zcore" else None
    common = dict(coverage_method=method, coverage_scores=scores, seed=seed)

    first = planner.plan_batch(z_pool, batch, round_index=0, **common).indices
    model = _train(x_pool[first], y_pool[first])
    val_recall = recall_score(y_val, model.predict(x_val), average=None, labels=range(10))
    worst = np.argsort(val_recall, kind="stable")[:3]
    failures = _failures(model.predict(x_val), y_val, z_val, z_pool[first], y_pool[first])
    after_round_one = dict(labeled_embeddings=z_pool[first], excluded=first, **common)

    rng = np.random.default_rng(seed)
    second = {
        "random": rng.choice(np.setdiff1d(np.arange(len(x_pool)), first), batch, replace=False),
        "coverage only": planner.plan_batch(
            z_pool, batch, coverage_fraction=1.0, **after_round_one
        ).indices,
        "30/70 plan": planner.plan_batch(
            z_pool, batch, round_index=2, **failures, **after_round_one
        ).indices,
    }
    out = {"round 1 only": _evaluate(model, x_test, y_test, worst)}
    for name, rows in second.items():
        labeled = np.concatenate([first, rows])
        out[name] = _evaluate(_train(x_pool[labeled], y_pool[labeled]), x_test, y_test, worst)
    out["n_failures"] = len(failures["failure_ids"])
    out["batch"] = batch
    return out


def _evaluate(model, x_test, y_test, worst) -> tuple[float, float]:
    pred = model.predict(x_test)
    recall = recall_score(y_test, pred, average=None, labels=range(10))
    return float((pred == y_test).mean()), float(recall[worst].mean())


def _gain(rows: list[dict], metric: int, other: str) -> str:
    """Paired difference 30/70 minus ``other`` over seeds (metric 0: accuracy, 1: worst-3)."""
    d = np.array([r["30/70 plan"][metric] - r[other][metric] for r in rows])
    return f"{d.mean():+.4f} ± {d.std():.4f} ({(d > 0).sum()}/{len(d)} seeds better)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds (>= 5)")
    parser.add_argument("--batch-fraction", type=float, default=0.05, help="batch / pool size")
    parser.add_argument("--zcore-samples", type=int, default=50_000, help="ZCore n_sample")
    parser.add_argument("--model", help="plan in this image model's embeddings, not pixels")
    parser.add_argument("--image-size", type=int, default=64, help="digit image side for --model")
    args = parser.parse_args()

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    z, space = x, "pixels"
    if args.model:
        from benchmarks.bench_coverage_digits import embed_digits

        z, name, seconds = embed_digits(args.model, args.image_size)
        space = f"{name} embeddings ({z.shape[1]}-d, {seconds:.0f} s)"
    methods = ["kcenter", "typical"] + (["zcore"] if zcore is not None else [])
    results = {m: [_run_seed(x, y, z, s, m, args) for s in range(args.seeds)] for m in methods}

    first = results["kcenter"][0]
    print(f"digits, planning in {space}: {args.seeds} seeds, batch {first['batch']} rows per round "
          f"({args.batch_fraction:.0%} of the pool), failures per seed "
          f"{np.mean([r['n_failures'] for r in results['kcenter']]):.1f} (kcenter round 1)\n")
    if zcore is None:
        print("selection.zcore not importable: zcore coverage not compared\n")
    print("| coverage method | round-2 batch | test accuracy | recall, 3 worst classes |")
    print("|---|---|---:|---:|")
    for method in methods:
        for name in ("round 1 only", *STRATEGIES):
            acc = np.array([r[name][0] for r in results[method]])
            worst = np.array([r[name][1] for r in results[method]])
            print(f"| {method} | {name} | {acc.mean():.4f} ± {acc.std():.4f} | "
                  f"{worst.mean():.4f} ± {worst.std():.4f} |")
    print("\n| coverage method | 30/70 vs random: accuracy | vs coverage only: accuracy | "
          "30/70 vs random: worst-3 recall |")
    print("|---|---:|---:|---:|")
    for method in methods:
        rows = results[method]
        print(f"| {method} | {_gain(rows, 0, 'random')} | {_gain(rows, 0, 'coverage only')} | "
              f"{_gain(rows, 1, 'random')} |")


if __name__ == "__main__":
    main()
