"""The ledger of rounds and its plateau signal, on plain arrays and dicts."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from annoloop.training.algorithms import ledger as lg


def _ledger(totals, maps, recalls=None, batches=None):
    """A ledger built round by round, as the evaluate operator builds it."""
    rounds = []
    for i, (total, value) in enumerate(zip(totals, maps)):
        recall = recalls[i] if recalls else {"car": 0.8, "pedestrian": 0.75}
        batch = batches[i] if batches else f"batch:v{i}"
        rounds = lg.append_round(
            rounds, batch=batch, total_labels=total, map_=value, per_class_recall=recall
        )
    return rounds


# --- label efficiency -----------------------------------------------------------------------


def test_gains_per_100_labels_divide_the_map_gain_by_the_labels_added():
    gains = lg.gains_per_100_labels([100, 200, 200, 300], [0.20, 0.30, 0.31, 0.35])
    np.testing.assert_allclose(gains[[0, 1, 3]], [0.20, 0.10, 0.04])
    assert np.isnan(gains[2])  # no labels added: no gain


def test_gains_per_100_labels_reject_arrays_of_different_lengths():
    with pytest.raises(ValueError, match=r"shapes \(3,\) and \(2,\)"):
        lg.gains_per_100_labels([1, 2, 3], [0.1, 0.2])


@pytest.mark.parametrize("bad_map", [1.5, -0.1, float("nan")])
def test_gains_per_100_labels_reject_a_map_outside_zero_one(bad_map):
    with pytest.raises(ValueError, match="mAP must be finite and in"):
        lg.gains_per_100_labels([10, 20], [0.1, bad_map])


def test_append_round_records_labels_added_and_map_gain_per_100_labels():
    rounds = _ledger([50, 150], [0.10, 0.25])
    first, second = rounds
    assert (first.round, first.labels_added, first.total_labels) == (0, 50, 50)
    assert first.delta_map_per_100 == pytest.approx(0.20)  # from "no model, mAP 0"
    assert (second.round, second.labels_added) == (1, 100)
    assert second.delta_map_per_100 == pytest.approx(0.15)


def test_a_retrain_without_new_labels_has_no_gain_per_label():
    rounds = _ledger([100, 100], [0.3, 0.32])
    assert rounds[1].labels_added == 0
    assert rounds[1].delta_map_per_100 is None


def test_append_round_leaves_the_input_ledger_unchanged():
    rounds = _ledger([100], [0.3])
    longer = lg.append_round(
        rounds, batch="batch:v1", total_labels=200, map_=0.4, per_class_recall={"car": 0.9}
    )
    assert len(rounds) == 1 and len(longer) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(total_labels=-1), "total_labels must be an integer >= 0"),
        (dict(total_labels=2.5), "total_labels must be an integer >= 0"),
        (dict(map_=1.2), "mAP must be finite"),
        (dict(batch=""), "batch must be a non-empty string"),
        (dict(per_class_recall={"car": 1.3}), "recall must be in"),
        (dict(per_class_recall=[0.5]), "per_class_recall must be a mapping"),
        (dict(per_slice_recall={"predicted_time_of_day": {"night": 1.5}}), "recall must be in"),
        (dict(per_slice_recall=[0.5]), "per_slice_recall must be a mapping"),
    ],
)
def test_append_round_rejects_bad_inputs_with_a_clear_message(kwargs, message):
    args = dict(batch="b", total_labels=10, map_=0.1, per_class_recall={"car": 0.5})
    with pytest.raises(ValueError, match=message):
        lg.append_round([], **{**args, **kwargs})


def test_a_round_keeps_recall_per_scene_attribute_value_through_json_and_old_rounds_load():
    slices = {"predicted_time_of_day": {"day": 0.8, "night": 0.4}}
    rounds = lg.append_round(
        _ledger([40], [0.1]), batch="batch:v1", total_labels=90, map_=0.2,
        per_class_recall={"car": 0.7}, per_slice_recall=slices,
    )
    assert rounds[1].per_slice_recall == slices and rounds[0].per_slice_recall == {}
    stored = lg.ledger_to_json(rounds)
    assert lg.ledger_from_json(json.loads(json.dumps(stored))) == rounds
    old = [{k: v for k, v in r.items() if k != "per_slice_recall"} for r in stored]
    assert lg.ledger_from_json(old)[1].per_slice_recall == {}


def test_the_ledger_round_trips_through_json():
    rounds = _ledger([40, 90, 150], [0.1, 0.2, 0.22])
    text = json.dumps(lg.ledger_to_json(rounds))
    assert lg.ledger_from_json(json.loads(text)) == rounds


def test_a_ledger_with_rounds_out_of_order_is_rejected():
    stored = lg.ledger_to_json(_ledger([40, 90], [0.1, 0.2]))
    with pytest.raises(ValueError, match="ledger entry 0 has round 1"):
        lg.ledger_from_json(stored[::-1])


def test_a_stored_entry_with_unknown_keys_is_rejected():
    with pytest.raises(ValueError, match="ledger entry 0 is not a ledger round"):
        lg.ledger_from_json([{"round": 0, "mystery": 1}])


# --- plateau signal -------------------------------------------------------------------------


def test_an_empty_ledger_has_no_plateau():
    signal = lg.plateau_signal([])
    assert not signal.plateaued and signal.recommendation is None


def test_gains_above_the_threshold_are_not_a_plateau():
    signal = lg.plateau_signal(_ledger([100, 200, 300], [0.2, 0.3, 0.4]))
    assert not signal.plateaued
    assert signal.flat_rounds == 0
    assert signal.recommendation is None


def test_a_plateau_needs_window_consecutive_flat_rounds():
    maps = [0.30, 0.302]  # second round: +0.002 per 100 labels, below 0.005
    one_flat = lg.plateau_signal(_ledger([100, 200], maps), window=2)
    assert (one_flat.plateaued, one_flat.flat_rounds) == (False, 1)
    two_flat = lg.plateau_signal(_ledger([100, 200, 300], [*maps, 0.303]), window=2)
    assert (two_flat.plateaued, two_flat.flat_rounds) == (True, 2)


def test_a_big_gain_breaks_the_flat_streak():
    rounds = _ledger([100, 200, 300, 400], [0.30, 0.301, 0.40, 0.401])
    signal = lg.plateau_signal(rounds, window=2)
    assert signal.flat_rounds == 1 and not signal.plateaued


def test_rounds_without_new_labels_neither_extend_nor_break_a_streak():
    rounds = _ledger([100, 200, 200, 300], [0.30, 0.301, 0.35, 0.302])
    signal = lg.plateau_signal(rounds, window=2)
    assert signal.flat_rounds == 2 and signal.plateaued


def test_a_plateau_with_a_lagging_class_recommends_more_coverage():
    recalls = [{"car": 0.9, "pedestrian": 0.85, "cyclist": 0.4}] * 3
    signal = lg.plateau_signal(_ledger([100, 200, 300], [0.4, 0.401, 0.402], recalls))
    assert signal.plateaued
    assert signal.recommendation == lg.RECOMMEND_MORE_COVERAGE
    assert signal.lagging_classes == ["cyclist"]
    assert "cyclist 0.40" in signal.reason


def test_a_plateau_with_small_positive_gains_recommends_more_data():
    signal = lg.plateau_signal(_ledger([100, 200, 300], [0.4, 0.403, 0.406]))
    assert signal.recommendation == lg.RECOMMEND_MORE_DATA


def test_a_plateau_without_gains_and_balanced_classes_recommends_a_bigger_model():
    signal = lg.plateau_signal(_ledger([100, 200, 300], [0.4, 0.399, 0.398]))
    assert signal.recommendation == lg.RECOMMEND_BIGGER_MODEL
    assert signal.lagging_classes == []


def test_a_model_at_zero_map_and_zero_recall_is_not_learning_yet_rather_than_on_a_plateau():
    zero = {"car": 0.0, "pedestrian": 0.0}
    signal = lg.plateau_signal(_ledger([100, 200, 300], [0.0, 0.0, 0.0], [zero] * 3))
    assert signal.state == lg.STATE_NOT_LEARNING and not signal.plateaued
    assert signal.recommendation == lg.RECOMMEND_TRAIN_LONGER
    assert "not learning yet" in signal.reason


def test_a_model_that_finds_some_objects_is_judged_by_its_gains():
    recalls = [{"car": 0.0, "pedestrian": 0.0}] * 2 + [{"car": 0.1, "pedestrian": 0.0}]
    signal = lg.plateau_signal(_ledger([100, 200, 300], [0.0, 0.0, 0.004], recalls))
    assert signal.state == lg.STATE_PLATEAU


def test_the_plateau_signal_is_json_serialisable():
    signal = lg.plateau_signal(_ledger([100, 200, 300], [0.4, 0.399, 0.398]))
    assert json.loads(json.dumps(signal.to_dict()))["recommendation"] == "bigger model"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(window=0), "window must be an integer >= 1"),
        (dict(recall_gap=-0.1), "recall_gap"),
        (dict(min_gain_per_100=math.inf), "min_gain_per_100"),
    ],
)
def test_plateau_signal_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lg.plateau_signal([], **kwargs)


def test_the_ledger_module_does_not_import_fiftyone():
    code = "import sys, annoloop.training.algorithms.ledger; print('fiftyone' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
