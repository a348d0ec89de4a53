"""Defaults that continue the loop from where the dataset is: the weights a new training
run starts from, and the label field the frozen test split is scored against.

The form preselects them and an SDK call that leaves them out gets the same.
"""

from __future__ import annotations

from pathlib import Path

import fiftyone as fo

from ..core.names import DEFAULT_GT_FIELD, TEST_SPLIT_TAG
from ..core.views import frozen_slice
from ..training import runs
from ..training.detector import run_that_predicted
from .forms import detections_fields

#: ``start_from`` value for a randomly initialised (or ``<model>.pt``) start.
NO_START = "none"


def weighted_runs(dataset: fo.Dataset) -> list[runs.RunRecord]:
    """Completed training runs whose weights are on this machine, oldest first."""
    completed = runs.list_runs(dataset, status=runs.STATUS_COMPLETED)
    return [r for r in completed if r.weights and Path(r.weights).is_file()]


def default_start(dataset: fo.Dataset) -> str:
    """The latest run with local weights (the previous round), else :data:`NO_START`."""
    usable = weighted_runs(dataset)
    return usable[-1].name if usable else NO_START


def start_checkpoint(dataset: fo.Dataset, start_from: str | None) -> str | None:
    """The checkpoint a ``start_from`` choice names (None: :func:`default_start`).

    Raises
    ------
    ValueError
        When ``start_from`` is neither :data:`NO_START` nor a run with local weights.
    """
    start_from = start_from or default_start(dataset)
    if start_from == NO_START:
        return None
    usable = {r.name: r.weights for r in weighted_runs(dataset)}
    if start_from not in usable:
        raise ValueError(
            f"start_from '{start_from}' is not a completed training run with weights on this "
            f"machine; choose one of {[NO_START, *usable]}"
        )
    return usable[start_from]


def test_label_field(dataset: fo.Dataset, slice_name: str | None, pred_field: str | None) -> str:
    """The Detections field that labels the frozen test split on ``slice_name``: the one
    with the most labels there, among fields no training run predicted into (ground truth
    first on a tie); ``ground_truth`` when there is no test split or no labels yet."""
    try:
        test = frozen_slice(dataset, slice_name, [TEST_SPLIT_TAG])
    except ValueError:  # no such slice: evaluate_model names the problem
        return DEFAULT_GT_FIELD
    candidates = [
        f
        for f in sorted(detections_fields(dataset), key=lambda f: f != DEFAULT_GT_FIELD)
        if f != pred_field and run_that_predicted(dataset, f) is None
    ]
    counts = {f: test.count(f"{f}.detections") for f in candidates}
    labeled = [f for f in candidates if counts[f]]
    return max(labeled, key=counts.get) if labeled else DEFAULT_GT_FIELD
