"""Building blocks both panels share: layout props, dropdowns and how numbers are shown."""

from __future__ import annotations

import fiftyone.operators.types as types

#: ``componentsProps`` of a button (or other item) that keeps its size in a wrapping grid,
#: whose items otherwise fill the row.
INLINE = {"item": {"sx": {"width": "auto"}}}
#: ``componentsProps`` of a vertical stack as wide as the panel however wide its tables
#: are: they scroll instead of widening the panel.
SHRINK = {"grid": {"sx": {"gridTemplateColumns": "minmax(0, 1fr)"}}}


def flex(basis_px: int) -> dict:
    """``componentsProps`` of an item of a wrapping grid: it grows from ``basis_px`` and
    wraps below its neighbour when the panel is narrower than their bases."""
    return {"item": {"sx": {"flex": f"1 1 {basis_px}px", "width": "auto", "minWidth": 0}}}


def format_map(value: float) -> str:
    """mAP as the panel shows it (three decimals)."""
    return f"{value:.3f}"


def format_rate(value: float | None) -> str:
    """A rate in [0, 1] as the panel shows it, or an em dash when undefined."""
    return "—" if value is None else f"{value:.2f}"


def format_gain(value: float | None) -> str:
    """mAP gained per 100 labels, signed, or an em dash for a round without new labels."""
    return "—" if value is None else f"{value:+.4f}"


def dropdown(parent: types.Object, name: str, choices, default, label: str, on_change) -> None:
    """A string choice shown as a dropdown that calls ``on_change`` ."""
    view = types.DropdownView(componentsProps=INLINE)
    for choice in choices:
        view.add_choice(choice, label=choice)
    parent.str(name, default=default, label=label, view=view, on_change=on_change)
