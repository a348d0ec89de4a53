"""Embeddings for curation: camera images, point clouds and objects (patches).

* :mod:`.image_baseline` — ``baseline-colour-gradient``, a hand-made image descriptor (colour
  histograms, gradient-orientation histograms, simple statistics) that needs no weights. It is
  the offline default, not a learned model.
* :mod:`.pointcloud` — ``fpfh-geometry``, a global 3D descriptor: pooled FPFH features plus
  extent, height, range and point-count statistics (open3d).
* :mod:`.models` — the image-model interface and its runners: the baseline, Hugging Face
  ``transformers`` checkpoints, Ultralytics backbones, FiftyOne zoo models.
* :mod:`.patches` — object crops (with context) that feed any image model.

Every embedding is a float32 row of unit L2 norm (an empty input may give the zero row), so
Euclidean distance ranks neighbours as cosine similarity does. The FiftyOne glue is
:mod:`annoloop.selection.embed`.
"""
