"""Shared by the HTML tests: the stored sample reports and a parser that lists what a page would execute or load."""

from __future__ import annotations

import gzip
import json
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
