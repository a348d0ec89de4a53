"""annoloop: a FiftyOne plugin bundle for a tight curate → annotate → train → evaluate loop.

The same checkout is two things:

* a FiftyOne plugin (``@annoloop/annoloop``): FiftyOne's loader imports this file and calls
  :func:`register`;
* a Python package for SDK users (``import annoloop``), with one function per user action:

  ==========================  ===========================================================
  ``compute_embeddings``      embed samples, objects (patches) and scenes
  ``compute_zcore``           zero-shot coreset (ZCore) scores of a pool (``ZCoreParams``)
  ``create_splits``           frozen test / mining / golden splits
  ``check_frozen``            verify that frozen labels did not change
  ``validate_labels``         the schema gate: violations recorded, units quarantined
  ``check_sensor_links``      LiDAR cuboids against each camera's boxes (``LinkParams``)
  ``check_golden``            golden-set QA of a batch, with drift alarms
  ``check_incoming``          a new batch's embeddings against the pool's: novel samples
  ``categorize_scenes``       a scene attribute for every scene from a few labeled ones
  ``add_demo_scenes``         a new raw batch of demo scenes (e.g. snow), tagged incoming:*
  ``plan_batch``              the next batch to label: coverage + targeting
  ``send_batch``              a batch to an annotation tool, golden scenes hidden per annotator
  ``load_batch``              a sent batch back through the gate; annotators' golden scores
  ``autolabel``               a foundation or trained detector labels a view
  ``review_autolabels``       accept / reject auto-labels into the label field
  ``train_detector``          export the trainable samples and fine-tune a YOLO detector
  ``apply_detector``          predict with a trained run on the test, mining or pool split
  ``evaluate_model``          evaluate a run's predictions; record a ledger round
  ``evaluate_split``          evaluate predictions on the frozen test or mining split
  ``compute_visualization``   a 2-D map of stored embeddings for the App's embeddings panel
  ``load_demo_dataset``       the offline synthetic driving dataset
  ==========================  ===========================================================

Each name is imported from its implementation on first use (``help(annoloop.plan_batch)``
shows the full documentation): FiftyOne re-imports plugins often, so nothing heavy is
imported here, and SDK users pay only for what they use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: SDK name -> (module, attribute) of its implementation.
_SDK = {
    "compute_embeddings": ("selection.embed", "compute_embeddings"),
    "compute_zcore": ("selection.scoring", "compute_zcore"),
    "ZCoreParams": ("selection.algorithms.zcore", "ZCoreParams"),
    "create_splits": ("quality.frozen", "create_splits"),
    "check_frozen": ("quality.frozen_check", "check_frozen"),
    "validate_labels": ("quality.gate", "gate_label_field"),
    "check_sensor_links": ("quality.linking", "check_sensor_links"),
    "LinkParams": ("quality.algorithms.linking", "LinkParams"),
    "check_golden": ("quality.golden", "check_golden"),
    "check_incoming": ("quality.incoming", "check_incoming"),
    "categorize_scenes": ("quality.scene_attributes", "categorize_scenes"),
    "add_demo_scenes": ("demo.dataset", "add_demo_scenes"),
    "plan_batch": ("selection.batches", "plan_batch"),
    "send_batch": ("annotation.send", "send_batch"),
    "load_batch": ("annotation.load", "load_batch"),
    "autolabel": ("training.autolabel.run", "autolabel"),
    "review_autolabels": ("training.autolabel.review", "review_autolabels"),
    "train_detector": ("training.detector", "train_detector"),
    "apply_detector": ("training.detector", "apply_detector"),
    "evaluate_model": ("training.detector", "evaluate_model"),
    "evaluate_split": ("training.evaluate", "evaluate_split"),
    "compute_visualization": ("selection.visualization", "compute_embedding_visualization"),
    "load_demo_dataset": ("demo.dataset", "load_demo_dataset"),
}

__all__ = ["register", *sorted(_SDK)]


def __getattr__(name: str):
    # PEP 562: the SDK functions resolve lazily, so registering the plugin stays cheap.
    if name not in _SDK:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _SDK[name]
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_SDK})


def register(p) -> None:
    """Register every annoloop operator and panel with FiftyOne's plugin context ``p``."""
    from .operators import OPERATORS
    from .panels import PANELS

    for cls in (*OPERATORS, *PANELS):
        p.register(cls)
