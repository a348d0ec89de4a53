"""A planned batch's picks as a person reads them: named, with why each was picked.

A pick is a unit (a scene of a grouped dataset, else a sample) that the planner chose.
:func:`unit_names` names it as a person would (the scene's ``scene_id``, else its file's
name; never a raw ObjectId) and :func:`pick_row` says why it was picked, with rounded
numbers. The Batch planner panel's table and ``plan_batch``'s result dialog both use them.
"""

from __future__ import annotations

import os

import fiftyone as fo

from ..core.display import format_rate

__all__ = ["PICK_COLUMNS", "pick_row", "unit_names"]

#: (key, label) of the picks table's columns; :func:`pick_row` fills them.
PICK_COLUMNS = (
    ("rank", "#"),
    ("name", "Sample"),
    ("source", "Share"),
    ("why", "Why"),
    ("distance", "Distance to failure"),
    ("score", "Score"),
)
#: A field naming each scene of the demo and of datasets built like it.
SCENE_NAME_FIELD = "scene_id"

_WHY = {
    "fn": "near a missed object",
    "confusion": "near a class confusion",
    "fp": "near a false positive",
    "kcenter_distance": "far from all labeled (k-center)",
    "typicality": "typical of an uncovered cluster",
    "zcore_score": "high ZCore score",
    "random": "drawn at random",
    "uncertainty": "the model is unsure here",
}


def pick_row(pick: dict, names: dict) -> dict:
    """A pick of ``plan_batch``'s result as a row of the picks table (:data:`PICK_COLUMNS`);
    ``names`` maps unit ids to what :func:`unit_names` calls them."""
    if pick["source"] == "targeting":
        kind = pick.get("near_failure_kind") or pick.get("score_kind")
        why = _WHY.get(kind, "near a failure")
    else:
        why = _WHY.get(pick.get("score_kind"), pick.get("score_kind") or "coverage")
    return {
        "rank": pick["rank"] + 1,
        "name": names.get(pick["id"], "—"),
        "source": pick["source"],
        "why": why,
        "distance": format_rate(pick.get("distance_to_failure")),
        "score": format_rate(pick.get("score")),
    }


def unit_names(dataset: fo.Dataset, units: list) -> dict:
    """``{unit id: name}``: the scene's ``scene_id`` when the dataset has one, else the
    file name of the unit's (first image slice's) sample."""
    if dataset.media_type == "group":
        view = dataset.select_groups(units).select_group_slices(dataset.default_group_slice)
        path = f"{dataset.group_field}.id"
    else:
        view, path = dataset.select(units), "id"
    if SCENE_NAME_FIELD in view.get_field_schema():
        return dict(zip(*view.values([path, SCENE_NAME_FIELD])))
    ids, filepaths = view.values([path, "filepath"])
    return {u: os.path.basename(f) for u, f in zip(ids, filepaths)}
