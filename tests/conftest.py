"""Test session set-up: an isolated FiftyOne database and the bundle on the import path.

FiftyOne reads its configuration when it is first imported, so everything here happens at
conftest import time, before any test module imports fiftyone.
"""

import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="annoloop-tests-"))
# `import annoloop` resolves to this checkout, whatever the checkout's directory is called.
_PKG_DIR = _SESSION_DIR / "pkg"
_PKG_DIR.mkdir()
(_PKG_DIR / "annoloop").symlink_to(REPO_ROOT, target_is_directory=True)
sys.path.insert(0, str(_PKG_DIR))

os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(_SESSION_DIR / "db"))
os.environ["FIFTYONE_DATABASE_NAME"] = f"annoloop-test-{uuid.uuid4().hex[:8]}"
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["FIFTYONE_SHOW_PROGRESS_BARS"] = "false"
os.environ["FIFTYONE_PLUGINS_DIR"] = str(_PKG_DIR)
os.environ["FIFTYONE_DEFAULT_DATASET_DIR"] = str(_SESSION_DIR / "datasets")
os.environ.setdefault("YOLO_OFFLINE", "true")
os.environ["ANNOLOOP_TEST_SESSION_DIR"] = str(_SESSION_DIR)
# FiftyOne, Ultralytics and Hugging Face keep config and caches under HOME.
os.environ["HOME"] = str(_SESSION_DIR / "home")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_DIR / "datasets", ignore_errors=True)
