"""annoloop's delegated jobs of a dataset, as the Annotation loop panel follows them.

FiftyOne's delegated-operation queue (:class:`DelegatedOperationService`) holds every
scheduled run with its state, the progress fraction and label the operator reports
(``ctx.set_progress``, stored as ``status.progress`` / ``status.label``) and, for a failed
run, the worker's traceback. :func:`read_jobs` turns the queue into plain dicts: the active
jobs (scheduled, queued, running), and the failed and completed ones that still matter,
that is, whose operator has not been scheduled or run again since: a scheduled job that
ends says so in the panel instead of vanishing.

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
    "completed_line",
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
#: The completed jobs the panel lists, most recent first.
MAX_COMPLETED_SHOWN = 3


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
    elif doc.run_state == "completed":
        job["ended_at"] = doc.completed_at.isoformat() if doc.completed_at else None
    return job


def read_jobs(dataset: fo.Dataset) -> dict:
    """The dataset's annoloop jobs on FiftyOne's delegated-operation queue.

    Returns
    -------
    dict
        ``active``: scheduled, queued and running jobs, oldest first; ``failed`` and
        ``completed``: ended jobs whose operator was not queued or run since, most recent
        first (at most :data:`MAX_FAILED_SHOWN` and :data:`MAX_COMPLETED_SHOWN`). Each
        job: ``id``, ``operator`` (without the plugin prefix), ``label``, ``state``,
        ``progress`` (fraction in [0, 1] or None), ``progress_label``, ``queued_at``,
        ``ended_at`` (ISO timestamps; ended jobs only) and ``error`` (the error's message,
        failed jobs only).
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

    def latest(state: str, most: int) -> list[dict]:
        # An ended job stops mattering once its operator was scheduled or run again after
        # it (with another outcome: a second failure does not hide the first).
        last_queued = {}
        for job in jobs:
            if job["state"] != state:
                last_queued[job["operator"]] = job["queued_at"] or ""
        ended = [
            j
            for j in reversed(jobs)
            if j["state"] == state and last_queued.get(j["operator"], "") <= (j["queued_at"] or "")
        ]
        return ended[:most]

    return {
        "active": active,
        "failed": latest("failed", MAX_FAILED_SHOWN),
        "completed": latest("completed", MAX_COMPLETED_SHOWN),
    }


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


def completed_line(job: dict) -> str:
    """A completed job in a line (markdown)."""
    return f"`{job['operator']}` · **completed** at {_when(job['ended_at'])}"


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
