"""Every annoloop form in the real FiftyOne App, run both ways from the operator browser, in
headless Chromium (issue 15); a scheduled job's progress and end in the Annotation loop
panel, served by a real ``fiftyone delegated launch`` worker.

One App server, one page and one loop dataset (built by real annoloop calls, the
``browser_loop`` fixture) serve the module; the forms run in loop order on it, so each
finds what the previous ones made (a planned batch to annotate, a gate run to check).

Forms that run here: each is opened, submitted once with "Execute" (its result dialog must
show, as a table, without an error) and once with "Schedule" (a delegated operation must be
queued with the form's parameters; it is deleted after the check, so no later worker runs
it). What a form needs beyond the loop is made as a user would make it, right before: a
real Label Studio server for ``send_batch`` and ``load_batch`` (the session's, on
loopback), samples tagged as an incoming batch for ``check_incoming_drift``, weights saved
from a random-init YOLOv8n for ``apply_detector`` and a random-init OWLv2 checkpoint on
disk for ``autolabel``. Before any of that exists, the forms that need it are checked to
say what is missing. ``train_detector`` trains for two optimizer steps at 64 px, so that its
real path runs in seconds. ``compute_zcore_shard`` is unlisted
(queued by ``compute_zcore``, not a user action) and has no form in the operator browser.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable

import fiftyone as fo
import pytest
from bson import ObjectId

from annoloop.benchmarks.bench_autolabel import random_checkpoint
from annoloop.core.names import INCOMING_TAG_PREFIX
from annoloop.operators import OPERATORS
from annoloop.panels import state as st
from annoloop.panels.loop_panel import PANEL_LABEL
from fo_helpers import (
    delegated_worker,
    form_properties,
    queue_operator,
    schedules_by_default,
    unique_name,
    uri,
    wait_for_delegated,
)
from app_browser import off_loop

pytestmark = [
    pytest.mark.slow,
    # FiftyOne's session, connected to a server it did not start, complains when collected.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

LABELS = {op.operator_name: op.operator_label for op in OPERATORS}
#: What FiftyOne's result dialog shows of a failed run, and of an operator without a result
#: form (a JSON tree of the returned dict).
FAILED_RUN = "Error occurred during operator execution"
RESULT_ERRORS = (FAILED_RUN, "Traceback", "Invalid enum value")
#: A new dataset made by the demo form (deleted by its test).
DEMO_NAME = unique_name("browser-demo")


@dataclass(frozen=True)
class Form:
    """How a user fills an operator's form, and what its result dialog shows."""

    operator: str
    result: str = ""  # a label of the result dialog (empty: the form is not run)
    fill: dict = field(default_factory=dict)  # text field label -> value
    checks: dict = field(default_factory=dict)  # checkbox label -> checked
    choices: tuple = ()  # radio values to pick
    on_latest_batch: bool = False  # the App's view is the latest planned batch
    missing: str = ""  # the form's message saying what a run needs
    # Makes what the run needs beyond the loop: (dataset, pytest request) -> more fill.
    setup: Callable | None = None

    def __str__(self) -> str:
        return self.operator

    def checked_params(self, dataset) -> dict:
        """The parameters the form's ``checks`` set, by name."""
        names = {
            p["view"]["label"]: name
            for name, p in form_properties(self.operator, dataset).items()
            if (p.get("view") or {}).get("label")
        }
        return {names[label]: checked for label, checked in self.checks.items()}


def random_yolo_weights(dataset, request) -> dict:
    out = request.getfixturevalue("tmp_path_factory").mktemp("yolo")
    return {"Weights": random_checkpoint("trained", "tiny", out)[0],
            "Predictions field": "random_predictions"}


def random_owlv2_checkpoint(dataset, request) -> dict:
    out = request.getfixturevalue("tmp_path_factory").mktemp("owlv2")
    return {"Checkpoint": random_checkpoint("owlv2", "tiny", out)[0]}


def incoming_batch(dataset, request) -> dict:
    """The last 6 scenes, every slice, tagged as a newly arrived batch."""
    arrived = dataset.distinct("group.id")[-6:]
    for slice_name in dataset.group_slices:
        dataset.select_groups(arrived).select_group_slices(slice_name).tag_samples(
            INCOMING_TAG_PREFIX + "browser"
        )
    return {}


def label_studio_server(dataset, request) -> dict:
    server = request.getfixturevalue("label_studio")
    return {"Annotators": "alice,bob", "Server URL": server.url, "API key": server.api_key}


#: Forms whose needs the loop does not meet, each with what it says is missing, checked
#: before ``RUNS`` makes those needs.
MISSING = (
    Form("send_batch", missing="Server URL"),
    Form("load_batch", missing="Send a batch first (send_batch)"),
    Form("check_incoming_drift", missing="No samples tagged 'incoming:…' yet"),
    Form("apply_detector", missing="No completed training run: give weights"),
    Form("autolabel", missing="This model's weights are not on this machine"),
    Form("review_autolabels", missing="No autolabel run wrote 'autolabels'"),
)

#: In loop order: each finds what the previous ones made on the module's dataset.
RUNS = (
    Form("compute_embeddings", result="Scene embeddings written"),
    Form("categorize_scenes", result="Scenes categorized"),
    Form("compute_zcore", result="Samples written", checks={"Overwrite": True}),
    Form("compute_visualization", result="Points", checks={"Overwrite": True}),
    Form("plan_batch", result="Picks"),
    Form("send_batch", result="Batch scenes", setup=label_studio_server),
    Form("load_batch", result="Labels"),
    Form("simulate_annotation", result="Labels written", on_latest_batch=True),
    Form("autolabel", result="Images labeled now", setup=random_owlv2_checkpoint),
    Form("review_autolabels", result="Samples decided"),
    Form("apply_detector", result="Boxes", setup=random_yolo_weights),
    # The mining split holds the module's predictions (the test split has none, and no
    # training run made them, so there is no round to record there). Before the gate,
    # which quarantines the mining samples (their labels carry attributes off the schema).
    Form("evaluate_model", result="mAP", choices=("mining",)),
    Form("validate_labels", result="Samples with violations"),
    Form("check_sensor_links", result="Samples with link violations"),
    Form("check_golden", result="Batches checked"),
    Form("check_incoming_drift", result="Batch p-value", setup=incoming_batch),
    # After the loop's forms: a re-draw over trained scenes archives the ledger's rounds
    # and draws from the 22 scenes no model trained on (2 % of them is no golden scene).
    Form("create_splits", result="Scenes and samples per split",
         checks={"Overwrite": True, "Reset the ledger": True}, fill={"Golden set": "3"}),
    # Two optimizer steps on 64 px images: the real training path, from the App, in seconds.
    Form("train_detector", result="Training images",
         fill={"Optimizer steps": "2", "Image size": "64"}),
    # Last: its run opens the new dataset in the App (its test opens the loop's again).
    Form("load_demo_dataset", result="Scenes", fill={"Dataset name": DEMO_NAME, "Scenes": "3"}),
)


def test_every_listed_operator_with_a_form_has_its_case_here():
    forms = {f.operator for f in RUNS}
    listed = {op.operator_name for op in OPERATORS if not op.unlisted}
    assert forms == listed


@pytest.mark.parametrize("form", MISSING, ids=str)
def test_a_form_says_what_a_run_needs_before_submit(form, app, browser_loop):
    open_form(app, form, browser_loop["dataset"], form.missing)
    app.page.keyboard.press("Escape")


@pytest.mark.parametrize("form", RUNS, ids=str)
def test_a_form_runs_now_and_is_scheduled_from_the_operator_browser(
    form, app, browser_loop, request
):
    from fiftyone.operators.delegated import DelegatedOperationService

    dataset = browser_loop["dataset"]
    fill = form.setup(dataset, request) if form.setup else {}
    preselected = "Schedule" if schedules_by_default(form.operator, dataset) else "Execute"
    open_form(app, form, dataset, fill=fill)
    assert preselected in app.execute_label(), "the App preselects the operator's default mode"
    app.execute()
    shown = wait_for_result(app, form.result)
    assert not [e for e in RESULT_ERRORS if e in shown], shown[:3000]
    app.click_button("Close")
    if form.operator == "load_demo_dataset":  # the run opened the new dataset in the App
        assert fo.dataset_exists(DEMO_NAME)
        app.session.dataset = dataset

    service = DelegatedOperationService()
    before = {op.id for op in service.list_operations(dataset_name=dataset.name)}
    open_form(app, form, dataset, fill=fill)
    app.schedule()
    (queued,) = poll(lambda: [op for op in service.list_operations(dataset_name=dataset.name)
                              if op.id not in before])
    try:
        assert (queued.operator, queued.run_state) == (uri(form.operator), "queued")
        params, checked = queued.context.request_params["params"], form.checked_params(dataset)
        assert {name: params.get(name) for name in checked} == checked
    finally:
        service.delete_operation(queued.id)
        if form.operator == "load_demo_dataset" and fo.dataset_exists(DEMO_NAME):
            fo.load_dataset(DEMO_NAME).delete()


def test_a_job_scheduled_from_a_form_is_run_by_a_worker_and_the_panel_shows_it_completed(
    app, browser_loop
):
    from fiftyone.operators.delegated import DelegatedOperationService

    dataset, service = browser_loop["dataset"], DelegatedOperationService()
    before = {op.id for op in service.list_operations(dataset_name=dataset.name)}
    open_form(app, Form("check_golden"), dataset)
    app.schedule()
    (queued,) = poll(lambda: [op for op in service.list_operations(dataset_name=dataset.name)
                              if op.id not in before])
    app.show_panel("annotation_loop", PANEL_LABEL, "Jobs", "check_golden · queued")
    with delegated_worker() as (worker, log_path):
        done = wait_for_delegated(queued.id, log_path=log_path)
        assert done.run_state == "completed", done.result and done.result.error
        # The panel polls the queue while a job is active: no click on Refresh.
        app.wait_for_text("check_golden · completed at")
    assert "check_golden · queued" not in app.text()


def test_a_running_job_shows_its_progress_and_label_in_the_panel(app, browser_loop):
    """A demo build of enough scenes to take several seconds on a worker reports its
    progress (fraction and label) while it runs; the panel shows them before it ends."""
    dataset = browser_loop["dataset"]
    name = unique_name("browser-progress")
    op_id = off_loop(queue_operator, "load_demo_dataset",
                     {"name": name, "num_scenes": 200, "seed": 3}, dataset=dataset)
    try:
        app.show_panel("annotation_loop", PANEL_LABEL, "Jobs", "load_demo_dataset · queued")
        with delegated_worker() as (worker, log_path):
            running = re.compile(r"load_demo_dataset · running · (\d+)% · (\S.*?) \(queued")
            line = poll(lambda: running.search(app.text()), timeout=180)
            done = wait_for_delegated(ObjectId(op_id), log_path=log_path)
        assert done.run_state == "completed", done.result and done.result.error
        assert 0 <= int(line.group(1)) < 100 and line.group(2)
    finally:
        from fiftyone.operators.delegated import DelegatedOperationService

        DelegatedOperationService().delete_operation(ObjectId(op_id))
        if fo.dataset_exists(name):
            fo.load_dataset(name).delete()


# --- helpers --------------------------------------------------------------------------------


def open_form(app, form: Form, dataset, *needles: str, fill: dict | None = None) -> None:
    """Open the form from the operator browser on the view a user would open it on, once it
    shows its first fields (and ``needles``), and fill it in as ``form`` says, then with
    ``fill``."""
    app.page.keyboard.press("Escape")  # a form or dialog left open by a failed test
    fill = {**form.fill, **(fill or {})}
    if form.on_latest_batch:  # as the panel's "Annotate this batch" opens it
        batch = st.batch_composition(dataset)["batch"]
        app.session.view = st.batch_view(dataset, batch)
        fill["Batch"] = batch
    elif app.session.view is not None:
        app.session.view = None
    labels = [p["view"]["label"] for p in form_properties(form.operator, dataset).values()
              if p.get("type", {}).get("name") != "Void" and (p.get("view") or {}).get("label")]
    app.open_operator(LABELS[form.operator], *labels[:2], *needles)
    for value in form.choices:
        app.choose(value)
    for label, checked in form.checks.items():
        app.set_checked(label, checked)
    for label, value in fill.items():
        app.fill(label, value)


def wait_for_result(app, label: str, timeout: float = 120.0) -> str:
    """The result dialog's text from ``label`` on, once it shows; fails with the run's
    error when the dialog shows one instead."""
    deadline = time.monotonic() + timeout
    while True:
        text = app.text()
        if label in text and "Close" in text:
            return text[text.index(label):]
        if FAILED_RUN in text:
            app.page.get_by_text(FAILED_RUN).first.click()  # unfolds the traceback
            time.sleep(0.5)
            error = app.text()
            raise AssertionError(f"the run failed:\n{error[error.index(FAILED_RUN):][-3000:]}")
        assert time.monotonic() < deadline, f"no result dialog with {label!r}:\n{text[-3000:]}"
        time.sleep(0.5)


def poll(read, timeout: float = 30.0):
    """``read()`` once it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
