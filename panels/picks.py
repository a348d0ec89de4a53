"""Images of a previewed batch's picks, for the Batch planner panel.

Their table rows (names, not ObjectIds; why each was picked) come from
:mod:`annoloop.selection.pick_rows`, which the plan_batch result dialog shares.
"""

from __future__ import annotations

from urllib.parse import quote

import fiftyone as fo

__all__ = ["thumbnail_urls"]


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


def thumbnail_urls(dataset: fo.Dataset, units: list) -> dict:
    """``{unit id: App media URL of an image of it}`` (units without an image are absent)."""
    found = _first_image_view(dataset, units)
    if found is None:
        return {}
    view, unit_path = found
    return {u: f"/media?filepath={quote(f)}" for u, f in zip(*view.values([unit_path, "filepath"]))}
