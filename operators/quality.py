"""Operators for label quality: frozen splits, the schema gate and golden-set QA.

``create_splits`` freezes a test set, a mining set and a golden set (tags, saved views, golden labels,
fingerprints). ``validate_labels`` checks a label field against its label schema and
quarantines violations by tag. ``check_golden`` scores a batch of annotations against the
golden labels and raises drift alarms. The work is in :mod:`..quality` (``frozen``,
``gate``, ``golden``); each operator validates its parameters there before anything is
written, so a bad call fails with a clear message and leaves the dataset as it was.
"""

from __future__ import annotations

import fiftyone.operators.types as types

from ..core.names import BATCH_TAG_PREFIX, DEFAULT_GT_FIELD, FROZEN_SPLIT_TAGS
from .common import (
    AnnoloopOperator,
    no_dataset_form,
    overwrite_toggle,
    progress_reporter,
    require_dataset,
    run_target,
)
from .results import result_property
from .forms import detections_fields, dropdown, label_field_dropdown, number


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
