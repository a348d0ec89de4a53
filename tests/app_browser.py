"""The FiftyOne App in headless Chromium, driven by Playwright: shared by the browser tests
and ``scripts/screenshots.py``.

Playwright drives Debian's ``chromium`` through ``executable_path`` (no browser download,
so it works offline). Every selector that depends on how the App or an annoloop panel draws
itself lives here, so a change of layout is fixed in one place.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect, sync_playwright

from fo_helpers import stop_process_group

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]
# The App's "Explore Enterprise" pop-up stays closed once this key is set, as its own
# "Dismiss" button does.
NO_POPUP = "localStorage.setItem('fiftyone-enterprise-tooltip-seen', 'true')"
APP_ERRORS = ("Uncaught Operator Error", "GraphQL API Error", "Invalid enum value")

# --- selectors (the App's and the panels'; adapt here when they change) ----------------------
OPERATOR_BROWSER_KEY = "`"
OPERATOR_BROWSER_SEARCH = "input[placeholder='Search operations by name...']"
EXECUTE_BUTTON = "[aria-label='split button'] button:not([aria-haspopup])"
EXECUTION_OPTIONS_TOGGLE = "[aria-label='split button'] button[aria-haspopup]"
# Pixels of content hidden below the fold: the largest overflow of the App's scrolling boxes
# (a panel's content scrolls in one of them).
HIDDEN_BY_SCROLLING = """
Math.max(0, ...[...document.querySelectorAll('[class*="_scrollable_"]')]
  .map(e => e.scrollHeight - e.clientHeight))
"""

# The page pixel of the point with a given id, from a Plotly graph's own axes: the graph div
# carries its data and laid-out axes (``d2p`` maps data to pixels inside the plot area);
# the plot is scrolled into the viewport first, where a mouse can reach it.
PLOT_POINT_PIXEL = """
(pointId) => {
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const layout = gd._fullLayout;
    if (!layout || !gd.data) continue;
    for (const trace of gd.data) {
      const i = (trace.ids || []).indexOf(pointId);
      if (i < 0) continue;
      gd.scrollIntoView({block: 'center'});
      const box = gd.getBoundingClientRect();
      return {x: box.left + layout._size.l + layout.xaxis.d2p(trace.x[i]),
              y: box.top + layout._size.t + layout.yaxis.d2p(trace.y[i])};
    }
  }
  return null;
}
"""


def chromium_executable() -> str | None:
    """Debian's chromium, installed with apt-get when missing and running as root; None when
    it is missing and cannot be installed."""
    found = shutil.which("chromium")
    if found or os.geteuid() != 0:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "chromium", "fonts-liberation"]
    for command in (["apt-get", "update"], install):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def app_server(log_path: Path) -> Iterator[int]:
    """The FiftyOne App's server on a free loopback port, with this process's environment
    (database, plugins, orchestrator settings); yields the port, stops it by its pid."""
    import requests

    port = free_port()
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "fiftyone.server.main", "--port", str(port),
             "--address", "127.0.0.1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
            start_new_session=True,  # its own process group: stopping it touches nothing else
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the App server exited:\n{log_path.read_text()[-3000:]}")
            try:
                requests.get(f"http://127.0.0.1:{port}/fiftyone", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise RuntimeError("the App server did not answer within 90 s")
                time.sleep(0.3)
        yield port
    finally:
        stop_process_group(server)


class App:
    """One browser page on the App of a FiftyOne session."""

    def __init__(self, page, session, log_dir: Path):
        self.page = page
        self.session = session
        self.log_dir = log_dir  # where a failed wait leaves a screenshot of the page

    # --- reading ------------------------------------------------------------------------
    def text(self) -> str:
        return self.page.evaluate("document.body ? document.body.innerText : ''")

    def wait_for_text(self, *needles: str, timeout: float = 60.0) -> str:
        """The page's text once it holds every needle; fails early on an App error."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if all(n in text for n in needles):
                return text
            errors = [e for e in APP_ERRORS if e in text]
            if errors or time.monotonic() > deadline:
                shot = self.log_dir / f"failed-wait-{time.strftime('%H%M%S')}.png"
                self.page.screenshot(path=str(shot), full_page=True)
                raise AssertionError(
                    f"{needles} not on the page ({errors or 'timed out'}; see {shot}); it "
                    f"shows:\n{text[:3000]}"
                )
            time.sleep(0.5)

    def table_cells(self) -> list[str]:
        return self.page.eval_on_selector_all("td", "tds => tds.map(t => t.innerText.trim())")

    def table_rows(self) -> list[list[str]]:
        """The text of each table row's cells, every table of the page in order."""
        return self.page.eval_on_selector_all(
            "tr:has(td)", "trs => trs.map(tr => [...tr.cells].map(c => c.innerText.trim()))"
        )

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page, the viewport grown for the time of it so that the
        space's content shows unscrolled: the App scrolls inside its own boxes, which a
        full-page screenshot does not unroll."""
        viewport = self.page.viewport_size
        hidden = self.page.evaluate(HIDDEN_BY_SCROLLING)
        self.page.set_viewport_size({**viewport, "height": viewport["height"] + hidden})
        time.sleep(2)  # let the plots redraw and finish their transitions
        self.page.screenshot(path=str(path), full_page=True)
        self.page.set_viewport_size(viewport)
        return path

    # --- panels -------------------------------------------------------------------------
    def show_panel(self, panel_type: str, *needles: str) -> str:
        """Make ``panel_type`` the App's only space; returns the page text once it shows
        ``needles``, which must be text only the loaded panel shows: the previous panel
        stays on the page until the App swaps them, and an event sent before the new
        panel's ``on_load`` ran is undone by it."""
        import fiftyone as fo

        panel = fo.Panel(type=panel_type)
        self.session.spaces = fo.Space(children=[panel], active_child=panel.component_id)
        return self.wait_for_text(*needles)

    def click_cell(self, text: str) -> None:
        """Click the first table cell whose text is ``text`` (a ledger row, a pick)."""
        self.page.locator("td", has_text=text).first.click()

    def click_plot_point(self, point_id: str, timeout: float = 30.0) -> None:
        """Click the plotted point whose trace ``ids`` hold ``point_id``, in the first plot
        that has it. Plotly draws points on a canvas (``scattergl``) or under its drag layer,
        with no element to click, so the point's pixel comes from the plot's own axes and a
        real mouse moves there: Plotly picks the point under the cursor, as for a user."""
        at = _poll(lambda: self.page.evaluate(PLOT_POINT_PIXEL, point_id), lambda p: p is not None,
                   f"no plot shows the point {point_id}", timeout)
        self.page.mouse.move(at["x"] - 3, at["y"] - 3)
        self.page.mouse.move(at["x"], at["y"])
        self.page.mouse.click(at["x"], at["y"])

    def click_button(self, label: str) -> None:
        self.page.get_by_role("button", name=label).first.click()

    def wait_for_view(self, predicate, timeout: float = 30.0):
        """The session's view once ``predicate(view)`` holds (the App told the session)."""
        return _poll(lambda: self.session.view, lambda v: v is not None and predicate(v),
                     "the App's view did not change as expected", timeout)

    def wait_for_cells(self, predicate, timeout: float = 60.0) -> list[str]:
        """The page's table cells once ``predicate(cells)`` holds: a panel's tables fill in
        after its text, since the App sends panel data and panel state separately."""
        return _poll(self.table_cells, predicate, "the tables did not fill in as expected", timeout)

    # --- operator forms -----------------------------------------------------------------
    def open_operator(self, label: str, *needles: str) -> None:
        """Open an operator's form from the operator browser (the backtick key)."""
        search = self.page.locator(OPERATOR_BROWSER_SEARCH).first
        # The key does nothing until the App has loaded its dataset: press it again.
        for attempt in range(12):
            self.page.locator("body").click(position={"x": 5, "y": 5})
            self.page.keyboard.press(OPERATOR_BROWSER_KEY)
            try:
                search.wait_for(timeout=5_000)
                break
            except PlaywrightTimeoutError:
                if attempt == 11:
                    raise
        search.fill(label)
        self.page.get_by_text(label, exact=True).first.click()
        self.wait_for_text(*needles)

    def form_input(self, label: str):
        """The input of the open form's field labelled ``label``: the App draws a label as
        a ``<p>`` beside its input (no ``<label for>``), so the input is the one in the
        label's nearest enclosing box that holds an input."""
        literal = f"'{label}'" if "'" not in label else f'"{label}"'
        return self.page.locator(
            f"xpath=//p[normalize-space()={literal}]/ancestor::*[.//input][1]//input"
        ).first

    def fill(self, label: str, value: str) -> None:
        """Type ``value`` into the form field labelled ``label``."""
        field = self.form_input(label)
        field.fill(value)
        field.press("Tab")  # the App resolves the form again on blur

    def set_checked(self, label: str, checked: bool) -> None:
        """Tick or clear the form's checkbox labelled ``label``."""
        box = self.form_input(label)
        # A click, not set_checked: the App re-resolves the form on each change and redraws
        # the box, which set_checked's own check of the new state can miss.
        if box.is_checked() != checked:
            box.click()
        expect(self.form_input(label)).to_be_checked(checked=checked, timeout=15_000)

    def choose(self, value: str) -> None:
        """Pick the radio choice whose value is ``value`` (a view target, a split)."""
        self.page.locator(f"input[type=radio][value='{value}']").first.check()

    def execute_label(self) -> str:
        """The text of the open form's execute button ("Execute" or "Schedule")."""
        button = self.page.locator(EXECUTE_BUTTON).last
        button.wait_for(timeout=15_000)
        return button.inner_text()

    def execute(self) -> None:
        """Submit the open form with the native button in its "Execute" mode."""
        self._submit("Execute")

    def schedule(self) -> None:
        """Switch the native execute button to "Schedule" (its drop-down) and submit."""
        self._submit("Schedule")

    def _submit(self, mode: str) -> None:
        button = self.page.locator(EXECUTE_BUTTON).last
        button.wait_for(timeout=15_000)
        if mode not in button.inner_text():
            self.page.locator(EXECUTION_OPTIONS_TOGGLE).last.click()
            self.page.get_by_role("menuitem").filter(has_text=mode).first.click()
            button = self.page.locator(EXECUTE_BUTTON).last
        assert mode in button.inner_text(), f"the form offers no {mode!r}: {button.inner_text()}"
        # Right after the form opens the button can still be disabled while the App resolves
        # the form (a server round trip); clicking then failed now and then: wait instead.
        try:
            expect(button).to_be_enabled(timeout=30_000)
        except AssertionError as err:
            page = self.text()[:2000]
            raise AssertionError(f"the {mode!r} button stayed disabled:\n{page}") from err
        button.click()


def _poll(read, predicate, failure: str, timeout: float):
    """``read()`` once ``predicate`` holds of it; an AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{failure}: {value}")
        time.sleep(0.5)


@contextmanager
def browser_page(executable: str, width: int = 1600, height: int = 2000) -> Iterator[object]:
    """A Playwright page in headless Chromium with the App's pop-up dismissed."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            context.add_init_script(NO_POPUP)
            yield context.new_page()
        finally:
            browser.close()


@contextmanager
def app_in_browser(dataset, executable: str, log_dir: Path, **page_size) -> Iterator[App]:
    """The App's server over ``dataset``, a session connected to it and a page on it."""
    import fiftyone as fo

    with app_server(log_dir / "app-server.log") as port:
        session = fo.launch_app(
            dataset, remote=True, address="127.0.0.1", port=port, auto=False
        )
        try:
            with browser_page(executable, **page_size) as page:
                page.goto(f"http://127.0.0.1:{port}/")
                yield App(page, session, log_dir)
        finally:
            session.close()


def off_loop(function, *args, **kwargs):
    """``function(*args, **kwargs)`` on a thread of its own, as a worker or a script would
    call it; its return value.

    Playwright's sync API keeps an event loop running on this thread, and FiftyOne's
    executor, seeing one, hands back a future instead of running the operation.
    """
    outcome = {}

    def call():
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as err:  # re-raised on the test's thread
            outcome["error"] = err

    worker = threading.Thread(target=call)
    worker.start()
    worker.join(timeout=300)
    assert not worker.is_alive(), f"{function.__name__} did not return within 300 s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def run_queue(dataset) -> None:
    """Run the dataset's queued operations once, as a worker does."""
    from fiftyone.operators.delegated import DelegatedOperationService

    off_loop(DelegatedOperationService().execute_queued_operations, dataset_name=dataset.name)
