"""How numbers read in every renderer (the terminal summary, the HTML page and the analyses' sections).

Plain strings from plain numbers; ``—`` stands for a value the report does not have.
"""

from __future__ import annotations

NORM_SIGN = {"Linf": "L∞", "L2": "L2"}
PERCENT_FAMILIES = frozenset({"clean.accuracy", "robust_accuracy", "success_rate"})  # shares: shown in %


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


def half_width(value: float | None, interval) -> float | None:
    """The larger distance from ``value`` to an end of its interval: what ``±`` shows of an interval that may be
    asymmetric (Wilson's is, near 0 and 1); None when there is no interval."""
    if value is None or not interval or interval[0] is None or interval[1] is None:
        return None
    return max(value - interval[0], interval[1] - value)


def pct_pm(value: float | None, interval) -> str:
    """A share with its interval as ``36.3% ±5.4`` (percentage points; see :func:`half_width`)."""
    half = half_width(value, interval)
    return pct(value) if half is None else f"{pct(value)} ±{100 * half:.1f}"


def fixed_interval(interval, digits: int = 2, sep: str = ", ") -> str:
    """An interval with ``digits`` decimals as ``[0.10, 0.52]`` (``sep`` between the ends); "" without one."""
    return "" if not interval else f"[{interval[0]:.{digits}f}{sep}{interval[1]:.{digits}f}]"


def pct_interval(interval) -> str:
    """An interval of shares as ``[31.1, 41.9]%``; ``—`` without one."""
    if not interval or interval[0] is None or interval[1] is None:
        return "—"
    return f"[{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]%"


def pct_with(value: float | None, interval) -> str:
    """A share and its interval as ``96.7% [83.3, 99.4]`` (one % sign); ``—`` without a value."""
    if value is None:
        return "—"
    if not interval or interval[0] is None or interval[1] is None:
        return pct(value)
    return f"{pct(value)} [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def num_interval(interval, digits: int = 3) -> str:
    """An interval as ``[0.12, 0.34]`` with ``digits`` significant digits; an infinite or missing end as ∞/—."""
    if not interval:
        return "—"
    ends = ["∞" if end is None else f"{end:.{digits}g}" for end in interval]
    return f"[{ends[0]}, {ends[1]}]"


_PREPROCESSING_WORDS = {"mean": "mean", "std": "std", "input_size": "input", "resize": "resize", "crop": "crop",
                        "interpolation": "", "classes": "class names"}


def _setting(key: str, value) -> str:
    if key == "classes":
        return f"{value} class names"
    if key in ("input_size", "crop") and isinstance(value, list):
        return f"{_PREPROCESSING_WORDS[key]} {'×'.join(str(v) for v in value)}"
    if key in ("mean", "std") and isinstance(value, list):
        return f"{key} {','.join(f'{v:g}' for v in value)}"
    return f"{_PREPROCESSING_WORDS[key]} {value}".strip()


def preprocessing_groups(preprocessing: dict | None) -> list[tuple[str, str]]:
    """(source, "mean 0.5,0.5,0.5, std …, bicubic") per source of the report's ``model.preprocessing``, the
    sources in the order their first key appears; values never set ("default" with no value) are left out."""
    groups: dict[str, list[str]] = {}
    for key, entry in (preprocessing or {}).items():
        if not isinstance(entry, dict) or entry.get("value") is None:
            continue
        groups.setdefault(str(entry.get("source", "default")), []).append(_setting(key, entry["value"]))
    return [(source, ", ".join(parts)) for source, parts in groups.items()]


def p_text(p: float | None) -> str:
    """A p-value in at most 5 characters: 0.032, 1.000, 4e-7."""
    if p is None:
        return ""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.0e}".replace("e-0", "e-")


def shown_p(row: dict) -> float | None:
    """The adjusted p of the direction the row moved in (of "worse" when it did not move)."""
    if row.get("p_adjusted") is None:
        return None
    return row["p_better_adjusted"] if (row.get("delta") or 0) > 0 else row["p_adjusted"]
