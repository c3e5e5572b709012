"""Exceptions that the CLI maps to documented exit codes, and the one-line form of an exception they quote.

0 ok, 1 a quality gate failed, 2 bad input or usage, 3 internal error (anything else).
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class AuditError(Exception):
    """Something the user can fix: bad input, bad flags, an unsafe file. Exit code 2."""

    exit_code = 2


class GateFailed(Exception):
    """The audit ran, but a quality gate the user asked for failed. Exit code 1."""

    exit_code = 1


EXIT_OK = 0
EXIT_GATE = GateFailed.exit_code
EXIT_USAGE = AuditError.exit_code
EXIT_INTERNAL = 3


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, without colour codes, cut to ``limit`` characters."""
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
