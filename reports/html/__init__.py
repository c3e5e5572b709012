"""The self-contained HTML review page of an audit report (reads only the report dict; never imports torch)."""

from reports.html.render import render_compare_html, render_html

__all__ = ["render_compare_html", "render_html"]
