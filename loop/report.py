"""Tables and PNG plots of a demo loop run (see :mod:`.demo_loop`)."""

from __future__ import annotations

import json
import os

from .algorithms.efficiency import label_efficiency


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ledger_table(result: dict) -> str:
    """Markdown table: one row per strategy and round."""
    lines = [
        "| strategy | round | batch | coverage / targeting | labels | train images "
        "| quarantined | golden recall | alarms | test mAP | night recall | state |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for strategy, run in result["strategies"].items():
        for r in run["rounds"]:
            lines.append(
                f"| {strategy} | {r['round']} | {r['batch']} | {r['n_coverage']} / {r['n_targeting']} "
                f"| {r['labels']} | {r['train_images']} | {r['quarantined']} "
                f"| {_fmt(golden_recall(r))} | {len(r['alarms'])} | {_fmt(r['map'], 4)} "
                f"| {_fmt(r['night_recall'])} | {r.get('state') or '-'} |"
            )
    return "\n".join(lines)


def curve(run: dict, metric: str = "map") -> tuple[list[int], list[float]]:
    """``(labels, metric)`` per round of one strategy's run (missing values as 0)."""
    return [r["labels"] for r in run["rounds"]], [r.get(metric) or 0.0 for r in run["rounds"]]


def comparison_table(result: dict, baseline: str = "random") -> str:
    """Markdown table: each strategy's final test mAP and night recall, and the share of the
    baseline's labels it needs to reach the baseline's final mAP."""
    runs = result["strategies"]
    base = runs.get(baseline)
    lines = [
        f"| strategy | labels | final test mAP | x {baseline} | final night recall "
        f"| labels to reach {baseline}'s final mAP |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for strategy, run in runs.items():
        final = run["rounds"][-1]
        ratio = efficiency = None
        if base is not None:
            base_map = base["rounds"][-1]["map"]
            ratio = final["map"] / base_map if base_map > 0 else None
            efficiency = label_efficiency(*curve(run), *curve(base))
        lines.append(
            f"| {strategy} | {final['labels']} | {_fmt(final['map'], 4)} | {_fmt(ratio, 2)} "
            f"| {_fmt(final['night_recall'])} "
            f"| {'not reached' if base is not None and efficiency is None else _fmt(efficiency, 2)} |"
        )
    return "\n".join(lines)


def timing_table(result: dict) -> str:
    """Markdown table: seconds per stage (preparation once, then per strategy)."""
    lines = ["| stage | " + " | ".join(result["strategies"]) + " |", "|---|" + "---:|" * len(result["strategies"])]
    for stage, seconds in result["prepare_seconds"].items():
        lines.append(f"| {stage} (shared) | {seconds:.1f} |" + " |" * (len(result["strategies"]) - 1))
    stages = list(dict.fromkeys(s for run in result["strategies"].values() for s in run["seconds"]))
    for stage in stages:
        cells = " | ".join(f"{run['seconds'].get(stage, 0.0):.1f}" for run in result["strategies"].values())
        lines.append(f"| {stage} | {cells} |")
    lines.append(f"| **total wall time** | {result['total_seconds']:.1f} |" + " |" * (len(result["strategies"]) - 1))
    return "\n".join(lines)


def golden_recall(round_record: dict) -> float | None:
    """Overall recall of the round's batch on the golden set's left camera, if checked."""
    left = round_record.get("golden", {}).get("left") or {}
    return (left.get("overall") or {}).get("recall")


def write_report(result: dict, out_dir: str) -> list[str]:
    """Write ``result.json`` and three PNG plots into ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "result.json")]
    with open(paths[0], "w") as f:
        json.dump(result, f, indent=2, default=str)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for metric, ax, title in (
        ("map", axes[0], "test mAP"),
        ("night_recall", axes[1], "test recall at night (the rare slice)"),
    ):
        for strategy, run in result["strategies"].items():
            ax.plot(*curve(run, metric), "o-", label=strategy)
        ax.set(xlabel="labeled scenes", ylabel=title, title=f"{title} against labels spent")
        ax.grid(alpha=0.3)
        ax.legend()
    paths.append(_save(fig, out_dir, "map_vs_labels.png"))

    rounds = result["strategies"].get("annoloop", {}).get("rounds", [])
    fig, ax = plt.subplots(figsize=(6, 4))
    x = [r["round"] for r in rounds]
    coverage = [r["n_coverage"] or 0 for r in rounds]
    targeting = [r["n_targeting"] or 0 for r in rounds]
    ax.bar(x, coverage, label="coverage")
    ax.bar(x, targeting, bottom=coverage, label="targeting")
    ax.set(xlabel="round", ylabel="scenes picked", title="annoloop batch composition", xticks=x)
    ax.legend()
    paths.append(_save(fig, out_dir, "batch_shares.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy, run in result["strategies"].items():
        rounds = run["rounds"]
        ax.plot([r["batch"] for r in rounds], [golden_recall(r) for r in rounds], "o-", label=strategy)
    ax.set(xlabel="batch", ylabel="recall vs golden labels", title="Annotator quality on the golden set", ylim=(0, 1.05))
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(_save(fig, out_dir, "golden_recall.png"))
    return paths


def _save(fig, out_dir: str, name: str) -> str:
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
