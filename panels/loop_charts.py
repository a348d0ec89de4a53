"""What the Annotation loop panel draws, built from the dicts :mod:`.state` returns.

Pure functions, no FiftyOne: plotly traces and layouts (the ledger curve, the batch's
coverage / targeting bar, golden-set recall per class), table rows, and the lines of text
the panel shows beside them. :mod:`.loop_panel` places them.
"""

from __future__ import annotations

from ..core.display import format_rate
from .widgets import format_gain, format_map, round_label

__all__ = [
    "BATCH_PLOT_HEIGHT",
    "GOLDEN_COLUMNS",
    "GOLDEN_PLOT_HEIGHT",
    "LEDGER_PLOT_HEIGHT",
    "LEDGER_COLUMNS",
    "MAX_ALARMS_SHOWN",
    "alarm_lines",
    "batch_text",
    "composition_layout",
    "composition_traces",
    "golden_caption",
    "golden_layout",
    "golden_table",
    "golden_traces",
    "latest_round_text",
    "ledger_layout",
    "ledger_row",
    "ledger_traces",
    "overview_line",
    "plotted_slice",
    "pool_line",
    "quarantine_text",
    "slice_alarms",
]

_STRATEGY_COLOR = "#FF6D04"  # FiftyOne orange
_BASELINE_COLOR = "#9E9E9E"
_SHARE_COLORS = {"coverage": "#4C9AFF", "fn": "#FF6D04", "confusion": "#B681FF", "fp": "#F2C14E"}
_KIND_WORDS = {"fn": "misses", "confusion": "confusions", "fp": "false positives"}
_TRANSPARENT = {"paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)"}
_TOP_LEGEND = {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0}
#: Fixed plot heights (px): the plot's layout and its container share them.
LEDGER_PLOT_HEIGHT, BATCH_PLOT_HEIGHT, GOLDEN_PLOT_HEIGHT = 320, 170, 300
#: The golden-set alarms listed under the plot, latest last.
MAX_ALARMS_SHOWN = 6

#: (key, label) of the ledger table's columns; :func:`ledger_row` fills them.
LEDGER_COLUMNS = (
    ("round", "Round"),
    ("batch", "Batch"),
    ("labels_added", "Training images added"),
    ("total_labels", "Training images (after the gate)"),
    ("map", "mAP"),
    ("gain", "Δ mAP / 100 training images"),
    ("weakest", "Weakest class (recall)"),
)
#: (key, label) of the golden table's fixed columns; a recall column per class follows.
GOLDEN_COLUMNS = (
    ("batch", "Batch"),
    ("slice", "Slice"),
    ("samples", "Samples"),
    ("recall", "Recall"),
    ("precision", "Precision"),
    ("iou", "Mean IoU"),
    ("alarms", "Alarms"),
)


# --- text -----------------------------------------------------------------------------------


def overview_line(o: dict) -> str:
    """The counts line under the dataset's name (markdown)."""
    unit = o["unit"]
    return (
        f"**{o['units']}** {unit}s · **{o['labeled']}** {unit}s labeled · **{o['batched']}** "
        f"{unit}s in batches · **{o['test']}** frozen test · **{o['golden']}** golden · "
        f"**{o['quarantined']}** quarantined"
    )


def latest_round_text(latest: dict) -> str:
    """The latest ledger round in a sentence (markdown)."""
    return (
        f"**{round_label(latest['round']).capitalize()}** ({latest['batch']}): mAP "
        f"**{format_map(latest['map'])}** with {latest['total_labels']} training images after "
        f"the gate, {format_gain(latest['delta_map_per_100'])} mAP per 100 training images. "
        "Click a round to open its batch."
    )


def batch_text(c: dict) -> str:
    """The latest batch's split into coverage and targeting, and the reasons (markdown)."""
    return (
        f"**{c['batch']}**, {round_label(c['round'])}: **{c['n_coverage']}** coverage + "
        f"**{c['n_targeting']}** targeting {c['unit']}s, {c['labeled']} of {c['budget']} "
        f"{c['unit']}s labeled so far.\n\n" + pool_line(c) + "\n\n"
        + "\n".join(f"- {r}" for r in c["reasons"])
    )


_HELD_BACK_WORDS = {"frozen": "frozen", "quarantined": "quarantined", "batched": "already in a batch"}


def pool_line(c: dict) -> str:
    """Where the plan's picks came from, in counts that add up: the planned units are the
    labeled plus the unlabeled pool, and the pool is what was held back plus what was
    selectable (markdown)."""
    counts, unit = c.get("counts") or {}, c["unit"]
    pool = counts.get("pool", c.get("pool"))
    if pool is None:
        return "Pool: not recorded for this batch."
    total, selectable = counts.get("view"), counts.get("selectable")
    held = pool - selectable if selectable is not None else None
    reasons = ", ".join(
        f"{n} {_HELD_BACK_WORDS.get(k, k)}" for k, n in (c.get("excluded") or {}).items() if n
    )
    text = f"Pool of **{pool}** unlabeled {unit}s"
    if total is not None:
        text = f"Of **{total}** {unit}s, {total - pool} are labeled and **{pool}** unlabeled"
    if held is not None:
        text += f"; {held} held back ({reasons or 'none'}), **{selectable}** selectable"
    return text + "."


def golden_caption(g: dict) -> str:
    """What the golden table and plot show (markdown)."""
    return (
        f"Annotations in `{g['candidate_field']}` scored against the golden labels at IoU "
        f"{g['iou']:.2f}, per batch. Rows with a drift alarm are highlighted; click a row to "
        "open its golden samples."
    )


def alarm_lines(g: dict) -> tuple[str, str | None]:
    """The drift-alarm banner and the markdown list of the plotted slice's alarms (or None)."""
    where = f" on {g['slice']}" if g["slice"] else ""
    latest = f"; the latest{where}:" if g["alarms"] else f", none{where}"
    banner = f"{g['n_alarms']} drift alarm{'s' if g['n_alarms'] != 1 else ''}{latest}"
    return banner, ("\n".join(f"- {a}" for a in g["alarms"]) if g["alarms"] else None)


def quarantine_text(q: dict) -> str:
    """What the schema gate holds back, per slice and by rule (markdown)."""
    per_slice = ", ".join(
        f"{name or 'samples'}: {v['samples']} samples / {v['labels']} labels"
        for name, v in q["per_slice"].items()
        if v["samples"] or v["labels"]
    )
    rules = ", ".join(f"{rule} ({n})" for rule, n in q["by_rule"].items())
    return (
        f"**{q['units']}** {q['unit']}{'s' if q['units'] != 1 else ''} held back from training "
        f"({per_slice})." + (f"\n\nViolations by rule: {rules}." if rules else "")
    )


def annotators_text(rows: list[dict]) -> str:
    """Each annotator's latest golden score, with the drift alarms of that batch (markdown)."""
    lines = [
        "| annotator | batches | latest | recall | precision | box IoU | drift alarms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        alarms = "<br>".join(r["alarms"]) or "none"
        lines.append(
            f"| {r['annotator']} | {r['batches']} | {r['batch']} | {format_rate(r['recall'])} "
            f"| {format_rate(r['precision'])} | {format_rate(r['mean_iou'])} | {alarms} |"
        )
    return "\n".join(lines)


# --- the ledger -----------------------------------------------------------------------------


def ledger_row(r: dict) -> dict:
    """A ledger round as a row of the ledger table (:data:`LEDGER_COLUMNS`)."""
    weakest = "—"
    if r["weakest_class"]:
        weakest = f"{r['weakest_class']} ({format_rate(r['weakest_recall'])})"
    return {
        "round": round_label(r["round"]),
        "batch": r["batch"],
        "labels_added": r["labels_added"],
        "total_labels": r["total_labels"],
        "map": format_map(r["map"]),
        "gain": format_gain(r["delta_map_per_100"]),
        "weakest": weakest,
    }


def ledger_traces(ledger: dict) -> list[dict]:
    """mAP against labels spent, one point per round (its id: the batch), and the baseline."""
    rounds = ledger["rounds"]
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "annoloop",
            "x": [r["total_labels"] for r in rounds],
            "y": [r["map"] for r in rounds],
            "ids": [r["batch"] for r in rounds],
            "text": [f"{round_label(r['round'])} · {r['batch']}" for r in rounds],
            "hovertemplate": "%{text}<br>%{x} training images · mAP %{y:.3f}<extra></extra>",
            "line": {"color": _STRATEGY_COLOR, "width": 3},
            "marker": {"size": 9},
        }
    ]
    if ledger["baseline"]:
        base = ledger["baseline"]
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "random baseline",
                "x": [r["total_labels"] for r in base],
                "y": [r["map"] for r in base],
                "hovertemplate": "random · %{x} training images · mAP %{y:.3f}<extra></extra>",
                "line": {"color": _BASELINE_COLOR, "width": 2, "dash": "dash"},
                "marker": {"size": 7},
            }
        )
    return traces


def ledger_layout(has_baseline: bool) -> dict:
    """The ledger plot's layout; the legend only when a baseline is drawn."""
    return {
        "height": LEDGER_PLOT_HEIGHT,
        "margin": {"l": 55, "r": 10, "t": 30, "b": 45},
        "xaxis": {"title": {"text": "training images after the gate"}, "rangemode": "tozero"},
        "yaxis": {"title": {"text": "mAP (frozen test set)"}, "rangemode": "tozero"},
        "showlegend": has_baseline,
        "legend": {**_TOP_LEGEND},
        **_TRANSPARENT,
    }


# --- the batch ------------------------------------------------------------------------------


def _share_bar(c: dict, share: str, name: str, n: int, color: str, text: str, hover: str) -> dict:
    return {
        "type": "bar",
        "orientation": "h",
        "name": name,
        "x": [n],
        "y": [c["batch"]],
        "ids": [share],
        "marker": {"color": color},
        "text": [text],
        "hovertemplate": hover,
    }


def composition_traces(c: dict) -> list[dict]:
    """One stacked bar: the coverage picks, then the targeting picks by failure kind.

    Each part's id is its share (``coverage`` or ``targeting``), what a click opens.
    """
    traces = [
        _share_bar(
            c, "coverage", "coverage", c["n_coverage"], _SHARE_COLORS["coverage"],
            f"{c['n_coverage']} coverage", "coverage: %{x}<extra></extra>",
        )
    ]
    targets = c["targets"]
    untyped = c["n_targeting"] - sum(targets.values())
    for kind, n in (*targets.items(), ("targeting", untyped)):
        if n > 0:
            typed = kind != "targeting"
            traces.append(
                _share_bar(
                    c,
                    "targeting",
                    f"targeting · {kind}" if typed else "targeting",
                    n,
                    _SHARE_COLORS.get(kind, _STRATEGY_COLOR),
                    f"{n} near {_KIND_WORDS[kind]}" if typed else f"{n} targeting",
                    f"targeting near {kind}: %{{x}}<extra></extra>",
                )
            )
    return traces


def composition_layout() -> dict:
    """The batch bar's layout."""
    return {
        "height": BATCH_PLOT_HEIGHT,
        "barmode": "stack",
        "margin": {"l": 10, "r": 10, "t": 10, "b": 40},
        "xaxis": {"title": {"text": "picks"}},
        "yaxis": {"visible": False},
        "showlegend": False,
        "uniformtext": {"minsize": 10, "mode": "hide"},
        **_TRANSPARENT,
    }


# --- the golden set -------------------------------------------------------------------------


def plotted_slice(golden: dict, requested: str | None) -> str | None:
    """``requested`` when the history has it, else the slice with the most alarms (the
    earlier one on a tie): the one that needs attention."""
    order = golden["slices"]
    if requested in order:
        return requested
    alarms = [a["slice"] for a in golden["alarms"]]
    return max(order, key=lambda name: (alarms.count(name), -order.index(name)))


def slice_alarms(golden: dict, slice_name: str | None) -> list[str]:
    """``"<batch>: <message>"`` of the slice's alarms, the latest :data:`MAX_ALARMS_SHOWN`."""
    return [
        f"{a['batch']}: {a['message']}" for a in golden["alarms"] if a["slice"] == slice_name
    ][-MAX_ALARMS_SHOWN:]


def _golden_row(r: dict, classes: list) -> list:
    return [
        r["batch"],
        r["slice"] or "—",
        r["n_samples"],
        format_rate(r["recall"]),
        format_rate(r["precision"]),
        format_rate(r["mean_iou"]),
        len(r["alarms"]) or "",
        *(format_rate(r["recall_per_class"].get(c)) for c in classes),
    ]


def golden_table(golden: dict) -> dict:
    """The golden table's data: a row per batch and slice, the alarmed rows selected."""
    rows, classes = golden["rows"], golden["classes"]
    return {
        "columns": [key for key, _ in GOLDEN_COLUMNS] + [f"class_{c}" for c in classes],
        "rows": [_golden_row(r, classes) for r in rows],
        "selected_rows": [i for i, r in enumerate(rows) if r["alarms"]],
    }


def golden_traces(golden: dict, slice_name: str | None) -> list[dict]:
    """Recall per class over the batches on one slice, drift alarms marked."""
    rows = [r for r in golden["rows"] if r["slice"] == slice_name]
    batches = [r["batch"] for r in rows]
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": cls,
            "x": batches,
            "y": [r["recall_per_class"].get(cls) for r in rows],
        }
        for cls in golden["classes"]
    ]
    alarmed = [a for a in golden["alarms"] if a["slice"] == slice_name]
    if alarmed:
        recall = {(r["batch"], c): v for r in rows for c, v in r["recall_per_class"].items()}
        overall = {r["batch"]: r["recall"] for r in rows}
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "drift alarm",
                "x": [str(a["batch"]) for a in alarmed],
                "y": [
                    recall.get((str(a["batch"]), a["class"]), overall.get(str(a["batch"])))
                    for a in alarmed
                ],
                "text": [a["message"] for a in alarmed],
                "hovertemplate": "%{text}<extra></extra>",
                "marker": {"symbol": "x", "size": 13, "color": "#F44336", "line": {"width": 2}},
            }
        )
    return traces


def golden_layout(slice_name: str | None) -> dict:
    """The golden plot's layout: recall in [0, 1], batches as categories."""
    where = f" ({slice_name})" if slice_name else ""
    return {
        "height": GOLDEN_PLOT_HEIGHT,
        "margin": {"l": 55, "r": 10, "t": 40, "b": 40},
        "yaxis": {"title": {"text": f"recall on the golden set{where}"}, "range": [0, 1.05]},
        "xaxis": {"type": "category"},
        "showlegend": True,
        "legend": {**_TOP_LEGEND},
        **_TRANSPARENT,
    }
