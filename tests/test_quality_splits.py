"""Frozen test / golden selection by group and stratum, and label fingerprints."""

import numpy as np
import pytest

from annoloop.quality.algorithms.splits import (
    diff_fingerprints,
    fingerprint_samples,
    label_fingerprint,
    select_splits,
)

STRATA_SIZES = {"day|dry": 120, "night|dry": 50, "night|rain": 25, "fog": 4, "snow": 1}


def _pool(frames_per_scene=5):
    names = np.repeat(list(STRATA_SIZES), list(STRATA_SIZES.values()))
    scenes = np.array([f"scene-{i:03d}" for i in range(len(names))])
    groups = np.repeat(scenes, frames_per_scene)
    strata = np.repeat(names, frames_per_scene)
    return groups, strata


def test_test_and_golden_sets_are_disjoint_whole_groups():
    groups, strata = _pool()
    r = select_splits(groups, strata, test=0.1, golden=0.05, seed=0)
    assert not set(r.test_groups) & set(r.golden_groups)
    assert not set(r.test) & set(r.golden)
    assert sorted(set(groups[r.test])) == r.test_groups
    assert len(r.test) == 5 * len(r.test_groups)  # every frame of a picked scene


def test_the_mining_set_is_a_third_disjoint_stratified_set_picked_after_the_test_set():
    groups, strata = _pool()
    without = select_splits(groups, strata, test=0.1, golden=0.05, seed=0)
    r = select_splits(groups, strata, test=0.1, mining=0.15, golden=0.05, seed=0)
    sets = [set(r.test_groups), set(r.mining_groups), set(r.golden_groups)]
    assert all(not a & b for i, a in enumerate(sets) for b in sets[i + 1 :])
    assert r.test_groups == without.test_groups  # adding a mining set leaves the test set be
    assert len(r.mining_groups) == round(0.15 * 200)
    assert sorted(set(groups[r.mining])) == r.mining_groups
    for name, s in r.strata.items():
        assert abs(s["mining"] - 0.15 * s["groups"]) <= 1, name


def test_no_mining_set_is_picked_unless_asked_for():
    groups, strata = _pool()
    r = select_splits(groups, strata, test=0.1, golden=0.05, seed=0)
    assert r.mining_groups == [] and r.mining.size == 0


def test_sizes_that_together_exceed_the_groups_are_refused():
    groups, strata = _pool()
    with pytest.raises(ValueError, match="mining"):
        select_splits(groups, strata, test=0.5, mining=0.4, golden=0.2)


def test_sizes_follow_the_request_and_strata_are_proportional():
    groups, strata = _pool()
    r = select_splits(groups, strata, test=0.1, golden=10, seed=0)
    assert len(r.test_groups) == 20 and len(r.golden_groups) == 10
    for name, s in r.strata.items():
        assert abs(s["test"] - 0.1 * s["groups"]) <= 1
        assert abs(s["golden"] - 10 / 200 * s["groups"]) <= 1


def test_every_stratum_with_enough_groups_is_represented_in_both_sets():
    groups, strata = _pool()
    r = select_splits(groups, strata, test=0.05, golden=0.02, seed=3)
    for name, s in r.strata.items():
        if s["groups"] >= 3:
            assert s["test"] >= 1 and s["golden"] >= 1, name
    assert r.strata["snow"] == {"groups": 1, "test": 0, "mining": 0, "golden": 0}
    assert {strata[i] for i in r.golden} == {"day|dry", "night|dry", "night|rain", "fog"}


def test_selection_is_deterministic_for_a_seed_and_ignores_row_order():
    groups, strata = _pool()
    a = select_splits(groups, strata, test=0.1, golden=0.05, seed=7)
    perm = np.random.default_rng(0).permutation(len(groups))
    b = select_splits(groups[perm], strata[perm], test=0.1, golden=0.05, seed=7)
    assert (a.test_groups, a.golden_groups) == (b.test_groups, b.golden_groups)
    c = select_splits(groups, strata, test=0.1, golden=0.05, seed=8)
    assert c.test_groups != a.test_groups


def test_adding_new_scenes_keeps_most_of_the_old_selection():
    groups, strata = _pool()
    a = select_splits(groups, strata, test=20, golden=0, seed=1)
    more_g = np.r_[groups, [f"new-{i}" for i in range(10)]]
    more_s = np.r_[strata, ["day|dry"] * 10]
    b = select_splits(more_g, more_s, test=20, golden=0, seed=1)
    assert len(set(a.test_groups) & set(b.test_groups)) >= 18


def test_split_result_serialises_to_json():
    import json

    groups, strata = _pool()
    d = select_splits(groups, strata, seed=0).to_dict()
    assert json.loads(json.dumps(d)) == d


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(test=1.5), r"\[0, 1\)"),
        (dict(test=300), "groups requested"),
        (dict(test=150, golden=60), "exceed"),
        (dict(test=True), "fraction"),
        (dict(min_stratum_groups=0), "min_stratum_groups"),
    ],
)
def test_impossible_requests_raise_value_errors(kwargs, message):
    groups, strata = _pool()
    with pytest.raises(ValueError, match=message):
        select_splits(groups, strata, **kwargs)


def test_a_group_spanning_several_strata_is_rejected():
    with pytest.raises(ValueError, match="span several strata"):
        select_splits(["s1", "s1", "s2"], ["day", "night", "day"])


LABELS = [
    {"id": "a1", "label": "car", "bounding_box": [0.1, 0.2, 0.3, 0.4], "occluded": False},
    {"id": "a2", "label": "person", "bounding_box": [0.5, 0.5, 0.1, 0.2], "occluded": True},
]


def test_fingerprint_ignores_label_order_ids_and_float_noise():
    reordered = [
        dict(LABELS[1], id="zz"),
        dict(LABELS[0], bounding_box=[0.1 + 1e-9, 0.2, 0.3, 0.4]),
    ]
    assert label_fingerprint(reordered) == label_fingerprint(LABELS)
    assert len(label_fingerprint(LABELS)) == 64


def test_fingerprint_changes_when_a_label_changes():
    base = label_fingerprint(LABELS)
    assert label_fingerprint([dict(LABELS[0], label="truck"), LABELS[1]]) != base
    assert (
        label_fingerprint([dict(LABELS[0], bounding_box=[0.1, 0.2, 0.3, 0.41]), LABELS[1]]) != base
    )
    assert label_fingerprint([dict(LABELS[0], occluded=True), LABELS[1]]) != base
    assert label_fingerprint(LABELS[:1]) != base
    # Box coordinates are ordered: swapping two is a change.
    assert (
        label_fingerprint([dict(LABELS[0], bounding_box=[0.2, 0.1, 0.3, 0.4]), LABELS[1]]) != base
    )


def test_fingerprint_normalises_numpy_ints_and_negative_zero():
    a = [{"label": "car", "bounding_box": np.array([0.0, 0.5, 1, 1]), "n": np.int64(2)}]
    b = [{"label": "car", "bounding_box": [-0.0, 0.5, 1.0, 1.0], "n": 2.0}]
    assert label_fingerprint(a) == label_fingerprint(b)


def test_collection_fingerprint_is_independent_of_sample_order():
    one = {"s1": LABELS, "s2": LABELS[:1]}
    two = {"s2": LABELS[:1], "s1": LABELS[::-1]}
    assert label_fingerprint(one) == label_fingerprint(two)


def test_diff_fingerprints_lists_changed_added_and_removed_samples():
    old = fingerprint_samples({"s1": LABELS, "s2": LABELS[:1], "s3": []})
    new = fingerprint_samples({"s1": LABELS[::-1], "s2": LABELS, "s4": []})
    diff = diff_fingerprints(old, new)
    assert (diff.changed, diff.added, diff.removed) == (["s2"], ["s4"], ["s3"])
    assert not diff.unchanged
    assert diff_fingerprints(old, dict(old)).unchanged
