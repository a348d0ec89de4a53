"""Scene embeddings: one vector per group, written on every slice's sample of the scene.

The scene vector is the concatenation, in ``dataset.group_slices`` order, of the scene's
per-slice embeddings over all the dataset's image and point-cloud slices, each unit-norm,
divided by sqrt(number of slices): unit norm, every slice weighted equally whatever its
dimension. A scene without a sample on a slice gets zeros for that block; a scene whose
samples are not all embedded yet gets no scene vector (it counts as incomplete).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

import fiftyone as fo

from ..core.views import slice_views
from .algorithms.image_features import l2_normalize
from .embedding_units import IMAGE, POINT_CLOUD

_GROUP_CHUNK = 10_000  # scenes per read-compose-write round


def embed_scenes(
    collection: fo.core.collections.SampleCollection,
    field_name: str,
    group_field: str,
    touched: set,
    overwrite: bool,
    slice_dims: dict,
    report: Callable[[str], None],
) -> dict:
    """Compose and write the scene embeddings of the groups that need them.

    Parameters
    ----------
    collection : SampleCollection
        A grouped collection.
    field_name : str
        The per-sample embeddings field the scene vector is made of.
    group_field : str
        The (declared) ``VectorField`` the scene vector is written to, on every slice.
    touched : set of str
        Group ids whose samples were just (re-)embedded: their scene vector is rebuilt.
    overwrite : bool
        Rebuild every scene vector, not only the missing and touched ones.
    slice_dims : dict
        ``{slice: dimension}`` recorded for ``field_name`` (None when unknown).
    report : callable
        Called with a progress label after each chunk of scenes.

    Returns
    -------
    dict
        ``group_slices`` (the composition), ``groups_written``, ``groups_incomplete``.
    """
    dataset = collection._dataset
    media_types = dataset.group_media_types
    composition = [s for s in dataset.group_slices if media_types[s] in (IMAGE, POINT_CLOUD)]
    group_id = f"{dataset.group_field}.id"
    needed = set(touched)
    for view in slice_views(collection, composition).values():
        if not overwrite and dataset.get_field(group_field) is not None:
            view = view.exists(group_field, False)
        needed.update(view.values(group_id))
    dims = {s: slice_dims.get(s) for s in composition}

    needed = sorted(needed)
    written = incomplete = 0
    scale = 1.0 / math.sqrt(len(composition))
    for start in range(0, len(needed), _GROUP_CHUNK):
        chunk = needed[start : start + _GROUP_CHUNK]
        scenes = dataset.select_groups(chunk)
        members: dict[str, dict[str, tuple]] = {
            g: {} for g in chunk
        }  # group -> slice -> (id, vector)
        for s in composition:
            for sample_id, gid, vector in zip(
                *scenes.select_group_slices(s).values(["id", group_id, field_name])
            ):
                members[gid][s] = (sample_id, vector)
        values: dict[str, dict] = {s: {} for s in composition}
        for gid, by_slice in members.items():
            blocks = []
            for s in composition:
                if s not in by_slice:  # the scene has no sample on this slice
                    blocks.append(np.zeros(dims[s], np.float32) if dims[s] else None)
                else:
                    vector = by_slice[s][1]
                    ok = vector is not None and (dims[s] is None or len(vector) == dims[s])
                    blocks.append(l2_normalize(vector) if ok else None)
            if any(b is None for b in blocks):
                incomplete += 1
                continue
            scene_vector = np.concatenate(blocks).astype(np.float32) * scale
            for s, (sample_id, _) in by_slice.items():
                values[s][sample_id] = scene_vector
            written += 1
        for s in composition:
            if values[s]:
                dataset.select_group_slices(s).set_values(group_field, values[s], key_field="id")
        report(f"scenes: {min(start + len(chunk), len(needed))}/{len(needed)}")
    return {"group_slices": composition, "groups_written": written, "groups_incomplete": incomplete}
