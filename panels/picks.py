"""The picks of a previewed batch as the Batch planner panel shows them.

A pick is a unit (a scene of a grouped dataset, else a sample) that the planner chose. The
panel names it as a person would (the scene's ``scene_id``, else its file's name; never a
raw ObjectId), says why it was picked with rounded numbers, and shows an image of it.
"""

from __future__ import annotations

import os
from urllib.parse import quote

import fiftyone as fo

from .widgets import format_rate

__all__ = ["PICK_COLUMNS", "pick_row", "thumbnail_urls", "unit_names"]

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


def _first_image_view(dataset: fo.Dataset, units: list):
    """``(view, unit path)``: the units' samples on the first image slice (the samples of
    a flat image dataset), or None when the dataset has no images."""
    if dataset.media_type == "group":
        images = [name for name, media in dataset.group_media_types.items() if media == "image"]
        if not images:
            return None
        return dataset.select_groups(units).select_group_slices(images[0]), f"{dataset.group_field}.id"
    if dataset.media_type == "image":
        return dataset.select(units), "id"
    return None


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


def thumbnail_urls(dataset: fo.Dataset, units: list) -> dict:
    """``{unit id: App media URL of an image of it}`` (units without an image are absent)."""
    found = _first_image_view(dataset, units)
    if found is None:
        return {}
    view, unit_path = found
    return {u: f"/media?filepath={quote(f)}" for u, f in zip(*view.values([unit_path, "filepath"]))}
