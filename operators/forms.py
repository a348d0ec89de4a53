"""Form inputs every operator builds the same way: dropdowns, bounded numbers, label-field
and slice pickers.

The slice a form sends is validated by :func:`..training.params.check_slice`.

Bounded numbers carry their own check (:func:`number`): FiftyOne's ``min=`` check says
"Value must be greater than 1" of a minimum of 1, which it accepts.

Choices are string parameters shown as dropdowns, not enums: FiftyOne rejects an enum value
outside its choices with a bare "validation error", while ``execute`` can say what is wrong
(for example which slices exist).
"""

from __future__ import annotations

from collections.abc import Sequence

import fiftyone as fo
import fiftyone.operators.types as types

from ..core.names import DEFAULT_GT_FIELD
from ..core.views import camera_slices, default_camera_slice, default_embeddings_field

__all__ = [
    "detections_fields",
    "dropdown",
    "filled_count",
    "label_field_dropdown",
    "number",
    "range_error",
    "slice_dropdown",
]


def dropdown(
    inputs: types.Object,
    name: str,
    choices: Sequence[str],
    default: str | None,
    label: str,
    description: str = "",
) -> None:
    """A string parameter ``name`` shown as a dropdown of ``choices``."""
    view = types.DropdownView()
    for choice in choices:
        view.add_choice(choice, label=choice)
    inputs.str(name, default=default, label=label, description=description, view=view)


def range_error(
    name: str, value, low: float | None, high: float | None, whole: bool = False
) -> str | None:
    """What is wrong with ``value`` for a number within [``low``, ``high``] (None: no bound),
    or None when it is fine (or unset)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name} must be a number; got {value!r}"
    if whole and value != int(value):
        return f"{name} must be a whole number; got {value!r}"
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            bound = f"at least {low}"
        elif low is None:
            bound = f"at most {high}"
        else:
            bound = f"between {low} and {high}"
        return f"{name} must be {bound}; got {value!r}"
    return None


def number(
    inputs: types.Object,
    params: dict,
    name: str,
    *,
    whole: bool,
    low: float | None = None,
    high: float | None = None,
    **kwargs,
) -> None:
    """An ``int`` (``whole``) or ``float`` parameter within [``low``, ``high``]; a value
    outside is marked invalid with a message naming the parameter, its value and its range
    (shown in the form, and raised to an SDK call before ``execute``)."""
    error = range_error(name, params.get(name), low, high, whole)
    add = inputs.int if whole else inputs.float
    add(name, invalid=error is not None, error_message=error or "", **kwargs)


def detections_fields(dataset: fo.Dataset) -> list[str]:
    """The dataset's ``Detections`` fields, sorted."""
    return sorted(dataset.get_field_schema(embedded_doc_type=fo.Detections))


def filled_count(collection, field: str) -> int:
    """Samples of ``collection`` (its active slice, when grouped) where ``field`` holds a
    value; 0 when there is no such field. What a run writing ``field`` would replace."""
    if field not in collection.get_field_schema():
        return 0
    return collection.exists(field).count()


def label_field_dropdown(
    inputs: types.Object,
    dataset: fo.Dataset,
    name: str,
    label: str,
    description: str = "",
    default: str = DEFAULT_GT_FIELD,
) -> str | None:
    """A dropdown of the dataset's Detections fields, ``default`` when it is one of them.

    Returns the default shown, or None (with a warning in the form) when the dataset has no
    Detections field.
    """
    fields = detections_fields(dataset)
    if not fields:
        inputs.view(f"no_{name}", types.Warning(label=f"{label}: the dataset has no Detections field"))
        return None
    shown = default if default in fields else fields[0]
    dropdown(inputs, name, fields, shown, label, description)
    return shown


def slice_dropdown(inputs: types.Object, dataset: fo.Dataset, current: str | None) -> str | None:
    """The camera-slice choice of a grouped dataset; returns the slice in effect (None if flat)."""
    cameras = camera_slices(dataset)
    if not cameras:
        return None
    default = current if current in cameras else default_camera_slice(dataset)
    dropdown(inputs, "slice", cameras, default, "Camera slice")
    return default


def embeddings_dropdown(inputs: types.Object, dataset: fo.Dataset) -> str | None:
    """The stored embeddings a scene-level check reads (default: the scene vector on grouped
    datasets); None, with a warning in the form, when nothing is embedded yet."""
    vectors = sorted(dataset.get_field_schema(ftype=fo.VectorField))
    if not vectors:
        inputs.view(
            "no_embeddings",
            types.Warning(label="No embeddings stored yet: run compute_embeddings first"),
        )
        return None
    default = default_embeddings_field(dataset)
    default = default if default in vectors else vectors[0]
    dropdown(inputs, "embeddings_field", vectors, default, "Embeddings")
    return default
