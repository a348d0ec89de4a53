"""The Annotation loop panel: the home of the loop in the FiftyOne App.

One screen answers "where is my loop, and what do I do next": the ledger of rounds (mAP
against labels spent, with the random baseline when one is stored), the plateau signal,
the latest batch's coverage / targeting split and why, the golden-set history per class
with drift alarms, what the schema gate holds back, and the delegated jobs (:mod:`.jobs`):
progress while they run, the error and a "Re-run" button when they fail, a line and fresh
data when they complete; the panel polls the queue while a job is active. Each step of the loop
(:mod:`.steps`) is a button that opens its operator's form, where "Schedule" queues a
delegated run; "Annotate this batch" opens the latest batch with the ground-truth label
schema active, for FiftyOne's in-App annotation. Clicking a ledger row or point, a share of the batch, a golden batch or the
quarantine button loads the matching samples as the App's view.

Everything shown is read by :mod:`.state` when the panel loads (and on "Refresh"); small
values live in the panel state, tables and plots in the panel data. The plots, table rows
and sentences are built by :mod:`.loop_charts`; this module handles events and lays out the
sections.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..training.algorithms.ledger import STATE_NOT_LEARNING
from ..core.names import DEFAULT_GT_FIELD
from . import jobs as jb
from . import loop_charts as charts
from . import state as st
from .steps import PHASES, STEPS, step_names
from .widgets import INLINE, SHRINK, dropdown, flex, plot_props

PANEL_NAME = "annotation_loop"
PANEL_LABEL = "Annotation loop"

# Section paths: what the panel shows in each lives under them in the panel data.
LEDGER, BATCH = "ledger_section", "batch_section"
GOLDEN, QUARANTINE = "golden_section", "quarantine_section"
ANNOTATORS = "annotators_section"
JOBS = "jobs_section"

#: How often (ms) the panel re-reads the job queue while a job is active.
POLL_INTERVAL_MS = 3000
_ALARM_ROW_COLOR = "rgba(244, 67, 54, 0.22)"
#: Why the "Annotate this batch" action stops at the view and the schema.
ANNOTATE_TAB_NOTICE = (
    "FiftyOne 1.22 has no operator that switches the sample modal to its Annotate tab: "
    "open a sample of the view and choose Annotate"
)


def _table(columns, on_click_row, **kwargs) -> types.TableView:
    table = types.TableView(on_click_row=on_click_row, **kwargs)
    for key, label in columns:
        table.add_column(key, label=label)
    return table


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
        if operator in step_names():
            ctx.prompt(st.OPERATOR_URI_PREFIX + operator, on_success=self.on_step_done)

    def on_step_done(self, ctx) -> None:
        self._refresh(ctx)

    def poll_jobs(self, ctx) -> None:
        """Re-read the job queue (the timer calls this while a job is active); reload the
        panel's data when a job that was active has ended, since it wrote to the dataset."""
        if ctx.dataset is None:
            return
        jobs = jb.read_jobs(ctx.dataset)
        if jb.finished_since(ctx.panel.state.active_jobs or [], jobs):
            self._refresh(ctx)
        else:
            self._set_jobs(ctx, jobs)

    def rerun_job(self, ctx) -> None:
        """Queue a failed job again, with the parameters it failed with."""
        job_id = ctx.params.get("job_id")
        failed = {j["id"]: j for j in (ctx.panel.state.jobs or {}).get("failed", [])}
        if job_id not in failed:
            return
        try:
            jb.rerun_job(job_id)
        except ValueError as err:
            ctx.ops.notify(f"Cannot re-run {failed[job_id]['operator']}: {err}", variant="error")
            return
        ctx.ops.notify(f"{failed[job_id]['operator']} queued again", variant="info")
        self._set_jobs(ctx, jb.read_jobs(ctx.dataset))

    def annotate_batch(self, ctx) -> None:
        """Open the latest batch as the App's view with the ground-truth label schema active,
        ready for FiftyOne's in-App annotation."""
        batch = (ctx.panel.state.composition or {}).get("batch")
        view = st.batch_view(ctx.dataset, batch) if batch else None
        if view is None:
            ctx.ops.notify("No batch to annotate: plan one first", variant="warning")
            return
        dataset = ctx.dataset
        if DEFAULT_GT_FIELD not in dataset.label_schemas:
            ctx.ops.notify(
                f"'{DEFAULT_GT_FIELD}' has no label schema: set one with "
                "dataset.set_label_schemas() so the App knows what annotators may draw",
                variant="warning",
            )
        else:
            dataset.activate_label_schemas(DEFAULT_GT_FIELD, prepend=True)
        ctx.ops.set_view(view)
        ctx.ops.notify(f"{batch} is the view. {ANNOTATE_TAB_NOTICE}.", variant="info")

    def open_planner(self, ctx) -> None:
        from .planner_panel import PANEL_NAME as PLANNER

        ctx.ops.open_panel(PLANNER, layout="horizontal", is_active=True)

    def open_ledger_row(self, ctx) -> None:
        batches = ctx.panel.state.ledger_batches or []
        row = ctx.params.get("row")
        if isinstance(row, int) and 0 <= row < len(batches):
            self._show_batch(ctx, batches[row])

    def open_ledger_point(self, ctx) -> None:
        self._show_batch(ctx, ctx.params.get("id"))

    def open_batch(self, ctx) -> None:
        self._show_batch(ctx, (ctx.panel.state.composition or {}).get("batch"))

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

    def _show_batch(self, ctx, batch: str | None) -> None:
        if batch:
            self._show(ctx, st.batch_view(ctx.dataset, batch), f"batch {batch}")

    def _show(self, ctx, view, what: str) -> None:
        if view is None:
            ctx.ops.notify(f"No samples found for {what}", variant="warning")
        else:
            ctx.ops.set_view(view)

    # --- reading the dataset --------------------------------------------------------------

    def _refresh(self, ctx) -> None:
        from ..annotation.load import annotator_summary

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
                "annotators": annotator_summary(dataset),
            }
        )
        self._set_jobs(ctx, jb.read_jobs(dataset))
        ctx.panel.data.set(
            {
                # Data lives at each view's path: section, stack, name.
                f"{LEDGER}.table": [charts.ledger_row(r) for r in rounds],
                f"{LEDGER}.row.plot": charts.ledger_traces(ledger),
                f"{BATCH}.row.plot": charts.composition_traces(composition) if composition else [],
            }
        )
        self._load_golden(ctx, previous.get("candidate_field"), previous.get("slice"))

    def _set_jobs(self, ctx, jobs: dict) -> None:
        ctx.panel.state.set({"jobs": jobs, "active_jobs": [j["id"] for j in jobs["active"]]})

    def _load_golden(self, ctx, candidate_field: str | None, slice_name: str | None = None) -> None:
        golden = st.golden_state(ctx.dataset, candidate_field)
        if golden is None:
            ctx.panel.state.golden = None
            return
        slice_name = charts.plotted_slice(golden, slice_name)
        ctx.panel.state.golden = {
            **{k: golden[k] for k in ("candidate_field", "candidate_fields", "slices", "iou", "classes")},
            "slice": slice_name,
            "n_alarms": len(golden["alarms"]),
            "alarms": charts.slice_alarms(golden, slice_name),
            "row_batches": [r["batch"] for r in golden["rows"]],
        }
        ctx.panel.data.set(
            {
                f"{GOLDEN}.table": charts.golden_table(golden),
                f"{GOLDEN}.plot": charts.golden_traces(golden, slice_name),
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
        panel.md(f"**{s.dataset}** · {charts.overview_line(s.overview)}", name="summary_line")
        self._render_steps(panel)
        if s.jobs and any(s.jobs.get(k) for k in ("active", "failed", "completed")):
            self._render_jobs(panel.v_stack(JOBS, label="Jobs", gap=1, componentsProps=SHRINK), s)
        for path, label, render in (
            (LEDGER, "Ledger of rounds", self._render_ledger),
            (BATCH, "Current batch", self._render_batch),
            (GOLDEN, "Golden set", self._render_golden),
            (ANNOTATORS, "Annotators (hidden golden tasks)", self._render_annotators),
            (QUARANTINE, "Quarantine", self._render_quarantine),
        ):
            render(panel.v_stack(path, label=label, gap=1, componentsProps=SHRINK), s)
        return types.Property(
            panel, view=types.GridView(orientation="vertical", gap=3, pad=2, componentsProps=SHRINK)
        )

    def _render_steps(self, panel: types.Object) -> None:
        # One wrapping row per phase: buttons keep their width and flow onto a second line
        # in a narrow panel.
        steps = panel.v_stack("steps", gap=1, componentsProps=SHRINK)
        for i, phase in enumerate(PHASES):
            row = steps.grid(f"phase_{i}", gap=1, align_y="center")
            row.md(f"**{phase}**", name="phase", componentsProps={"item": {"sx": {"width": "150px"}}})
            for step in (step for step in STEPS if step.phase == phase):
                row.btn(
                    step.operator,
                    label=step.label,
                    icon=step.icon,
                    variant="contained",
                    on_click=self.start_step,
                    params={"operator": step.operator},
                    componentsProps=INLINE,
                )
            if phase == "Annotate":
                row.btn(
                    "annotate_batch",
                    label="Annotate this batch",
                    icon="edit",
                    variant="outlined",
                    on_click=self.annotate_batch,
                    componentsProps=INLINE,
                )
        tools = steps.grid("tools", gap=1)
        for name, label, icon, on_click in (
            ("planner", "Batch planner", "tune", self.open_planner),
            ("refresh", "Refresh", "refresh", self.refresh),
        ):
            tools.btn(
                name, label=label, icon=icon, variant="outlined", on_click=on_click, componentsProps=INLINE
            )

    def _render_jobs(self, section: types.Object, s) -> None:
        active, failed = s.jobs["active"], s.jobs["failed"]
        for i, job in enumerate(active):
            section.md(jb.active_line(job), name=f"active_{i}")
        if active:
            # Polls the queue while work is pending: progress, failures and completions
            # show up without a click on Refresh.
            section.view(
                "timer", types.TimerView(interval=POLL_INTERVAL_MS, on_interval=self.poll_jobs)
            )
        for i, job in enumerate(s.jobs.get("completed", [])):
            section.md(jb.completed_line(job), name=f"completed_{i}")
        for i, job in enumerate(failed):
            row = section.grid(f"failed_{i}", gap=1, align_y="center")
            row.view(
                "error",
                types.Error(label=jb.failed_title(job), description=job["error"]),
                componentsProps=flex(420),
            )
            row.btn(
                "rerun",
                label="Re-run",
                icon="replay",
                variant="outlined",
                on_click=self.rerun_job,
                params={"job_id": job["id"]},
                componentsProps=INLINE,
            )

    def _render_ledger(self, section: types.Object, s) -> None:
        if s.latest is None:
            section.view(
                "empty",
                types.Notice(
                    label="No rounds yet: train a detector, then evaluate it on the frozen "
                    "test set to record round 1"
                ),
            )
            return
        row = section.grid("row", gap=3)
        row.plot(
            "plot",
            layout=charts.ledger_layout(s.has_baseline),
            on_click=self.open_ledger_point,
            **plot_props(charts.LEDGER_PLOT_HEIGHT, **flex(480)),
        )
        side = row.v_stack("side", gap=2, componentsProps=flex(320))
        side.md(charts.latest_round_text(s.latest), name="latest")
        side.view("plateau", _plateau_view(s.plateau))
        section.list(
            "table", types.Object(), view=_table(charts.LEDGER_COLUMNS, self.open_ledger_row)
        )

    def _render_batch(self, section: types.Object, s) -> None:
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
        text.md(charts.batch_text(c), name="reasons")
        buttons = text.h_stack("buttons", gap=1)
        buttons.btn(
            "open", label="Open batch", icon="open_in_new", variant="outlined", on_click=self.open_batch
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
            layout=charts.composition_layout(),
            on_click=self.open_share,
            **plot_props(charts.BATCH_PLOT_HEIGHT, **flex(360)),
        )

    def _render_golden(self, section: types.Object, s) -> None:
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
        self._render_golden_pickers(section.h_stack("pickers", gap=2, columns=3), g)
        section.md(charts.golden_caption(g), name="caption")
        if g["n_alarms"]:
            banner, alarm_list = charts.alarm_lines(g)
            section.view("alarms", types.Error(label=banner))
            if alarm_list:
                section.md(alarm_list, name="alarm_list")
        section.plot(
            "plot", layout=charts.golden_layout(g["slice"]), **plot_props(charts.GOLDEN_PLOT_HEIGHT)
        )
        table = _table(charts.GOLDEN_COLUMNS, self.open_golden_row, selected_color=_ALARM_ROW_COLOR)
        for cls in g["classes"]:
            table.add_column(f"class_{cls}", label=f"{cls} recall")
        section.obj("table", view=table)

    def _render_golden_pickers(self, pickers: types.Object, g: dict) -> None:
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

    def _render_annotators(self, section: types.Object, s) -> None:
        if not s.annotators:
            section.md(
                "No batch loaded from an annotation tool yet: *Send to annotators*, then "
                "*Load annotations*.",
                name="none",
            )
            return
        section.md(charts.annotators_text(s.annotators), name="table")

    def _render_quarantine(self, section: types.Object, s) -> None:
        if not s.quarantine["units"]:
            section.md(
                "Nothing quarantined: every checked label passed the schema gate.", name="none"
            )
            return
        row = section.grid("row", gap=3, align_y="center")
        row.md(charts.quarantine_text(s.quarantine), name="counts", componentsProps=flex(420))
        row.btn(
            "open",
            label="Open quarantined",
            icon="report",
            variant="outlined",
            on_click=self.open_quarantine,
            componentsProps=INLINE,
        )


def _plateau_view(plateau: dict) -> types.View:
    """Not learning yet, plateaued (with the recommendation) or still improving."""
    if plateau.get("state") == STATE_NOT_LEARNING:
        return types.Warning(label="Not learning yet", description=plateau["reason"])
    if plateau["plateaued"]:
        return types.Warning(
            label=f"Plateau: {plateau['recommendation']}", description=plateau["reason"]
        )
    return types.Notice(label="Still improving", description=plateau["reason"])
