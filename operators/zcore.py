"""Operator for the curate step: score the pool with zero-shot coreset selection (ZCore).

``compute_zcore`` reads stored embeddings (by default the scene embedding of a grouped
dataset, so each scene is scored once and every slice's sample gets its scene's score),
runs ZCore and writes a ``FloatField`` (``zcore``): high = covers a sparse region of
embedding space, low = redundant. It is scheduled by default: on a large pool its random
subspaces (1,000 per scored row by default, within [10k, 1M]) take minutes. All the work and every check is in
:mod:`..selection.scoring`, before anything is written.
"""

from __future__ import annotations

import dataclasses
import os

import fiftyone.operators.types as types

from ..core.names import ZCORE_FIELD
from ..core.views import unique_values
from ..selection.scoring import default_embeddings_field
from ..selection.visualization import vector_fields
from ..selection.algorithms.zcore import ZCoreParams, param_error, shard_count_error
from .common import (
    AnnoloopOperator,
    no_dataset_form,
    overwrite_toggle,
    progress_reporter,
    queue_sibling,
    run_target,
    whole_number,
)
from .forms import filled_count
from .results import result_property

#: The four ZCore hyperparameters (defaults: :class:`ZCoreParams`'s, the paper's; valid
#: ranges: :data:`..selection.algorithms.zcore.PARAM_RANGES`): (label, one-line explanation).
HYPERPARAMETERS = {
    "n_sample": (
        "Random subspaces",
        "Draws of (subspace, random point); each credits the nearest sample. Cost is linear",
    ),
    "sample_dim": ("Subspace dimensions", "Embedding dimensions in each random subspace"),
    "redund_nn": (
        "Redundancy neighbours",
        "Nearest neighbours of the credited sample that share its redundancy penalty",
    ),
    "redund_exp": (
        "Redundancy exponent",
        "Penalty ~ 1 / distance ** exponent: higher puts it on the closest neighbours",
    ),
}
#: Default random subspaces per scored row, and the range the default is kept in.
DRAWS_PER_ROW = 1_000
DRAWS_RANGE = (10_000, 1_000_000)
_RESULT_LABELS = {
    "score_field": "Score field",
    "n": "Scored",
    "unit": "Unit",
    "samples_written": "Samples written",
    "seconds": "Seconds",
    "backend": "Backend",
    "shards": "Shards",
    "queued": "Shards queued",
    "resumed": "Shards kept from an earlier attempt",
    "run_key": "Run record",
    "next_step": "Next",
}
#: The settings folded under "Advanced settings".
ADVANCED_SETTINGS = (*HYPERPARAMETERS, "seed", "backend", "n_workers", "shards")
_BACKENDS = {
    "auto": "GPU (torch) when one is available, else CPU (numpy)",
    "numpy": "CPU: exact, multi-threaded",
    "torch": "PyTorch on a GPU when available, else its CPU",
}


def next_step(score_field: str) -> str:
    """How to see the scores in the App's Embeddings panel (markdown)."""
    return (
        "To see the scores: run **annoloop: visualize embeddings** (`compute_visualization`) "
        "on a slice, open the **Embeddings** panel, pick its brain key and choose "
        f"**Color by** `{score_field}`. Sort the grid by `{score_field}` (descending) to see "
        "the samples ZCore keeps first."
    )


class ComputeZCore(AnnoloopOperator):
    default_delegated = True

    operator_name = "compute_zcore"
    operator_label = "annoloop: compute ZCore scores"
    operator_description = "Zero-shot coreset scores: high = covers a sparse region, low = redundant"

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        dataset = ctx.dataset
        if dataset is None:
            return no_dataset_form(inputs)
        target = run_target(ctx, inputs, action="Score")
        fields = vector_fields(dataset)
        if not fields:
            inputs.view(
                "no_embeddings",
                types.Warning(label="No embeddings stored yet: run compute_embeddings first"),
            )
            return types.Property(inputs)
        grouped = dataset.media_type == "group"
        per_group = grouped and bool(ctx.params.get("group_score", True))
        inputs.list(
            "embeddings_fields",
            types.String(),
            default=[default_embeddings_field(dataset, per_group)],
            label="Embeddings",
            description="Several fields (models) are concatenated, as in the ZCore paper",
            view=types.AutocompleteView(
                choices=[types.Choice(f, label=f) for f in fields],
                allow_user_input=False,
                allow_duplicates=False,
            ),
        )
        if grouped:
            inputs.bool(
                "group_score",
                default=True,
                label="Score scenes",
                description=(
                    "One score per group, written to every slice's sample; off: each slice's "
                    "samples are scored on their own"
                ),
            )
        inputs.str("score_field", default=ZCORE_FIELD, label="Score field")
        score_field = ctx.params.get("score_field") or ZCORE_FIELD
        scored = filled_count(dataset, score_field)
        overwrite_toggle(
            inputs,
            f"'{score_field}' already holds ZCore scores on {scored:,} samples" if scored else None,
            "Replace the scores of an earlier run in the score field",
        )
        inputs.bool(
            "advanced",
            default=False,
            label="Advanced settings",
            description="ZCore's hyperparameters, seed, backend and threads",
        )
        # An SDK call or a re-resolved form that sets a hyperparameter sees (and is checked
        # against) the advanced settings without ticking the box.
        if ctx.params.get("advanced") or any(n in ctx.params for n in ADVANCED_SETTINGS):
            _advanced_inputs(inputs, ctx.params, _default_params(pool_size(target, per_group)))
        return types.Property(inputs, view=types.View(label="Compute ZCore scores"))

    def execute(self, ctx) -> dict:
        from ..selection.scoring import compute_zcore

        params = ctx.params
        fields = params.get("embeddings_fields") or None
        if isinstance(fields, str):
            fields = [f.strip() for f in fields.split(",") if f.strip()]
        score_field = params.get("score_field") or ZCORE_FIELD
        target = run_target(ctx)
        group_score = bool(params.get("group_score", True))
        settings = dict(
            embeddings_fields=fields,
            score_field=score_field,
            group_score=group_score,
            params=_zcore_params(params, pool_size(target, group_score)),
            backend=params.get("backend") or "auto",
            overwrite=bool(params.get("overwrite", False)),
            progress=progress_reporter(ctx),
        )
        shards = whole_number(params.get("shards", 1))
        if shards == 1:
            return {**compute_zcore(target, **settings), "next_step": next_step(score_field)}
        from ..selection.zcore_shards import start_sharded_zcore

        result = start_sharded_zcore(
            target, shards=shards, queue_shard=self._shard_queue(ctx, target, score_field),
            **settings,
        )
        result.pop("operations")
        return {
            **result,
            "next_step": (
                f"Each of the {shards} shards is a scheduled operation: every `fiftyone "
                "delegated launch` worker on this database takes shards as it frees up, and "
                f"the last one writes the scores to `{score_field}`."
            ),
        }

    def _shard_queue(self, ctx, target, score_field: str):
        """``queue_shard(shard, run_id)``: schedules one shard as a delegated operation."""

        def queue(shard: int, run_id: str) -> str:
            params = {"score_field": score_field, "run_id": run_id, "shard": shard}
            return queue_sibling(self, ctx, ComputeZCoreShard.operator_name, target.view(), params)

        return queue

    def resolve_output(self, ctx) -> types.Property:
        return result_property(ctx, _RESULT_LABELS, markdown_keys=("next_step",))


class ComputeZCoreShard(AnnoloopOperator):
    """One shard of a sharded ZCore run, queued by ``compute_zcore`` with ``shards > 1``."""

    default_delegated = True
    unlisted = True

    operator_name = "compute_zcore_shard"
    operator_label = "annoloop: ZCore shard"
    operator_description = "Scores one shard of a sharded ZCore run (queued by compute_zcore)"

    def resolve_run_name(self, ctx) -> str:
        p = ctx.params
        return f"ZCore shard {int(p.get('shard', 0)) + 1} of '{p.get('score_field')}'"

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        inputs.str("score_field", required=True, label="Score field")
        inputs.str("run_id", required=True, label="Sharded run")
        inputs.int("shard", required=True, label="Shard")
        return types.Property(inputs)

    def execute(self, ctx) -> dict:
        from ..selection.zcore_shards import run_zcore_shard

        p = ctx.params
        return run_zcore_shard(
            ctx.target_view(),
            score_field=p.get("score_field"),
            run_id=p.get("run_id"),
            shard=whole_number(p.get("shard")),
            progress=progress_reporter(ctx),
        )


def pool_size(target, per_group: bool) -> int:
    """Rows ZCore scores in ``target``: its scenes when scoring scenes, else its samples."""
    if per_group and target.media_type == "group":
        return len(unique_values(target, "group.id"))
    return target.count()


def default_draws(rows: int) -> int:
    """Random subspaces for a pool of ``rows``: :data:`DRAWS_PER_ROW` each, within
    :data:`DRAWS_RANGE` (the paper's 1,000,000 is for pools of a thousand and more)."""
    low, high = DRAWS_RANGE
    return int(min(high, max(low, DRAWS_PER_ROW * rows)))


def _default_params(rows: int) -> ZCoreParams:
    """The form's (and an SDK call's) defaults: the paper's settings with draws scaled to
    the pool, on up to 8 CPU threads."""
    return ZCoreParams(n_sample=default_draws(rows), n_workers=min(8, os.cpu_count() or 1))


def _advanced_inputs(inputs: types.Object, params: dict, defaults: ZCoreParams) -> None:
    """The hyperparameters, seed, backend and threads (folded away by default)."""
    for name, (label, description) in HYPERPARAMETERS.items():
        _param_input(inputs, params, defaults, name, label, description)
    _param_input(inputs, params, defaults, "seed", "Seed", "Same seed, same scores")
    backends = types.RadioGroup()
    for name, description in _BACKENDS.items():
        backends.add_choice(name, label=name, description=description)
    inputs.enum("backend", backends.values(), default="auto", label="Backend", view=backends)
    _param_input(
        inputs, params, defaults, "n_workers", "CPU threads",
        "numpy backend; the scores do not depend on it",
    )
    shards = whole_number(params.get("shards", 1))
    error = shard_count_error(shards, _param_value(params, defaults, "n_sample"))
    inputs.int(
        "shards",
        default=1,
        label="Shards",
        description=(
            "Split the draws into this many scheduled operations, which every worker on "
            "this database shares; the same seed and shard count give the same scores"
        ),
        invalid=error is not None,
        error_message=error or "",
    )


def _param_value(params: dict, defaults: ZCoreParams, name: str):
    """A setting as the form sent it (unset or cleared: the default)."""
    value = params.get(name)
    return getattr(defaults, name) if value is None else whole_number(value)


def _param_input(
    inputs, params: dict, defaults: ZCoreParams, name: str, label: str, description: str
) -> None:
    """An integer setting of :class:`ZCoreParams`; an invalid value is marked with the SDK's
    own message (FiftyOne's ``min=`` check would say only "Value must be greater than ...")."""
    error = param_error(name, _param_value(params, defaults, name))
    inputs.int(
        name,
        default=getattr(defaults, name),
        label=label,
        description=description,
        invalid=error is not None,
        error_message=error or "",
    )


def _zcore_params(params: dict, rows: int) -> ZCoreParams:
    """The form's hyperparameters, seed and threads (defaults: :func:`_default_params`)."""
    defaults = _default_params(rows)
    names = (*HYPERPARAMETERS, "seed", "n_workers")
    return dataclasses.replace(defaults, **{n: _param_value(params, defaults, n) for n in names})
