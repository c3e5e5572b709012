"""What an audit writes into its output folder: all of it or none of it.

Every file is rendered in memory first (report.json included, so a value JSON cannot hold stops the audit before
anything is written), then each goes to a temporary file beside its place, and only when all of them are on disk
are they renamed into place, report.json last: a report.json on disk always belongs to a finished audit with
everything beside it, and a failure while writing leaves no new file behind.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from reports.schema import AuditResult, stage_file


def write_outputs(result: AuditResult, out: Path, *, export: bool = False, html: bool = True,
                  junit: Path | None = None) -> Path:
    """Write the audit's files into ``out``; returns the path of report.json."""
    pending = dict(result.artifacts.get("files", {}))  # relative path -> content (the example figures)
    files: dict[Path, str | bytes] = {out / relative: content for relative, content in pending.items()}
    if export:
        files.update(export_representations(result, out))
    text = result.to_json() + "\n"  # raises on NaN or infinity before any file exists
    report = result.to_dict()
    if html:
        from reports.html import render_html

        files[out / "report.html"] = render_html(report, base_dir=out, pending=pending)
    if junit is not None:
        from reports.junit import junit_xml

        files[Path(junit)] = junit_xml(report)
    files[out / "report.json"] = text
    return write_all(files)[out / "report.json"]


def write_all(files: dict[Path, str | bytes]) -> dict[Path, Path]:
    """Write every file, or none: each goes to a temporary file in its own folder first, and the renames into
    place (the last step, report.json last when it is the last key) happen only when all are written."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, content in files.items():
            staged.append((stage_file(path, content), path))
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    return {path: path for _, path in staged}


def export_representations(result: AuditResult, out: Path) -> dict[Path, bytes]:
    """``OUT/representations.npz``: plain arrays and unicode strings (loads with ``allow_pickle=False``); returns
    the file to write (nothing when there is no semantic section, with a warning)."""
    import numpy as np

    arrays = result.artifacts.get("representations")
    if arrays is None:
        result.warnings.append("--export-representations: no semantic section, nothing exported")
        return {}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    result.analyses["semantics"]["export"] = "representations.npz"
    return {out / "representations.npz": buffer.getvalue()}


def verdict_failures(verdict: dict) -> str | None:
    """One line naming what failed in the verdict, or None when it passed."""
    if not verdict or verdict.get("passed", True):
        return None
    failed = [g["expression"] for g in verdict.get("gates", []) if not g["passed"]]
    if verdict.get("score_passed") is False:
        failed.insert(0, f"score below --fail-under {verdict['fail_under']:g}")
    return "; ".join(failed) or "the verdict failed"
