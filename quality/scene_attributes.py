"""Scene categorization (glue): a scene attribute predicted for every scene from a few labeled ones.

``categorize_scenes`` reads the stored embeddings (one vector per unit: the scene vector
``group_embedding`` on grouped datasets) and the *known* values of an attribute (time of day,
weather, a defect such as a blocked lens) on the few scenes a user labeled, fits the linear
probe of :func:`.algorithms.scene_attributes.fit_attribute_probe`, and writes, under the
dataset's lock, a predicted value (top-level string field ``predicted_<attribute>``) and its
confidence on every slice of every scene, plus a run record. A predicted attribute is a scene
attribute like any other: ``create_splits(strata_fields=["predicted_time_of_day"])``
stratifies by it.

Zero-shot, with a CLIP-style checkpoint and no labeled scene: pass ``text_embeddings`` (one
prompt embedding per value, :func:`annoloop.selection.zero_shot.prompt_embeddings`) and an
embeddings field that checkpoint wrote; each scene takes the value of the closest prompt
(:func:`.algorithms.scene_attributes.zero_shot_attribute`), and known values, where set, are
only the QA.

Frozen splits (test, mining, golden) are read-only inputs:

* their known values never train the probe (a test scene must not shape what is measured
  on it, and golden scenes are the probe's QA);
* golden scenes whose known field holds the true value are the QA: the result reports the
  probe's accuracy on them, per value;
* they do get predictions: splits are stratified by predicted attributes, so every scene
  needs one. Only the output and confidence fields are written; the known field and the
  frozen label fields never are.

Units are scenes (groups) on grouped datasets, samples on flat ones. A view chooses the units
that get predictions (a new batch, say); the probe learns from the labeled units of the whole
dataset. A re-run replaces the predictions of the units it covers.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

import fiftyone as fo
import numpy as np

from ..core.catalog import tagged_units, unit_path, units_where
from ..core.locks import dataset_lock
from ..core.names import FROZEN_SPLIT_TAGS, GOLDEN_SPLIT_TAG
from ..core.runs import Progress, load_record, load_records, now, save_record
from ..core.vector_reads import read_vectors
from ..core.views import (
    default_embeddings_field,
    embedding_slice,
    root_dataset,
    slice_views,
    units_view,
)
from .algorithms.scene_attributes import fit_attribute_probe, zero_shot_attribute

__all__ = [
    "SCENE_ATTRIBUTES_RUN_METHOD",
    "attribute_run_key",
    "categorize_scenes",
    "predicted_attribute_fields",
]

SCENE_ATTRIBUTES_RUN_METHOD = "annoloop.scene_attributes"


def attribute_run_key(output_field: str) -> str:
    """Run key of the categorization that writes ``output_field``: a valid FiftyOne key."""
    return "annoloop_attr_" + re.sub(r"\W", "_", output_field)


def predicted_attribute_fields(dataset: fo.Dataset) -> list[str]:
    """The output fields of the categorizations recorded on ``dataset`` that still exist,
    sorted: the scene slices ``evaluate_model`` reports recall on by default."""
    schema = dataset.get_field_schema()
    return sorted({
        r["output_field"] for r in load_records(dataset, SCENE_ATTRIBUTES_RUN_METHOD)
        if r.get("output_field") in schema
    })


def categorize_scenes(
    samples: fo.core.collections.SampleCollection,
    attribute: str,
    *,
    embeddings_field: str | None = None,
    known_field: str | None = None,
    output_field: str | None = None,
    confidence_field: str | None = None,
    min_per_value: int = 2,
    slice_name: str | None = None,
    text_embeddings: Mapping[str, Sequence[float]] | None = None,
    temperature: float = 100.0,
    progress: Progress | None = None,
) -> dict:
    """Predict ``attribute`` for every scene of ``samples`` from the scenes labeled with it,
    or zero-shot from one text prompt per value.

    Parameters
    ----------
    samples : Dataset or DatasetView
        Its units (scenes or samples) get predictions; the probe trains on every unit of
        the dataset with a known value outside the frozen splits, in the view or not.
    attribute : str
        The attribute's name (e.g. ``"time_of_day"``); names the default fields.
    embeddings_field : str, optional
        Vector field, one vector per unit; default ``group_embedding`` (grouped) or
        ``embedding``.
    known_field : str, optional
        Sample field holding the known values, set only on the scenes someone labeled (on
        any slice of a scene); default the ``attribute`` field itself.
    output_field : str, optional
        Top-level string field of the predictions; default ``predicted_<attribute>``. Must
        differ from ``attribute`` and ``known_field``.
    confidence_field : str, optional
        Float field of each prediction's probability; default ``<output_field>_confidence``.
    min_per_value : int, default=2
        Fewest labeled (non-frozen) scenes each value needs.
    slice_name : str, optional
        Grouped datasets: the slice whose samples carry the embeddings; default the first
        slice that has the field.
    text_embeddings : mapping of str to vector, optional
        Zero-shot instead of the probe: ``{value: its prompt's embedding}`` in the space of
        ``embeddings_field`` (a CLIP-style model's; see
        :func:`annoloop.selection.zero_shot.prompt_embeddings`). No labeled scene is needed;
        known values, where set, are only the QA, and ``known_field`` may then be absent.
    temperature : float, default=100.0
        Zero-shot only: scale of the similarities before the softmax.
    progress : callable, optional
        Called as ``progress(fraction, label)``.

    Returns
    -------
    dict
        JSON-ready: the fields used and written, ``n_units``, ``n_labeled`` (scenes the probe
        trained on), ``n_frozen_known_unused``, ``golden_accuracy`` (None without golden
        scenes carrying a known value) and ``n_golden_checked``, ``mean_confidence``,
        ``per_value`` (labeled, predicted, golden and golden-correct counts per value) and the
        run key.

    Raises
    ------
    ValueError
        On bad parameters, fields that do not exist or would collide, units without
        embeddings, conflicting known values within a scene, or too few labeled scenes per
        value; nothing has been written then.
    """
    report = progress or (lambda fraction, label: None)
    if not isinstance(samples, fo.core.collections.SampleCollection):
        raise ValueError(
            f"samples must be a FiftyOne dataset or view; got {type(samples).__name__}"
        )
    dataset = root_dataset(samples)
    zero_shot = text_embeddings is not None
    fields = _check_fields(
        dataset, attribute, known_field, output_field, confidence_field, need_known=not zero_shot
    )
    attribute, known_field, output_field, confidence_field = fields
    if isinstance(min_per_value, bool) or not isinstance(min_per_value, int) or min_per_value < 1:
        raise ValueError(
            f"min_per_value must be a whole number of at least 1; got {min_per_value!r}"
        )
    field = embeddings_field or default_embeddings_field(dataset)
    slice_name, view = embedding_slice(dataset, field, slice_name)

    report(0.1, f"reading '{field}' and '{known_field}'")
    path = unit_path(dataset)
    scope = sorted(units_where(samples))
    if not scope:
        raise ValueError("the collection is empty: pass a dataset or a view with samples")
    # Every unit of the dataset is read: labeled scenes outside the view still train the
    # probe, and the golden scenes are its QA wherever the view is.
    read = read_vectors(view, path, field, order=scope)
    units = list(read.row)
    known = (
        _known_values(dataset, path, known_field, set(units))
        if dataset.get_field(known_field) is not None
        else {}
    )
    frozen = tagged_units(dataset, FROZEN_SPLIT_TAGS)
    has_known = np.array([u in known for u in units])
    in_frozen = np.array([u in frozen for u in units])
    in_scope = np.arange(len(units)) < len(scope)
    labeled = has_known & ~in_frozen
    missing = int((read.missing & (in_scope | labeled)).sum())
    if missing:
        raise ValueError(
            f"{missing} units have no '{field}'; run compute_embeddings first (it embeds "
            "only what is missing)"
        )
    # Units outside the view without a vector are neither predicted nor learned from.
    rows = ~read.missing
    units = [u for u, keep in zip(units, rows) if keep]
    labels = np.array([known.get(u, "") for u in units], dtype=object)
    has_known, in_frozen, in_scope, labeled = (
        a[rows] for a in (has_known, in_frozen, in_scope, labeled)
    )

    if zero_shot:
        report(0.4, f"matching {len(units)} units with {len(text_embeddings)} prompts")
        labeled = np.zeros(len(units), bool)  # nothing trains a zero-shot prediction
        prediction = zero_shot_attribute(
            read.vectors[rows], list(text_embeddings.values()), list(text_embeddings),
            temperature=temperature,
        )
    else:
        report(0.4, f"fitting the probe on {int(labeled.sum())} labeled units")
        prediction = _fit_probe(read.vectors[rows], labels, labeled, has_known & in_frozen,
                                min_per_value, attribute, known_field)

    golden = tagged_units(dataset, [GOLDEN_SPLIT_TAG])
    checked = np.array([u in golden for u in units]) & has_known
    correct = prediction.values == labels.astype(str)
    per_value = _per_value(prediction, labels, labeled, checked, correct, in_scope)
    key = attribute_run_key(output_field)
    result = {
        "run_key": key,
        "categorized_at": now(),
        "attribute": attribute,
        "known_field": known_field,
        "output_field": output_field,
        "confidence_field": confidence_field,
        "embeddings_field": field,
        "slice": slice_name,
        "predictor": "zero_shot" if zero_shot else "probe",
        "min_per_value": None if zero_shot else min_per_value,
        "classes": list(prediction.classes),
        "n_units": len(scope),
        "n_labeled": int(labeled.sum()),
        "n_frozen_known_unused": int((has_known & in_frozen).sum()),
        "n_golden_checked": int(checked.sum()),
        "golden_accuracy": float(correct[checked].mean()) if checked.any() else None,
        "mean_confidence": float(prediction.confidence[in_scope].mean()),
        "per_value": per_value,
    }

    report(0.8, f"writing '{output_field}' on {len(scope)} units")
    values = dict(zip(units, prediction.values.tolist()))
    confidence = dict(zip(units, prediction.confidence.tolist()))
    with dataset_lock(dataset, "categorize_scenes"):
        dataset.reload()
        for flat in slice_views(units_view(dataset, scope)).values():
            ids, owners = flat.values(["id", path])
            flat.set_values(
                output_field, {i: values[u] for i, u in zip(ids, owners)}, key_field="id"
            )
            flat.set_values(
                confidence_field, {i: confidence[u] for i, u in zip(ids, owners)}, key_field="id"
            )
        save_record(
            dataset, key, SCENE_ATTRIBUTES_RUN_METHOD,
            {k: v for k, v in result.items() if k != "per_value"},
            results={"per_value": per_value, "units": scope,
                     "values": [values[u] for u in scope],
                     "confidence": [confidence[u] for u in scope]},
        )
    accuracy = result["golden_accuracy"]
    report(1.0, f"{len(scope)} units categorized" + (
        f"; golden accuracy {accuracy:.0%}" if accuracy is not None else ""
    ))
    return result


def _fit_probe(vectors, labels, labeled, frozen_known, min_per_value, attribute, known_field):
    """The probe's prediction, or a ValueError that says which scenes to label."""
    try:
        return fit_attribute_probe(
            vectors, labels, labeled, min_per_value=min_per_value, attribute=attribute
        )
    except ValueError as err:
        unused = int(frozen_known.sum())
        note = (
            f" ({unused} labeled units lie in frozen splits and never train the probe)"
            if unused else ""
        )
        raise ValueError(f"{err}; set '{known_field}' on more scenes{note}") from err


def _check_fields(
    dataset, attribute, known_field, output_field, confidence_field, need_known: bool = True
) -> tuple:
    """The four field names, defaults filled in, or a ValueError saying what to change."""
    if not isinstance(attribute, str) or not attribute.isidentifier():
        raise ValueError(
            f"attribute must be a plain field name such as 'time_of_day'; got {attribute!r}"
        )
    known_field = known_field or attribute
    output_field = output_field or f"predicted_{attribute}"
    confidence_field = confidence_field or f"{output_field}_confidence"
    schema = dataset.get_field_schema()
    if need_known and known_field not in schema:
        raise ValueError(
            f"known field '{known_field}' does not exist: set it to the true value on a few "
            "scenes per value (any slice), or pass known_field="
        )
    for name, value in (("output_field", output_field), ("confidence_field", confidence_field)):
        if not value.isidentifier():
            raise ValueError(f"{name} must be a plain field name; got {value!r}")
    taken = {attribute, known_field}
    if output_field in taken or confidence_field in taken or output_field == confidence_field:
        raise ValueError(
            f"output_field '{output_field}' and confidence_field '{confidence_field}' must "
            f"differ from each other and from the attribute and known fields {sorted(taken)}: "
            "predictions never overwrite what people labeled"
        )
    previous = load_record(dataset, attribute_run_key(output_field))
    for name, expected in ((output_field, fo.StringField), (confidence_field, fo.FloatField)):
        existing = schema.get(name)
        if existing is not None and not isinstance(existing, expected):
            raise ValueError(
                f"field '{name}' already exists as {type(existing).__name__}; predictions need "
                f"a {expected.__name__}: pass another output_field / confidence_field"
            )
        # Only a field an earlier categorization wrote may be replaced: an existing string
        # field may be the scene id, a file path or another attribute's true values.
        ours = previous is not None and name in (
            previous.get("output_field"), previous.get("confidence_field")
        )
        if existing is not None and not ours:
            raise ValueError(
                f"field '{name}' already exists and was not written by categorize_scenes; "
                "pass another output_field / confidence_field"
            )
    return attribute, known_field, output_field, confidence_field


def _known_values(dataset: fo.Dataset, path: str, known_field: str, units: set) -> dict:
    """Unit -> its known value (as str), read from every slice; a unit whose slices disagree
    is refused."""
    seen: dict[str, set] = {}
    for flat in slice_views(dataset).values():
        owners, values = flat.exists(known_field).values([path, known_field])
        for unit, value in zip(owners, values):
            if unit in units:
                seen.setdefault(unit, set()).add(str(value))
    mixed = {u: sorted(v) for u, v in seen.items() if len(v) > 1}
    if mixed:
        unit, values = next(iter(mixed.items()))
        raise ValueError(
            f"{len(mixed)} units have different '{known_field}' values on different slices "
            f"(e.g. {unit}: {values}); a scene attribute has one value per scene"
        )
    return {u: next(iter(v)) for u, v in seen.items()}


def _per_value(prediction, labels, labeled, checked, correct, in_scope) -> dict:
    """Value -> labeled, predicted (in the collection), golden and golden-correct unit counts."""
    truth = labels.astype(str)
    counts = {
        "labeled": Counter(truth[labeled].tolist()),
        "predicted": Counter(prediction.values[in_scope].tolist()),
        "golden": Counter(truth[checked].tolist()),
        "golden_correct": Counter(truth[checked & correct].tolist()),
    }
    values = sorted(set(prediction.classes) | set(counts["golden"]))
    return {v: {name: int(c.get(v, 0)) for name, c in counts.items()} for v in values}
