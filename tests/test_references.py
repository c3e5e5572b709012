"""Names the code and the docs point readers at (``audit.engine.tallies.minimal_sizes``) exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("audit", "attacks", "reports")
# a dotted name that starts with one of our packages, not part of a longer name ("robustness-audit.checks")
DOTTED = re.compile(r"(?<![\w.\-/])((?:audit|attacks|reports)(?:\.[A-Za-z_]\w*)+)")


def _sources() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for folder in (*PACKAGES, "scripts", "benchmarks", "tests"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return [f for f in files if f.is_file()]


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            if not hasattr(obj, part):
                return False
            obj = getattr(obj, part)
        return True
    return False


def test_every_dotted_name_of_the_project_in_code_and_docs_exists():
    names: dict[str, str] = {}
    for file in _sources():
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            for found in DOTTED.finditer(line):
                name = found.group(1)
                if "mutmut" in name or name.rsplit(".", 1)[-1] in ("py", "md", "json", "txt", "html", "toml"):
                    continue  # mutant ids in docs/mutation.md; file names
                names.setdefault(name, f"{file.relative_to(ROOT)}:{number}")
    assert len(names) > 20  # the scan sees the project's references
    stale = [f"{where}: {name}" for name, where in sorted(names.items()) if not _resolves(name)]
    assert not stale, "names that no longer exist:\n" + "\n".join(stale)
