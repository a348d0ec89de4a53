"""Label quality core: IoU, golden-set matching, QA metrics, drift alarms, the schema gate
and frozen-split selection.

Pure numpy/scipy; no FiftyOne or torch. FiftyOne glue flattens a collection's labels into
per-row arrays (one row per label, with a sample/image index column), calls these functions
once per field, and writes the results back in bulk.
"""
