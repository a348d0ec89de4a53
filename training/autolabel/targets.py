"""The samples an autolabel or review call acts on: whole scenes of a selection, or of a tag.

On grouped datasets the unit is the scene: selecting one camera's sample (or tagging it)
names its whole group, so every slice of it is labeled or reviewed together.
"""

from __future__ import annotations

from collections.abc import Sequence

import fiftyone as fo

from ...core.views import tagged_groups

__all__ = ["selected_scenes", "tagged_scenes"]


def selected_scenes(dataset: fo.Dataset, ids: Sequence[str]):
    """The samples ``ids`` (flat) or their whole groups, on every slice (grouped).

    Raises
    ------
    ValueError
        When ``ids`` is empty.
    """
    ids = list(ids or [])
    if not ids:
        raise ValueError("no samples are selected: select some in the App, or target the view")
    if dataset.media_type != "group":
        return dataset.select(ids)
    groups = {
        g
        for name in dataset.group_slices
        for g in dataset.select_group_slices(name).select(ids).values(f"{dataset.group_field}.id")
    }
    return dataset.select_groups(sorted(groups))


def tagged_scenes(dataset: fo.Dataset, tag: str | None):
    """The samples (flat) or whole groups (grouped) in which some sample has ``tag``.

    Raises
    ------
    ValueError
        When ``tag`` is empty or no sample has it.
    """
    tag = (tag or "").strip()
    if not tag:
        raise ValueError("target 'tag' needs a batch_tag")
    if dataset.media_type == "group":
        view = dataset.select_groups(tagged_groups(dataset, [tag]))
    else:
        view = dataset.match_tags(tag)
    if not len(view):
        raise ValueError(f"no sample of dataset '{dataset.name}' has the tag {tag!r}")
    return view
