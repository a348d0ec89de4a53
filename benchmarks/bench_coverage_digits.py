"""Label efficiency of coverage selection on real data: scikit-learn's digits.

Per seed: a stratified held-out split (``--test-size``); the rest is the unlabeled pool,
embedded as its standardised raw pixels. A ``--budget`` share of the pool is selected by

* random: uniform without replacement (the baseline);
* k-center: ``kcenter.kcenter_greedy`` (cold start, first centre from the seed);
* ZCore: the highest ``zcore.zcore_scores`` (``--zcore-samples`` draws, other
  hyperparameters at their defaults, so ``redund_nn`` is capped at pool size - 1);

a logistic regression is trained on the selection's true labels and scored on the held-out
split. Prints mean +- std of accuracy over ``--seeds`` seeds, next to training on the whole
pool.

Run from the repository root with the bundle importable as ``annoloop``::

    PYTHONPATH=/tmp/annoloop_pkg python -m benchmarks.bench_coverage_digits
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from annoloop.selection import kcenter, zcore


def _accuracy(x_train, y_train, x_test, y_test) -> float:
    model = LogisticRegression(max_iter=5000)
    return float(model.fit(x_train, y_train).score(x_test, y_test))


def run_seed(seed: int, budget_share: float, test_size: float, zcore_samples: int) -> dict:
    digits = load_digits()
    x_pool, x_test, y_pool, y_test = train_test_split(
        digits.data, digits.target, test_size=test_size, stratify=digits.target, random_state=seed
    )
    scaler = StandardScaler().fit(x_pool)
    pool, test = scaler.transform(x_pool), scaler.transform(x_test)
    budget = round(budget_share * len(pool))

    selections, seconds = {}, {}
    start = time.perf_counter()
    selections["random"] = np.random.default_rng(seed).choice(len(pool), budget, replace=False)
    seconds["random"] = time.perf_counter() - start
    start = time.perf_counter()
    picks = kcenter.kcenter_greedy(pool.astype(np.float32), budget, seed=seed)
    selections["k-center"] = picks.indices
    seconds["k-center"] = time.perf_counter() - start
    start = time.perf_counter()
    scores = zcore.zcore_scores(
        pool.astype(np.float32), zcore.ZCoreParams(n_sample=zcore_samples, seed=seed)
    )
    selections["ZCore"] = np.argsort(-scores, kind="stable")[:budget]
    seconds["ZCore"] = time.perf_counter() - start

    result = {
        name: _accuracy(pool[rows], y_pool[rows], test, y_test) for name, rows in selections.items()
    }
    result["full pool"] = _accuracy(pool, y_pool, test, y_test)
    return {"accuracy": result, "seconds": seconds, "budget": budget, "pool": len(pool)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=0.1, help="share of the pool to label")
    parser.add_argument("--test-size", type=float, default=0.3)
    parser.add_argument("--zcore-samples", type=int, default=50_000)
    args = parser.parse_args(argv)

    runs = [
        run_seed(seed, args.budget, args.test_size, args.zcore_samples)
        for seed in range(args.seeds)
    ]
    names = list(runs[0]["accuracy"])
    print(
        f"\nDigits (1,797 real 8x8 images, 10 classes): pool {runs[0]['pool']}, budget "
        f"{runs[0]['budget']} ({args.budget:.0%}), held-out {args.test_size:.0%}; logistic "
        f"regression on standardised pixels; {args.seeds} seeds; ZCore {args.zcore_samples:,} "
        "draws.\n"
    )
    print("| selection | accuracy (mean +- std) | vs random | selection time s (mean) |")
    print("|---|---|---|---|")
    random_mean = np.mean([r["accuracy"]["random"] for r in runs])
    for name in names:
        acc = np.array([r["accuracy"][name] for r in runs])
        secs = [r["seconds"][name] for r in runs if name in r["seconds"]]
        time_cell = f"{np.mean(secs):.2f}" if secs else "-"
        print(
            f"| {name} | {acc.mean():.4f} +- {acc.std(ddof=1):.4f} | "
            f"{acc.mean() - random_mean:+.4f} | {time_cell} |"
        )


if __name__ == "__main__":
    main()
