"""Operator for scene categorization: a scene attribute for every scene from a few labeled ones.

``categorize_scenes`` fits a linear probe on the embeddings of the scenes whose attribute is
known (or, with a CLIP-style checkpoint, matches each scene with one text prompt per value:
:mod:`..selection.zero_shot`) and writes a predicted value and confidence on every slice of every scene; the work,
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
    operator_label = "annoloop: categorize scenes (probe or zero-shot)"
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
        predictors = types.RadioGroup()
        predictors.add_choice("probe", label="Linear probe",
                              description="Learns from the scenes whose value is known")
        predictors.add_choice("zero_shot", label="Zero-shot (CLIP-style checkpoint)",
                              description="One text prompt per value; no labeled scene needed")
        inputs.enum("predictor", predictors.values(), default="probe", label="Predictor",
                    view=predictors)
        if ctx.params.get("predictor") == "zero_shot":
            from ..selection.zero_shot import DEFAULT_PROMPT

            inputs.str(
                "model_path", required=True, label="Checkpoint",
                description="The CLIP-style checkpoint (a directory or a cached hub id) that "
                "wrote the embeddings field above (compute_embeddings, model hf:<it>)",
            )
            attribute = ctx.params.get("attribute") or default
            known = sorted(map(str, dataset.distinct(attribute))) if attribute in schema else []
            inputs.list("values", types.String(), default=known or None, required=True,
                        label="Values", description="One prompt each")
            inputs.str("prompt", default=DEFAULT_PROMPT, label="Prompt",
                       description="'{}' is the value")
        else:
            number(inputs, ctx.params, "min_per_value", whole=True, default=2, low=1,
                   high=10_000, label="Labeled scenes per value",
                   description="Fewest each value needs")
        return types.Property(inputs, view=types.View(label="Categorize scenes"))

    def execute(self, ctx) -> dict:
        from ..quality.scene_attributes import categorize_scenes

        require_dataset(ctx)
        params = ctx.params
        if not params.get("attribute"):
            raise ValueError(
                "attribute is required: the name of the scene attribute, e.g. time_of_day"
            )
        field = params.get("embeddings_field") or None
        zero_shot = {}
        if params.get("predictor") == "zero_shot":
            from ..selection.zero_shot import DEFAULT_PROMPT, prompt_embeddings

            if not params.get("model_path") or not field:
                raise ValueError(
                    "zero-shot needs model_path (a CLIP-style checkpoint) and the "
                    "embeddings_field it wrote"
                )
            slice_name, prompts = prompt_embeddings(
                ctx.dataset, field, params["model_path"], params.get("values") or [],
                prompt=params.get("prompt") or DEFAULT_PROMPT,
            )
            zero_shot = {"slice_name": slice_name, "text_embeddings": prompts}
        return categorize_scenes(
            run_target(ctx),
            params["attribute"],
            embeddings_field=field,
            known_field=params.get("known_field") or None,
            output_field=params.get("output_field") or None,
            min_per_value=params.get("min_per_value", 2),
            progress=progress_reporter(ctx),
            **zero_shot,
        )

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx,
            {
                "output_field": "Predictions in",
                "predictor": "Predictor",
                "n_units": "Scenes categorized",
                "n_labeled": "Labeled scenes the probe learned from",
                "n_frozen_known_unused": "Labeled frozen scenes (not learned from)",
                "golden_accuracy": "Accuracy on the golden scenes",
                "n_golden_checked": "Golden scenes checked",
                "mean_confidence": "Mean confidence",
                "per_value": "Per value",
            },
        )
