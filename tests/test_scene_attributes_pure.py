"""The scene-attribute probe on arrays: separable clusters, scene averaging, too few labels."""

from __future__ import annotations

import numpy as np
import pytest

from annoloop.quality.algorithms.scene_attributes import fit_attribute_probe, scene_means


def clusters(seed: int = 0, per_value: int = 40):
    rng = np.random.default_rng(seed)
    centres = {
        "day": np.zeros(8),
        "night": np.full(8, 4.0),
        "fog": np.r_[np.full(4, 4.0), np.zeros(4)],
    }
    x = np.vstack([c + rng.normal(size=(per_value, 8)) for c in centres.values()])
    y = np.repeat(list(centres), per_value)
    return x, y


def test_probe_on_separable_clusters_predicts_held_out_scenes_from_four_labels_per_value():
    x, y = clusters()
    labeled = np.zeros(len(y), bool)
    for value in np.unique(y):
        labeled[np.flatnonzero(y == value)[:4]] = True
    pred = fit_attribute_probe(x, y, labeled)
    assert (pred.values[~labeled] == y[~labeled]).mean() > 0.95
    assert np.all((pred.confidence > 1 / 3) & (pred.confidence <= 1))
    assert pred.classes == ("day", "fog", "night")


def test_probe_never_reads_labels_of_unlabeled_scenes():
    x, y = clusters()
    labeled = np.zeros(len(y), bool)
    labeled[[0, 1, 40, 41, 80, 81]] = True
    garbled = y.copy()
    garbled[~labeled] = "junk"
    assert "junk" not in fit_attribute_probe(x, garbled, labeled).classes


def test_probe_with_a_value_below_the_minimum_labels_says_which_value():
    x, y = clusters()
    labeled = np.zeros(len(y), bool)
    labeled[[0, 1, 2, 40, 41, 42, 80]] = True
    with pytest.raises(ValueError, match="fog"):
        fit_attribute_probe(x, y, labeled, min_per_value=2, attribute="weather")


def test_probe_with_one_labeled_value_asks_for_two():
    x, y = clusters()
    labeled = np.zeros(len(y), bool)
    labeled[:5] = True
    with pytest.raises(ValueError, match="at least two"):
        fit_attribute_probe(x, y, labeled)


def test_scene_means_average_the_slices_of_each_scene():
    emb = np.array([[0.0, 2.0], [2.0, 4.0], [10.0, 10.0]])
    scenes, means = scene_means(emb, np.array(["b", "b", "a"]))
    assert list(scenes) == ["a", "b"]
    np.testing.assert_allclose(means, [[10, 10], [1, 3]])


def test_zero_shot_gives_each_scene_the_value_whose_prompt_is_closest():
    from annoloop.quality.algorithms.scene_attributes import zero_shot_attribute

    rng = np.random.default_rng(0)
    prompts = rng.normal(size=(3, 16))
    truth = rng.integers(0, 3, 40)
    images = prompts[truth] + 0.3 * rng.normal(size=(40, 16))
    values = ["fog", "clear", "rain"]  # not sorted: classes come back sorted, rows follow
    prediction = zero_shot_attribute(images, prompts, values)
    assert prediction.classes == ("clear", "fog", "rain")
    assert prediction.values.tolist() == [values[i] for i in truth]
    assert ((prediction.confidence > 1 / 3) & (prediction.confidence <= 1)).all()
    with pytest.raises(ValueError, match="one text embedding per value"):
        zero_shot_attribute(images, prompts[:2], values)
