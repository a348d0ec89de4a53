"""The Annotation loop panel: the home of the loop in the FiftyOne App.

One screen answers "where is my loop, and what do I do next": the ledger of rounds (mAP
against labels spent, with the random baseline when one is stored), the plateau signal,
the latest batch's coverage / targeting split and why, the golden-set history per class
with drift alarms, what the schema gate holds back, and what is scheduled. Each step of
the loop is a button that opens its operator's form, where "Schedule" queues a delegated
run. Clicking a ledger row or point, a share of the batch, a golden batch or the
quarantine button loads the matching samples as the App's view.

Everything shown is read by :mod:`.state` when the panel loads (and on "Refresh"); small
values live in the panel state, tables and plots in the panel data.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..training.algorithms.ledger import STATE_NOT_LEARNING
from . import state as st
from .widgets import INLINE, SHRINK, dropdown, flex, format_gain, format_map, format_rate

PANEL_NAME = "annotation_loop"
PANEL_LABEL = "Annotation loop"

#: (operator name, button label, icon): the loop's steps, in loop order.
STEPS = (
    ("compute_zcore", "Score pool", "insights"),
    ("plan_batch", "Plan next batch", "playlist_add"),
    ("validate_labels", "Validate labels", "rule"),
    ("check_golden", "Golden check", "verified"),
    ("train_detector", "Train", "model_training"),
    ("evaluate_model", "Evaluate", "speed"),
    ("autolabel", "Autolabel", "auto_fix_high"),
)

# Section paths: what the panel shows in each lives under them in the panel data.
LEDGER, BATCH = "ledger_section", "batch_section"
GOLDEN, QUARANTINE = "golden_section", "quarantine_section"

_ALARM_ROW_COLOR = "rgba(244, 67, 54, 0.22)"
_STRATEGY_COLOR = "#FF6D04"  # FiftyOne orange
_BASELINE_COLOR = "#9E9E9E"
_SHARE_COLORS = {"coverage": "#4C9AFF", "fn": "#FF6D04", "confusion": "#B681FF", "fp": "#F2C14E"}
_KIND_WORDS = {"fn": "misses", "confusion": "confusions", "fp": "false positives"}
_MAX_ALARMS_SHOWN = 6


class AnnotationLoopPanel(foo.Panel):
    @property
    def config(self) -> foo.PanelConfig:
        return foo.PanelConfig(
            name=PANEL_NAME,
            label=PANEL_LABEL,
            icon="autorenew",
            help_markdown=(
                "The annoloop dashboard: ledger of rounds, plateau signal, the latest "
                "batch, golden-set drift and quarantine. Buttons open each step's form."
            ),
        )

    # --- events ---------------------------------------------------------------------------

    def on_load(self, ctx) -> None:
        self._refresh(ctx)

    def on_change_dataset(self, ctx) -> None:
        self._refresh(ctx)

    def refresh(self, ctx) -> None:
        self._refresh(ctx)

    def start_step(self, ctx) -> None:
        """Open the form of a step's operator, where it runs now or is scheduled."""
        operator = ctx.params.get("operator")
        if operator in {name for name, _, _ in STEPS}:
            ctx.prompt(st.OPERATOR_URI_PREFIX + operator, on_success=self.on_step_done)

    def on_step_done(self, ctx) -> None:
        self._refresh(ctx)

    def open_planner(self, ctx) -> None:
        from .planner_panel import PANEL_NAME as PLANNER

        ctx.ops.open_panel(PLANNER, layout="horizontal", is_active=True)

    def open_ledger_row(self, ctx) -> None:
        batches = ctx.panel.state.ledger_batches or []
        row = ctx.params.get("row")
        if isinstance(row, int) and 0 <= row < len(batches):
            self._show(ctx, st.batch_view(ctx.dataset, batches[row]), f"batch {batches[row]}")

    def open_ledger_point(self, ctx) -> None:
        batch = ctx.params.get("id")
        if batch:
            self._show(ctx, st.batch_view(ctx.dataset, batch), f"batch {batch}")

    def open_batch(self, ctx) -> None:
        batch = (ctx.panel.state.composition or {}).get("batch")
        if batch:
            self._show(ctx, st.batch_view(ctx.dataset, batch), f"batch {batch}")

    def open_share(self, ctx) -> None:
        batch = (ctx.panel.state.composition or {}).get("batch")
        share = ctx.params.get("id") or ctx.params.get("share")
        source = "coverage" if share == "coverage" else "targeting"
        if batch:
            view = st.batch_view(ctx.dataset, batch, source=source)
            self._show(ctx, view, f"{source} picks of {batch}")

    def open_golden_row(self, ctx) -> None:
        golden = ctx.panel.state.golden or {}
        batches = golden.get("row_batches") or []
        row = ctx.params.get("row")
        if isinstance(row, int) and 0 <= row < len(batches):
            view = st.golden_batch_view(ctx.dataset, golden["candidate_field"], batches[row])
            self._show(ctx, view, f"golden samples of {batches[row]}")

    def select_golden_field(self, ctx) -> None:
        field = ctx.params.get("value")
        if field:
            self._load_golden(ctx, field)

    def select_golden_slice(self, ctx) -> None:
        golden = ctx.panel.state.golden or {}
        if golden and ctx.params.get("value") in golden.get("slices", []):
            self._load_golden(ctx, golden["candidate_field"], ctx.params["value"])

    def open_quarantine(self, ctx) -> None:
        self._show(ctx, st.quarantine_view(ctx.dataset), "quarantined samples")

    def _show(self, ctx, view, what: str) -> None:
        if view is None:
            ctx.ops.notify(f"No samples found for {what}", variant="warning")
        else:
            ctx.ops.set_view(view)

    # --- reading the dataset --------------------------------------------------------------

    def _refresh(self, ctx) -> None:
        dataset = ctx.dataset
        if dataset is None:
            ctx.panel.state.dataset = None
            return
        dataset.reload()  # delegated workers write runs and info from other processes
        # Keep the golden field and slice the user picked, on the same dataset only.
        same = ctx.panel.state.dataset == dataset.name
        previous = (ctx.panel.state.golden or {}) if same else {}
        ledger = st.ledger_state(dataset)
        rounds = ledger["rounds"]
        composition = st.batch_composition(dataset)
        ctx.panel.state.set(
            {
                "dataset": dataset.name,
                "overview": st.loop_overview(dataset),
                "plateau": ledger["plateau"],
                "latest": rounds[-1] if rounds else None,
                "has_baseline": bool(ledger["baseline"]),
                "ledger_batches": [r["batch"] for r in rounds],
                "composition": composition,
                "quarantine": st.quarantine_state(dataset),
                "scheduled": st.scheduled_runs(dataset),
            }
        )
        ctx.panel.data.set(
            {
                # Data lives at each view's path: section, stack, name.
                f"{LEDGER}.table": [_ledger_row(r) for r in rounds],
                f"{LEDGER}.row.plot": _ledger_traces(ledger),
                f"{BATCH}.row.plot": _composition_traces(composition) if composition else [],
            }
        )
        self._load_golden(ctx, previous.get("candidate_field"), previous.get("slice"))

    def _load_golden(self, ctx, candidate_field: str | None, slice_name: str | None = None) -> None:
        golden = st.golden_state(ctx.dataset, candidate_field)
        if golden is None:
            ctx.panel.state.golden = None
            return
        rows = golden["rows"]
        if slice_name not in golden["slices"]:
            # Plot the slice that needs attention: the one with the most alarms.
            alarms = [a["slice"] for a in golden["alarms"]]
            order = golden["slices"]
            slice_name = max(order, key=lambda name: (alarms.count(name), -order.index(name)))
        ctx.panel.state.golden = {
            "candidate_field": golden["candidate_field"],
            "candidate_fields": golden["candidate_fields"],
            "slices": golden["slices"],
            "slice": slice_name,
            "iou": golden["iou"],
            "classes": golden["classes"],
            "n_alarms": len(golden["alarms"]),
            # The alarms of the plotted slice, latest last.
            "alarms": [
                f"{a['batch']}: {a['message']}" for a in golden["alarms"] if a["slice"] == slice_name
            ][-_MAX_ALARMS_SHOWN:],
            "row_batches": [r["batch"] for r in rows],
        }
        ctx.panel.data.set(
            {
                f"{GOLDEN}.table": {
                    "columns": ["batch", "slice", "samples", "recall", "precision", "iou", "alarms"]
                    + [f"class_{c}" for c in golden["classes"]],
                    "rows": [_golden_row(r, golden["classes"]) for r in rows],
                    "selected_rows": [i for i, r in enumerate(rows) if r["alarms"]],
                },
                f"{GOLDEN}.plot": _golden_traces(golden, slice_name),
            }
        )

    # --- layout ---------------------------------------------------------------------------

    def render(self, ctx) -> types.Property:
        panel = types.Object()
        s = ctx.panel.state
        if not s.dataset:
            panel.md("Open a dataset to see its annotation loop.", name="empty")
            return types.Property(panel, view=types.GridView(orientation="vertical"))

        # View names differ from state keys: the App merges state and data by path.
        panel.md(f"**{s.dataset}** · {_overview_line(s.overview)}", name="summary_line")
        # A wrapping row: buttons keep their width and flow onto a second line in a narrow panel.
        steps = panel.grid("steps", gap=1)
        for operator, label, icon in STEPS:
            steps.btn(
                operator,
                label=label,
                icon=icon,
                variant="contained",
                on_click=self.start_step,
                params={"operator": operator},
                componentsProps=INLINE,
            )
        for name, label, icon, on_click in (
            ("planner", "Batch planner", "tune", self.open_planner),
            ("refresh", "Refresh", "refresh", self.refresh),
        ):
            steps.btn(
                name,
                label=label,
                icon=icon,
                variant="outlined",
                on_click=on_click,
                componentsProps=INLINE,
            )
        if s.scheduled:
            panel.md(_scheduled_line(s.scheduled), name="scheduled_line")

        for path, label, render in (
            (LEDGER, "Ledger of rounds", self._render_ledger),
            (BATCH, "Current batch", self._render_batch),
            (GOLDEN, "Golden set", self._render_golden),
            (QUARANTINE, "Quarantine", self._render_quarantine),
        ):
            render(panel.v_stack(path, label=label, gap=1, componentsProps=SHRINK), s)
        return types.Property(
            panel, view=types.GridView(orientation="vertical", gap=3, pad=2, componentsProps=SHRINK)
        )

    def _render_ledger(self, section, s) -> None:
        latest = s.latest
        if latest is None:
            section.view(
                "empty",
                types.Notice(
                    label="No rounds yet: train a detector, then evaluate it on the frozen "
                    "test set to record round 0"
                ),
            )
            return
        row = section.grid("row", gap=3)
        row.plot(
            "plot",
            layout=_ledger_layout(s.has_baseline),
            config={"displayModeBar": False, "responsive": True},
            on_click=self.open_ledger_point,
            componentsProps=flex(480),
        )
        side = row.v_stack("side", gap=2, componentsProps=flex(320))
        side.md(
            f"**Round {latest['round']}**: mAP **{format_map(latest['map'])}** with "
            f"{latest['total_labels']} labels, {format_gain(latest['delta_map_per_100'])} mAP "
            "per 100 labels. Click a round to open its batch.",
            name="latest",
        )
        plateau = s.plateau
        if plateau.get("state") == STATE_NOT_LEARNING:
            side.view(
                "plateau", types.Warning(label="Not learning yet", description=plateau["reason"])
            )
        elif plateau["plateaued"]:
            side.view(
                "plateau",
                types.Warning(
                    label=f"Plateau: {plateau['recommendation']}", description=plateau["reason"]
                ),
            )
        else:
            side.view(
                "plateau", types.Notice(label="Still improving", description=plateau["reason"])
            )
        table = types.TableView(on_click_row=self.open_ledger_row)
        for key, label in (
            ("round", "Round"),
            ("batch", "Batch"),
            ("labels_added", "Labels added"),
            ("total_labels", "Labels"),
            ("map", "mAP"),
            ("gain", "Δ mAP / 100 labels"),
            ("weakest", "Weakest class (recall)"),
        ):
            table.add_column(key, label=label)
        section.list("table", types.Object(), view=table)

    def _render_batch(self, section, s) -> None:
        c = s.composition
        if not c:
            section.view(
                "empty",
                types.Notice(
                    label="No batch planned yet: use Plan next batch or the Batch planner"
                ),
            )
            return
        row = section.grid("row", gap=3)
        text = row.v_stack("text", gap=1, componentsProps=flex(420))
        text.md(
            f"**{c['batch']}**, round {c['round']}: **{c['n_coverage']}** coverage + "
            f"**{c['n_targeting']}** targeting {c['unit']}s, {c['labeled']} of {c['budget']} "
            "labeled so far.\n\n" + "\n".join(f"- {r}" for r in c["reasons"]),
            name="reasons",
        )
        buttons = text.h_stack("buttons", gap=1)
        buttons.btn(
            "open",
            label="Open batch",
            icon="open_in_new",
            variant="outlined",
            on_click=self.open_batch,
        )
        for share in ("coverage", "targeting"):
            buttons.btn(
                share,
                label=f"{share.capitalize()} picks",
                variant="outlined",
                on_click=self.open_share,
                params={"share": share},
            )
        row.plot(
            "plot",
            layout=_composition_layout(),
            config={"displayModeBar": False, "responsive": True},
            on_click=self.open_share,
            componentsProps=flex(360),
        )

    def _render_golden(self, section, s) -> None:
        g = s.golden
        if not g:
            section.view(
                "empty",
                types.Notice(
                    label="No golden check yet: create splits with a golden set, then run "
                    "Golden check"
                ),
            )
            return
        pickers = section.h_stack("pickers", gap=2, columns=3)
        if len(g["candidate_fields"]) > 1:
            dropdown(
                pickers,
                "field",
                g["candidate_fields"],
                g["candidate_field"],
                "Annotations scored",
                self.select_golden_field,
            )
        if len(g["slices"]) > 1:
            dropdown(
                pickers, "slice", g["slices"], g["slice"], "Slice plotted", self.select_golden_slice
            )
        section.md(
            f"Annotations in `{g['candidate_field']}` scored against the golden labels at IoU "
            f"{g['iou']:.2f}, per batch. Rows with a drift alarm are highlighted; click a row to "
            "open its golden samples.",
            name="caption",
        )
        if g["n_alarms"]:
            where = f" on {g['slice']}" if g["slice"] else ""
            latest = f"; the latest{where}:" if g["alarms"] else f", none{where}"
            section.view(
                "alarms",
                types.Error(
                    label=f"{g['n_alarms']} drift alarm{'s' if g['n_alarms'] != 1 else ''}{latest}"
                ),
            )
            if g["alarms"]:
                section.md("\n".join(f"- {a}" for a in g["alarms"]), name="alarm_list")
        section.plot(
            "plot",
            layout=_golden_layout(g["slice"]),
            config={"displayModeBar": False, "responsive": True},
        )
        table = types.TableView(on_click_row=self.open_golden_row, selected_color=_ALARM_ROW_COLOR)
        for key, label in (
            ("batch", "Batch"),
            ("slice", "Slice"),
            ("samples", "Samples"),
            ("recall", "Recall"),
            ("precision", "Precision"),
            ("iou", "Mean IoU"),
            ("alarms", "Alarms"),
        ):
            table.add_column(key, label=label)
        for cls in g["classes"]:
            table.add_column(f"class_{cls}", label=f"{cls} recall")
        section.obj("table", view=table)

    def _render_quarantine(self, section, s) -> None:
        q = s.quarantine
        if not q["units"]:
            section.md(
                "Nothing quarantined: every checked label passed the schema gate.", name="none"
            )
            return
        per_slice = ", ".join(
            f"{name or 'samples'}: {v['samples']} samples / {v['labels']} labels"
            for name, v in q["per_slice"].items()
            if v["samples"] or v["labels"]
        )
        rules = ", ".join(f"{rule} ({n})" for rule, n in q["by_rule"].items())
        row = section.grid("row", gap=3, align_y="center")
        row.md(
            f"**{q['units']}** {q['unit']}{'s' if q['units'] != 1 else ''} held back from training "
            f"({per_slice})." + (f"\n\nViolations by rule: {rules}." if rules else ""),
            name="counts",
            componentsProps=flex(420),
        )
        row.btn(
            "open",
            label="Open quarantined",
            icon="report",
            variant="outlined",
            on_click=self.open_quarantine,
            componentsProps=INLINE,
        )


# --- tables and plots ---------------------------------------------------------------------


def _overview_line(o: dict) -> str:
    unit = o["unit"]
    return (
        f"**{o['units']}** {unit}s · **{o['labeled']}** labeled · **{o['batched']}** in "
        f"batches · **{o['test']}** frozen test · **{o['golden']}** golden · "
        f"**{o['quarantined']}** quarantined"
    )


def _scheduled_line(runs: list) -> str:
    items = ", ".join(f"`{r['operator']}` ({r['state']})" for r in runs)
    return f"Scheduled on delegated workers: {items}"


def _ledger_row(r: dict) -> dict:
    weakest = "—"
    if r["weakest_class"]:
        weakest = f"{r['weakest_class']} ({format_rate(r['weakest_recall'])})"
    return {
        "round": r["round"],
        "batch": r["batch"],
        "labels_added": r["labels_added"],
        "total_labels": r["total_labels"],
        "map": format_map(r["map"]),
        "gain": format_gain(r["delta_map_per_100"]),
        "weakest": weakest,
    }


def _ledger_traces(ledger: dict) -> list[dict]:
    rounds = ledger["rounds"]
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "annoloop",
            "x": [r["total_labels"] for r in rounds],
            "y": [r["map"] for r in rounds],
            "ids": [r["batch"] for r in rounds],
            "text": [f"round {r['round']} · {r['batch']}" for r in rounds],
            "hovertemplate": "%{text}<br>%{x} labels · mAP %{y:.3f}<extra></extra>",
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
                "hovertemplate": "random · %{x} labels · mAP %{y:.3f}<extra></extra>",
                "line": {"color": _BASELINE_COLOR, "width": 2, "dash": "dash"},
                "marker": {"size": 7},
            }
        )
    return traces


def _ledger_layout(has_baseline: bool) -> dict:
    return {
        "height": 320,
        "margin": {"l": 55, "r": 10, "t": 30, "b": 45},
        "xaxis": {"title": {"text": "labels spent"}, "rangemode": "tozero"},
        "yaxis": {"title": {"text": "mAP (frozen test set)"}, "rangemode": "tozero"},
        "showlegend": has_baseline,
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
    }


def _composition_traces(c: dict) -> list[dict]:
    traces = [
        {
            "type": "bar",
            "orientation": "h",
            "name": "coverage",
            "x": [c["n_coverage"]],
            "y": [c["batch"]],
            "ids": ["coverage"],
            "marker": {"color": _SHARE_COLORS["coverage"]},
            "text": [f"{c['n_coverage']} coverage"],
            "hovertemplate": "coverage: %{x}<extra></extra>",
        }
    ]
    targets = c["targets"]
    untyped = c["n_targeting"] - sum(targets.values())
    for kind, n in (*targets.items(), ("targeting", untyped)):
        if n > 0:
            traces.append(
                {
                    "type": "bar",
                    "orientation": "h",
                    "name": f"targeting · {kind}" if kind != "targeting" else "targeting",
                    "x": [n],
                    "y": [c["batch"]],
                    "ids": ["targeting"],
                    "marker": {"color": _SHARE_COLORS.get(kind, _STRATEGY_COLOR)},
                    "text": [
                        f"{n} targeting" if kind == "targeting" else f"{n} near {_KIND_WORDS[kind]}"
                    ],
                    "hovertemplate": f"targeting near {kind}: %{{x}}<extra></extra>",
                }
            )
    return traces


def _composition_layout() -> dict:
    return {
        "height": 170,
        "barmode": "stack",
        "margin": {"l": 10, "r": 10, "t": 10, "b": 40},
        "xaxis": {"title": {"text": "picks"}},
        "yaxis": {"visible": False},
        "showlegend": False,
        "uniformtext": {"minsize": 10, "mode": "hide"},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
    }


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


def _golden_traces(golden: dict, slice_name) -> list[dict]:
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


def _golden_layout(slice_name) -> dict:
    where = f" ({slice_name})" if slice_name else ""
    return {
        "height": 300,
        "margin": {"l": 55, "r": 10, "t": 40, "b": 40},
        "yaxis": {"title": {"text": f"recall on the golden set{where}"}, "range": [0, 1.05]},
        "xaxis": {"type": "category"},
        "showlegend": True,
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
    }
