"""Operator for the plan step: pick the next batch to label (coverage + targeting).

``plan_batch`` splits a budget between coverage of the unlabeled pool and targeting, following
the round schedule (cold start all coverage, then toward 30 % coverage / 70 % targeting)
unless a fraction is given. Targeting serves the current model's failures in an evaluation
(false negatives first) or, needing no labels, its uncertainty on the pool (the confidences
of its predictions there, from ``apply_detector`` with target ``"pool"``). It
tags the picks ``batch:vN`` + ``source:*`` on every slice, records why each was picked,
saves the view ``batch_vN`` and a plan record; a dry run only returns the plan. All the work
and every check is in :mod:`..selection.batches`, before anything is written.
"""

from __future__ import annotations

import fiftyone.operators.types as types

from ..core.names import DEFAULT_GT_FIELD, DEFAULT_PRED_FIELD, ZCORE_FIELD
from ..core.views import camera_slices
from ..selection import batches
from ..selection.algorithms.planner import COVERAGE_METHODS, DEFAULT_COVERAGE_METHOD, TARGETING_SOURCES
from ..selection.pool import default_uncertainty_slice
from ..selection.request import PlanRequest, plan_defaults
from .common import AnnoloopOperator, no_dataset_form, progress_reporter, require_dataset, run_target
from .forms import detections_fields, dropdown, number
from .results import result_property

_METHOD_HELP = {
    "typical": "Most typical row of each dense cluster nothing labeled covers (recommended)",
    "kcenter": "k-center greedy: the rows farthest from everything labeled",
    "zcore": (
        "Highest ZCore scores with redundancy control "
        f"(needs the '{ZCORE_FIELD}' field)"
    ),
    "random": "Uniformly random (seeded): the baseline that follows the pool's frequencies",
}
_RESULT_LABELS = {
    "batch": "Batch",
    "dry_run": "Dry run (nothing written)",
    "round": "Round",
    "targeting_source": "Targeting source",
    "eval_key": "Failures from",
    "uncertainty_field": "Uncertainty of",
    "coverage_fraction": "Coverage share",
    "n_targeting": "Targeting picks",
    "n_coverage": "Coverage picks",
    "fallback_reason": "Fallback",
    "view": "Saved view",
    "counts": "Pool",
    "picks": "Picks",
}
_SOURCE_HELP = {
    "failures": "Neighbours of the failures in the latest evaluation (false negatives first)",
    "uncertainty": (
        "Pool samples the model's predictions are least sure about (no labels needed; "
        "needs its predictions on the pool)"
    ),
}


class PlanBatch(AnnoloopOperator):
    default_delegated = False  # seconds on small pools; the App's Schedule is there for large ones

    operator_name = "plan_batch"
    operator_label = "annoloop: plan next batch"
    operator_description = (
        "Pick the next batch to label: pool coverage + the model's failures or uncertainty"
    )

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        dataset = ctx.dataset
        if dataset is None:
            return no_dataset_form(inputs)
        run_target(ctx, inputs, action="Plan over")
        params = ctx.params

        slice_name = None
        if dataset.media_type == "group":
            slices = list(dataset.group_slices)
            slice_name = params.get("slice") if params.get("slice") in slices else None
            slice_name = slice_name or dataset.default_group_slice
            dropdown(
                inputs,
                "slice",
                slices,
                slice_name,
                "Embeddings of slice",
                "The slice whose embeddings stand for the scene (a scene embedding is on all)",
            )
        uncertainty = params.get("targeting_source") == "uncertainty"
        defaults = plan_defaults(dataset, slice_name, params.get("targeting_source") or "failures")
        if not defaults.embeddings_fields:
            inputs.view(
                "no_embeddings",
                types.Warning(label="No embeddings stored yet: run compute_embeddings first"),
            )
            return types.Property(inputs)
        dropdown(
            inputs, "embeddings_field", defaults.embeddings_fields, defaults.embeddings_field,
            "Embeddings",
        )
        inputs.int(
            "budget",
            default=defaults.budget,
            required=True,
            label="Budget",
            description="Scenes (grouped datasets) or samples to pick",
        )

        sources = types.RadioGroup()
        for name in TARGETING_SOURCES:
            sources.add_choice(name, label=name, description=_SOURCE_HELP[name])
        inputs.enum(
            "targeting_source",
            sources.values(),
            default="failures",
            label="Targeting source",
            view=sources,
        )
        if uncertainty:
            if not _uncertainty_inputs(inputs, dataset, slice_name, params):
                return types.Property(inputs)
        else:
            _failure_inputs(inputs, dataset, params, defaults.evaluations)

        round_index, scheduled = defaults.round_index, defaults.scheduled_fraction
        inputs.bool(
            "use_schedule",
            default=True,
            label="Follow the schedule",
            description=(
                f"Round {round_index}: {scheduled:.0%} coverage / {1 - scheduled:.0%} targeting "
                "(cold start 100 %, then 65 %, then 30 %; all coverage without failures)"
            ),
        )
        if params.get("use_schedule") is False:
            number(
                inputs,
                ctx.params,
                "coverage_fraction",
                whole=False,
                default=scheduled,
                low=0.0,
                high=1.0,
                label="Coverage share",
                view=types.SliderView(
                    componentsProps={"slider": {"min": 0.0, "max": 1.0, "step": 0.05}}
                ),
            )
        methods = types.RadioGroup()
        for name in COVERAGE_METHODS:
            methods.add_choice(name, label=name, description=_METHOD_HELP.get(name))
        inputs.enum(
            "coverage_method",
            methods.values(),
            default=defaults.coverage_method,
            label="Coverage method",
            view=methods,
        )
        inputs.str(
            "batch_name",
            default=defaults.batch_name,
            label="Batch name",
            description="Tag of the picks; must be new",
        )
        inputs.str(
            "label_field",
            default=defaults.label_field,
            label="Label field",
            description="Samples labeled here are not in the pool",
        )
        inputs.int("seed", default=0, label="Seed", description="Same seed, same plan")
        inputs.bool(
            "dry_run",
            default=False,
            label="Dry run",
            description="Return the plan without tagging or saving anything",
        )
        return types.Property(inputs, view=types.View(label="Plan the next batch"))

    def execute(self, ctx) -> dict:
        params = with_form_defaults(require_dataset(ctx), ctx.params)
        result = batches.plan(run_target(ctx), request_from_params(params), progress_reporter(ctx))
        if not result["dry_run"] and not ctx.delegated:
            ctx.trigger("reload_dataset")  # show the new tags and saved view in the App
        return result

    def resolve_output(self, ctx) -> types.Property:
        from ..selection.pick_rows import PICK_COLUMNS, pick_row, unit_names

        results = dict(ctx.results or {})
        picks = results.get("picks") or []
        if picks and ctx.dataset is not None:  # named, and why, as the planner panel shows them
            names = unit_names(ctx.dataset, [p["id"] for p in picks])
            rows = [pick_row(p, names) for p in picks]
            results["picks"] = [{label: row[key] for key, label in PICK_COLUMNS} for row in rows]
        return result_property(ctx, _RESULT_LABELS, results=results)


def with_form_defaults(dataset, params: dict) -> dict:
    """``params`` with what an SDK call left out set as the form sets it: the budget and
    embeddings of :func:`..selection.request.plan_defaults` (the planner panel's too)."""
    missing = [k for k in ("budget", "embeddings_field") if k not in params]
    if not missing:
        return params
    defaults = plan_defaults(
        dataset, params.get("slice") or None, params.get("targeting_source") or "failures"
    )
    return {**params, **{k: getattr(defaults, k) for k in missing}}


def request_from_params(params: dict) -> PlanRequest:
    """The plan request of this operator's parameters (its form's, or an SDK call's).

    ``use_schedule`` False takes ``coverage_fraction``; unset, a given fraction is explicit.
    The failure settings are dropped with uncertainty targeting: the form keeps an
    evaluation chosen before switching to uncertainty.
    """
    p = params
    use_schedule = p.get("use_schedule")
    if use_schedule is None:  # SDK call: a given fraction is explicit
        use_schedule = p.get("coverage_fraction") is None
    patches_field = p.get("patches_field") if p.get("use_patches", True) else None
    targeting_source = p.get("targeting_source") or "failures"
    failures = targeting_source == "failures"
    return PlanRequest(
        budget=p.get("budget"),
        embeddings_field=p.get("embeddings_field"),
        batch_name=p.get("batch_name") or None,
        coverage_fraction=None if use_schedule else p.get("coverage_fraction"),
        coverage_method=p.get("coverage_method") or DEFAULT_COVERAGE_METHOD,
        targeting_source=targeting_source,
        uncertainty_field=p.get("uncertainty_field") or DEFAULT_PRED_FIELD,
        uncertainty_slice=p.get("uncertainty_slice") or None,
        eval_key=(p.get("eval_key") or None) if failures else None,
        pred_field=(p.get("pred_field") or None) if failures else None,
        patches_field=(patches_field or None) if failures else None,
        round_index=p.get("round_index"),
        neighbors_per_failure=p.get("neighbors_per_failure"),
        seed=p.get("seed", 0),
        dry_run=bool(p.get("dry_run", False)),
        slice_name=p.get("slice") or None,
        label_field=p.get("label_field") or None,
    )


def params_from_request(request: PlanRequest) -> dict:
    """This operator's form parameters for ``request`` (what a panel prefills the form with):
    the budget, embeddings, coverage method and schedule, and the evaluation and slice when
    set."""
    params = {
        "budget": request.budget,
        "embeddings_field": request.embeddings_field,
        "coverage_method": request.coverage_method,
        "use_schedule": request.coverage_fraction is None,
        "dry_run": request.dry_run,
    }
    optional = {
        "coverage_fraction": request.coverage_fraction,
        "eval_key": request.eval_key,
        "slice": request.slice_name,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    return params


def _failure_inputs(inputs: types.Object, dataset, params: dict, evaluations: list) -> None:
    """The evaluation whose failures are targeted (and its patch option), among the
    targetable ``evaluations``; the form says so when there is none (one of the test split
    is never offered: see :func:`..selection.failures.targetable_evaluations`)."""
    eval_key = params.get("eval_key")
    if eval_key not in evaluations:
        eval_key = evaluations[-1] if evaluations else None
    if eval_key is None:
        inputs.view(
            "no_evaluation",
            types.Notice(
                label="No mining-split evaluation yet: the batch is all coverage (cold start). "
                "Evaluate the model on the mining split to target its failures"
            ),
        )
        return
    dropdown(
        inputs,
        "eval_key",
        evaluations,
        eval_key,
        "Failures from evaluation",
        "Its false negatives, confusions and false positives are the targets",
    )
    config = dataset.get_evaluation_info(eval_key).config
    inputs.bool(
        "use_patches",
        default=False,
        label="Target failing objects",
        description="Query with the failing objects' patch embeddings, not their samples'",
    )
    if params.get("use_patches"):
        dropdown(
            inputs,
            "patches_field",
            [config.gt_field, config.pred_field],
            config.gt_field,
            "Objects of",
            "Missed objects are in the ground truth, false positives in the predictions",
        )


def _uncertainty_inputs(inputs: types.Object, dataset, slice_name: str | None, params) -> bool:
    """The image slice and Detections field holding the model's pool predictions; False
    (the form says what to run first) when there is no such field to choose."""
    view = dataset
    if dataset.media_type == "group":
        images = camera_slices(dataset)
        chosen = params.get("uncertainty_slice")
        if chosen not in images:
            chosen = default_uncertainty_slice(dataset, slice_name)
        if chosen is None:
            inputs.view("no_image_slice", types.Warning(label="No image slice to predict on"))
            return False
        dropdown(
            inputs,
            "uncertainty_slice",
            images,
            chosen,
            "Predictions of slice",
            "The camera slice whose predictions score a scene's uncertainty",
        )
        view = dataset.select_group_slices(chosen)
    # The label field is unset on the pool by definition, so it cannot hold predictions.
    label_field = params.get("label_field") or DEFAULT_GT_FIELD
    fields = [f for f in detections_fields(view) if f != label_field]
    if not fields:
        inputs.view(
            "no_predictions",
            types.Warning(
                label="No predictions yet: apply the detector to the pool first "
                "(apply_detector with target 'pool')"
            ),
        )
        return False
    default = DEFAULT_PRED_FIELD if DEFAULT_PRED_FIELD in fields else fields[0]
    dropdown(
        inputs,
        "uncertainty_field",
        fields,
        default,
        "Predictions field",
        "The model's detections on the pool; their confidences give each sample's uncertainty",
    )
    return True
