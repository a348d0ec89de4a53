"""Operators of the annotation round trip: send a planned batch to a tool, load it back.

``send_batch`` uploads a batch to Label Studio, CVAT or Labelbox through FiftyOne's
annotation API, one queue per annotator with golden scenes hidden in each; ``load_batch``
brings the labels back through the schema gate and scores every annotator on the golden
tasks. The work is in :mod:`..annotation` (``send``, ``load``), which validates everything
before it uploads, downloads or writes.
"""

from __future__ import annotations

import fiftyone.operators.types as types

from ..core.names import DEFAULT_GT_FIELD
from .common import AnnoloopOperator, no_dataset_form, progress_reporter, require_dataset
from .forms import dropdown, label_field_dropdown, number
from .results import result_property

#: FiftyOne's annotation backends that take the same label schema (boxes with classes).
BACKENDS = ("labelstudio", "cvat", "labelbox")


def _batches(dataset) -> list[str]:
    """Planned batches (saved views ``batch_*``) as ``batch:<name>``, newest last."""
    return [f"batch:{v[len('batch_'):]}" for v in dataset.list_saved_views() if v.startswith("batch_")]


def _annotators(value) -> list[str]:
    if isinstance(value, str):
        return [a.strip() for a in value.split(",") if a.strip()]
    return list(value or [])


class SendBatch(AnnoloopOperator):
    operator_name = "send_batch"
    operator_label = "annoloop: send batch to an annotation tool"
    operator_description = (
        "Upload a planned batch to Label Studio / CVAT, one queue per annotator, with hidden "
        "golden scenes"
    )

    def resolve_input(self, ctx) -> types.Property:
        from ..annotation.send import DEFAULT_GOLDEN_SHARE

        inputs = types.Object()
        if ctx.dataset is None:
            return no_dataset_form(inputs)
        batches = _batches(ctx.dataset)
        if not batches:
            inputs.view("no_batch", types.Warning(label="Plan a batch first (plan_batch)"))
            return types.Property(inputs)
        dropdown(inputs, "batch", batches, batches[-1], "Batch")
        inputs.str(
            "annotators", required=True, label="Annotators",
            description="Comma-separated names; one queue each (letters, digits, '_')",
        )
        dropdown(inputs, "backend", BACKENDS, "labelstudio", "Annotation tool")
        inputs.str(
            "url", required=False, label="Server URL",
            description="Default: FiftyOne's annotation config (e.g. FIFTYONE_LABELSTUDIO_URL)",
        )
        inputs.str(
            "api_key", required=False, label="API key",
            description="Default: FiftyOne's annotation config (e.g. FIFTYONE_LABELSTUDIO_API_KEY)",
        )
        label_field_dropdown(inputs, ctx.dataset, "label_field", "Label field (schema and target)")
        number(
            inputs, ctx.params, "golden_share", whole=False, default=DEFAULT_GOLDEN_SHARE,
            low=0.0, high=0.5, label="Golden share of each queue",
        )
        inputs.int("seed", default=0, label="Seed")
        return types.Property(inputs, view=types.View(label="Send a batch to annotators"))

    def execute(self, ctx) -> dict:
        from ..annotation.send import DEFAULT_GOLDEN_SHARE, send_batch

        require_dataset(ctx)
        params = ctx.params
        if not params.get("batch"):
            raise ValueError("name the batch to send (e.g. 'batch:v1'); plan one with plan_batch")
        result = send_batch(
            ctx.dataset,
            params["batch"],
            _annotators(params.get("annotators")),
            backend=params.get("backend") or "labelstudio",
            url=params.get("url") or None,
            api_key=params.get("api_key") or None,
            label_field=params.get("label_field") or DEFAULT_GT_FIELD,
            golden_share=params.get("golden_share", DEFAULT_GOLDEN_SHARE),
            seed=int(params.get("seed") or 0),
            progress=progress_reporter(ctx),
        )
        # The App's result table shows counts; the sample ids stay in the record.
        queues = [{k: q[k] for k in ("annotator", "anno_key", "n_tasks", "n_golden")}
                  for q in result["queues"]]
        return {**{k: result[k] for k in ("batch", "run_key", "backend", "sent_at", "n_batch")},
                "queues": queues}

    def resolve_output(self, ctx) -> types.Property:
        return result_property(ctx, {"batch": "Batch", "n_batch": "Batch scenes", "queues": "Queues"})


class LoadBatch(AnnoloopOperator):
    operator_name = "load_batch"
    operator_label = "annoloop: load batch from the annotation tool"
    operator_description = (
        "Load a sent batch back through the schema gate; score annotators on the golden tasks"
    )

    def resolve_input(self, ctx) -> types.Property:
        from ..annotation.send import SEND_RUN_METHOD
        from ..core.runs import load_records

        inputs = types.Object()
        if ctx.dataset is None:
            return no_dataset_form(inputs)
        sent = [r["batch"] for r in load_records(ctx.dataset, SEND_RUN_METHOD)]
        if not sent:
            inputs.view("no_send", types.Warning(label="Send a batch first (send_batch)"))
            return types.Property(inputs)
        dropdown(inputs, "batch", sent, sent[-1], "Batch")
        number(inputs, ctx.params, "iou", whole=False, default=0.5, low=0.01, high=1.0,
               label="IoU of a golden match")
        return types.Property(inputs, view=types.View(label="Load a batch back"))

    def execute(self, ctx) -> dict:
        from ..annotation.load import load_batch

        require_dataset(ctx)
        if not ctx.params.get("batch"):
            raise ValueError("name the batch to load (e.g. 'batch:v1'); send it with send_batch first")
        result = load_batch(
            ctx.dataset, ctx.params["batch"], iou=ctx.params.get("iou", 0.5),
            progress=progress_reporter(ctx),
        )
        per_annotator = [
            {"annotator": name, **{k: a[k] for k in ("n_loaded", "n_merged", "n_quarantined", "n_golden")},
             "alarms": len(a.get("alarms") or [])}
            for name, a in result["per_annotator"].items()
        ]
        return {"batch": result["batch"], "totals": result["totals"],
                "per_annotator": per_annotator,
                "alarms": [a["message"] + f" ({a['annotator']})" for a in result["alarms"]]}

    def resolve_output(self, ctx) -> types.Property:
        return result_property(
            ctx, {"totals": "Labels", "per_annotator": "Per annotator", "alarms": "Drift alarms"}
        )
