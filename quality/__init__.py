"""Label quality: the schema gate, golden-set QA with drift alarms, and the frozen splits.

``algorithms/`` holds the pure parts (IoU, matching, metrics, drift, schema rules, split
selection) on numpy arrays; the modules beside it are the FiftyOne glue that flattens a
collection's labels into per-row arrays (:mod:`.labels`, the one label reader), calls them
once per field and writes back in bulk: :mod:`.gate` (with :mod:`.gate_plan`) and
:mod:`.linking`, which share :mod:`.quarantine` (violation records and tags),
:mod:`.frozen` and :mod:`.frozen_check`, :mod:`.golden` (with :mod:`.golden_batches`).
"""
