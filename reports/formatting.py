"""How numbers read in every renderer (the terminal summary, the HTML page and the analyses' sections).

Plain strings from plain numbers; ``—`` stands for a value the report does not have.
"""

from __future__ import annotations

NORM_SIGN = {"Linf": "L∞", "L2": "L2"}


def pct(value: float | None) -> str:
    """A share in [0, 1] as a percentage with one decimal: 0.4321 -> 43.2%."""
    return "—" if value is None else f"{100 * value:.1f}%"


def num(value: float | None, digits: int = 3) -> str:
    """``digits`` significant digits: 0.012345 -> 0.0123."""
    return "—" if value is None else f"{value:.{digits}g}"


def two(value: float | None) -> str:
    """Two decimals, for accuracies, rates and AUROCs in [0, 1]: 0.5 -> 0.50."""
    return "—" if value is None else f"{value:.2f}"


def signed(value: float | None, digits: int = 2) -> str:
    """A change with its sign and ``digits`` decimals: 0.1 -> +0.10."""
    return "—" if value is None else f"{value:+.{digits}f}"
