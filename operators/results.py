"""Operator results as the App shows them: labelled values and tables, 3 significant digits.

``execute`` returns the full-precision values (SDK callers and tests read them); only the
result dialog rounds. Each operator names the result keys it shows and their labels; what
a run did not produce is left out rather than shown as an empty section.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import fiftyone.operators.types as types

#: Rows a table of a list result shows (the rest are counted, not listed).
MAX_ROWS = 20


def significant(value) -> str:
    """``value`` for a person: floats to 3 significant digits, ints with separators."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3g}" if value == 0 or 1e-3 <= abs(value) < 1e5 else f"{value:.2e}"
    if isinstance(value, (list, tuple)) and all(not isinstance(v, (dict, list)) for v in value):
        return ", ".join(significant(v) for v in value) or "-"
    return str(value)


def result_markdown(results: Mapping, labels: Mapping[str, str]) -> str:
    """Markdown for the ``labels`` keys of ``results`` that hold a value, in that order:
    scalars as one two-column table, each mapping or list of rows as a table of its own."""
    scalars, tables = [], []
    for key, label in labels.items():
        value = results.get(key)
        if value is None or value == {} or value == []:
            continue
        if isinstance(value, Mapping) or _is_rows(value):
            tables.append(f"**{label}**\n\n{_table(value)}")
        else:
            scalars.append(f"| {label} | {_cell(value)} |")
    parts = ["| | |\n|---|---|\n" + "\n".join(scalars)] if scalars else []
    return "\n\n".join(parts + tables)


def result_property(
    ctx,
    labels: Mapping[str, str],
    markdown_keys: tuple[str, ...] = (),
    results: Mapping | None = None,
) -> types.Property:
    """The result dialog: the table of :func:`result_markdown`, then each of
    ``markdown_keys`` (text the operator wrote as markdown, e.g. a next step) as it is.
    ``results`` replaces ``ctx.results`` where the operator reshapes some for people."""
    outputs = types.Object()
    results = (ctx.results or {}) if results is None else results
    text = result_markdown(results, labels)
    outputs.md(text or "Nothing to report", name="summary")
    for key in markdown_keys:
        if results.get(key):
            outputs.str(key, label=labels.get(key, ""), view=types.MarkdownView())
    return types.Property(outputs)


def _is_rows(value) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _table(value) -> str:
    """A mapping (of scalars: key | value; of mappings: one row each) or a list of rows."""
    if isinstance(value, Mapping):
        if all(isinstance(v, Mapping) for v in value.values()):
            rows = [{"": k, **v} for k, v in value.items()]
        else:
            return "| | |\n|---|---|\n" + "\n".join(
                f"| {k} | {_cell(v)} |" for k, v in value.items()
            )
    else:
        rows = list(value)
    columns = list(dict.fromkeys(c for row in rows for c in row))
    lines = [
        "| " + " | ".join(str(c) for c in columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows[:MAX_ROWS]),
    ]
    if len(rows) > MAX_ROWS:
        lines.append(f"\n… and {len(rows) - MAX_ROWS:,} more")
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {significant(v)}" for k, v in value.items())
    return significant(value).replace("|", "\\|").replace("\n", " ")
