"""Operator for scene categorization: a scene attribute for every scene from a few labeled ones.

``categorize_scenes`` fits a linear probe on the embeddings of the scenes whose attribute is
known and writes a predicted value and confidence on every slice of every scene; the work,
its checks and what frozen splits allow are in :mod:`..quality.scene_attributes`. Quick work
(one logistic regression over the scene vectors), so the form runs it now by default.
"""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators.types as types

from .common import (
    AnnoloopOperator,
    no_dataset_form,
    progress_reporter,
    require_dataset,
    run_target,
)
from .forms import embeddings_dropdown, number
from .results import result_property

#: Attributes the form suggests first, when the dataset has them (the demo's).
SUGGESTED = ("time_of_day", "weather")


class CategorizeScenes(AnnoloopOperator):
    operator_name = "categorize_scenes"
    operator_label = "annoloop: categorize scenes (attribute probe)"
    operator_description = (
        "Predict a scene attribute (time of day, weather, a defect) for every scene from a "
        "few labeled ones; QA on the golden scenes"
    )

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        if ctx.dataset is None:
            return no_dataset_form(inputs)
        dataset = ctx.dataset
        run_target(ctx, inputs, action="Categorize")
        schema = dataset.get_field_schema()
        strings = sorted(n for n, f in schema.items() if isinstance(f, fo.StringField)
                         and not n.startswith("_") and n != "filepath")
        default = next((s for s in SUGGESTED if s in strings), strings[0] if strings else None)
        inputs.str(
            "attribute", default=default, label="Attribute",
            description="Name of the scene attribute (e.g. time_of_day); names the output fields",
        )
        if embeddings_dropdown(inputs, dataset) is None:
            return types.Property(inputs)
        inputs.str(
            "known_field", required=False, label="Known values in",
            description="Field set on the scenes someone labeled (default: the attribute "
            "field itself); frozen scenes never train the probe, golden ones are its QA",
        )
        inputs.str(
            "output_field", required=False, label="Output field",
            description="Default: predicted_<attribute> (a string field; its confidence in "
            "<output field>_confidence)",
        )
        number(inputs, ctx.params, "min_per_value", whole=True, default=2, low=1, high=10_000,
               label="Labeled scenes per value", description="Fewest each value needs")
        return types.Property(inputs, view=types.View(label="Categorize scenes"))

    def execute(self, ctx) -> dict:
        from ..quality.scene_attributes import categorize_scenes

        require_dataset(ctx)
        params = ctx.params
        if not params.get("attribute"):
            raise ValueError(
                "attribute is required: the name of the scene attribute, e.g. time_of_day"
            )
        return categorize_scenes(
            run_target(ctx),
            params["attribute"],
            embeddings_field=params.get("embeddings_field") or None,
            known_field=params.get("known_field") or None,
            output_field=params.get("output_field") or None,
            min_per_value=params.get("min_per_value", 2),
            progress=progress_reporter(ctx),
        )

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx,
            {
                "output_field": "Predictions in",
                "n_units": "Scenes categorized",
                "n_labeled": "Labeled scenes the probe learned from",
                "n_frozen_known_unused": "Labeled frozen scenes (not learned from)",
                "golden_accuracy": "Accuracy on the golden scenes",
                "n_golden_checked": "Golden scenes checked",
                "mean_confidence": "Mean confidence",
                "per_value": "Per value",
            },
        )
