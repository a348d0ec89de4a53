"""annoloop's delegated jobs of a dataset, as the Annotation loop panel follows them.

FiftyOne's delegated-operation queue (:class:`DelegatedOperationService`) holds every
scheduled run with its state, the progress fraction and label the operator reports
(``ctx.set_progress``, stored as ``status.progress`` / ``status.label``) and, for a failed
run, the worker's traceback. :func:`read_jobs` turns the queue into plain dicts: the active
jobs (scheduled, queued, running) and the failed ones that still matter, that is, whose
operator has not been scheduled or run again since.

:func:`finished_since` says which previously active jobs are no longer active: the panel
reloads its data when one of them ends, and :func:`rerun_job` queues a failed one again.
"""

from __future__ import annotations

import fiftyone as fo

from ..core.views import root_dataset
from .steps import OPERATOR_URI_PREFIX

__all__ = [
    "ACTIVE_STATES",
    "active_line",
    "error_message",
    "failed_title",
    "finished_since",
    "read_jobs",
    "rerun_job",
]

#: Run states of a job that has not ended yet.
ACTIVE_STATES = ("scheduled", "queued", "running")
#: The failed jobs the panel lists, most recent first.
MAX_FAILED_SHOWN = 5


def error_message(traceback_text: str | None) -> str:
    """The message of a worker's traceback: its last line without the exception's class
    (``"ValueError: 'zcore' already holds..."`` → ``"'zcore' already holds..."``)."""
    lines = [line.strip() for line in (traceback_text or "").splitlines() if line.strip()]
    if not lines:
        return "the job failed without a message (see the worker's log)"
    last = lines[-1]
    head, sep, rest = last.partition(": ")
    # Only strip a class name ("ValueError", "fiftyone.core.X"), never part of the message.
    return rest if sep and head.replace(".", "").replace("_", "").isalnum() else last


def _job(doc) -> dict:
    status = doc.status
    progress = getattr(status, "progress", None) if status is not None else None
    queued = doc.queued_at or doc.scheduled_at
    operator = doc.operator[len(OPERATOR_URI_PREFIX) :]
    job = {
        "id": str(doc.id),
        "operator": operator,
        "label": doc.label or operator,
        "state": doc.run_state,
        "progress": None if progress is None else float(progress),
        "progress_label": getattr(status, "label", None) if status is not None else None,
        "queued_at": queued.isoformat() if queued else None,
        "ended_at": None,
        "error": None,
    }
    if doc.run_state == "failed":
        job["ended_at"] = doc.failed_at.isoformat() if doc.failed_at else None
        job["error"] = error_message(doc.result.error if doc.result else None)
    return job


def read_jobs(dataset: fo.Dataset) -> dict:
    """The dataset's annoloop jobs on FiftyOne's delegated-operation queue.

    Returns
    -------
    dict
        ``active``: scheduled, queued and running jobs, oldest first; ``failed``: failed
        jobs whose operator was not queued or run since, most recent first (at most
        :data:`MAX_FAILED_SHOWN`). Each job: ``id``, ``operator`` (without the plugin
        prefix), ``label``, ``state``, ``progress`` (fraction in [0, 1] or None),
        ``progress_label``, ``queued_at``, ``ended_at`` and ``error`` (ISO timestamps; the
        error's message, failed jobs only).
    """
    from fiftyone.operators.delegated import DelegatedOperationService

    dataset = root_dataset(dataset)
    docs = [
        d
        for d in DelegatedOperationService().list_operations(dataset_name=dataset.name)
        if d.operator.startswith(OPERATOR_URI_PREFIX)
    ]
    jobs = sorted((_job(d) for d in docs), key=lambda j: j["queued_at"] or "")
    active = [j for j in jobs if j["state"] in ACTIVE_STATES]
    # A failed job stops mattering once its operator was scheduled or run again after it.
    last_queued = {}
    for job in jobs:
        if job["state"] != "failed":
            last_queued[job["operator"]] = job["queued_at"] or ""
    failed = [
        j
        for j in reversed(jobs)
        if j["state"] == "failed" and last_queued.get(j["operator"], "") <= (j["queued_at"] or "")
    ]
    return {"active": active, "failed": failed[:MAX_FAILED_SHOWN]}


def _when(iso: str | None) -> str:
    return iso[:19].replace("T", " ") + " UTC" if iso else "an unknown time"


def active_line(job: dict) -> str:
    """A scheduled, queued or running job in a line: its state, progress and label
    (markdown)."""
    text = f"`{job['operator']}` · **{job['state']}**"
    if job["progress"] is not None:
        text += f" · {job['progress']:.0%}"
    if job["progress_label"]:
        text += f" · {job['progress_label']}"
    return text + f" (queued {_when(job['queued_at'])})"


def failed_title(job: dict) -> str:
    """The headline of a failed job."""
    return f"{job['operator']} failed at {_when(job['ended_at'])}"


def finished_since(previous_active: list[str], jobs: dict) -> list[str]:
    """Ids of ``previous_active`` jobs that are no longer active (they completed or failed)."""
    still = {j["id"] for j in jobs["active"]}
    return [i for i in previous_active if i not in still]


def rerun_job(job_id: str) -> str:
    """Queue a failed job again with the same parameters; return the new job's id."""
    from bson import ObjectId
    from fiftyone.operators.delegated import DelegatedOperationService

    return str(DelegatedOperationService().rerun_operation(ObjectId(job_id)).id)
