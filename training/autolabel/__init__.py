"""Autolabeling: zero-shot (and trained) detectors write candidate boxes; a person reviews them.

- :mod:`.base`: the one detector interface (:class:`~.base.ZeroShotDetector`, returning
  :class:`~.base.Box` lists) and the model registry (:data:`~.base.MODELS`,
  :func:`~.base.load_detector`). Adding a model is one small module plus one registry line.
- :mod:`.owl` (OWLv2, OWL-ViT), :mod:`.grounding_dino`, :mod:`.yolo_world`, :mod:`.trained`
  (detectors from ``train_detector`` runs): the runners. Weights are never downloaded.
- :mod:`.run`: FiftyOne glue: :func:`~.run.autolabel` labels one camera slice in resumable,
  idempotent chunks, with provenance on every box and off-schema outputs dropped and counted;
  its run records. :mod:`.vocabulary` maps prompts to schema classes; :mod:`.labeling`
  turns boxes into ``Detections`` and writes them chunk by chunk.
- :mod:`.review`: :func:`~.review.review_autolabels` accepts the confident, schema-passing
  candidates into the label field, or discards them, sample by sample or in bulk.

torch, transformers and ultralytics are imported by the runner that needs them, never here.
"""
