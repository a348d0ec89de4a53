"""The Annotation loop panel's charts are pure functions of the dicts panels.state returns."""

from __future__ import annotations

from annoloop.panels import loop_charts as charts


def golden(alarms):
    rows = [
        {"batch": b, "slice": s, "n_samples": 4, "recall": 0.8, "precision": 0.9, "mean_iou": 0.7,
         "recall_per_class": {"car": 0.8}, "alarms": [a for a in alarms if (a["batch"], a["slice"]) == (b, s)]}
        for b in ("batch:v1", "batch:v2")
        for s in ("left", "right")
    ]
    return {"slices": ["left", "right"], "classes": ["car"], "rows": rows, "alarms": alarms}


def test_the_plotted_slice_is_the_requested_one_else_the_one_with_most_alarms():
    alarm = {"batch": "batch:v2", "slice": "right", "class": "car", "message": "recall fell"}
    assert charts.plotted_slice(golden([alarm]), "left") == "left"
    assert charts.plotted_slice(golden([alarm]), None) == "right"
    assert charts.plotted_slice(golden([]), "middle") == "left"
    assert charts.slice_alarms(golden([alarm]), "right") == ["batch:v2: recall fell"]


def test_the_golden_table_selects_the_alarmed_rows_and_adds_a_column_per_class():
    alarm = {"batch": "batch:v2", "slice": "right", "class": "car", "message": "recall fell"}
    table = charts.golden_table(golden([alarm]))
    assert table["columns"][-1] == "class_car"
    assert table["selected_rows"] == [3]
    assert table["rows"][3][-2:] == [1, "0.80"]
    traces = charts.golden_traces(golden([alarm]), "right")
    assert [t["name"] for t in traces] == ["car", "drift alarm"]


def test_the_batch_bar_splits_targeting_by_failure_kind_and_ids_each_part_by_its_share():
    c = {"batch": "batch:v3", "n_coverage": 5, "n_targeting": 6, "targets": {"fn": 3, "fp": 1}}
    traces = charts.composition_traces(c)
    assert [t["ids"] for t in traces] == [["coverage"], ["targeting"], ["targeting"], ["targeting"]]
    assert [t["x"] for t in traces] == [[5], [3], [1], [2]]
    assert traces[1]["text"] == ["3 near misses"] and traces[3]["text"] == ["2 targeting"]


def test_ledger_rows_format_map_and_gain_and_the_legend_shows_only_with_a_baseline():
    r = {"round": 1, "batch": "batch:v1", "labels_added": 40, "total_labels": 90, "map": 0.25,
         "delta_map_per_100": 0.05, "weakest_class": "pedestrian", "weakest_recall": 0.4}
    row = charts.ledger_row(r)
    assert (row["map"], row["gain"], row["weakest"]) == ("0.250", "+0.0500", "pedestrian (0.40)")
    assert [t["name"] for t in charts.ledger_traces({"rounds": [r], "baseline": []})] == ["annoloop"]
    assert charts.ledger_layout(False)["showlegend"] is False
