"""The Annotation loop panel in a real FiftyOne App, driven by headless Chromium.

The test starts the App's server on a free loopback port over the loop dataset of
:mod:`test_panels` (scheduling allowed: the conftest sets
``FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true``), opens it in Debian's ``chromium`` with the
panel as the only space, and checks that the panel, its ledger and its batch are on the
page; then it clicks a ledger row and checks that the App's view became that batch, and
opens the batch's saved view in the App's grid. A
screenshot goes to ``$ANNOLOOP_ARTIFACTS_DIR`` (default ``<repo>/artifacts/``).

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), so no Python package and no
browser download is needed. Where ``chromium`` is missing, the test installs Debian's
package when it runs as root (as CI does), and is skipped otherwise.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

import fiftyone as fo

from annoloop.panels.loop_panel import PANEL_LABEL
from annoloop.panels.widgets import format_map
from fo_helpers import unique_name
from test_panels import ROUNDS, build_loop_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
PANEL = "annotation_loop"
WIDTH, HEIGHT = 1600, 2000
# The App's "Explore Enterprise" pop-up stays closed once this key is set, as its own
# "Dismiss" button does.
NO_POPUP = "localStorage.setItem('fiftyone-enterprise-tooltip-seen', 'true')"

pytestmark = pytest.mark.slow


def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing and running as root."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip(
            "Debian's chromium is not installed and installing it needs root: "
            "run `apt-get install -y chromium` to run this test"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "chromium", "fonts-liberation"]
    for command in (["apt-get", "update"], install):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr[-3000:]}"
    found = shutil.which("chromium")
    assert found, "apt-get installed chromium but it is not on PATH"
    return found


class Chromium:
    """A headless Chromium page, driven over the DevTools protocol on a pipe."""

    def __init__(self, executable: str, profile_dir: str, width: int, height: int, log):
        to_chrome_read, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_write = os.pipe()
        args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile_dir}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        # Chromium reads commands on fd 3 and writes on fd 4: a tiny trampoline moves the
        # pipe ends there, then becomes Chromium.
        trampoline = (
            "import os, sys\n"
            "r, w = int(sys.argv[1]), int(sys.argv[2])\n"
            "os.dup2(r, 3)\n"
            "os.dup2(w, 4)\n"
            "os.execv(sys.argv[3], sys.argv[3:])\n"
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                trampoline,
                str(to_chrome_read),
                str(from_chrome_write),
                executable,
                *args,
            ],
            pass_fds=(to_chrome_read, from_chrome_write),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped by its pid
        )
        os.close(to_chrome_read)
        os.close(from_chrome_write)
        self._buffer = b""
        self._next_id = 0
        self._session = None
        self.width, self.height = width, height

    def send(
        self, method: str, params: dict | None = None, timeout: float = 30.0, page: bool = True
    ) -> dict:
        """Send one command (to the page unless ``page=False``) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if page and self._session:
            message["sessionId"] = self._session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            if select.select([self._from_chrome], [], [], left)[0]:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium exited with code {self.proc.poll()}")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def open(self, url: str, init_script: str) -> None:
        """Attach to the headless page (there is one) and load ``url``."""
        deadline = time.monotonic() + 30
        pages = []
        while not pages:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium opened no page")
            targets = self.send("Target.getTargets", page=False)["targetInfos"]
            pages = [t["targetId"] for t in targets if t["type"] == "page"]
            time.sleep(0.1)
        self._session = self.send(
            "Target.attachToTarget", {"targetId": pages[0], "flatten": True}, page=False
        )["sessionId"]
        self.send("Page.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.send("Page.addScriptToEvaluateOnNewDocument", {"source": init_script})
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str):
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''")

    def wait_for_text(self, *needles: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if all(n in text for n in needles):
                return text
            if "Uncaught Operator Error" in text or time.monotonic() > deadline:
                raise AssertionError(f"{needles} not on the page; it shows:\n{text[:3000]}")
            time.sleep(0.5)

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close", page=False, timeout=10)
            self.proc.wait(timeout=10)
        except (RuntimeError, TimeoutError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        finally:
            os.close(self._to_chrome)
            os.close(self._from_chrome)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def artifacts_dir() -> Path:
    path = Path(os.environ.get("ANNOLOOP_ARTIFACTS_DIR") or REPO_ROOT / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def app_server(tmp_path):
    """The FiftyOne App's server on a free loopback port: ``(port, log path)``."""
    port = free_port()
    log_path = tmp_path / "app-server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fiftyone.server.main",
                "--port",
                str(port),
                "--address",
                "127.0.0.1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),  # the tests' database, plugins and orchestrator settings
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"the App server exited:\n{log_path.read_text()[-3000:]}"
            try:
                requests.get(f"http://127.0.0.1:{port}/fiftyone", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                assert time.monotonic() < deadline, "the App server did not answer within 60 s"
                time.sleep(0.3)
        yield port, log_path
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


# FiftyOne's session, connected to a server it did not start, complains when collected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_annotation_loop_panel_shows_the_ledger_and_opens_a_batch_in_the_app(
    app_server, tmp_path
):
    executable = chromium()
    port, server_log = app_server
    built = build_loop_dataset(unique_name("browser"), image_size=(384, 128))
    dataset = built["dataset"]
    panel = fo.Panel(type=PANEL)
    spaces = fo.Space(children=[panel], active_child=panel.component_id)
    session = fo.launch_app(
        dataset, spaces=spaces, remote=True, address="127.0.0.1", port=port, auto=False
    )
    browser_log = open(tmp_path / "chromium.log", "w")
    browser = Chromium(executable, str(tmp_path / "profile"), WIDTH, HEIGHT, browser_log)
    try:
        browser.open(f"http://127.0.0.1:{port}/", NO_POPUP)
        round_1 = format_map(ROUNDS[1][2])
        browser.wait_for_text(PANEL_LABEL, "Ledger of rounds", round_1, "Golden set", "Quarantine")
        cells = browser.evaluate(
            "[...document.querySelectorAll('td')].map(td => td.innerText.trim())"
        )
        assert round_1 in cells and "batch:v2" in cells
        time.sleep(2)  # let the plots finish drawing
        browser.screenshot(artifacts_dir() / "annotation_loop_panel.png")

        # Clicking round 1's row makes its batch the App's view; the session follows it.
        clicked = browser.evaluate(
            "(() => { const td = [...document.querySelectorAll('td')]"
            ".find(t => t.innerText.trim() === 'batch:v2'); if (td) td.click(); return !!td; })()"
        )
        assert clicked
        deadline = time.monotonic() + 30
        while session.view is None or len(session.view) != len(built["second"]["ids"]):
            assert time.monotonic() < deadline, "the App's view did not change to batch:v2"
            time.sleep(0.5)
        assert set(session.view.distinct("group.id")) == set(built["second"]["ids"])

        # The batch's saved view pages in the App's grid (a select_groups view fails there).
        grid = fo.Panel(type="Samples", pinned=True)
        session.spaces = fo.Space(children=[grid], active_child=grid.component_id)
        session.view = dataset.load_saved_view("batch_v2")
        browser.wait_for_text("batch_v2")  # the saved-view selector: the view has arrived
        time.sleep(5)  # let the grid page it, or fail to
        text = browser.wait_for_text(f"{len(built['second']['ids'])} groups with slice")
        assert "GraphQL API Error" not in text
    finally:
        browser.close()
        browser_log.close()
        session.close()
        dataset.delete()
    log = server_log.read_text()
    assert "Traceback" not in log, f"the App server logged an error:\n{log[-4000:]}"
