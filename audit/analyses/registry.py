"""The registry of analyses: each subpackage of ``audit.analyses`` with a ``report.py`` that defines ``SECTION``.

An analysis is one folder::

    audit/analyses/NAME/
        __init__.py     its public math (loaded lazily: importing the folder costs nothing)
        report.py       SECTION: the report section's key and title, its terminal lines, its HTML panel and
                        template, its score components and gate metrics; imports neither torch nor numpy, so
                        `audit report` renders a report.json without them
        analysis.py     ``build(context)``: the :class:`~audit.analyses.base.Analysis` that watches the audit's
                        batches (torch), or None when it is off for this audit

Nothing outside the folder names it: the runner builds every registered analysis, and the terminal summary,
the HTML page, the score and the gates iterate :func:`sections`. Folders named in the environment variable
``AUDIT_ANALYSES_PATH`` (``os.pathsep``-separated) are searched too, so an analysis of your own can live outside
the installed package.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from audit.errors import AuditError

PATH_VARIABLE = "AUDIT_ANALYSES_PATH"


@dataclass(frozen=True, kw_only=True)
class ScoreComponent:
    """One component of the score that an analysis contributes (reports.score)."""

    name: str
    weight: float  # default weight; ``--weights NAME=W`` overrides it
    formula: str
    # (report, reference entry or None) -> (value in [0, 1] or None when it cannot be computed, detail sentence),
    # optionally with a third item {"n": the images it rests on, "too_few": bool} that the score entry carries
    compute: Callable[[dict, dict | None], tuple]


@dataclass(frozen=True, kw_only=True)
class GateFamily:
    """A family of gate metrics that an analysis contributes (reports.gates, reports.compare)."""

    name: str  # as the gate grammar lists it, e.g. "semantics.two_vs_two[LAYER]" (a [...] part: any text)
    better: str = "higher"  # "higher" or "lower": which way `audit compare` counts a change as a regression
    tolerance: str = "absolute"  # how compare's tolerance applies: "absolute" (a share in [0, 1]), "relative"
    # (a ratio), "points" (100 × it), or "count" (any increase)

    @property
    def family(self) -> str:
        """The name before its ``[...]`` part: what :func:`reports.gates.family` returns for its metrics."""
        return self.name.split("[", 1)[0]


@dataclass(frozen=True, kw_only=True)
class Section:
    """What the report does with one analysis: everything here works on report.json's plain data."""

    key: str  # the section's key in report["analyses"]
    title: str
    order: int  # place among the sections: lower first
    build: str  # "module:function" building the Analysis for an audit; imported only when auditing
    # (AuditResult, rich Console) -> None: its lines in the terminal summary; called when the report has the
    # section (report["analyses"][key] not empty)
    terminal: Callable | None = None
    # (report dict, figures) -> the template's context, or None when the report has no such section; figures:
    # the pictures the section lists under "figures" (paths beside report.json), read by the renderer as
    # {"path", "src" (a data: URI) or None, "problem"}
    panel: Callable | None = None
    template: Path | None = None  # the Jinja2 template of its HTML panel; it reads the panel's context as ``p``
    finding: Callable | None = None  # report dict -> one sentence for the HTML summary card, or None
    score: tuple[ScoreComponent, ...] = ()
    gate_metrics: Callable | None = None  # report dict -> {metric name: value}
    gate_families: tuple[GateFamily, ...] = field(default=())  # the families of those metric names

    def builder(self) -> Callable:
        module, _, name = self.build.partition(":")
        return getattr(importlib.import_module(module), name)


def _search_path() -> list[str]:
    import audit.analyses as package

    extra = [p for p in os.environ.get(PATH_VARIABLE, "").split(os.pathsep) if p]
    for folder in extra:
        if not Path(folder).is_dir():
            raise AuditError(f"{PATH_VARIABLE}: {folder} is not a folder")
        if folder not in package.__path__:
            package.__path__.append(folder)
    return list(package.__path__)


@cache
def _discover(path: tuple[str, ...]) -> tuple[Section, ...]:
    found: dict[str, Section] = {}
    for info in pkgutil.iter_modules(list(path)):
        if not info.ispkg:
            continue
        try:
            module = importlib.import_module(f"audit.analyses.{info.name}.report")
        except ModuleNotFoundError as exc:
            if exc.name == f"audit.analyses.{info.name}.report":
                continue  # a folder without a report.py is no analysis
            raise
        section = getattr(module, "SECTION", None)
        if not isinstance(section, Section):
            raise AuditError(f"analysis {info.name}: its report.py defines no SECTION (an audit.analyses.registry"
                             ".Section)")
        if section.key in found:
            raise AuditError(f"two analyses write the report section '{section.key}'")
        found[section.key] = section
    return tuple(sorted(found.values(), key=lambda s: (s.order, s.key)))


def sections() -> tuple[Section, ...]:
    """Every registered analysis's report section, in report order."""
    return _discover(tuple(_search_path()))
