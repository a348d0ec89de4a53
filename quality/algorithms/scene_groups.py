"""Near-duplicate scene groups for split selection: scenes that must share a split.

A scene may name the scene it nearly duplicates. :func:`duplicate_groups` joins linked
scenes into one group (union-find) and gives each group the stratum of its original (a
scene with no link), so a near-duplicate lands in the same split as, and is stratified
as, the scene it copies.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

__all__ = ["duplicate_groups"]


def _components(scenes: list, links: list) -> dict:
    """Scene -> representative of its near-duplicate component (the smallest key in it)."""
    parent = {s: s for s in scenes}

    def find(s):
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for s, other in zip(scenes, links):
        if other is None or other not in parent:
            continue  # a duplicate of a scene outside the dataset links nothing
        a, b = sorted((find(s), find(other)), key=str)
        if a != b:
            parent[b] = a
    return {s: find(s) for s in parent}


def duplicate_groups(
    scene_stratum: Mapping[Hashable, str], scene_link: Mapping[Hashable, Hashable]
) -> tuple[dict, dict]:
    """Group near-duplicate scenes and stratify each group as its original.

    Parameters
    ----------
    scene_stratum : mapping
        Scene -> its stratum.
    scene_link : mapping
        Scene -> the scene it nearly duplicates (scenes without a link are left out); a
        link to a scene not in ``scene_stratum`` links nothing.

    Returns
    -------
    component : dict
        Scene -> its group's representative (the group's smallest key, compared as str).
    component_stratum : dict
        Representative -> the group's stratum: that of its first original scene (in key
        order), else of its first scene.
    """
    scenes = sorted(scene_stratum, key=str)
    component = _components(scenes, [scene_link.get(s) for s in scenes])
    component_stratum: dict = {}
    for s in scenes:
        if s not in scene_link or scene_link[s] not in component:
            component_stratum.setdefault(component[s], scene_stratum[s])
    for s in scenes:
        component_stratum.setdefault(component[s], scene_stratum[s])
    return component, component_stratum
