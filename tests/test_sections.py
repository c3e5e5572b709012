"""The renderers know the analyses only through the registry: a new analysis is one folder.

A folder put on AUDIT_ANALYSES_PATH with a report.py (terminal lines, an HTML panel and its template, a score
component, a gate metric) is shown in the terminal summary and on the HTML page of a report that carries its
section, scored and gated, with no file outside that folder written.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

import audit.analyses
from audit.analyses.registry import PATH_VARIABLE, sections
from audit.errors import AuditError
from reports.compare import compare
from reports.gates import evaluate, parse_gate
from reports.html import render_html
from reports.schema import AuditResult
from reports.score import score_report
from reports.terminal import render_summary
from tests.html_support import DEMO_DIR, HOSTILE, load, parse

ROOT = Path(__file__).resolve().parents[1]
NAME = "echo_of_a_newcomer"  # the folder's name, unique so no stored module can stand in for it

REPORT_PY = '''
from pathlib import Path

from rich.markup import escape

from audit.analyses.registry import GateFamily, ScoreComponent, Section

KEY = "echo"


def terminal(result, console):
    section = result.analyses[KEY]
    console.print(f"[bold]Echo[/] {escape(section['message'])}, loudness {section['loudness']:.2f}")


def panel(report, figures):
    section = (report.get("analyses") or {}).get(KEY)
    return None if not section else {"message": section["message"], "figures": figures}


def loudness(report, ref):
    section = (report.get("analyses") or {}).get(KEY)
    return (None, "no echo") if not section else (section["loudness"], "the echo's loudness as measured")


SECTION = Section(
    key=KEY, title="Echo", order=30, build=__name__.rsplit(".", 1)[0] + ".analysis:build",  # built when auditing
    terminal=terminal, panel=panel, template=Path(__file__).with_name("echo.html.j2"),
    finding=lambda report: "an echo answered" if KEY in (report.get("analyses") or {}) else None,
    score=(ScoreComponent(name="loudness", weight=0.2, formula="the echo's loudness", compute=loudness),),
    gate_metrics=lambda report: {"echo.loudness": (report.get("analyses") or {}).get(KEY, {}).get("loudness")},
    gate_families=(GateFamily(name="echo.loudness", better="lower", tolerance="absolute"),),
)
'''

TEMPLATE = """<section class="panel" id="echo">
<h2>Echo</h2>
{% if p is none %}<p class="note">No echo in this report.</p>
{% else %}<p class="finding">{{ p.message }}</p>
{% for f in p.figures %}<img src="{{ f.src }}" alt="{{ f.path }}">{% endfor %}
{% endif %}
</section>
"""


def _tree(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture
def extension(tmp_path):
    """The new analysis's folder, and a report.json that carries its section, beside the demo's figures."""
    folder = tmp_path / "mine" / NAME
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text('"""An analysis of my own."""\n', encoding="utf-8")
    (folder / "report.py").write_text(textwrap.dedent(REPORT_PY), encoding="utf-8")
    (folder / "echo.html.j2").write_text(TEMPLATE, encoding="utf-8")
    report = load("demo")
    report["analyses"]["echo"] = {"message": HOSTILE[0], "loudness": 0.25,
                                  "figures": [report["analyses"]["saliency"]["figures"][0]]}
    out = tmp_path / "out"
    shutil.copytree(DEMO_DIR / "figures", out / "figures")
    (out / "report.json").write_text(json.dumps(report), encoding="utf-8")
    return folder, out


@pytest.fixture
def registered(extension, monkeypatch):
    """The folder registered in this process; the package path and the modules put back afterwards."""
    monkeypatch.setattr(audit.analyses, "__path__", list(audit.analyses.__path__))
    monkeypatch.setenv(PATH_VARIABLE, str(extension[0].parent))
    yield extension
    for name in [m for m in sys.modules if m.startswith(f"audit.analyses.{NAME}")]:
        del sys.modules[name]


def test_the_registry_finds_the_two_analyses_in_report_order():
    found = sections()
    assert [s.key for s in found[:2]] == ["semantics", "saliency"]
    assert [s.title for s in found[:2]] == ["Semantic window", "Saliency entropy"]
    assert all(s.template is not None and s.template.is_file() for s in found[:2])
    assert [c.name for s in found for c in s.score] == ["severity", "representation", "saliency"]


def test_a_new_analysis_folder_is_rendered_in_the_terminal_and_on_the_page(registered):
    folder, out = registered
    before = {**_tree(ROOT / "audit"), **_tree(ROOT / "reports")}
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    report["score"] = score_report(report)
    console = Console(width=200, record=True, color_system=None, file=io.StringIO())
    render_summary(AuditResult.from_dict(report), console)
    html = render_html(report, base_dir=out)
    # the terminal summary: its line after the saliency lines, before the score; the markup shown, not applied
    text = console.export_text()
    assert f"Echo {HOSTILE[0]}, loudness 0.25" in text
    assert text.index("Saliency entropy") < text.index("Echo ") < text.index("Score")
    assert "loudness 0.25)" in text  # its score component beside the others
    # the page: its panel after the saliency panel and before the checks, escaped, with its figure embedded
    assert html.index('id="saliency"') < html.index('id="echo"') < html.index('id="checks"')
    assert HOSTILE[0] not in html and "&lt;/script&gt;&lt;img" in html
    echo = html[html.index('id="echo"'):html.index('id="checks"')]
    assert '<img src="data:image/png;base64,' in echo
    assert "Echo: an echo answered" in html  # its sentence on the summary card
    assert not any(tag == "script" for tag, _ in parse(html).tags)
    assert {**_tree(ROOT / "audit"), **_tree(ROOT / "reports")} == before  # nothing outside the folder written
    # a report without the section: the panel says so, the terminal prints nothing of it
    del report["analyses"]["echo"]
    assert "No echo in this report." in render_html(report, base_dir=out)
    console = Console(width=200, record=True, color_system=None, file=io.StringIO())
    render_summary(AuditResult.from_dict(report), console)
    assert "Echo" not in console.export_text()


def test_a_new_analysis_is_scored_and_gated(registered):
    _, out = registered
    keys = [s.key for s in sections()]
    assert keys[:2] == ["semantics", "saliency"] and keys[-1] == "echo"
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    score = score_report(report)
    names = list(score["components"])
    assert names[:4] == ["robustness", "severity", "representation", "saliency"] and names[-1] == "loudness"
    assert score["components"]["loudness"]["value"] == 0.25 and score["components"]["loudness"]["included"]
    assert score["weights"]["loudness"] == 0.2
    assert parse_gate("echo.loudness<=0.3").metric == "echo.loudness"  # its family, before any report exists
    assert evaluate(report, ["echo.loudness<=0.3"])["passed"]
    louder = json.loads(json.dumps(report))
    louder["analyses"]["echo"]["loudness"] = 0.5
    row = next(r for r in compare(report, louder)["rows"] if r["metric"] == "echo.loudness")
    # its own direction: louder is worse beyond the tolerance; an analysis's figure has no test, so no regression
    assert row["beyond_tolerance"] and row["better"] == "lower"
    assert row["test"] == "none" and not row["regressed"] and row["verdict"] == "not tested"
    assert not next(r for r in compare(louder, report)["rows"] if r["metric"] == "echo.loudness")["beyond_tolerance"]


def test_without_the_folder_the_section_is_neither_scored_nor_gated(extension):
    _, out = extension
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert "loudness" not in score_report(report)["components"]
    with pytest.raises(AuditError, match="unknown metric 'echo.loudness'"):
        parse_gate("echo.loudness<=0.3")
