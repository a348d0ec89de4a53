"""Operators for label quality: frozen splits, the schema gate and golden-set QA.

``create_splits`` freezes a test set, a mining set and a golden set (tags, saved views, golden labels,
fingerprints). ``validate_labels`` checks a label field against its label schema and
quarantines violations by tag. ``check_sensor_links`` projects each scene's cuboids into its cameras and quarantines the
2D boxes and cuboids that disagree. ``check_golden`` scores a batch of annotations against the
golden labels and raises drift alarms. ``check_incoming_drift`` compares a newly arrived batch's
embeddings with the pool's and tags what is novel. The work is in :mod:`..quality` (``frozen``,
``gate``, ``linking``, ``golden``, ``incoming``); each operator validates its parameters there before anything is
written, so a bad call fails with a clear message and leaves the dataset as it was.
"""

from __future__ import annotations

import fiftyone.operators.types as types

from ..core.names import BATCH_TAG_PREFIX, DEFAULT_GT_FIELD, FROZEN_SPLIT_TAGS, INCOMING_TAG_PREFIX
from .common import (
    AnnoloopOperator,
    no_dataset_form,
    overwrite_toggle,
    progress_reporter,
    require_dataset,
    run_target,
)
from .forms import detections_fields, dropdown, embeddings_dropdown, label_field_dropdown, number
from .results import result_property


def _slices_param(params) -> list[str] | None:
    """``slices`` as a list (a comma-separated str is accepted); None for "all"."""
    slices = params.get("slices") or []
    if isinstance(slices, str):
        slices = [s.strip() for s in slices.split(",") if s.strip()]
    return list(slices) or None


class CreateSplits(AnnoloopOperator):
    operator_name = "create_splits"
    operator_label = "annoloop: create frozen splits"
    operator_description = (
        "Freeze a test set, a mining set and a golden set by scene, stratified and seeded"
    )

    def resolve_input(self, ctx) -> types.Property:
        from ..quality.frozen import DEFAULT_GOLDEN_FIELD, split_defaults
        from ..quality.resplit import measured_rounds

        inputs = types.Object()
        if ctx.dataset is None:
            return no_dataset_form(inputs)
        try:
            defaults = split_defaults(ctx.dataset)
        except ValueError as err:  # a dataset without samples
            inputs.view("no_samples", types.Warning(label=str(err)))
            return types.Property(inputs)
        number(
            inputs,
            ctx.params,
            "test",
            whole=False,
            default=0.1,
            low=0.0,
            label="Test set",
            description="Share of the scenes in [0, 1), or a number of scenes",
        )
        number(
            inputs,
            ctx.params,
            "mining",
            whole=False,
            default=0.1,
            low=0.0,
            label="Mining set",
            description="Labeled validation scenes whose model failures the planner targets "
            "(the test set only reports); share in [0, 1) or a number of scenes",
        )
        number(
            inputs,
            ctx.params,
            "golden",
            whole=False,
            default=0.02,
            low=0.0,
            label="Golden set",
            description="Share of the scenes in [0, 1), or a number of scenes",
        )
        inputs.int("seed", default=0, label="Seed", description="Same seed, same splits")
        inputs.list(
            "strata_fields",
            types.String(),
            default=defaults["strata_fields"],
            label="Stratify by",
            description="Scene attributes every split should cover in proportion",
        )
        inputs.str(
            "scene_field",
            default=defaults["scene_field"],
            required=False,
            label="Scene field",
            description="Samples sharing it are split together (default: the group)",
        )
        inputs.str(
            "duplicate_field",
            default=defaults["duplicate_field"],
            required=False,
            label="Near-duplicate field",
            description="Scene a sample nearly duplicates; linked scenes stay together",
        )
        fields = detections_fields(ctx.dataset)
        if fields:
            dropdown(
                inputs,
                "source_field",
                fields,
                defaults["source_field"] if defaults["source_field"] in fields else fields[0],
                "Golden labels from",
                "Trusted labels copied into the golden field",
            )
        inputs.str("golden_field", default=DEFAULT_GOLDEN_FIELD, label="Golden field")
        inputs.list(
            "test_fields",
            types.String(),
            required=False,
            label="Frozen test fields",
            description="Label fields of the test and mining sets to fingerprint "
            "(default: the source field)",
        )
        number(
            inputs, ctx.params, "min_stratum_groups",
            whole=True, default=3, low=1, label="Smallest stratum with a pick",
        )
        frozen = ctx.dataset.match_tags(list(FROZEN_SPLIT_TAGS)).count()
        overwrite_toggle(
            inputs,
            f"Frozen splits exist ({frozen:,} samples)" if frozen else None,
            "Re-draw existing splits (changes which samples are frozen)",
        )
        inputs.bool(
            "reset",
            default=False,
            label="Reset the ledger",
            description="Archive the ledger's rounds (measured on the old sets), start an empty "
            "one, and draw only from scenes no model trained on; needed to re-draw after "
            "training",
        )
        rounds = sum(len(r) for r in measured_rounds(ctx.dataset).values())
        if frozen and rounds and ctx.params.get("overwrite") and not ctx.params.get("reset"):
            inputs.view(
                "reset_needed",
                types.Warning(
                    label=f"The ledger holds {rounds} round{'s' * (rounds != 1)} measured on the "
                    "current test set: a re-draw needs Reset the ledger (the rounds are "
                    "archived, not deleted)"
                ),
            )
        return types.Property(inputs, view=types.View(label="Create frozen splits"))

    def execute(self, ctx) -> dict:
        from ..quality.frozen import DEFAULT_GOLDEN_FIELD, create_splits

        params = ctx.params
        return create_splits(
            require_dataset(ctx),
            test=params.get("test", 0.1),
            golden=params.get("golden", 0.02),
            mining=params.get("mining", 0.1),
            seed=params.get("seed", 0),
            strata_fields=params.get("strata_fields"),
            scene_field=params.get("scene_field") or None,
            duplicate_field=params.get("duplicate_field"),
            source_field=params.get("source_field") or None,
            golden_field=params.get("golden_field") or DEFAULT_GOLDEN_FIELD,
            test_fields=params.get("test_fields") or None,
            min_stratum_groups=params.get("min_stratum_groups", 3),
            overwrite=bool(params.get("overwrite", False)),
            reset=bool(params.get("reset", False)),
            progress=progress_reporter(ctx),
        )

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx,
            {
                "counts": "Scenes and samples per split",
                "strata": "Strata",
                "fingerprints": "Label fingerprints",
                "excluded_scenes": "Trained scenes left out of the draw (reset)",
                "archived_rounds": "Ledger rounds archived (reset)",
            },
        )


class ValidateLabels(AnnoloopOperator):
    operator_name = "validate_labels"
    operator_label = "annoloop: validate labels (schema gate)"
    operator_description = "Check labels against the label schema; quarantine violations by tag"

    def resolve_input(self, ctx) -> types.Property:
        from ..quality.gate import DEFAULT_VIOLATIONS_FIELD

        inputs = types.Object()
        if ctx.dataset is None:
            return no_dataset_form(inputs)
        run_target(ctx, inputs, action="Check")
        default = label_field_dropdown(inputs, ctx.dataset, "label_field", "Label field")
        if default is None:
            return types.Property(inputs)
        field = ctx.params.get("label_field") or default
        if field not in ctx.dataset.label_schemas:
            inputs.view(
                "no_schema",
                types.Notice(
                    label=f"'{field}' has no label schema on this dataset: paste one below "
                    "or set it with dataset.set_label_schemas()"
                ),
            )
        # The App sends JSON text; SDK callers may pass the schema as a dict.
        schema_input = inputs.obj if isinstance(ctx.params.get("schema"), dict) else inputs.str
        schema_input(
            "schema",
            required=False,
            label="Schema (JSON)",
            description="Optional; default: the dataset's label schema of the field",
        )
        inputs.list(
            "slices",
            types.String(),
            required=False,
            label="Slices",
            description="Grouped datasets: slices to check (default: all image and 3D slices)",
        )
        inputs.str(
            "batch_tag",
            required=False,
            label="Batch tag",
            description="Samples (groups) with this tag must have labels: empty ones are flagged",
        )
        inputs.bool(
            "allow_empty",
            default=False,
            label="Accept empty label lists",
            description="In a batch, only flag samples with no label field at all",
        )
        inputs.str("violations_field", default=DEFAULT_VIOLATIONS_FIELD, label="Violations field")
        number(
            inputs, ctx.params, "box_tolerance",
            whole=False, default=1e-3, low=0.0, label="Box bounds tolerance",
        )
        return types.Property(inputs, view=types.View(label="Validate labels against the schema"))

    def execute(self, ctx) -> dict:
        from ..quality.gate import DEFAULT_VIOLATIONS_FIELD, gate_label_field

        require_dataset(ctx)
        params = ctx.params
        return gate_label_field(
            run_target(ctx),
            params.get("label_field") or DEFAULT_GT_FIELD,
            schema=params.get("schema") or None,
            slices=_slices_param(params),
            batch_tag=params.get("batch_tag") or None,
            allow_empty=bool(params.get("allow_empty", False)),
            violations_field=params.get("violations_field") or DEFAULT_VIOLATIONS_FIELD,
            box_tolerance=params.get("box_tolerance", 1e-3),
            progress=progress_reporter(ctx),
        )

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx,
            {
                "quarantined": "Samples with violations",
                "newly_tagged": "Newly quarantined samples",
                "released": "Released samples",
                "total": "Violations by rule and class",
            },
        )


class CheckGolden(AnnoloopOperator):
    operator_name = "check_golden"
    operator_label = "annoloop: check golden set (QA + drift)"
    operator_description = "Score annotations against the golden labels per batch; alarm on drift"

    def resolve_input(self, ctx) -> types.Property:
        from ..quality.golden import BATCH_BY, DEFAULT_BATCH_ATTRIBUTE

        inputs = types.Object()
        if ctx.dataset is None:
            return no_dataset_form(inputs)
        default = label_field_dropdown(
            inputs,
            ctx.dataset,
            "candidate_field",
            "Labels to score",
            "Annotator or autolabeler output",
        )
        if default is None:
            return types.Property(inputs)
        inputs.str(
            "golden_field",
            required=False,
            label="Golden field",
            description="Default: the field create_splits filled",
        )
        inputs.float("iou", default=0.5, label="IoU threshold", description="In (0, 1]")
        dropdown(inputs, "batch_by", BATCH_BY, "attribute", "Batches from")
        batch_by = ctx.params.get("batch_by", "attribute")
        if batch_by == "attribute":
            inputs.str(
                "batch_attribute", default=DEFAULT_BATCH_ATTRIBUTE, label="Batch label attribute"
            )
        elif batch_by == "tag":
            inputs.str(
                "batch_tag_prefix", default=BATCH_TAG_PREFIX, label="Batch tag prefix"
            )
        elif batch_by == "name":
            inputs.str(
                "batch_name",
                required=False,  # check_golden says what is missing and what to pass
                label="Batch name",
                description="The one batch name of the whole golden set",
            )
        inputs.list("slices", types.String(), required=False, label="Slices")
        inputs.str(
            "baseline_batch",
            required=False,
            label="Baseline batch",
            description="Drift is measured against it (default: the first checked batch)",
        )
        inputs.bool("reset_history", default=False, label="Start a new history")
        return types.Property(
            inputs, view=types.View(label="Check annotations against the golden set")
        )

    def execute(self, ctx) -> dict:
        from ..quality.golden import DEFAULT_BATCH_ATTRIBUTE, check_golden

        params = ctx.params
        return check_golden(
            require_dataset(ctx),
            params.get("candidate_field") or DEFAULT_GT_FIELD,
            golden_field=params.get("golden_field") or None,
            iou=params.get("iou", 0.5),
            batch_by=params.get("batch_by") or "attribute",
            batch_attribute=params.get("batch_attribute") or DEFAULT_BATCH_ATTRIBUTE,
            batch_tag_prefix=params.get("batch_tag_prefix") or BATCH_TAG_PREFIX,
            batch_name=params.get("batch_name") or None,
            slices=_slices_param(params),
            baseline_batch=params.get("baseline_batch") or None,
            reset_history=bool(params.get("reset_history", False)),
            progress=progress_reporter(ctx),
        )

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx,
            {
                "batches": "Batches checked",
                "new_alarms": "Alarms of these batches",
                "per_batch": "Metrics per batch and slice",
            },
        )


class CheckIncomingDrift(AnnoloopOperator):
    operator_name = "check_incoming_drift"
    operator_label = "annoloop: check incoming data for drift"
    operator_description = (
        "Compare a new batch's embeddings with the pool's; tag and name the novel samples"
    )

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        if ctx.dataset is None:
            return no_dataset_form(inputs)
        dataset = ctx.dataset
        tags = sorted(
            t for t in dataset.distinct("tags") if t.startswith(INCOMING_TAG_PREFIX)
        )
        if tags:
            dropdown(inputs, "batch_tag", tags, tags[-1], "New batch", "Its tag")
        else:
            inputs.view(
                "no_incoming",
                types.Warning(
                    label=f"No samples tagged '{INCOMING_TAG_PREFIX}…' yet: tag the newly "
                    f"arrived samples (e.g. {INCOMING_TAG_PREFIX}week-2) and name the tag here"
                ),
            )
            inputs.str(
                "batch_tag",
                required=False,  # execute says what is missing and what to pass
                label="New batch",
                description="Tag of the newly arrived samples (e.g. incoming:week-2)",
            )
        if embeddings_dropdown(inputs, dataset) is None:
            return types.Property(inputs)
        inputs.list(
            "describe_by",
            types.String(),
            default=[f for f in ("weather", "time_of_day") if f in dataset.get_field_schema()],
            required=False,
            label="Describe clusters by",
            description="Sample fields whose dominant values name each novel cluster",
        )
        number(inputs, ctx.params, "k", whole=True, default=5, low=1, high=100,
               label="Neighbour k", description="The k-th nearest pool sample scores a sample")
        number(inputs, ctx.params, "alpha", whole=False, default=0.01, low=1e-6, high=0.5,
               label="Alarm level", description="The batch alarms when its p-value is below it")
        number(inputs, ctx.params, "fdr", whole=False, default=0.1, low=1e-6, high=0.5,
               label="False discovery rate", description="Of the samples flagged novel")
        number(inputs, ctx.params, "n_permutations", whole=True, default=999, low=99,
               high=100000, label="Permutations")
        inputs.int("seed", default=0, label="Seed")
        return types.Property(inputs, view=types.View(label="Check incoming data for drift"))

    def execute(self, ctx) -> dict:
        from ..quality.incoming import check_incoming

        params = ctx.params
        if not params.get("batch_tag"):
            raise ValueError("batch_tag is required: the tag of the newly arrived samples")
        return check_incoming(
            require_dataset(ctx),
            params["batch_tag"],
            embeddings_field=params.get("embeddings_field") or None,
            describe_by=params.get("describe_by") or (),
            k=params.get("k", 5),
            alpha=params.get("alpha", 0.01),
            fdr=params.get("fdr", 0.1),
            n_permutations=params.get("n_permutations", 999),
            seed=params.get("seed", 0),
            progress=progress_reporter(ctx),
        )

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx,
            {
                "alarm": "Drift alarm",
                "p_value": "Batch p-value",
                "n_novel": "Novel samples",
                "saved_view": "Saved view of them",
                "clusters": "Novel clusters",
                "next_step": "Next step",
            },
        )


#: Thresholds of the cross-sensor check the form shows (LinkParams' fields, shown folded).
_LINK_THRESHOLDS = (
    ("iou_threshold", "Misaligned below IoU", "A linked box and projection below it are misaligned"),
    ("match_iou", "Linked from IoU", "Least overlap at which a box and a projection are linked"),
    ("min_visible", "Expected from visible share", "Unoccluded share above which a cuboid needs a box"),
    ("min_in_frame", "Expected from share in frame", "Share of the projection inside the image"),
)


class CheckSensorLinks(AnnoloopOperator):
    operator_name = "check_sensor_links"
    operator_label = "annoloop: check LiDAR-camera links"
    operator_description = (
        "Project every cuboid into each camera and match the 2D boxes; quarantine what disagrees"
    )

    def resolve_input(self, ctx) -> types.Property:
        from ..quality.algorithms.linking import LinkParams
        from ..quality.labels import MEDIA_3D
        from ..quality.linking import DEFAULT_EXTRINSICS_FIELD, DEFAULT_INTRINSICS_FIELD

        inputs = types.Object()
        if ctx.dataset is None:
            return no_dataset_form(inputs)
        dataset = ctx.dataset
        if dataset.media_type != "group":
            inputs.view(
                "not_grouped",
                types.Warning(label="This check needs a grouped dataset: a point-cloud slice "
                              "and camera slices per scene"),
            )
            return types.Property(inputs)
        run_target(ctx, inputs, action="Check")
        if label_field_dropdown(inputs, dataset, "label_field", "Label field") is None:
            return types.Property(inputs)
        media = dataset.group_media_types
        in_3d = sorted(s for s, m in media.items() if m in MEDIA_3D)
        cameras = sorted(s for s, m in media.items() if m == "image")
        if not in_3d or not cameras:
            inputs.view(
                "no_slices",
                types.Warning(label=f"Needs a point-cloud slice and an image slice; slices: {media}"),
            )
            return types.Property(inputs)
        dropdown(inputs, "cuboid_slice", in_3d, in_3d[0], "Cuboids from", "The LiDAR slice")
        inputs.list(
            "camera_slices",
            types.String(),
            default=cameras,
            label="Cameras",
            description="Image slices whose 2D boxes the cuboids are checked against",
        )
        missing = [f for f in (DEFAULT_INTRINSICS_FIELD, DEFAULT_EXTRINSICS_FIELD) if dataset.get_field(f) is None]
        if missing:
            inputs.view(
                "no_calibration",
                types.Notice(label=f"No {', '.join(missing)} field: name the fields that hold each "
                             "camera sample's calibration (K: 9 numbers, extrinsics: 16, row-major)"),
            )
        inputs.str("intrinsics_field", default=DEFAULT_INTRINSICS_FIELD, label="Intrinsics field")
        inputs.str("extrinsics_field", default=DEFAULT_EXTRINSICS_FIELD, label="Extrinsics field")
        inputs.bool(
            "advanced",
            default=False,
            label="Advanced settings",
            description="The check's IoU and visibility thresholds",
        )
        if ctx.params.get("advanced") or any(n in ctx.params for n, _, _ in _LINK_THRESHOLDS):
            defaults = LinkParams()
            for name, label, description in _LINK_THRESHOLDS:
                number(inputs, ctx.params, name, whole=False, default=getattr(defaults, name),
                       low=1e-6, high=1.0, label=label, description=description)
        return types.Property(inputs, view=types.View(label="Check LiDAR-camera links"))

    def execute(self, ctx) -> dict:
        from ..quality.algorithms.linking import LinkParams
        from ..quality.linking import check_sensor_links

        require_dataset(ctx)
        params = ctx.params
        thresholds = {n: params[n] for n, _, _ in _LINK_THRESHOLDS if params.get(n) is not None}
        return check_sensor_links(
            run_target(ctx),
            params.get("label_field") or DEFAULT_GT_FIELD,
            cuboid_slice=params.get("cuboid_slice") or None,
            camera_slices=params.get("camera_slices") or None,
            **{k: params[k] for k in ("intrinsics_field", "extrinsics_field") if params.get(k)},
            params=LinkParams(**thresholds),
            progress=progress_reporter(ctx),
        )

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx,
            {
                "quarantined": "Samples with link violations",
                "newly_tagged": "Newly quarantined samples",
                "released": "Released samples",
                "total": "Checked and found",
                "skipped": "Not checked",
                "violations": "First violations",
            },
        )
