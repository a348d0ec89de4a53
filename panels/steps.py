"""The steps of the loop as the Annotation loop panel offers them: one button per operator.

Each :class:`Step` names the operator whose form its button opens, in loop order and
grouped by phase, so the panel shows the whole loop (curate → plan → annotate → gate →
train and evaluate → autolabel) and a test can check every registered operator has one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OPERATOR_URI_PREFIX", "PHASES", "STEPS", "Step", "step_names"]

#: Every annoloop operator's URI starts with this.
OPERATOR_URI_PREFIX = "@annoloop/annoloop/"


@dataclass(frozen=True)
class Step:
    """A step of the loop: the operator its button opens, the button's label and icon."""

    operator: str
    label: str
    icon: str
    phase: str

    @property
    def uri(self) -> str:
        return OPERATOR_URI_PREFIX + self.operator


#: The loop's phases, in order; each step belongs to one.
PHASES = ("Curate", "Plan", "Annotate", "Gate", "Train and evaluate", "Autolabel")

STEPS = (
    Step("load_demo_dataset", "Load demo", "dataset", "Curate"),
    Step("compute_embeddings", "Embeddings", "scatter_plot", "Curate"),
    Step("compute_zcore", "ZCore scores", "insights", "Curate"),
    Step("compute_visualization", "Visualization", "bubble_chart", "Curate"),
    Step("check_incoming_drift", "Incoming drift", "new_releases", "Curate"),
    Step("categorize_scenes", "Scene attributes", "category", "Curate"),
    Step("create_splits", "Splits", "call_split", "Curate"),
    Step("plan_batch", "Plan next batch", "playlist_add", "Plan"),
    Step("simulate_annotation", "Simulate annotation", "draw", "Annotate"),
    Step("send_batch", "Send to annotators", "send", "Annotate"),
    Step("load_batch", "Load annotations", "download", "Annotate"),
    Step("validate_labels", "Validate labels", "rule", "Gate"),
    Step("check_sensor_links", "LiDAR-camera links", "link", "Gate"),
    Step("check_golden", "Golden check", "verified", "Gate"),
    Step("train_detector", "Train", "model_training", "Train and evaluate"),
    Step("apply_detector", "Apply detector", "online_prediction", "Train and evaluate"),
    Step("evaluate_model", "Evaluate", "speed", "Train and evaluate"),
    Step("autolabel", "Autolabel", "auto_fix_high", "Autolabel"),
    Step("review_autolabels", "Review autolabels", "fact_check", "Autolabel"),
)


def step_names() -> set[str]:
    """The operators a step button may open."""
    return {step.operator for step in STEPS}
