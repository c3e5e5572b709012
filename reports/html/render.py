"""Render a report dict (json.loads of report.json) into one self-contained HTML page.

Jinja2 with ``autoescape=True`` outright; templates and the stylesheet are package data beside this module, and
each registered analysis brings its panel's template (``Section.template``, loaded as ``KEY/NAME``). The page loads
nothing: inline CSS (allowed by its sha256 in the Content-Security-Policy), inline SVG charts made in
``charts.py``, pictures as base64 ``data:image/png`` URIs, no JavaScript. Never imports torch.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, StrictUndefined
from markupsafe import Markup

from audit.analyses.registry import Section, sections
from reports.formatting import PERCENT_FAMILIES, num, pct, signed
from reports.gates import family
import reports.html.panels as panels

TEMPLATES = Path(__file__).with_name("templates")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_FIGURE_BYTES = 5 * 1024 * 1024


def environment() -> Environment:
    """The templates of this folder and of every registered analysis (one environment per set of analyses)."""
    return _environment(sections())


@lru_cache(maxsize=4)
def _environment(found: tuple[Section, ...]) -> Environment:
    analyses = PrefixLoader({s.key: FileSystemLoader(s.template.parent) for s in found if s.template is not None})
    env = Environment(loader=ChoiceLoader([FileSystemLoader(TEMPLATES), analyses]), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=pct, num=num, signed=signed, delta=lambda v: "—" if v is None else f"{v:+.4g}",
                       metric_value=metric_value, metric_delta=metric_delta)
    return env


@lru_cache(maxsize=1)
def stylesheet() -> tuple[Markup, str]:
    """The page's CSS and the Content-Security-Policy that allows exactly it and data: pictures, nothing else."""
    css = (TEMPLATES / "style.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    policy = (f"default-src 'none'; img-src data:; style-src 'sha256-{digest}'; script-src 'none'; "
              "base-uri 'none'; form-action 'none'")
    return Markup(css), policy


def read_figures(paths: list[str], base_dir: Path | None, pending: Mapping[str, bytes] | None = None) -> list[dict]:
    """The example pictures as data URIs. A picture that cannot be embedded is named with the reason instead.
    ``pending``: pictures about to be written beside report.json with it (by their path relative to it), read
    from memory: an audit renders its page before any of its files is on disk."""
    out = []
    root = base_dir.resolve() if base_dir is not None else None
    for rel in paths:
        src, problem = None, None
        if pending is not None and isinstance(pending.get(rel), bytes | bytearray):
            data = bytes(pending[rel])
            if len(data) > MAX_FIGURE_BYTES:
                problem = "not embedded: larger than 5 MB"
            elif data.startswith(PNG_MAGIC):
                src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            else:
                problem = "not embedded: not a PNG file"
        elif root is None:
            problem = "not embedded: the report's folder is unknown"
        else:
            target = (root / rel).resolve()
            if not target.is_relative_to(root):
                problem = "not embedded: outside the report's folder"
            elif not target.is_file():
                problem = "missing: the file is not beside report.json"
            elif target.stat().st_size > MAX_FIGURE_BYTES:
                problem = "not embedded: larger than 5 MB"
            else:
                data = target.read_bytes()
                if data.startswith(PNG_MAGIC):
                    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
                else:
                    problem = "not embedded: not a PNG file"
        out.append({"path": rel, "src": src, "problem": problem})
    return out


def section_panels(report: dict, base_dir: Path | None = None, pending: Mapping[str, bytes] | None = None
                   ) -> list[dict]:
    """Every registered analysis's panel, in the sections' order: its template's name and its context (``p``;
    None when the report has no such section). The pictures a section lists under ``figures`` are read here."""
    out = []
    for section in sections():
        if section.panel is None or section.template is None:
            continue
        data = (report.get("analyses") or {}).get(section.key) or {}
        figures = read_figures(list(data.get("figures") or []), Path(base_dir) if base_dir is not None else None,
                               pending)
        out.append({"key": section.key, "template": f"{section.key}/{section.template.name}",
                    "panel": section.panel(report, figures)})
    return out


def metric_value(value: float | None, metric: str) -> str:
    """A compared metric's value as the terminal table shows it: shares in %, other numbers to 4 digits."""
    return pct(value) if family(metric) in PERCENT_FAMILIES else num(value, 4)


def metric_delta(value: float | None, metric: str) -> str:
    """A difference of a compared metric: percentage points for shares, else signed to 4 digits."""
    if value is None:
        return "—"
    return f"{100 * value:+.1f} pt" if family(metric) in PERCENT_FAMILIES else f"{value:+.4g}"


def report_context(report: dict, base_dir: Path | None = None, pending: Mapping[str, bytes] | None = None) -> dict:
    """Everything the report template shows, built from the report dict alone."""
    rows, notes = panels.attack_rows(report)
    return {
        "summary": panels.summary(report),
        "robustness": panels.robustness_charts(report),
        "attack_rows": rows, "attack_notes": notes,
        "per_class": panels.per_class(report),
        "analyses": section_panels(report, base_dir, pending),
        "checks": panels.checks(report),
        "metadata": panels.metadata(report),
        "warnings": list(report.get("warnings") or []),
        "statistics": panels.statistics(report),
    }


def render_html(report: dict, base_dir: Path | None = None, pending: Mapping[str, bytes] | None = None) -> str:
    """The review page of one report. ``base_dir``: the folder of report.json (where its figures live);
    ``pending``: figures not yet written there (``read_figures``)."""
    css, policy = stylesheet()
    ctx = report_context(report, base_dir, pending)
    title = f"Robustness audit: {ctx['summary']['model_name']}"
    return environment().get_template("report.html.j2").render(css=css, csp=policy, title=title, **ctx)


COMPARE_TESTS = {"mcnemar": "McNemar (paired)", "fisher": "Fisher (unpaired)", "score interval": "score interval",
                 "none": "not tested"}


def render_compare_html(base: dict, new: dict, comparison: dict) -> str:
    """Two reports side by side with the rows of ``comparison`` (reports.compare: per metric the delta, its
    interval, the test, b/c, the Holm-adjusted p and the outcome; older comparisons without them render too)."""
    css, policy = stylesheet()
    sides = [{"role": role, "summary": panels.summary(r), "checks": panels.checks(r)}
             for role, r in (("base", base), ("new", new))]
    confidence = comparison.get("confidence")
    return environment().get_template("compare.html.j2").render(
        css=css, csp=policy, title="Robustness audit: comparison", sides=sides,
        charts=panels.compare_charts(base, new),
        rows=comparison.get("rows") or [], tolerance=comparison.get("tolerance"),
        regressed=bool(comparison.get("regressed")), alpha=comparison.get("alpha"), note=comparison.get("note"),
        paired=bool(comparison.get("paired")), tests=COMPARE_TESTS,
        level=f"{100 * confidence:g}%" if confidence else "")
