"""Helpers for tests that drive FiftyOne for real: operators, delegated workers, datasets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

PLUGIN = "@annoloop/annoloop"
REPO_ROOT = Path(__file__).resolve().parents[1]


def uri(operator: str) -> str:
    return f"{PLUGIN}/{operator}"


def unique_name(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run_operator(operator: str, params: dict, dataset=None, view=None, **kwargs):
    """Execute an annoloop operator through FiftyOne's own executor.

    Failures raise ``fiftyone.operators.executor.ExecutionError`` carrying the message.
    """
    import fiftyone.operators as foo

    ctx = {"params": params}
    if dataset is not None:
        ctx["dataset"] = dataset
    if view is not None:
        ctx["view"] = view
    return foo.execute_operator(uri(operator), ctx=ctx, **kwargs)


def queue_operator(operator: str, params: dict, dataset=None) -> str:
    """Queue an annoloop operator as a delegated operation, as the App's "Schedule" does;
    return the operation's id."""
    queued = run_operator(operator, params, dataset=dataset, request_delegation=True)
    return queued.result["id"] if isinstance(queued.result, dict) else queued.result.id


def run_on_worker(op_id):
    """Start a real worker, let it run the queue until ``op_id`` ends; return its document."""
    with delegated_worker() as (worker, log_path):
        doc = wait_for_delegated(op_id, log_path=log_path)
        assert worker.poll() is None, "the worker exited instead of serving the queue"
    return doc


@contextmanager
def delegated_worker():
    """A real, monitored ``fiftyone delegated launch`` worker (``scripts/worker.sh``, the
    README's command), stopped by its process group on exit."""
    log_path = Path(os.environ["ANNOLOOP_TEST_SESSION_DIR"]) / f"worker-{uuid.uuid4().hex[:6]}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["bash", str(REPO_ROOT / "scripts" / "worker.sh")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
            start_new_session=True,  # our own process group: stopping it never touches mongod
        )
    try:
        yield proc, log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def wait_for_delegated(op_id, timeout: float = 240.0, log_path: Path | None = None):
    """Poll the delegated-operations store until the operation ends; return its document."""
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionRunState

    service = DelegatedOperationService()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = service.get(op_id)
        if doc.run_state in (ExecutionRunState.COMPLETED, ExecutionRunState.FAILED):
            return doc
        time.sleep(1.0)
    tail = log_path.read_text()[-3000:] if log_path and log_path.exists() else ""
    raise TimeoutError(f"delegated operation {op_id} did not finish in {timeout:.0f}s\n{tail}")


def python_process(code: str, ready: str, **popen) -> subprocess.Popen:
    """Start ``python -c code`` with this test session's imports and database, and return once
    it prints the line ``ready`` (FiftyOne may print warnings first)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, **popen,
    )
    for line in proc.stdout:
        if line.strip() == ready:
            return proc
    raise AssertionError(f"the process exited with {proc.wait()} before printing {ready!r}")
