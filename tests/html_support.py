"""Shared by the HTML tests: the stored sample reports, a parser that lists what a page would execute or load, and
the check that a page is inert."""

from __future__ import annotations

import gzip
import json
import re
from html.parser import HTMLParser
from pathlib import Path

FIXTURES = Path(__file__).with_name("fixtures") / "reports"
DEMO_DIR = FIXTURES / "demo"  # report.json with its figures/ beside it
SAMPLES = ("demo-full.json.gz", "imagenet.json.gz", "minimal-l2.json.gz")

HOSTILE = ("</script><img src=x onerror=alert(1)>", '" onmouseover="x', "[/bold]")


def load(name: str) -> dict:
    if name == "demo":
        return json.loads((DEMO_DIR / "report.json").read_text(encoding="utf-8"))
    return json.loads(gzip.decompress((FIXTURES / name).read_bytes()))


class PageParser(HTMLParser):
    """Every start tag with its attributes, every text run, and the CSP and <style> contents."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        (self.styles if self._in_style else self.text).append(data)

    def csp(self) -> str | None:
        for tag, attrs in self.tags:
            if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "content-security-policy":
                return attrs.get("content")
        return None


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


# tags the page may contain: document structure, text, tables, figures and SVG shapes; never script or embeds
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "section", "div", "span", "h1", "h2", "h3", "p", "ul",
    "li", "dl", "dt", "dd", "strong", "sup", "br", "table", "thead", "tbody", "tr", "th", "td", "figure",
    "figcaption", "img", "svg", "g", "line", "polyline", "polygon", "rect", "circle", "path", "text",
}
ATTRIBUTES = {"class", "id", "lang", "charset", "name", "content", "http-equiv", "src", "alt", "colspan", "viewbox",
              "width", "height", "role", "aria-label", "font-family", "font-size", "font-weight", "x", "y", "x1", "y1",
              "x2", "y2", "cx", "cy", "r", "d", "points", "fill", "stroke", "stroke-width", "stroke-dasharray",
              "text-anchor", "transform", "paint-order"}
# a link of the series page: one percent-encoded path segment (a checkpoint's folder), then its report
RELATIVE_LINK = re.compile(r"[A-Za-z0-9._~%!$&'()*+,;=@-]+/report\.(html|json)")


def assert_inert(html: str, links: bool = False) -> None:
    """Nothing in the page runs or loads: no script, no event handler, no foreign attribute, no URL but data:.
    ``links``: the page may hold <a href> to a checkpoint's own report in a folder beside it, nothing else."""
    page = parse(html)
    for tag, attrs in page.tags:
        assert tag in ALLOWED_TAGS or (links and tag == "a"), f"unexpected tag <{tag}>"
        for name, value in attrs.items():
            assert not name.startswith("on"), f"event handler {name} on <{tag}>"
            assert name in ATTRIBUTES or (tag == "a" and name == "href"), f"{name} on <{tag}>"
            if tag == "img" and name == "src":
                assert value.startswith("data:image/png;base64,"), value[:40]
            if tag == "a":
                assert RELATIVE_LINK.fullmatch(value or ""), value
    assert "http://" not in html and "https://" not in html
    assert "url(" not in "".join(page.styles) and "@import" not in "".join(page.styles)
