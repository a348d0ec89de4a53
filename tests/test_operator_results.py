"""Operator results read as a person reads them: rounded, tabulated, nothing empty shown."""

from __future__ import annotations

from annoloop.operators.results import MAX_ROWS, result_markdown, significant


def test_numbers_are_rounded_to_three_significant_digits_and_counts_get_separators():
    assert significant(14.819297403181375) == "14.8"
    assert significant(0.000123456) == "1.23e-04"
    assert significant(12345) == "12,345"
    assert (significant(True), significant(None)) == ("yes", "-")


def test_a_result_without_a_value_is_left_out_rather_than_shown_empty():
    text = result_markdown(
        {"batch": "batch:v2", "fallback_reason": None, "picks": []},
        {"batch": "Batch", "fallback_reason": "Fallback", "picks": "Picks"},
    )
    assert "batch:v2" in text and "Fallback" not in text and "Picks" not in text


def test_a_mapping_of_mappings_is_one_table_row_per_key():
    text = result_markdown(
        {"recall": {"car": {"recall": 0.51234, "n": 40}, "van": {"recall": 0.1, "n": 7}}},
        {"recall": "Recall per class"},
    )
    lines = text.splitlines()
    assert lines[0] == "**Recall per class**"
    assert "| car | 0.512 | 40 |" in lines and "| van | 0.1 | 7 |" in lines


def test_a_long_list_of_rows_is_cut_and_the_rest_counted():
    rows = [{"scene": f"scene-{i}", "score": i / 7} for i in range(MAX_ROWS + 5)]
    text = result_markdown({"picks": rows}, {"picks": "Picks"})
    assert f"| scene-{MAX_ROWS - 1} |" in text and f"scene-{MAX_ROWS} |" not in text
    assert "… and 5 more" in text


def test_the_review_result_is_a_table_of_reasons_not_a_json_tree():
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    from fo_helpers import uri

    results = {"n_samples": 4, "n_accepted": 9, "rejected": {"low_confidence": 3}, "n_removed": 0}
    ctx = ExecutionContext(request_params={"params": {}, "results": results})
    shown = foo.OperatorRegistry().get_operator(uri("review_autolabels")).resolve_output(ctx).to_json()
    assert "JSONView" not in str(shown)
    assert "| low_confidence | 3 |" in str(shown)
