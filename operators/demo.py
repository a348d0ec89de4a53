"""Operators for the offline demo: build the driving dataset, simulate an annotator."""

from __future__ import annotations

import fiftyone.operators.types as types

from .common import AnnoloopOperator, progress_reporter

DEFAULT_DEMO_NAME = "annoloop-demo"


def _default_night_fraction() -> float:
    from ..demo.algorithms.scenes import SceneConfig

    return SceneConfig().night_fraction


class LoadDemoDataset(AnnoloopOperator):
    operator_name = "load_demo_dataset"
    operator_label = "annoloop: load demo dataset"
    operator_description = "Generate a grouped camera + LiDAR driving dataset offline"

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        inputs.str(
            "name",
            default=DEFAULT_DEMO_NAME,
            required=True,
            label="Dataset name",
            description="Persistent dataset to create",
        )
        inputs.int(
            "num_scenes",
            default=200,
            required=True,
            label="Scenes",
            description="Each scene is a group: left + right camera and a point cloud",
        )
        inputs.float(
            "night_fraction",
            default=_default_night_fraction(),
            min=0.0,
            max=1.0,
            label="Night share",
            description="Probability that a scene is shot at night (the rare slice)",
        )
        inputs.int("seed", default=51, label="Seed", description="Same seed, same dataset")
        inputs.bool(
            "overwrite",
            default=False,
            label="Overwrite",
            description="Replace a dataset of the same name (it is kept if the build fails)",
        )
        inputs.str(
            "media_dir",
            required=False,
            label="Media directory",
            description="Where images and .pcd files go; default: FiftyOne's dataset dir",
        )
        self.add_execution_mode(ctx, inputs)
        return types.Property(inputs, view=types.View(label="Load annoloop demo dataset"))

    def execute(self, ctx) -> dict:
        from ..demo.dataset import load_demo_dataset
        from ..demo.algorithms.scenes import SceneConfig

        night_fraction = ctx.params.get("night_fraction")
        dataset = load_demo_dataset(
            name=ctx.params.get("name") or DEFAULT_DEMO_NAME,
            num_scenes=ctx.params.get("num_scenes", 200),
            seed=ctx.params.get("seed", 51),
            media_dir=ctx.params.get("media_dir") or None,
            overwrite=bool(ctx.params.get("overwrite", False)),
            progress=progress_reporter(ctx),
            scene_config=None if night_fraction is None else SceneConfig(night_fraction=night_fraction),
        )
        ctx.trigger("open_dataset", {"dataset": dataset.name})
        return {
            "dataset": dataset.name,
            "num_groups": len(dataset.distinct("group.id")),
            "slices": dataset.group_slices,
        }

    def resolve_output(self, ctx) -> types.Property:
        outputs = types.Object()
        outputs.str("dataset", label="Dataset")
        outputs.int("num_groups", label="Scenes")
        outputs.list("slices", types.String(), label="Slices")
        return types.Property(outputs)


class SimulateAnnotation(AnnoloopOperator):
    operator_name = "simulate_annotation"
    operator_label = "annoloop: simulate annotation"
    operator_description = "Label the current view from the demo oracle with a noisy, drifting annotator"

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
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
        self.add_execution_mode(ctx, inputs)
        return types.Property(inputs, view=types.View(label="Simulate annotation of the view"))

    def execute(self, ctx) -> dict:
        from ..demo.annotation import annotate_batch

        return annotate_batch(
            ctx.target_view(),
            ctx.params["batch"],
            label_field=ctx.params.get("label_field") or "ground_truth",
            seed=int(ctx.params.get("seed", 0)),
            overwrite=bool(ctx.params.get("overwrite", False)),
        )
