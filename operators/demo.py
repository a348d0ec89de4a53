"""Operators for the offline demo: build the driving dataset, simulate an annotator."""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators.types as types
from fiftyone.operators.constants import ViewTarget

from ..core.views import unique_values
from ..demo.algorithms.scenes import SceneConfig
from ..demo.dataset import DEFAULT_NAME, DEFAULT_NUM_SCENES, DEFAULT_SEED, load_demo_dataset
from .common import AnnoloopOperator, overwrite_toggle, progress_reporter, run_target
from .forms import number
from .results import result_property

#: Scenes from which the App preselects "Schedule" for the build (minutes of rendering).
SCHEDULE_FROM_SCENES = 500

#: Form parameters passed to ``load_demo_dataset`` as they are; one left out (or None)
#: takes the function's default, which is also the form's.
_LOAD_PARAMS = ("name", "num_scenes", "seed", "overwrite")


class LoadDemoDataset(AnnoloopOperator):
    operator_name = "load_demo_dataset"
    operator_label = "annoloop: load demo dataset"
    operator_description = "Generate a grouped camera + LiDAR driving dataset offline"

    def schedules_by_default(self, ctx) -> bool:
        return int(ctx.params.get("num_scenes") or DEFAULT_NUM_SCENES) >= SCHEDULE_FROM_SCENES

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        inputs.str(
            "name",
            default=DEFAULT_NAME,
            label="Dataset name",
            description="Persistent dataset to create",
        )
        inputs.int(
            "num_scenes",
            default=DEFAULT_NUM_SCENES,
            label="Scenes",
            description="Each scene is a group: left + right camera and a point cloud",
        )
        number(
            inputs,
            ctx.params,
            "night_fraction",
            whole=False,
            default=SceneConfig().night_fraction,
            low=0.0,
            high=1.0,
            label="Night share",
            description="Probability that a scene is shot at night (the rare slice)",
        )
        inputs.int(
            "seed", default=DEFAULT_SEED, label="Seed", description="Same seed, same dataset"
        )
        name = ctx.params.get("name") or DEFAULT_NAME
        overwrite_toggle(
            inputs,
            f"Dataset '{name}' exists" if fo.dataset_exists(name) else None,
            "Replace a dataset of the same name (it is kept if the build fails)",
        )
        inputs.str(
            "media_dir",
            required=False,
            label="Media directory",
            description="Where images and .pcd files go; default: FiftyOne's dataset dir",
        )
        return types.Property(inputs, view=types.View(label="Load annoloop demo dataset"))

    def execute(self, ctx) -> dict:
        params = ctx.params
        night_fraction = params.get("night_fraction")
        dataset = load_demo_dataset(
            **{k: params[k] for k in _LOAD_PARAMS if params.get(k) is not None},
            media_dir=params.get("media_dir") or None,
            progress=progress_reporter(ctx),
            scene_config=None if night_fraction is None else SceneConfig(night_fraction=night_fraction),
        )
        ctx.trigger("open_dataset", {"dataset": dataset.name})
        return {
            "dataset": dataset.name,
            "num_groups": len(unique_values(dataset, "group.id")),
            "slices": dataset.group_slices,
        }

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx, {"dataset": "Dataset", "num_groups": "Scenes", "slices": "Slices"}
        )


class SimulateAnnotation(AnnoloopOperator):
    operator_name = "simulate_annotation"
    operator_label = "annoloop: simulate annotation"
    operator_description = "Label the current view from the demo oracle with a noisy, drifting annotator"

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        if ctx.dataset is not None:
            # Its action is on the open view (a batch the panel's "Annotate this batch"
            # opened); the whole dataset holds the frozen splits, which it refuses.
            run_target(ctx, inputs, action="Annotate", default=ViewTarget.CURRENT_VIEW)
        inputs.str(
            "batch",
            required=True,
            label="Batch",
            description=(
                "Batch name recorded on every label, e.g. batch:v1; its number places it on the "
                "drift schedule (clean for batches 0-1, drifting from batch 2)"
            ),
        )
        inputs.str("label_field", default="ground_truth", label="Label field")
        inputs.int("seed", default=0, label="Seed")
        inputs.bool(
            "overwrite",
            default=False,
            label="Replace a person's labels",
            description="Off: samples whose labels a person added or corrected are left alone",
        )
        return types.Property(inputs, view=types.View(label="Simulate annotation of the view"))

    def execute(self, ctx) -> dict:
        from ..demo.annotation import annotate_batch

        return annotate_batch(
            run_target(ctx),
            ctx.params["batch"],
            label_field=ctx.params.get("label_field") or "ground_truth",
            seed=int(ctx.params.get("seed", 0)),
            overwrite=bool(ctx.params.get("overwrite", False)),
        )

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx,
            {
                "batch": "Batch",
                "label_field": "Label field",
                "num_samples": "Samples annotated",
                "labels": "Labels written",
                "missed": "Objects missed",
                "confused": "Classes confused",
                "renamed": "Classes renamed",
                "jittered": "Boxes jittered",
                "false_positives": "False positives",
                "left_alone": "Samples left alone (a person's labels)",
            },
        )
