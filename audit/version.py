"""The tool's version: the one place it is written (pyproject.toml reads it, reports record it)."""

__version__ = "0.1.0"
