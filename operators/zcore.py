"""Operator for the curate step: score the pool with zero-shot coreset selection (ZCore).

``compute_zcore`` reads stored embeddings (by default the scene embedding of a grouped
dataset, so each scene is scored once and every slice's sample gets its scene's score),
runs ZCore and writes a ``FloatField`` (``zcore``): high = covers a sparse region of
embedding space, low = redundant. It is delegated by default: the paper's 1M random
subspaces take minutes on a large pool. All the work and every check is in
:mod:`..selection.scoring`, before anything is written.
"""

from __future__ import annotations

import os

import fiftyone.operators.types as types

from ..core.names import ZCORE_FIELD
from ..selection.embed import DEFAULT_EMBEDDINGS_FIELD, DEFAULT_GROUP_FIELD
from ..selection.visualization import vector_fields
from ..selection.algorithms.zcore import ZCoreParams
from .common import AnnoloopOperator, no_dataset_form, progress_reporter

#: The four ZCore hyperparameters (defaults: :class:`ZCoreParams`'s, the paper's):
#: (minimum, label, one-line explanation).
HYPERPARAMETERS = {
    "n_sample": (
        1,
        "Random subspaces",
        "Draws of (subspace, random point); each credits the nearest sample. Cost is linear",
    ),
    "sample_dim": (1, "Subspace dimensions", "Embedding dimensions in each random subspace"),
    "redund_nn": (
        1,
        "Redundancy neighbours",
        "Nearest neighbours of the credited sample that share its redundancy penalty",
    ),
    "redund_exp": (
        0,
        "Redundancy exponent",
        "Penalty ~ 1 / distance ** exponent: higher puts it on the closest neighbours",
    ),
}
_BACKENDS = {
    "auto": "GPU (torch) when one is available, else CPU (numpy)",
    "numpy": "CPU: exact, multi-threaded",
    "torch": "PyTorch on a GPU when available, else its CPU",
}


def default_embeddings_field(dataset, fields: list[str]) -> str:
    """The scene embedding on grouped datasets, else ``embedding``, else the first field."""
    preferred = [DEFAULT_GROUP_FIELD] if dataset.media_type == "group" else []
    preferred.append(DEFAULT_EMBEDDINGS_FIELD)
    return next((f for f in preferred if f in fields), fields[0])


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
        ctx.target_view()  # offers the dataset / current view / selection choice
        fields = vector_fields(dataset)
        if not fields:
            inputs.view(
                "no_embeddings",
                types.Warning(label="No embeddings stored yet: run compute_embeddings first"),
            )
            return types.Property(inputs)
        grouped = dataset.media_type == "group"
        inputs.list(
            "embeddings_fields",
            types.String(),
            default=[default_embeddings_field(dataset, fields)],
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
        defaults = ZCoreParams()
        for name, (low, label, description) in HYPERPARAMETERS.items():
            inputs.int(
                name, default=getattr(defaults, name), min=low, label=label, description=description
            )
        inputs.int("seed", default=0, min=0, label="Seed", description="Same seed, same scores")
        backends = types.RadioGroup()
        for name, description in _BACKENDS.items():
            backends.add_choice(name, label=name, description=description)
        inputs.enum("backend", backends.values(), default="auto", label="Backend", view=backends)
        inputs.int(
            "n_workers",
            default=min(8, os.cpu_count() or 1),
            min=1,
            label="CPU threads",
            description="numpy backend; the scores do not depend on it",
        )
        inputs.bool(
            "overwrite",
            default=False,
            label="Overwrite",
            description="Replace the scores of an earlier run in the score field",
        )
        self.add_execution_mode(ctx, inputs)
        return types.Property(inputs, view=types.View(label="Compute ZCore scores"))

    def execute(self, ctx) -> dict:
        from ..selection.scoring import compute_zcore

        params = ctx.params
        fields = params.get("embeddings_fields") or None
        if isinstance(fields, str):
            fields = [f.strip() for f in fields.split(",") if f.strip()]
        score_field = params.get("score_field") or ZCORE_FIELD
        result = compute_zcore(
            ctx.target_view(),
            embeddings_fields=fields,
            score_field=score_field,
            group_score=bool(params.get("group_score", True)),
            params=_zcore_params(params),
            backend=params.get("backend") or "auto",
            overwrite=bool(params.get("overwrite", False)),
            progress=progress_reporter(ctx),
        )
        return {**result, "next_step": next_step(score_field)}

    def resolve_output(self, ctx) -> types.Property:
        outputs = types.Object()
        outputs.str("score_field", label="Score field")
        outputs.int("n", label="Scored")
        outputs.str("unit", label="Unit")
        outputs.int("samples_written", label="Samples written")
        outputs.float("seconds", label="Seconds")
        outputs.str("backend", label="Backend")
        outputs.str("run_key", label="Run record")
        outputs.str("next_step", label="Next", view=types.MarkdownView())
        return types.Property(outputs)


def _zcore_params(params: dict) -> ZCoreParams:
    """The form's hyperparameters, seed and threads (defaults: :class:`ZCoreParams`'s)."""
    defaults = ZCoreParams()
    return ZCoreParams(
        **{name: _integer(params.get(name, getattr(defaults, name))) for name in HYPERPARAMETERS},
        seed=_integer(params.get("seed", 0)),
        n_workers=_integer(params.get("n_workers", 1)),
    )


def _integer(value):
    """Form numbers may arrive as floats (``1000.0``); whole ones become ints, others stay
    as they are for :class:`~..selection.zcore.ZCoreParams` to reject with a clear message."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
