"""Bulk embedding reads: every stored form decodes to the vector FiftyOne itself returns."""

from __future__ import annotations

import numpy as np
import pytest

import fiftyone as fo

from annoloop.core.vector_reads import read_vectors
from fo_helpers import unique_name


def _dataset(vectors) -> fo.Dataset:
    dataset = fo.Dataset(unique_name("vectors"))
    dataset.add_samples(
        [fo.Sample(filepath=f"/x/{i}.jpg", embedding=v) for i, v in enumerate(vectors)]
    )
    return dataset


def test_vectors_come_back_as_fiftyone_reads_them_in_the_requested_order_across_chunks():
    rng = np.random.default_rng(0)
    stored = [rng.standard_normal(6).astype(np.float32) for _ in range(7)]
    stored[3] = None
    dataset = _dataset(stored)
    ids = dataset.values("id")
    order = [ids[5], "no-such-unit", ids[0]]
    read = read_vectors(dataset, "id", "embedding", order=order, chunk_rows=2)
    assert [read.row[u] for u in order] == [0, 1, 2]
    assert sorted(read.row) == sorted([*ids, "no-such-unit"])
    expected = dataset.values("embedding")  # FiftyOne's own decoding
    for unit, vector in zip(ids, expected):
        r = read.row[unit]
        assert read.missing[r] == (vector is None)
        np.testing.assert_array_equal(read.vectors[r], 0.0 if vector is None else vector)
    assert read.missing[1] and not read.vectors[1].any()
    assert read.vectors.dtype == np.float32


def test_float64_vectors_among_float32_ones_and_lists_of_numbers_are_decoded():
    rng = np.random.default_rng(1)
    mixed = [rng.standard_normal(4).astype(t) for t in (np.float32, np.float64, np.float32)]
    dataset = _dataset(mixed)
    read = read_vectors(dataset, "id", "embedding")
    np.testing.assert_allclose(read.vectors, np.stack(mixed), rtol=1e-6)

    listed = fo.Dataset(unique_name("lists"))
    listed.add_samples([fo.Sample(filepath=f"/y/{i}.jpg", emb=v.tolist()) for i, v in enumerate(mixed)])
    read = read_vectors(listed, "id", "emb", extra_fields=["filepath"])
    np.testing.assert_allclose(read.vectors, np.stack(mixed), rtol=1e-6)
    assert read.extras[0] == [f"/y/{i}.jpg" for i in range(3)]


def test_vectors_of_different_lengths_are_refused_naming_the_lengths():
    dataset = _dataset([np.zeros(3, np.float32), np.zeros(5, np.float32)])
    with pytest.raises(ValueError, match=r"2 different lengths \[3, 5\]"):
        read_vectors(dataset, "id", "embedding")
