"""Label efficiency of coverage selection on real data: scikit-learn's digits.

Per seed: a stratified held-out split (``--test-size``); the rest is the unlabeled pool,
embedded as its standardised raw pixels. A ``--budget`` share of the pool is selected by

* random: uniform without replacement (the baseline);
* k-center: ``kcenter.kcenter_greedy`` (cold start, first centre from the seed);
* typical: ``typical.typical_picks`` (TypiClust: most typical row of each k-means cluster);
* ZCore: the highest ``zcore.zcore_scores`` (``--zcore-samples`` draws, other
  hyperparameters at their defaults, so ``redund_nn`` is capped at pool size - 1);

a logistic regression is trained on the selection's true labels and scored on the held-out
split. Prints mean +- std of accuracy over ``--seeds`` seeds, next to training on the whole
pool.

With ``--models``, the selection runs on image-model embeddings instead: each digit is
upsampled to a ``--image-size`` RGB image and embedded by every model named (specs for
``load_image_model``, e.g. ``baseline efficientnet_lite0``). The learner stays the same
(logistic regression on standardised pixels), so accuracy differences come from what each
embedding selected; the table compares every model with the first, seed by seed, and a
second table gives each embedding's own linear-probe accuracy on the full pool.

Run from the repository root with the bundle importable as ``annoloop``::

    PYTHONPATH=/tmp/annoloop_pkg python -m benchmarks.bench_coverage_digits
    PYTHONPATH=/tmp/annoloop_pkg python -m benchmarks.bench_coverage_digits \
        --models baseline efficientnet_lite0
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from annoloop.selection.algorithms import kcenter, typical, zcore


def _accuracy(x_train, y_train, x_test, y_test) -> float:
    model = LogisticRegression(max_iter=5000)
    return float(model.fit(x_train, y_train).score(x_test, y_test))


def digits_images(size: int) -> np.ndarray:
    """The digits as (n, size, size, 3) uint8 RGB images: ink 0-16 scaled to 0-255, upsampled."""
    from annoloop.selection.embeddings.patches import resize_rgb

    small = np.round(load_digits().images * (255 / 16)).astype(np.uint8)
    return np.stack([resize_rgb(np.repeat(d[:, :, None], 3, axis=2), (size, size)) for d in small])


def embed_digits(model: str, size: int, batch_size: int = 64) -> tuple[np.ndarray, str, float]:
    """Every digit's embedding by ``model`` (a ``load_image_model`` spec), its name, seconds."""
    from annoloop.selection.embeddings.models import load_image_model

    images = digits_images(size)
    start = time.perf_counter()
    embedder = load_image_model(model)
    rows = [
        embedder.embed(list(images[i : i + batch_size])) for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(rows), embedder.name, time.perf_counter() - start


def _select(features: np.ndarray, budget: int, seed: int, zcore_samples: int):
    """k-center, typical and ZCore picks of ``budget`` rows of ``features``, and the seconds
    each took."""
    selections, seconds = {}, {}
    features = features.astype(np.float32)
    start = time.perf_counter()
    selections["k-center"] = kcenter.kcenter_greedy(features, budget, seed=seed).indices
    seconds["k-center"] = time.perf_counter() - start
    start = time.perf_counter()
    selections["typical"] = typical.typical_picks(features, budget, seed=seed).indices
    seconds["typical"] = time.perf_counter() - start
    start = time.perf_counter()
    scores = zcore.zcore_scores(features, zcore.ZCoreParams(n_sample=zcore_samples, seed=seed))
    selections["ZCore"] = np.argsort(-scores, kind="stable")[:budget]
    seconds["ZCore"] = time.perf_counter() - start
    return selections, seconds


def run_seed(
    seed: int,
    budget_share: float,
    test_size: float,
    zcore_samples: int,
    embeddings: dict[str, np.ndarray] | None = None,
) -> dict:
    """One split: accuracy of each selection (per embedding in ``embeddings``, else pixels)."""
    digits = load_digits()
    rows = np.arange(len(digits.target))
    pool_rows, test_rows = train_test_split(
        rows, test_size=test_size, stratify=digits.target, random_state=seed
    )
    scaler = StandardScaler().fit(digits.data[pool_rows])
    pool, test = scaler.transform(digits.data[pool_rows]), scaler.transform(digits.data[test_rows])
    y_pool, y_test = digits.target[pool_rows], digits.target[test_rows]
    budget = round(budget_share * len(pool))

    selections, seconds = {}, {}
    start = time.perf_counter()
    selections["random"] = np.random.default_rng(seed).choice(len(pool), budget, replace=False)
    seconds["random"] = time.perf_counter() - start
    if embeddings is None:
        picks, secs = _select(pool, budget, seed, zcore_samples)
        selections.update(picks)
        seconds.update(secs)
    probes = {}
    for model, features in (embeddings or {}).items():
        picks, secs = _select(features[pool_rows], budget, seed, zcore_samples)
        selections.update({f"{name} ({model})": r for name, r in picks.items()})
        seconds.update({f"{name} ({model})": t for name, t in secs.items()})
        probes[model] = _accuracy(features[pool_rows], y_pool, features[test_rows], y_test)

    result = {
        name: _accuracy(pool[rows], y_pool[rows], test, y_test) for name, rows in selections.items()
    }
    result["full pool"] = _accuracy(pool, y_pool, test, y_test)
    return {
        "accuracy": result,
        "seconds": seconds,
        "probes": probes,
        "budget": budget,
        "pool": len(pool),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=0.1, help="share of the pool to label")
    parser.add_argument("--test-size", type=float, default=0.3)
    parser.add_argument("--zcore-samples", type=int, default=50_000)
    parser.add_argument(
        "--models",
        nargs="+",
        help="select on these image models' embeddings (first = reference), not on pixels",
    )
    parser.add_argument("--image-size", type=int, default=64, help="digit image side for --models")
    args = parser.parse_args(argv)

    embeddings = None
    if args.models:
        embeddings = {}
        for model in args.models:
            features, name, seconds = embed_digits(model, args.image_size)
            embeddings[name] = features
            print(f"{name}: {features.shape[1]}-d, {len(features)} digits in {seconds:.1f} s")
    runs = [
        run_seed(seed, args.budget, args.test_size, args.zcore_samples, embeddings)
        for seed in range(args.seeds)
    ]
    names = list(runs[0]["accuracy"])
    selected_on = (
        f"selection on {args.image_size}x{args.image_size} RGB image embeddings"
        if embeddings
        else "selection on standardised pixels"
    )
    print(
        f"\nDigits (1,797 real 8x8 images, 10 classes): pool {runs[0]['pool']}, budget "
        f"{runs[0]['budget']} ({args.budget:.0%}), held-out {args.test_size:.0%}; logistic "
        f"regression on standardised pixels; {selected_on}; {args.seeds} seeds; ZCore "
        f"{args.zcore_samples:,} draws.\n"
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
    if embeddings:
        _compare_models(runs, list(embeddings))


def _compare_models(runs: list[dict], models: list[str]) -> None:
    """Each model against the first: accuracy and its ratio, gain over random, seeds won."""
    reference = models[0]

    def accuracy(method: str, model: str) -> np.ndarray:
        return np.array([r["accuracy"][f"{method} ({model})"] for r in runs])

    random = np.array([r["accuracy"]["random"] for r in runs])
    print(
        f"\n| selection | model | accuracy | / {reference}'s | gain over random "
        f"| / {reference}'s gain | seeds better than {reference} |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for method in ("k-center", "ZCore"):
        reference_acc = accuracy(method, reference)
        reference_gain = (reference_acc - random).mean()
        for model in models:
            acc = accuracy(method, model)
            gain = (acc - random).mean()
            ratio = f"{gain / reference_gain:.2f}" if reference_gain > 0 else "-"
            wins = int((acc > reference_acc).sum())
            relative = acc.mean() / reference_acc.mean()
            print(
                f"| {method} | {model} | {acc.mean():.4f} | {relative:.2f} | {gain:+.4f} "
                f"| {ratio} | {wins}/{len(runs)} |"
            )
    print("\n| embedding | linear probe on the full pool (accuracy) |")
    print("|---|---:|")
    for model in models:
        probe = np.array([r["probes"][model] for r in runs])
        print(f"| {model} | {probe.mean():.4f} +- {probe.std(ddof=1):.4f} |")


if __name__ == "__main__":
    main()
