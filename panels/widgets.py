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


#: Plotly config of every panel plot: no mode bar, and scrolling over a plot scrolls the
#: panel instead of zooming the plot (FiftyOne's panel plots zoom on scroll by default).
PLOT_CONFIG = {"displayModeBar": False, "responsive": True, "scrollZoom": False}


def plot_props(height_px: int, **components) -> dict:
    """Keyword arguments of ``Object.plot`` for a plot of a fixed height: the plot and the
    grid item around it keep ``height_px`` whatever the panel re-renders, so text below
    never slides under it. ``components`` are further ``componentsProps`` (e.g.
    :func:`flex`'s).

    The height goes on the item: FiftyOne 1.22's grids give an item the panel's height
    unless its own ``sx`` says otherwise, and the plot view's container fills its item
    (that container's ``sx`` is overridden by the view, so setting it there does nothing).
    """
    fixed = {"height": f"{height_px}px", "minHeight": f"{height_px}px", "overflow": "hidden"}
    item = components.pop("item", {})
    return {
        "height": height_px,
        "config": PLOT_CONFIG,
        "componentsProps": {**components, "item": {**item, "sx": {**item.get("sx", {}), **fixed}}},
    }


def round_label(index: int) -> str:
    """A round as the panels name it: numbered from 1, so round N added ``batch:vN``
    (the loop stores rounds 0-based)."""
    return f"round {int(index) + 1}"


def format_map(value: float) -> str:
    """mAP as the panel shows it (three decimals)."""
    return f"{value:.3f}"


def format_gain(value: float | None) -> str:
    """mAP gained per 100 training images, signed, or an em dash for a round without new ones."""
    return "—" if value is None else f"{value:+.4f}"


def dropdown(parent: types.Object, name: str, choices, default, label: str, on_change) -> None:
    """A string choice shown as a dropdown that calls ``on_change`` ."""
    view = types.DropdownView(componentsProps=INLINE)
    for choice in choices:
        view.add_choice(choice, label=choice)
    parent.str(name, default=default, label=label, view=view, on_change=on_change)
