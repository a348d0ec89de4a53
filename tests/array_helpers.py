"""Small generated arrays shared by the tests of the pure selection modules."""

from __future__ import annotations

import numpy as np


def blobs(centres, per_blob, scale=0.05, seed=0):
    """Rows scattered tightly around each centre; returns (rows, blob label per row)."""
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres, dtype=np.float32)
    rows = np.repeat(centres, per_blob, axis=0)
    rows += rng.normal(scale=scale, size=rows.shape).astype(np.float32)
    return rows, np.repeat(np.arange(len(centres)), per_blob)
