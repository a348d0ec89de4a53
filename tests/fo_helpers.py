"""Helpers for tests that drive FiftyOne for real: operators, delegated workers, datasets."""

from __future__ import annotations

import os
import re
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
            stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group of ``proc`` (started with ``start_new_session=True``, so it
    holds only what we started), SIGKILL it if it is still there after 20 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_until(condition, worker: subprocess.Popen, log_path: Path, timeout: float = 240.0):
    """Poll ``condition()`` until it is true while the worker runs; fail with the worker's log."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, log_path.read_text()[-3000:]
        assert worker.poll() is None, log_path.read_text()[-3000:]
        time.sleep(0.1)


def progress_label(op_id) -> str:
    """The label of the delegated operation's last progress report ("" before the first)."""
    from fiftyone.operators.delegated import DelegatedOperationService

    status = DelegatedOperationService().get(op_id).status
    return (status.label or "") if status else ""


def _operation_processes(worker: subprocess.Popen) -> list:
    """The processes a monitored worker runs its current operation in (and their children)."""
    import psutil

    return [
        p
        for p in psutil.Process(worker.pid).children(recursive=True)
        if "resource_tracker" not in " ".join(p.cmdline())
    ]


def kill_operation(worker: subprocess.Popen) -> None:
    """SIGKILL the process running the worker's operation (as the kernel's OOM killer would);
    the worker itself survives."""
    _kill(_operation_processes(worker))


def kill_worker(worker: subprocess.Popen) -> None:
    """SIGKILL a worker and its operation's processes, as when the worker's machine dies.

    The operation runs in a child process in a session of its own, which would outlive a
    kill of the worker's process group (and finish the operation); it is killed just after
    the worker, so no worker is left to notice.
    """
    processes = _operation_processes(worker)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    _kill(processes)


def _kill(processes: list) -> None:
    import psutil

    assert processes, "the worker is running no operation"
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=30)


def fiftyone_cli(*args: str) -> str:
    """Run ``fiftyone <args>`` (this environment's CLI, this session's database); its stdout."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("fiftyone")), *args],
        capture_output=True, text=True, env=dict(os.environ), check=True, timeout=120,
    )
    return done.stdout


def rerun(op_id):
    """``fiftyone delegated rerun <id>``, as the README says; the new operation's id."""
    from bson import ObjectId

    out = fiftyone_cli("delegated", "rerun", str(op_id))
    return ObjectId(re.search(r"rerun operation with ID '(\w+)'", out).group(1))


def fail_and_rerun(op_id):
    """What the README tells a user whose worker died (its operation is left ``running``):
    ``fiftyone delegated fail <id>``, then ``fiftyone delegated rerun <id>``; the re-run's id."""
    assert "Marking operation" in fiftyone_cli("delegated", "fail", str(op_id))
    return rerun(op_id)


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


def form_properties(operator: str, dataset, params: dict | None = None) -> dict:
    """The JSON of each property of ``operator``'s form for ``params`` on ``dataset``."""
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    op = foo.OperatorRegistry().get_operator(uri(operator))
    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "params": params or {}})
    return op.resolve_input(ctx).to_json()["type"]["properties"]


def schedules_by_default(operator: str, dataset, params: dict | None = None) -> bool:
    """Whether the App's execute button of ``operator`` preselects "Schedule"."""
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    op = foo.OperatorRegistry().get_operator(uri(operator))
    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "params": params or {}})
    return op.resolve_execution_options(ctx).default_choice_to_delegated


def wait_until_dead(alive, timeout: float = 90.0) -> None:
    """Wait until a killed run's leases (liveness, dataset lock) have run out: a re-run
    sooner is refused, as the README says."""
    deadline = time.monotonic() + timeout
    while alive():
        assert time.monotonic() < deadline, "a killed run's lock never expired"
        time.sleep(0.5)
