"""The delegated-operations worker behind ``scripts/worker.sh``: FiftyOne's monitored loop.

It does what ``fiftyone delegated launch --monitor`` does (take the oldest queued operation,
run it in a child process, ping its record every ``--monitor-interval`` seconds) and one
thing that command leaves out, checked on FiftyOne 1.22: when the child dies without
finishing (SIGKILL, out of memory, segfault) the monitor only logs "Operation ended without
terminal state" and the operation stays ``running`` forever. Here it is marked ``failed``
with that message, so the App's runs list shows the cause and its "Re-run" works at once.

A worker killed outright (the machine died) cannot mark anything: then
``fiftyone delegated fail <id>`` does it (see the README's "Recovering from a killed worker").
"""

from __future__ import annotations

import argparse
import time

from fiftyone.factory import DelegatedOperationPagingParams
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionResult, ExecutionRunState


def _died_message(op_id, error: str) -> str:
    return (
        f"{error}: the process running this operation died before it finished (killed, or "
        f"out of memory). Re-run it (the App's runs list, or `fiftyone delegated rerun {op_id}`); "
        "annoloop's long operations resume or replace what a killed run left"
    )


def serve(monitor_interval: int) -> None:
    """Run queued operations one at a time, forever."""
    service = DelegatedOperationService()
    print("Delegated operation service running (monitored)", flush=True)
    while True:
        for op in service.list_operations(
            run_state=ExecutionRunState.QUEUED, paging=DelegatedOperationPagingParams(limit=1)
        ):
            result = service.execute_operation(
                op, log=True, monitor=True, check_interval_seconds=monitor_interval
            )
            doc = service.get(op.id)
            if result is not None and result.error and doc.run_state == ExecutionRunState.RUNNING:
                service.set_failed(
                    op.id,
                    result=ExecutionResult(error=_died_message(op.id, result.error)),
                    required_state=ExecutionRunState.RUNNING,
                )
                print(f"Operation {op.id} marked failed: its process died", flush=True)
        time.sleep(0.5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--monitor-interval", type=int, default=10, help="seconds between pings")
    try:
        serve(max(1, parser.parse_args().monitor_interval))
    except KeyboardInterrupt:
        pass
