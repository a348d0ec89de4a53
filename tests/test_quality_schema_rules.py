"""The schema gate: schema loading (plain and FiftyOne forms) and every rule, in bulk."""

import json

import numpy as np
import pytest

from annoloop.quality.algorithms.schema_rules import RULES, AttributeSpec, load_schema, validate_labels

PLAIN = {
    "label_type": "detections",
    "classes": ["car", "person"],
    "attributes": {
        "occluded": {"type": "bool", "required": True},
        "color": {"type": "categorical", "values": ["red", "blue"]},
        "score": {"type": "float", "range": [0, 1]},
        "lanes": {"type": "int", "values": [1, 2, 3]},
        "plate": {"type": "str"},
    },
}

# One field of FiftyOne 1.22's `dataset.label_schemas`, as generate_label_schemas writes it.
FIFTYONE_FIELD = {
    "type": "detections",
    "component": "dropdown",
    "classes": ["car", "person"],
    "attributes": [
        {"name": "color", "type": "str", "component": "radio", "values": ["red", "blue"]},
        {"name": "confidence", "type": "float", "component": "text"},
        {"name": "id", "type": "id", "component": "text", "read_only": True},
        {"name": "occluded", "type": "bool", "component": "toggle", "default": False},
        {"name": "score", "type": "float", "component": "slider", "range": [0, 1]},
        {"name": "tags", "type": "list<str>", "component": "text"},
    ],
}

GOOD_BOX = [0.1, 0.1, 0.2, 0.2]


def _rules(report):
    return sorted(zip(report.row.tolist(), report.rule.tolist()))


def _check(rows, **kwargs):
    """Validate label dicts {sample, label, box, attrs...} against the plain schema."""
    schema = kwargs.pop("schema", load_schema(PLAIN))
    names = sorted({k for r in rows for k in r} - {"sample", "label", "box"})
    attributes = {}
    for name in names:
        col = np.empty(len(rows), dtype=object)
        col[:] = [r.get(name) for r in rows]
        attributes[name] = col
    label = np.empty(len(rows), dtype=object)
    label[:] = [r["label"] for r in rows]
    return validate_labels(
        schema, [r["sample"] for r in rows], label, [r["box"] for r in rows], attributes, **kwargs
    )


def test_plain_and_fiftyone_schemas_load_to_the_same_checks():
    plain = load_schema(PLAIN)
    fo = load_schema(FIFTYONE_FIELD)
    assert plain.classes == fo.classes == ("car", "person")
    assert fo.attributes["color"] == AttributeSpec("categorical", ("red", "blue"))
    assert (
        fo.attributes["score"]
        == plain.attributes["score"]
        == AttributeSpec("float", range=(0.0, 1.0))
    )
    assert fo.attributes["id"].type == "any" and fo.attributes["tags"].type == "any"
    assert plain.attributes["occluded"].required and not fo.attributes["occluded"].required


def test_attributes_given_as_a_dict_keyed_by_name_are_accepted():
    spec = dict(FIFTYONE_FIELD, attributes={a["name"]: a for a in FIFTYONE_FIELD["attributes"]})
    assert load_schema(spec).attributes == load_schema(FIFTYONE_FIELD).attributes


def test_a_3d_fiftyone_field_is_loaded_as_cuboids_when_asked():
    assert load_schema(FIFTYONE_FIELD, label_type="cuboids").label_type == "cuboids"


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "classifications"}, "only Detections"),
        ({"label_type": "polylines"}, "label_type"),
        ({"attributes": {"x": {"type": "colour"}}}, "unknown type"),
        ({"attributes": {"x": {"type": "float", "range": [2, 1]}}}, "lo <= hi"),
        ({"attributes": [{"type": "bool"}]}, "needs a 'name'"),
    ],
)
def test_malformed_schemas_are_rejected(spec, message):
    with pytest.raises(ValueError, match=message):
        load_schema(spec)


def test_clean_labels_raise_no_violation():
    rows = [
        {
            "sample": 0,
            "label": "car",
            "box": GOOD_BOX,
            "occluded": True,
            "color": "red",
            "score": 0.5,
            "lanes": 2,
            "plate": "AB-12",
            "confidence": 0.9,
        },
        {"sample": 0, "label": "person", "box": [0.5, 0.5, 0.5, 0.5], "occluded": False},
        {"sample": 1, "label": "car", "box": GOOD_BOX, "occluded": np.bool_(False), "lanes": 3.0},
    ]
    report = _check(rows, expected_samples=[0, 1])
    assert len(report.rule) == 0 and report.summary()["n_violations"] == 0


def test_unknown_class_notes_case_and_whitespace_variants():
    rows = [
        {"sample": 0, "label": " Car", "box": GOOD_BOX, "occluded": True},
        {"sample": 0, "label": "dog", "box": GOOD_BOX, "occluded": True},
        {"sample": 0, "label": None, "box": GOOD_BOX, "occluded": True},
    ]
    report = _check(rows)
    assert _rules(report) == [(0, "unknown_class"), (1, "unknown_class"), (2, "unknown_class")]
    assert "variant of schema class 'car'" in report.detail[0]
    assert "not a schema class" in report.detail[1]
    assert report.detail[2] == "label is missing"


def test_attribute_rules_each_flag_their_row():
    base = {"sample": 0, "label": "car", "box": GOOD_BOX, "occluded": True}
    rows = [
        dict(base, wheels=4),  # not in the schema
        dict(base, occluded=None),  # required, missing
        dict(base, occluded="yes"),  # bool expected
        dict(base, color="green"),  # not in values
        dict(base, score=1.5),  # outside [0, 1]
        dict(base, lanes=2.5),  # int expected
        dict(base, lanes=7),  # int, not in values
        dict(base, plate=12),  # str expected
        dict(base, score=True),  # a bool is not a float
    ]
    rows = [dict(r, sample=i) for i, r in enumerate(rows)]  # distinct samples: no duplicates
    assert _rules(_check(rows)) == [
        (0, "unknown_attribute"),
        (1, "missing_required_attribute"),
        (2, "attribute_wrong_type"),
        (3, "attribute_value_out_of_set"),
        (4, "attribute_out_of_range"),
        (5, "attribute_wrong_type"),
        (6, "attribute_value_out_of_set"),
        (7, "attribute_wrong_type"),
        (8, "attribute_wrong_type"),
    ]


def test_a_required_attribute_without_any_column_flags_every_row():
    rows = [{"sample": i, "label": "car", "box": GOOD_BOX} for i in range(3)]
    assert _rules(_check(rows)) == [(i, "missing_required_attribute") for i in range(3)]


def test_box_rules_flag_nan_size_and_bounds_with_tolerance():
    base = {"sample": 0, "label": "car", "occluded": True}
    rows = [
        dict(base, box=[np.nan, 0.1, 0.2, 0.2]),
        dict(base, box=[0.1, 0.1, 0.0, 0.2]),
        dict(base, box=[0.9, 0.1, 0.2, 0.2]),
        dict(base, box=[-0.0005, 0.1, 0.2, 0.9005]),  # within the 1e-3 tolerance
        dict(base, box=[-0.01, 0.1, 0.2, 0.2]),
    ]
    assert _rules(_check(rows)) == [
        (0, "box_nan"),
        (1, "box_non_positive_size"),
        (2, "box_out_of_bounds"),
        (4, "box_out_of_bounds"),
    ]


def test_cuboid_rules_flag_nan_and_non_positive_dimensions():
    schema = load_schema(dict(PLAIN, attributes={}), label_type="cuboids")
    rows = [
        {"sample": 0, "label": "car", "box": [5, 2, 0.8, 4, 2, 1.5, 0, 0, 0.3]},
        {"sample": 0, "label": "car", "box": [5, 2, np.nan, 4, 2, 1.5, 0, 0, 0.3]},
        {"sample": 0, "label": "car", "box": [9, 2, 0.8, 4, 0, 1.5, 0, 0, 0.3]},
    ]
    assert _rules(_check(rows, schema=schema)) == [
        (1, "cuboid_nan"),
        (2, "cuboid_non_positive_dimensions"),
    ]


def test_duplicates_flag_the_later_copy_within_a_sample_only():
    base = {"label": "car", "occluded": True}
    rows = [
        dict(base, sample="a", box=[0.1, 0.1, 0.2, 0.2]),
        dict(base, sample="a", box=[0.1, 0.1, 0.2, 0.2 + 1e-9]),  # equal after rounding
        dict(base, sample="b", box=[0.1, 0.1, 0.2, 0.2]),  # other sample
        dict(base, sample="a", box=[0.1, 0.1, 0.2, 0.2], label="person"),  # other class
        dict(base, sample="a", box=[0.1, 0.1, 0.2, 0.2]),
    ]
    report = _check(rows)
    assert _rules(report) == [(1, "duplicate_label"), (4, "duplicate_label")]
    assert all(d.endswith("as row 0") for d in report.detail)


def test_wrong_label_type_skips_geometry_checks():
    rows = [
        {"sample": 0, "label": "car", "box": [np.nan] * 4, "occluded": True},
        {"sample": 0, "label": "car", "box": GOOD_BOX, "occluded": True},
    ]
    report = _check(rows, kind=["polyline", "detection"])
    assert _rules(report) == [(0, "wrong_label_type")]


def test_samples_expected_to_be_labeled_but_empty_are_reported():
    rows = [{"sample": "s1", "label": "car", "box": GOOD_BOX, "occluded": True}]
    report = _check(rows, expected_samples=["s1", "s2", "s3"])
    assert report.row.tolist() == [-1, -1]
    assert report.sample.tolist() == ["s2", "s3"] and set(report.rule) == {"empty_sample"}


def test_summary_counts_by_rule_and_class_and_is_json():
    rows = [
        {"sample": 0, "label": "dog", "box": [0.9, 0.9, 0.2, 0.2], "occluded": True},
        {"sample": 1, "label": "car", "box": [0.9, 0.9, 0.2, 0.2], "occluded": None},
        {"sample": 1, "label": "car", "box": GOOD_BOX, "occluded": True},
    ]
    summary = _check(rows, expected_samples=[0, 1, 2]).summary()
    assert summary["by_rule"] == {
        "box_out_of_bounds": 2,
        "empty_sample": 1,
        "missing_required_attribute": 1,
        "unknown_class": 1,
    }
    assert summary["by_class"] == {"(none)": 1, "car": 2, "dog": 2}
    assert summary["by_rule_and_class"]["box_out_of_bounds"] == {"car": 1, "dog": 1}
    assert (summary["n_labels"], summary["n_bad_labels"], summary["n_bad_samples"]) == (3, 2, 3)
    assert json.loads(json.dumps(summary)) == summary


def test_bulk_table_reports_exactly_the_injected_violations():
    rng = np.random.default_rng(0)
    n = 200_000
    sample = np.repeat(np.arange(n // 10), 10)
    label = rng.choice(["car", "person"], n).astype(object)
    box = np.hstack([rng.uniform(0, 0.7, (n, 2)), rng.uniform(0.05, 0.3, (n, 2))])
    occluded = rng.random(n) < 0.5
    bad_class, bad_box, bad_attr = rng.choice(n, (3, 50), replace=False)
    label[bad_class] = "truck"
    box[bad_box, 2] = -0.1
    score = rng.uniform(0, 1, n)
    score[bad_attr] = 3.0
    report = validate_labels(
        load_schema(PLAIN), sample, label, box, {"occluded": occluded, "score": score}
    )
    by_rule = {r: sorted(report.row[report.rule == r].tolist()) for r in set(report.rule)}
    assert by_rule == {
        "unknown_class": sorted(bad_class.tolist()),
        "box_non_positive_size": sorted(bad_box.tolist()),
        "attribute_out_of_range": sorted(bad_attr.tolist()),
    }


def test_every_rule_id_is_documented_and_unique():
    import annoloop.quality.algorithms.schema_rules as module

    assert len(set(RULES)) == len(RULES)
    assert [r for r in RULES if f"``{r}``" not in module.__doc__] == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(label=["car"]), r"label must have shape \(2,\)"),
        (dict(geometry=[[0, 0, 1, 1, 0]] * 2), r"shape \(2, 4\)"),
        (dict(attributes={"occluded": [True]}), r"shape \(2,\)"),
        (dict(kind=["detection"]), "kind"),
        (dict(expected_samples=["a"]), "one kind"),
    ],
)
def test_malformed_calls_raise_value_errors(kwargs, message):
    args = dict(
        schema=load_schema(PLAIN), sample=[0, 1], label=["car", "car"], geometry=[GOOD_BOX] * 2
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        validate_labels(**args)
