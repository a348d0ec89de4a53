"""Both annoloop panels, their jobs section and operator forms in the real FiftyOne App, in
headless Chromium.

One App server and one browser page serve the module (helpers and selectors in
:mod:`app_browser`), over the loop dataset of :mod:`test_panels`, built by real annoloop
calls. Scheduling is allowed (the conftest sets ``FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS``);
queued operations are run by FiftyOne's own executor, once, as a worker runs them.
Screenshots go to ``$ANNOLOOP_ARTIFACTS_DIR`` (default ``<repo>/artifacts/``). Where
``chromium`` is missing and cannot be installed (not root), the module is skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bson import ObjectId

import annoloop
from annoloop.panels import jobs as jb
from annoloop.panels import loop_charts as charts
from annoloop.panels import state as st
from annoloop.panels.loop_panel import PANEL_LABEL
from annoloop.selection.algorithms.planner import DEFAULT_COVERAGE_METHOD
from app_browser import off_loop, run_queue
from fo_helpers import queue_operator, uri
from test_panels import units

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    # FiftyOne's session, connected to a server it did not start, complains when collected.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def artifacts_dir() -> Path:
    path = Path(os.environ.get("ANNOLOOP_ARTIFACTS_DIR") or REPO_ROOT / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_the_annotation_loop_panel_shows_its_ledger_and_a_click_opens_a_round(app, browser_loop):
    # The ledger as the panel's reader finds it on the dataset, row for row in the table.
    rounds = st.ledger_state(browser_loop["dataset"])["rounds"]
    columns = [key for key, _ in charts.LEDGER_COLUMNS]
    expected = [[str(charts.ledger_row(r)[key]) for key in columns] for r in rounds]
    app.show_panel("annotation_loop", PANEL_LABEL, "Ledger of rounds", "Golden set", "Quarantine",
                   *expected[-1])
    assert [row for row in app.table_rows() if row in expected] == expected
    app.screenshot(artifacts_dir() / "annotation_loop_panel.png")
    app.click_cell("batch:v2")
    view = app.wait_for_view(lambda v: units(v) == set(browser_loop["second"]["ids"]))
    assert units(view) == set(browser_loop["second"]["ids"])


def test_the_batch_planner_previews_a_batch_and_a_click_on_a_pick_or_its_point_opens_it(
    app, browser_loop
):
    # The controls' values arrive after the panel's text: wait for the coverage method's
    # value, which nothing else on the page shows, so Preview is clicked on a loaded panel.
    app.show_panel("batch_planner", "next batch batch:v3", "Preview (dry run)",
                   DEFAULT_COVERAGE_METHOD)
    app.click_button("Preview")
    app.wait_for_text("Preview of batch:v3")
    scene_groups = dict(zip(*browser_loop["dataset"].values(["scene_id", "group.id"])))
    names = app.wait_for_cells(lambda cells: any(c in scene_groups for c in cells))
    app.screenshot(artifacts_dir() / "batch_planner_panel.png")
    picked = [n for n in scene_groups if n in names]
    app.click_cell(picked[0])
    app.wait_for_view(lambda v: units(v) == {scene_groups[picked[0]]})
    # The embeddings plot marks each pick by its group id; clicking another pick's point
    # opens that one.
    app.click_plot_point(scene_groups[picked[-1]])
    app.wait_for_view(lambda v: units(v) == {scene_groups[picked[-1]]})


def test_a_form_executes_immediately_from_the_operator_browser(app, browser_loop):
    dataset = browser_loop["dataset"]
    assert not dataset.has_field("qa_violations")
    app.open_operator("annoloop: validate labels (schema gate)", "Violations field")
    app.execute()
    app.wait_for_text("Samples with violations")
    dataset.reload()
    assert dataset.has_field("qa_violations")


def test_a_form_scheduled_with_the_native_button_queues_an_operation_a_worker_completes(
    app, browser_loop
):
    # Needs the native Execute / Schedule button (the forms work of issue 15).
    from fiftyone.operators.delegated import DelegatedOperationService

    dataset = browser_loop["dataset"]
    service = DelegatedOperationService()
    before = {op.id for op in service.list_operations(dataset_name=dataset.name)}
    app.page.keyboard.press("Escape")
    app.open_operator("annoloop: check golden set (QA + drift)", "Check")
    app.schedule()
    queued = []
    for _ in range(60):
        queued = [op for op in service.list_operations(dataset_name=dataset.name)
                  if op.id not in before]
        if queued:
            break
        app.page.wait_for_timeout(500)
    assert [op.operator.rsplit("/", 1)[-1] for op in queued] == ["check_golden"]
    run_queue(dataset)
    done = service.get(queued[0].id)
    assert done.run_state == "completed", done.result and done.result.error


def test_the_jobs_section_shows_a_queued_job_then_its_failure_and_queues_it_again(app, browser_loop):
    from fiftyone.operators.delegated import DelegatedOperationService

    dataset, service = browser_loop["dataset"], DelegatedOperationService()
    # Scores already in "zcore": a second run that does not overwrite them fails, for real.
    params = {"embeddings_fields": ["embedding"], "group_score": False, "n_sample": 2000}
    annoloop.compute_zcore(dataset, embeddings_fields="embedding", group_score=False,
                           params=annoloop.ZCoreParams(n_sample=2000))
    op_id = off_loop(queue_operator, "compute_zcore", params, dataset=dataset)
    try:
        app.show_panel("annotation_loop", "Jobs", "compute_zcore · queued")
        run_queue(dataset)
        failed = service.get(ObjectId(op_id))
        assert failed.run_state == "failed"
        message = jb.error_message(failed.result.error)
        assert "overwrite" in message
        # The panel polls the queue while a job is active: no click on Refresh.
        app.wait_for_text("compute_zcore failed at", message, "Re-run")
        assert "compute_zcore · queued" not in app.text()

        app.click_button("Re-run")
        app.wait_for_text("compute_zcore · queued")
        assert message not in app.text(), "a failed job queued again no longer alarms"
        (again,) = [op for op in service.list_operations(dataset_name=dataset.name)
                    if op.run_state == "queued"]
        assert again.context.request_params["params"] == failed.context.request_params["params"]
    finally:
        for op in service.list_operations(dataset_name=dataset.name, operator=uri("compute_zcore")):
            service.delete_operation(op.id)
