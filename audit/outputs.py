"""What an audit writes into its output folder, each file atomically.

Order: the files the report refers to (figures, representations), the HTML page and JUnit XML, and report.json
last, so a report.json on disk always belongs to a finished audit with everything beside it.
"""

from __future__ import annotations

import io
from pathlib import Path

from reports.schema import AuditResult, write_atomic


def write_outputs(result: AuditResult, out: Path, *, export: bool = False, html: bool = True,
                  junit: Path | None = None) -> Path:
    """Write the audit's files into ``out``; returns the path of report.json."""
    for relative, content in result.artifacts.get("files", {}).items():
        write_atomic(out / relative, content)
    if export:
        export_representations(result, out)
    report = result.to_dict()
    if html:
        from reports.html import render_html

        write_atomic(out / "report.html", render_html(report, base_dir=out))
    if junit is not None:
        from reports.junit import junit_xml

        write_atomic(junit, junit_xml(report))
    return write_atomic(out / "report.json", result.to_json() + "\n")


def export_representations(result: AuditResult, out: Path) -> None:
    """``OUT/representations.npz``: plain arrays and unicode strings (loads with ``allow_pickle=False``)."""
    import numpy as np

    arrays = result.artifacts.get("representations")
    if arrays is None:
        result.warnings.append("--export-representations: no semantic section, nothing exported")
        return
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(out / "representations.npz", buffer.getvalue())
    result.analyses["semantics"]["export"] = "representations.npz"


def verdict_failures(verdict: dict) -> str | None:
    """One line naming what failed in the verdict, or None when it passed."""
    if not verdict or verdict.get("passed", True):
        return None
    failed = [g["expression"] for g in verdict.get("gates", []) if not g["passed"]]
    if verdict.get("score_passed") is False:
        failed.insert(0, f"score below --fail-under {verdict['fail_under']:g}")
    return "; ".join(failed) or "the verdict failed"
