"""The self-contained HTML review pages of an audit report, a comparison and a series (read only the report
dicts or series.json; never import torch)."""

from reports.html.render import render_compare_html, render_html
from reports.html.series import render_series_html

__all__ = ["render_compare_html", "render_html", "render_series_html"]
