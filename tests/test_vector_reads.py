"""Bulk embedding reads: every stored form decodes to the vector FiftyOne itself returns."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

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


# --- the local cache ----------------------------------------------------------------------


def _equal_to_fiftyone(read, collection, field="embedding"):
    """Every unit's row holds what FiftyOne itself decodes (zeros and missing where unset)."""
    units, vectors = collection.values(["id", field])
    assert sorted(read.row) == sorted(units)
    for unit, vector in zip(units, vectors):
        r = read.row[unit]
        assert read.missing[r] == (vector is None)
        np.testing.assert_array_equal(read.vectors[r], 0.0 if vector is None else vector)


def test_a_cached_read_follows_every_kind_of_write_through_fiftyone():
    rng = np.random.default_rng(2)
    dataset = _dataset([rng.standard_normal(5).astype(np.float32) for _ in range(20)])
    _equal_to_fiftyone(read_vectors(dataset, "id", "embedding"), dataset)

    dataset.take(4, seed=1).set_values("embedding", [np.full(5, 7.0, np.float32)] * 4)
    _equal_to_fiftyone(read_vectors(dataset, "id", "embedding"), dataset)

    first = dataset.first()
    first["embedding"] = None
    first.save()
    dataset.add_samples([fo.Sample(filepath="/x/new.jpg", embedding=np.ones(5, np.float32))])
    dataset.take(3, seed=2).tag_samples("batch:r1")
    _equal_to_fiftyone(read_vectors(dataset, "id", "embedding"), dataset)

    dataset.delete_samples(dataset.skip(5).limit(2))
    _equal_to_fiftyone(read_vectors(dataset, "id", "embedding"), dataset)

    dataset.delete_sample_field("embedding")
    dataset.set_values("embedding", [rng.standard_normal(3).astype(np.float32) for _ in range(len(dataset))])
    read = read_vectors(dataset, "id", "embedding")
    assert read.vectors.shape == (len(dataset), 3)
    _equal_to_fiftyone(read, dataset)


def test_the_cache_serves_unchanged_samples_without_reading_them_again():
    """A raw MongoDB write leaves FiftyOne's stamps alone, so the cache (as documented)
    keeps what it read of samples written long before: proof they are not read again,
    while a sample written since is."""
    dataset = _dataset([np.zeros(4, np.float32) for _ in range(6)])
    an_hour_ago = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=1)
    dataset._sample_collection.update_many({}, {"$set": {"last_modified_at": an_hour_ago}})
    read_vectors(dataset, "id", "embedding")
    raw = fo.Sample(filepath="/z.jpg", embedding=np.ones(4, np.float32)).to_mongo_dict()["embedding"]
    dataset._sample_collection.update_many({}, {"$set": {"embedding": raw}})
    recent = dataset.first()
    recent.tags.append("seen")
    recent.save()
    read = read_vectors(dataset, "id", "embedding")
    assert [bool(read.vectors[read.row[u]].any()) for u in dataset.values("id")] == [True] + [False] * 5
    dataset.set_values("embedding", dataset.values("embedding"))  # a FiftyOne write: seen
    assert read_vectors(dataset, "id", "embedding").vectors.all()


def test_each_slice_has_its_own_cache_and_units_without_a_sample_are_not_kept(monkeypatch):
    dataset = fo.Dataset(unique_name("sliced"))
    dataset.add_group_field("group", default="left")
    samples = []
    for i in range(4):
        group = fo.Group()
        for name, value in (("left", i), ("right", -i)):
            samples.append(
                fo.Sample(filepath=f"/s/{i}{name}.jpg", group=group.element(name),
                          embedding=np.full(3, value, np.float32))
            )
    dataset.add_samples(samples)
    for name in ("left", "right"):
        view = dataset.select_group_slices(name)
        for _ in range(2):  # the second read comes from the cache
            read = read_vectors(view, "group.id", "embedding", order=["no-such-unit"])
            assert read.missing[0] and len(read.row) == 5
            _units = [u for u in read.row if u != "no-such-unit"]
            assert sorted(_units) == sorted(view.values("group.id"))
            assert {float(read.vectors[read.row[u]][0]) for u in _units} == {
                float(v[0]) for v in view.values("embedding")
            }
    monkeypatch.setenv("ANNOLOOP_VECTOR_CACHE", "off")
    assert read_vectors(dataset.select_group_slices("left"), "group.id", "embedding").vectors.shape == (4, 3)
