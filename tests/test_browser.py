"""Both annoloop panels and an operator form in the real FiftyOne App, in headless Chromium.

One App server and one browser page serve the module (helpers and selectors in
:mod:`app_browser`), over the loop dataset of :mod:`test_panels`, built by real annoloop
calls. Scheduling is allowed (the conftest sets ``FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS``).
Screenshots go to ``$ANNOLOOP_ARTIFACTS_DIR`` (default ``<repo>/artifacts/``). Where
``chromium`` is missing and cannot be installed (not root), the module is skipped.
"""

from __future__ import annotations

import threading

import os
from pathlib import Path

import pytest

from annoloop.panels.loop_panel import PANEL_LABEL
from annoloop.panels.widgets import format_map
from app_browser import app_in_browser, chromium_executable
from fo_helpers import unique_name
from test_panels import ROUNDS, build_loop_dataset, units

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


@pytest.fixture(scope="module")
def built():
    built = build_loop_dataset(unique_name("browser"), image_size=(384, 128))
    yield built
    built["dataset"].delete()


@pytest.fixture(scope="module")
def app(built, tmp_path_factory):
    executable = chromium_executable()
    if executable is None:
        pytest.skip("Debian's chromium is missing and installing it needs root: "
                    "run `apt-get install -y chromium`")
    log_dir = tmp_path_factory.mktemp("app")
    with app_in_browser(built["dataset"], executable, log_dir) as app:
        yield app
        # Read before the server stops: its shutdown logs cancelled connections.
        log = (log_dir / "app-server.log").read_text()
    assert "Traceback" not in log, f"the App server logged an error:\n{log[-4000:]}"


def test_the_annotation_loop_panel_shows_its_ledger_and_a_click_opens_a_round(app, built):
    round_1 = format_map(ROUNDS[1][2])
    app.show_panel("annotation_loop", PANEL_LABEL, "Ledger of rounds", round_1, "Golden set",
                   "Quarantine")
    assert round_1 in app.table_cells() and "batch:v2" in app.table_cells()
    app.screenshot(artifacts_dir() / "annotation_loop_panel.png")
    app.click_cell("batch:v2")
    view = app.wait_for_view(lambda v: units(v) == set(built["second"]["ids"]))
    assert units(view) == set(built["second"]["ids"])


def test_the_batch_planner_previews_a_batch_and_a_click_on_a_pick_opens_it(app, built):
    app.show_panel("batch_planner", "batch:v3")
    app.click_button("Preview")
    app.wait_for_text("Preview of batch:v3")
    app.screenshot(artifacts_dir() / "batch_planner_panel.png")
    dataset = built["dataset"]
    names = set(app.table_cells())
    scene_groups = dict(zip(*dataset.values(["scene_id", "group.id"])))
    picked = [n for n in scene_groups if n in names]
    assert picked, "the preview's table names no scene of the dataset"
    app.click_cell(picked[0])
    app.wait_for_view(lambda v: units(v) == {scene_groups[picked[0]]})


def test_a_form_executes_immediately_from_the_operator_browser(app, built):
    dataset = built["dataset"]
    assert not dataset.has_field("qa_violations")
    app.open_operator("annoloop: validate labels (schema gate)", "Violations field")
    app.execute()
    app.wait_for_text("Samples with violations")
    dataset.reload()
    assert dataset.has_field("qa_violations")


def test_a_form_scheduled_with_the_native_button_queues_an_operation_a_worker_completes(
    app, built
):
    # Needs the native Execute / Schedule button (the forms work of issue 15).
    from fiftyone.operators.delegated import DelegatedOperationService

    dataset = built["dataset"]
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
    # Playwright's sync API keeps an event loop running on this thread; FiftyOne's executor
    # starts its own, so the queue runs on a thread of its own, as a worker's would.
    worker = threading.Thread(
        target=service.execute_queued_operations, kwargs={"dataset_name": dataset.name}
    )
    worker.start()
    worker.join(timeout=300)
    done = service.get(queued[0].id)
    assert done.run_state == "completed", done.result and done.result.error
