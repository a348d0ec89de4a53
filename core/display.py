"""How a rate is written for people, wherever annoloop shows one (panels, result tables)."""

from __future__ import annotations

__all__ = ["format_rate"]


def format_rate(value: float | None) -> str:
    """A rate in [0, 1] with two decimals, or an em dash when undefined."""
    return "—" if value is None else f"{value:.2f}"
