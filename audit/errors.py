"""Exceptions that the CLI maps to documented exit codes.

0 ok, 1 a quality gate failed, 2 bad input or usage, 3 internal error (anything else).
"""

from __future__ import annotations


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
