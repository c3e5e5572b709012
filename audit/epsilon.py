"""Parsing of perturbation budgets: ``8/255``, ``0.3``, ``2/255,4/255,8/255``."""

from __future__ import annotations

from fractions import Fraction

from audit.errors import AuditError


def parse_eps_value(text: str) -> float:
    """One budget: a decimal (``0.3``) or a fraction (``8/255``); must be positive and finite."""
    raw = text.strip()
    try:
        if "/" in raw:
            num, den = raw.split("/")  # one slash only: "8/255/2" is not a budget
            value = float(Fraction(num.strip()) / Fraction(den.strip()))
        else:
            value = float(raw)
    except (ValueError, ZeroDivisionError):
        raise AuditError(f"--eps value '{text}' is not a number or a fraction like 8/255") from None
    if not value > 0 or value == float("inf"):
        raise AuditError(f"--eps value '{text}' must be positive and finite")
    return value


def parse_eps_list(texts: str | list[str] | tuple[str, ...] | None) -> list[tuple[float, str]]:
    """A list of budgets from one or more comma lists, sorted ascending, duplicates removed.

    Returns ``(value, text)`` pairs so reports can show the budget as the user wrote it.
    """
    if texts is None:
        return []
    if isinstance(texts, str):
        texts = [texts]
    seen: dict[float, str] = {}
    for chunk in texts:
        for part in str(chunk).split(","):
            if not part.strip():
                raise AuditError(f"--eps has an empty entry in '{chunk}'")
            value = parse_eps_value(part)
            seen.setdefault(value, part.strip())
    return sorted(seen.items())
