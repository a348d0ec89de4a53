"""Views every stage shares: flat slices of a grouped dataset, camera slices, the frozen
splits, quarantine, and the units (scenes or samples) the App shows.

A grouped dataset is flattened one way, :func:`slice_views`: one flat view per slice.

Frozen splits are decided per *group* (scene): when any sample of a group, on any slice,
carries ``split:test`` or ``split:golden``, every slice of that group is frozen. A right
camera image of a test scene is nearly the left one, so training on it would leak the test
set even if only the left image was tagged. Quarantine is decided per *sample* of the
slice: the sample carries ``qa:quarantine``, or one of its labels in the label field does
(dropping just that label would teach the model that the object is background).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import fiftyone as fo
from bson import ObjectId
from fiftyone import ViewField as F

from .names import (
    DEFAULT_GT_FIELD,
    FROZEN_SPLIT_TAGS,
    MINING_SPLIT_TAG,
    QUARANTINE_TAG,
    TEST_SPLIT_TAG,
)
from .vector_reads import is_vector_field

#: Frozen split name -> its sample tag, for the splits a model is evaluated on.
EVALUATION_SPLITS = {"test": TEST_SPLIT_TAG, "mining": MINING_SPLIT_TAG}


def unique_values(collection: fo.core.collections.SampleCollection, path: str) -> set:
    """The distinct values of the scalar ``path`` (an id, a name) in ``collection``.

    Read with ``values()``, whose result comes in cursor batches, not with ``distinct()``:
    that returns every value in one MongoDB document, which fails past its 16 MB limit
    (about 450k ids: 10^6 ids made a 37 MB one).
    """
    return set(collection.values(path))


def root_dataset(samples: fo.core.collections.SampleCollection) -> fo.Dataset:
    """The dataset that ``samples`` (a dataset or any view of it) belongs to."""
    if isinstance(samples, fo.Dataset):
        return samples
    return fo.load_dataset(samples.dataset_name)


def slice_views(
    samples: fo.core.collections.SampleCollection,
    slices: Sequence[str] | str | None = None,
    media: Iterable[str] | None = None,
) -> dict:
    """``{slice name: flat view}`` of a collection, one per group slice, in the dataset's order.

    The one way annoloop flattens a grouped dataset: each slice becomes its own flat view
    because ``select_group_slices`` refuses to mix media types (images and point clouds) in
    one view.

    Parameters
    ----------
    samples : SampleCollection
        A grouped collection, a flat view of some slices of a grouped dataset (its slices are
        found by group name), or a flat dataset / view, which gives ``{None: samples}``.
    slices : str or sequence of str, optional
        Slices to keep, in this order; default every slice present (of ``media`` types).
    media : iterable of str, optional
        Media types to keep when ``slices`` is not given (e.g. ``("image",)``).

    Returns
    -------
    dict
        Slice name to flat view; ``{None: samples}`` for an ungrouped dataset.

    Raises
    ------
    ValueError
        On slices of an ungrouped dataset, or slices the collection does not hold.
    """
    dataset = root_dataset(samples)
    if isinstance(slices, str):
        slices = [slices]
    if dataset.media_type != "group":
        if slices:
            raise ValueError(
                f"dataset '{dataset.name}' is not grouped, so it has no slices {list(slices)}"
            )
        return {None: samples}
    name_path = f"{dataset.group_field}.name"
    if samples.media_type == "group":
        held = set(samples.group_slices)
    else:
        held = set(samples.distinct(name_path))
    present = [s for s in dataset.group_slices if s in held]
    if slices:
        unknown = [s for s in slices if s not in present]
        if unknown:
            raise ValueError(f"unknown group slices {unknown}; the collection has {present}")
        chosen = list(dict.fromkeys(slices))
    else:
        kinds = dataset.group_media_types
        chosen = [s for s in present if media is None or kinds[s] in set(media)]
    if samples.media_type == "group":
        return {s: samples.select_group_slices(s) for s in chosen}
    return {s: samples.match(F(name_path) == s) for s in chosen}


def default_embeddings_field(dataset: fo.Dataset) -> str:
    """The embeddings a scene-level check reads by default: the scene vector
    ``group_embedding`` on grouped datasets, ``embedding`` on flat ones."""
    return "group_embedding" if dataset.media_type == "group" else "embedding"


def embedding_slice(dataset: fo.Dataset, field: str, slice_name: str | None = None):
    """``(slice, view)``: the flat slice whose samples hold the embeddings ``field`` (one
    sample per unit), the one chosen or the first that has it; ``(None, dataset)`` on flat
    datasets.

    Raises
    ------
    ValueError
        When no slice (or not ``slice_name``) has the field: run compute_embeddings first.
    """
    views = slice_views(dataset, slice_name) if slice_name else slice_views(dataset)
    for name, view in views.items():
        found = view.get_field_schema().get(field)
        if found is not None and not is_vector_field(found):
            raise ValueError(
                f"'{field}' holds {type(found).__name__}, not vectors; pass an embeddings "
                "field that compute_embeddings wrote (e.g. 'embedding')"
            )
        if found is not None:
            return name, view
    raise ValueError(
        f"no samples have an embeddings field '{field}'"
        + (f" on slice {slice_name!r}" if slice_name else "")
        + "; run compute_embeddings first or pass embeddings_field="
    )


def camera_slices(dataset: fo.Dataset) -> list[str]:
    """Image slices of a grouped dataset, in group order (empty for a flat dataset)."""
    if dataset.media_type != "group":
        return []
    return [name for name, media in dataset.group_media_types.items() if media == "image"]


def default_camera_slice(dataset: fo.Dataset) -> str:
    """The camera slice a form preselects: the group's default slice when it is an image
    slice, else the first one.

    Raises
    ------
    ValueError
        When ``dataset`` has no camera slice.
    """
    cameras = camera_slices(dataset)
    if not cameras:
        raise ValueError(f"dataset '{dataset.name}' has no camera slice")
    return dataset.default_group_slice if dataset.default_group_slice in cameras else cameras[0]


def camera_slice(samples: fo.core.collections.SampleCollection, slice_name: str | None):
    """The image samples of one camera slice of ``samples``, as a flat view.

    Parameters
    ----------
    samples : SampleCollection
        A dataset or view; grouped or not.
    slice_name : str or None
        A camera slice of a grouped dataset; must be None for a flat image dataset.

    Returns
    -------
    SampleCollection
        Flat image samples.
    """
    dataset = root_dataset(samples)
    if dataset.media_type != "group":
        if slice_name:
            raise ValueError(
                f"dataset '{dataset.name}' is not grouped, so it has no slice '{slice_name}'; "
                "leave the slice empty"
            )
        if samples.media_type != "image":
            raise ValueError(
                f"dataset '{dataset.name}' holds {samples.media_type} samples; training needs images"
            )
        return samples
    cameras = camera_slices(dataset)
    if slice_name not in dataset.group_media_types:
        raise ValueError(
            f"slice {slice_name!r} does not exist in dataset '{dataset.name}'; "
            f"its camera slices are {cameras}"
        )
    if slice_name not in cameras:
        raise ValueError(
            f"slice '{slice_name}' of dataset '{dataset.name}' holds "
            f"{dataset.group_media_types[slice_name]} samples, not images; "
            f"its camera slices are {cameras}"
        )
    if samples.media_type == "group":
        return samples.select_group_slices(slice_name)
    return samples.match(F(f"{dataset.group_field}.name") == slice_name)


def units_view(samples: fo.core.collections.SampleCollection, unit_ids: Sequence[str]):
    """The scenes (grouped) or samples (flat) ``unit_ids`` of a dataset or view, as a view
    the App can show.

    Scenes are matched on the group id rather than with ``select_groups``: the App
    re-applies a view's stages to one flat slice to page and count its grid, where
    ``SelectGroups`` fails (FiftyOne 1.22: "unsupported operand type(s) for +"). The match is
    a query, not an expression: MongoDB then looks each id up in a sorted set, where an
    ``$expr`` ``$in`` scans the whole list for every sample (require_frozen's match of 11k
    ids over 10^6 samples took 239 s that way).
    """
    ids = list(unit_ids)
    dataset = root_dataset(samples)
    if dataset.media_type == "group":
        return samples.match({f"{dataset.group_field}._id": {"$in": [ObjectId(u) for u in ids]}})
    return samples.select(ids)


def tagged_groups(dataset: fo.Dataset, tags: Iterable[str]) -> list[str]:
    """Ids of the groups in which any sample, on any slice, has one of ``tags``."""
    tags = list(tags)
    group_ids = set()
    for view in slice_views(dataset).values():
        group_ids.update(view.match_tags(tags).values(f"{dataset.group_field}.id"))
    return sorted(group_ids)


def frozen_slice(
    dataset: fo.Dataset, slice_name: str | None, tags: Iterable[str] = FROZEN_SPLIT_TAGS
):
    """The samples of one camera slice that belong to a frozen split given by ``tags``."""
    tags = list(tags)
    camera_slice(dataset, slice_name)  # validates the slice
    if dataset.media_type != "group":
        return dataset.match_tags(tags)
    return dataset.select_groups(tagged_groups(dataset, tags)).select_group_slices(slice_name)


def frozen_media(dataset: fo.Dataset, tags: Iterable[str] = FROZEN_SPLIT_TAGS) -> set[str]:
    """Real paths of the media of every frozen sample, on every slice."""
    tags = list(tags)
    if dataset.media_type != "group":
        return real_paths(dataset.match_tags(tags).values("filepath"))
    groups = dataset.select_groups(tagged_groups(dataset, tags))
    return {p for view in slice_views(groups).values() for p in real_paths(view.values("filepath"))}


def quarantined_ids(samples, label_field: str) -> list[str]:
    """Ids of samples tagged ``qa:quarantine`` or holding a quarantined label."""
    tagged = set(samples.match_tags(QUARANTINE_TAG).values("id"))
    tagged.update(samples.match_labels(tags=QUARANTINE_TAG, fields=label_field).values("id"))
    return sorted(tagged)


def split_set(samples, slice_name: str | None, split: str = "test"):
    """The frozen ``"test"`` or ``"mining"`` set of one camera slice of ``samples``' dataset
    (group-level)."""
    if split not in EVALUATION_SPLITS:
        raise ValueError(f"split must be one of {sorted(EVALUATION_SPLITS)}; got {split!r}")
    return frozen_slice(root_dataset(samples), slice_name, [EVALUATION_SPLITS[split]])


def test_set(samples, slice_name: str | None):
    """The frozen test set of one camera slice of ``samples``' dataset (group-level)."""
    return split_set(samples, slice_name, "test")


def pool_set(samples, slice_name: str | None, label_field: str = DEFAULT_GT_FIELD):
    """The unlabeled pool of one camera slice: outside every frozen split, ``label_field``
    unset (an empty ``Detections`` is a labeled empty image)."""
    dataset = root_dataset(samples)
    view = camera_slice(dataset, slice_name).exclude(frozen_slice(dataset, slice_name).values("id"))
    if dataset.get_field(label_field) is None:
        return view
    return view.exists(label_field, False)


def real_paths(paths: Iterable[str]) -> set[str]:
    """Canonical absolute paths (symlinks resolved), for comparing media files."""
    return {os.path.realpath(p) for p in paths}
