"""The Batch planner panel: choose a budget and a coverage / targeting split, preview, create.

"Preview" runs the planner as a dry run (:func:`..selection.batches.plan_batch` with
``dry_run=True``: nothing is written) and shows the counts per share and why, the picks
(thumbnails and a table), and where they fall in the embeddings plot of the latest
visualization. "Create batch" opens the ``plan_batch`` operator's form with the same
settings, where the batch can be created now or scheduled on a delegated worker. Clicking
a pick in the table, its thumbnail or its point loads its samples as the App's view.

The pool is the whole dataset (the planner excludes frozen, quarantined and batched scenes
itself), so a view opened from a panel never shrinks the next plan by accident.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..operators.planning import params_from_request
from ..selection import batches
from ..selection.algorithms.planner import COVERAGE_METHODS, DEFAULT_COVERAGE_METHOD
from ..selection.request import PlanRequest, plan_defaults
from . import state as st
from .loop_charts import pool_line
from ..selection.pick_rows import PICK_COLUMNS, pick_row, unit_names
from .picks import thumbnail_urls
from .widgets import INLINE, SHRINK, dropdown, flex, plot_props, round_label

PANEL_NAME = "batch_planner"
PANEL_LABEL = "Batch planner"

#: Thumbnails of the first picks, in a grid of this many columns.
_THUMBNAILS, _THUMBNAIL_COLUMNS = 12, 6
_MAP_PLOT_HEIGHT = 360
PREVIEW = "preview_section"

_NO_EVALUATION = "(none: all coverage)"
_POINT_COLORS = {"pool": "#B0B0B0", "coverage": "#4C9AFF", "targeting": "#FF6D04"}


class BatchPlannerPanel(foo.Panel):
    @property
    def config(self) -> foo.PanelConfig:
        return foo.PanelConfig(
            name=PANEL_NAME,
            label=PANEL_LABEL,
            icon="tune",
            help_markdown=(
                "Plan the next batch to label: a budget split between coverage of the pool "
                "and targeting of the model's failures. Preview is a dry run; Create batch "
                "opens the plan_batch form (run now or schedule)."
            ),
        )

    # --- events ---------------------------------------------------------------------------

    def on_load(self, ctx) -> None:
        self._reset(ctx)

    def on_change_dataset(self, ctx) -> None:
        self._reset(ctx)

    def set_option(self, ctx) -> None:
        """Store a changed control under its own name; the preview no longer matches it."""
        path = ctx.params.get("path")
        if not path:
            return
        # Controls sit in stacks, so the App reports nested paths ("controls.budget").
        name, value = path.rsplit(".", 1)[-1], ctx.params.get("value")
        # The App also reports each control's initial value, possibly after a Preview was
        # clicked: an unchanged value must not discard that preview.
        if ctx.panel.state.get(name) != value:
            ctx.panel.state.set({name: value, "preview": None})

    def preview(self, ctx) -> None:
        s = ctx.panel.state
        try:
            result = batches.plan(ctx.dataset, self._request(s, dry_run=True))
        except ValueError as err:
            ctx.panel.state.preview = None
            ctx.panel.state.error = str(err)
            return
        units = result["ids"]
        picks = {p["id"]: p["source"] for p in result["picks"]}
        layout = st.embedding_points(ctx.dataset, s.embeddings_field, keep=units)
        ctx.panel.state.set(
            {
                "error": None,
                "preview": st.preview_summary(result, scheduled=bool(s.use_schedule)),
                "pick_ids": units,
                "has_layout": layout is not None,
            }
        )
        thumbs = thumbnail_urls(ctx.dataset, units[:_THUMBNAILS])
        ctx.panel.state.thumbs = [i for i, u in enumerate(units[:_THUMBNAILS]) if u in thumbs]
        names = unit_names(ctx.dataset, units)
        ctx.panel.data.set(
            {
                # Data lives at each view's path: section, stack, name.
                f"{PREVIEW}.row.side.table": [pick_row(p, names) for p in result["picks"]],
                f"{PREVIEW}.row.plot": _layout_traces(layout, picks, names) if layout else [],
                **{f"{PREVIEW}.thumbnails.thumb_{i}": thumbs[u] for i, u in enumerate(units) if u in thumbs},
            }
        )

    def create_batch(self, ctx) -> None:
        params = params_from_request(self._request(ctx.panel.state, dry_run=False))
        ctx.prompt(st.OPERATOR_URI_PREFIX + "plan_batch", params=params, on_success=self.on_created)

    def on_created(self, ctx) -> None:
        self._reset(ctx)
        ctx.ops.notify("plan_batch ran or was scheduled: see the Annotation loop panel")

    def open_pick_row(self, ctx) -> None:
        self._open_pick(ctx, ctx.params.get("row"))

    def open_pick(self, ctx) -> None:
        self._open_pick(ctx, ctx.params.get("index"))

    def _open_pick(self, ctx, index) -> None:
        ids = ctx.panel.state.pick_ids or []
        if isinstance(index, int) and 0 <= index < len(ids):
            ctx.ops.set_view(st.units_view(ctx.dataset, [ids[index]]))

    def open_point(self, ctx) -> None:
        unit = ctx.params.get("id")
        if unit:
            ctx.ops.set_view(st.units_view(ctx.dataset, [unit]))

    def open_picks(self, ctx) -> None:
        ids = ctx.panel.state.pick_ids or []
        if ids:
            ctx.ops.set_view(st.units_view(ctx.dataset, ids))

    # --- state ----------------------------------------------------------------------------

    def _reset(self, ctx) -> None:
        dataset = ctx.dataset
        if dataset is None:
            ctx.panel.state.dataset = None
            return
        dataset.reload()
        slice_name = dataset.default_group_slice if dataset.media_type == "group" else None
        defaults = plan_defaults(dataset, slice_name)
        ctx.panel.state.set(
            {
                "dataset": dataset.name,
                "slice_name": slice_name,
                "fields": defaults.embeddings_fields,
                "embeddings_field": defaults.embeddings_field,
                "evaluations": defaults.evaluations,
                "eval_key": defaults.eval_key or _NO_EVALUATION,
                "round": defaults.round_index,
                "scheduled_fraction": defaults.scheduled_fraction,
                "budget": defaults.budget,
                "use_schedule": True,
                "coverage_fraction": defaults.scheduled_fraction,
                "coverage_method": defaults.coverage_method,
                "next_batch": defaults.batch_name,
                "preview": None,
                "error": None,
                "pick_ids": [],
                "thumbs": [],
            }
        )

    @staticmethod
    def _request(s, dry_run: bool) -> PlanRequest:
        eval_key = s.eval_key if s.eval_key and s.eval_key != _NO_EVALUATION else None
        return PlanRequest(
            budget=int(s.budget or 0),
            embeddings_field=s.embeddings_field,
            coverage_fraction=None if s.use_schedule else float(s.coverage_fraction),
            coverage_method=s.coverage_method or DEFAULT_COVERAGE_METHOD,
            eval_key=eval_key,
            slice_name=s.slice_name,
            dry_run=dry_run,
        )

    # --- layout ---------------------------------------------------------------------------

    def render(self, ctx) -> types.Property:
        panel = types.Object()
        s = ctx.panel.state
        if not s.dataset:
            panel.md("Open a dataset to plan a batch.", name="empty")
            return types.Property(panel, view=types.GridView(orientation="vertical"))
        panel.md(
            f"**{s.dataset}** · next batch **{s.next_batch}**, {round_label(s.round)}: the schedule "
            f"says {s.scheduled_fraction:.0%} coverage, {1 - s.scheduled_fraction:.0%} targeting.",
            name="summary_line",
        )
        if not s.fields:
            panel.view(
                "no_embeddings",
                types.Warning(label="No embeddings stored yet: run compute_embeddings first"),
            )
            return types.Property(panel, view=_root_view())

        self._render_controls(panel, s)
        if s.error:
            panel.view("error", types.Error(label="Cannot plan this batch", description=s.error))
        if s.preview:
            self._render_preview(panel, s)
        return types.Property(panel, view=_root_view())

    def _render_controls(self, panel, s) -> None:
        controls = panel.grid("controls", gap=2)
        controls.int(
            "budget",
            default=s.budget,
            min=1,
            label="Budget",
            description=f"{'Scenes' if s.slice_name else 'Samples'} to label",
            on_change=self.set_option,
            view=types.FieldView(componentsProps={"item": {"sx": {"width": "180px"}}}),
        )
        dropdown(
            controls,
            "embeddings_field",
            s.fields,
            s.embeddings_field,
            "Embeddings",
            self.set_option,
        )
        dropdown(
            controls,
            "eval_key",
            [*s.evaluations, _NO_EVALUATION],
            s.eval_key,
            "Failures from",
            self.set_option,
        )
        dropdown(
            controls,
            "coverage_method",
            list(COVERAGE_METHODS),
            s.coverage_method,
            "Coverage method",
            self.set_option,
        )
        shares = panel.grid("shares", gap=2, align_y="center")
        shares.bool(
            "use_schedule",
            default=s.use_schedule,
            label="Follow the round schedule",
            view=types.SwitchView(componentsProps=INLINE),
            on_change=self.set_option,
        )
        if not s.use_schedule:
            shares.float(
                "coverage_fraction",
                default=s.coverage_fraction,
                min=0.0,
                max=1.0,
                label=f"Coverage share ({float(s.coverage_fraction):.0%}; targeting gets the rest)",
                view=types.SliderView(
                    componentsProps={"slider": {"min": 0, "max": 1, "step": 0.05}, **flex(320)}
                ),
                on_change=self.set_option,
            )
        actions = panel.grid("actions", gap=1)
        actions.btn(
            "preview_btn",
            label="Preview (dry run)",
            icon="visibility",
            variant="contained",
            on_click=self.preview,
            componentsProps=INLINE,
        )
        actions.btn(
            "create_btn",
            label="Create batch…",
            icon="playlist_add",
            variant="outlined",
            on_click=self.create_batch,
            componentsProps=INLINE,
        )

    def _render_preview(self, panel, s) -> None:
        p = s.preview
        section = panel.v_stack(
            PREVIEW, label=f"Preview of {p['batch']}", gap=2, componentsProps=SHRINK
        )
        section.md(
            f"**{p['n_coverage']}** coverage + **{p['n_targeting']}** targeting {p['unit']}s, "
            f"{round_label(p['round'])}. Nothing was written.\n\n{pool_line(p)}\n\n"
            + "\n".join(f"- {r}" for r in p["reasons"]),
            name="summary",
        )
        # A real grid (fixed columns), so thumbnails sit side by side, not one per row.
        thumbs = section.grid(
            "thumbnails", gap=1, orientation="horizontal", columns=_THUMBNAIL_COLUMNS
        )
        for i in s.thumbs or []:
            thumbs.view(
                f"thumb_{i}",
                types.ImageView(
                    height="72px",
                    width="100%",
                    alt_text=f"pick {i + 1}",
                    operator=self.open_pick,
                    params={"index": i},
                ),
            )
        row = section.grid("row", gap=3)
        if s.has_layout:
            row.plot(
                "plot",
                layout=_layout_layout(),
                on_click=self.open_point,
                **plot_props(_MAP_PLOT_HEIGHT, **flex(420)),
            )
        else:
            row.md(
                "Run **compute_visualization** to see where the picks fall in the embeddings.",
                name="no_layout",
                componentsProps=flex(420),
            )
        # The picks table needs about 700 px for its six columns unwrapped: a wider basis
        # than the plot's, so it shares the row on a wide panel and wraps below otherwise.
        side = row.v_stack("side", gap=1, componentsProps={**flex(720), **SHRINK})
        table = types.TableView(on_click_row=self.open_pick_row)
        for key, label in PICK_COLUMNS:
            table.add_column(key, label=label)
        side.list("table", types.Object(), view=table)
        side.btn(
            "open_picks",
            label="Open all picks",
            icon="open_in_new",
            variant="outlined",
            on_click=self.open_picks,
            componentsProps=INLINE,
        )


def _root_view() -> types.GridView:
    return types.GridView(orientation="vertical", gap=2, pad=2, componentsProps=SHRINK)


def _layout_traces(layout: dict, picks: dict, names: dict) -> list[dict]:
    """Pool points in grey, then the coverage and the targeting picks on top."""
    traces = []
    for share in ("pool", "coverage", "targeting"):
        rows = [
            i for i, u in enumerate(layout["unit"]) if picks.get(u, "pool") == share
        ]
        traces.append(
            {
                "type": "scattergl" if share == "pool" else "scatter",
                "mode": "markers",
                "name": share if share != "pool" else "pool",
                "x": [layout["x"][i] for i in rows],
                "y": [layout["y"][i] for i in rows],
                "ids": [layout["unit"][i] for i in rows],
                "marker": {
                    "color": _POINT_COLORS[share],
                    "size": 5 if share == "pool" else 11,
                    "opacity": 0.5 if share == "pool" else 0.95,
                    "line": {"width": 0 if share == "pool" else 1, "color": "#FFFFFF"},
                },
                # Picks by name; the pool's grey points by share only (ids mean nothing).
                "text": [names.get(layout["unit"][i], "") for i in rows],
                "hovertemplate": ("%{text}" if share != "pool" else "pool")
                + "<extra>"
                + share
                + "</extra>",
            }
        )
    return traces


def _layout_layout() -> dict:
    return {
        "height": _MAP_PLOT_HEIGHT,
        "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
        "xaxis": {"visible": False},
        "yaxis": {"visible": False},
        "showlegend": True,
        "legend": {"orientation": "h", "y": 1.06, "x": 0},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
    }
