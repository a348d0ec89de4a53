"""Test session set-up: a private MongoDB, an isolated FiftyOne config, the bundle importable.

FiftyOne reads its configuration when it is first imported, so everything here happens at
conftest import time, before any test module imports fiftyone.

FiftyOne's embedded database service attaches to any running FiftyOne ``mongod`` on the
machine, whatever its data directory, so ``FIFTYONE_DATABASE_DIR`` alone does not isolate a
test run from a main job running beside it. The suite therefore starts its own ``mongod`` (the
binary FiftyOne ships) on a free loopback port and points ``FIFTYONE_DATABASE_URI`` at it;
delegated workers started by tests inherit the same URI. A user who sets
``FIFTYONE_DATABASE_URI`` keeps their server; the unique database name still isolates the run.
"""

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="annoloop-tests-"))
# `import annoloop` resolves to this checkout, whatever the checkout's directory is called.
_PKG_DIR = _SESSION_DIR / "pkg"
_PKG_DIR.mkdir()
(_PKG_DIR / "annoloop").symlink_to(REPO_ROOT, target_is_directory=True)
sys.path.insert(0, str(_PKG_DIR))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_private_mongod() -> subprocess.Popen:
    # Located by path: importing fiftyone here would freeze its config too early.
    spec = importlib.util.find_spec("fiftyone")
    mongod = Path(spec.submodule_search_locations[0]) / "db" / "bin" / "mongod"
    if not mongod.is_file():
        raise RuntimeError(
            f"FiftyOne's mongod is missing ({mongod}); run the tests with `bash scripts/test.sh`, "
            "which installs it, or set FIFTYONE_DATABASE_URI"
        )
    dbpath = _SESSION_DIR / "mongo"
    dbpath.mkdir()
    port = _free_port()
    proc = subprocess.Popen(
        [str(mongod), "--dbpath", str(dbpath), "--port", str(port), "--bind_ip", "127.0.0.1",
         "--nounixsocket", "--logpath", str(_SESSION_DIR / "mongod.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mongod exited; see {_SESSION_DIR / 'mongod.log'}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("mongod did not start within 60 s")
    os.environ["FIFTYONE_DATABASE_URI"] = f"mongodb://127.0.0.1:{port}"
    return proc


_MONGOD = None if os.environ.get("FIFTYONE_DATABASE_URI") else _start_private_mongod()

os.environ["FIFTYONE_DATABASE_NAME"] = f"annoloop-test-{uuid.uuid4().hex[:8]}"
os.environ["FIFTYONE_DATABASE_ADMIN"] = "true"  # a fresh database may be initialised
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["FIFTYONE_SHOW_PROGRESS_BARS"] = "false"
os.environ["FIFTYONE_PLUGINS_DIR"] = str(_PKG_DIR)
os.environ["FIFTYONE_DEFAULT_DATASET_DIR"] = str(_SESSION_DIR / "datasets")
os.environ["FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS"] = "true"
os.environ.setdefault("YOLO_OFFLINE", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["ANNOLOOP_TEST_SESSION_DIR"] = str(_SESSION_DIR)
os.environ["ANNOLOOP_VECTOR_CACHE"] = str(_SESSION_DIR / "vectors")
# FiftyOne, Ultralytics and Hugging Face keep config and caches under HOME.
os.environ["HOME"] = str(_SESSION_DIR / "home")


def pytest_unconfigure(config):
    if _MONGOD is not None and _MONGOD.poll() is None:
        _MONGOD.terminate()
        try:
            _MONGOD.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _MONGOD.kill()
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


import pytest  # noqa: E402  (after the environment above is fixed)


@pytest.fixture(scope="session")
def label_studio():
    """A real Label Studio server on loopback for this test session (tests/labelstudio_server.py).

    ``ANNOLOOP_TEST_LABEL_STUDIO_URL`` and ``..._API_KEY`` point the tests at a server that is
    already running instead (a team's own, or one kept up between runs while developing).
    """
    from labelstudio_server import external_label_studio, start_label_studio

    server = external_label_studio() or start_label_studio(_SESSION_DIR / "label-studio")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser_loop():
    """The loop dataset of :mod:`test_panels` (built by real annoloop calls, camera images at
    the demo's size) for a browser test module: one per module, deleted after it."""
    from fo_helpers import unique_name
    from test_panels import build_loop_dataset

    built = build_loop_dataset(unique_name("browser"), image_size=(384, 128))
    yield built
    built["dataset"].delete()


@pytest.fixture(scope="module")
def app(browser_loop, tmp_path_factory):
    """One App server, session and headless Chromium page over ``browser_loop`` for a browser
    test module (:mod:`app_browser`); skips where ``chromium`` is missing and cannot be
    installed (not root). Fails the module when the App server logged a traceback."""
    from app_browser import app_in_browser, chromium_executable

    executable = chromium_executable()
    if executable is None:
        pytest.skip("Debian's chromium is missing and installing it needs root: "
                    "run `apt-get install -y chromium`")
    log_dir = tmp_path_factory.mktemp("app")
    with app_in_browser(browser_loop["dataset"], executable, log_dir) as app:
        yield app
        # Read before the server stops: its shutdown logs cancelled connections.
        log = (log_dir / "app-server.log").read_text()
    assert "Traceback" not in log, f"the App server logged an error:\n{log[-4000:]}"
