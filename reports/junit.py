"""JUnit XML of a report for CI systems: one test case per validity check and per gate.

Reads only the report dict (its ``checks`` and ``verdict``); no torch. Two test suites:

- ``robustness-audit.checks``: a check with status ``fail`` is a ``<failure>`` (message: its one sentence); ``warn``
  passes, with ``WARNING: <detail>`` in ``<system-out>`` — a warned check did run and did not fail; ``pass``
  passes, its detail in ``<system-out>`` as well; ``skipped`` and ``not_applicable`` (the check never ran) are
  ``<skipped>`` with the reason as message.
- ``robustness-audit.gates``: one case per gate (``<failure>`` when it did not hold) and one for ``--fail-under``
  when it was set. A gate that its metric's interval leaves undecided says so in its detail (the failure message,
  or ``<system-out>`` when it held): "undecided at this sample size (…): about N images would resolve it".

The verdict's one-line summary (``reports.gates.verdict_summary``: gates, grade and failed checks, as the terminal
and the HTML page say it) is the ``verdict`` property of the checks suite.

Built with ``xml.etree.ElementTree`` (text and attributes are escaped); characters that XML 1.0 cannot hold
(control characters) are replaced by U+FFFD so that untrusted names never make the file unreadable.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from reports.gates import verdict_summary

SUITE = "robustness-audit"
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


def _case(suite: ET.Element, classname: str, name: str, failure: str | None, out: str | None,
          body: str | None = None, skipped: str | None = None) -> None:
    case = ET.SubElement(suite, "testcase", classname=_text(classname), name=_text(name), time="0")
    if skipped is not None:
        ET.SubElement(case, "skipped", message=_text(skipped))
    if failure is not None:
        node = ET.SubElement(case, "failure", message=_text(failure), type="failure")
        node.text = _text(body if body is not None else failure)
    if out:
        ET.SubElement(case, "system-out").text = _text(out)


def _suite(root: ET.Element, name: str, cases: list[tuple], properties: dict | None = None) -> None:
    suite = ET.SubElement(root, "testsuite", name=name, tests=str(len(cases)),
                          failures=str(sum(c[1] is not None for c in cases)), errors="0",
                          skipped=str(sum(len(c) > 4 and c[4] is not None for c in cases)), time="0")
    if properties:
        node = ET.SubElement(suite, "properties")
        for key, value in properties.items():
            ET.SubElement(node, "property", name=key, value=_text(value))
    for case in cases:
        _case(suite, name, *case)


def junit_xml(report: dict) -> str:
    checks = []
    for c in report.get("checks") or []:
        numbers = json.dumps(c.get("numbers") or {}, sort_keys=True)
        if c["status"] == "fail":
            checks.append((c["name"], c["detail"], None, f"{c['detail']}\nnumbers: {numbers}"))
        elif c["status"] in ("skipped", "not_applicable"):
            checks.append((c["name"], None, f"numbers: {numbers}", None, c["detail"]))
        else:
            prefix = "WARNING: " if c["status"] == "warn" else ""
            checks.append((c["name"], None, f"{prefix}{c['detail']}\nnumbers: {numbers}"))
    verdict = report.get("verdict") or {}
    gates = [(g["expression"], None, g.get("detail")) if g["passed"] else
             (g["expression"], g.get("detail") or f"{g['expression']} failed", None) for g in verdict.get("gates", [])]
    if verdict.get("fail_under") is not None:
        score = report.get("score") or {}
        value = score.get("value")
        shown = "null" if value is None else f"{value:.1f}"
        detail = f"score {shown} (grade {score.get('grade')}) against --fail-under {verdict['fail_under']:g}"
        passed = verdict["score_passed"]
        gates.append((f"score >= {verdict['fail_under']:g}", None if passed else detail, detail if passed else None))
    root = ET.Element("testsuites", name=SUITE, tests=str(len(checks) + len(gates)),
                      failures=str(sum(c[1] is not None for c in checks + gates)))
    summary = verdict.get("summary") or verdict_summary(report) if verdict or report.get("score") else None
    _suite(root, f"{SUITE}.checks", checks, {"verdict": summary} if summary else None)
    _suite(root, f"{SUITE}.gates", gates)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
