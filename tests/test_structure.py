"""The structure of the packages: no import cycle among the project's modules, no private name used across modules.

The imports are read from the source with ``ast`` (nothing is imported), at every level: module top, functions,
``if TYPE_CHECKING`` blocks. ``import a.b`` and ``from a import b`` name the module ``a.b`` when it is one of the
project's, else ``a`` (``from a import name``: the package's ``__init__`` itself). Importing ``a.b`` is not counted
as importing the package ``a``: Python runs ``a/__init__`` first, but a package whose ``__init__`` loads its own
submodules is not a cycle anyone has to untangle, unless a submodule asks the package for a name.
"""

from __future__ import annotations

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("audit", "attacks", "reports")


def project_modules() -> dict[str, Path]:
    """Every module of the three packages by dotted name (a package by its own name, for its ``__init__``)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The module a ``from`` import names, with a relative one (``from .x import y``) resolved."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def known(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a project module (``a.b.c`` where only ``a.b`` is a module: ``a.b``)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], list[str]]:
    """The project modules ``module`` imports, and the private names of other modules it uses (one line each)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    targets: set[str] = set()
    private: list[str] = []
    aliases: dict[str, str] = {}  # a local name bound to a project module -> that module
    where = path.relative_to(ROOT)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = known(alias.name, modules)
                if target:
                    targets.add(target)
                    if alias.asname:
                        aliases[alias.asname] = target
                    elif target == alias.name.split(".")[0]:
                        aliases[target] = target
                _private_parts(alias.name, module, where, node, private)
        elif isinstance(node, ast.ImportFrom):
            source = absolute(module, path, node)
            base = known(source, modules)
            if base is None:
                continue
            _private_parts(source, module, where, node, private)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:  # `from package import submodule`: an import of the submodule
                    targets.add(submodule)
                    aliases[alias.asname or alias.name] = submodule
                else:
                    targets.add(base)
                inside = module == source or module.startswith(source + ".")  # a package's own private module
                if _is_private(alias.name) and (not inside if submodule in modules else base != module):
                    private.append(f"{where}:{node.lineno}: from {source} import {alias.name}")
    for node in ast.walk(tree):  # `alias._name` where alias is a project module imported above
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and _is_private(node.attr) and aliases[node.value.id] != module):
            private.append(f"{where}:{node.lineno}: {aliases[node.value.id]}.{node.attr}")
    targets.discard(module)
    return targets, private


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_parts(dotted: str, module: str, where: Path, node: ast.stmt, private: list[str]) -> None:
    """A private module on the path of an import (``import a._b``) used from outside its own package."""
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if _is_private(part) and not module.startswith(".".join(parts[:i]) + "."):
            private.append(f"{where}:{node.lineno}: import of {dotted}")
            return


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = project_modules()
    graph, private = {}, []
    for module, path in modules.items():
        graph[module], found = imports_of(module, path, modules)
        private += found
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan), as a path ``a -> ... -> a``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_within(component, graph) for component in components]


def _path_within(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the component's first module, staying inside the component (breadth first)."""
    start = min(component)
    previous = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def test_the_walker_finds_a_cycle_through_function_level_and_submodule_imports(tmp_path, monkeypatch):
    """The walker itself: a cycle closed by an import inside a function and a `from package import submodule`."""
    top = PACKAGES[0]  # the made-up modules live in a package of ours; named through `top` so that no
    # reference checker takes them for real ones
    package = tmp_path / top
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "inner" / "__init__.py").write_text("")
    (package / "a.py").write_text(f"from {top}.inner import b\n")
    (package / "inner" / "b.py").write_text("def f():\n    from ..c import g\n")
    (package / "c.py").write_text(f"import {top}.a as a\nx = a._hidden\n")
    (package / "d.py").write_text(f"from {top}.c import _private\n")
    for other in PACKAGES[1:]:
        (tmp_path / other).mkdir()
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    graph, private = import_graph()
    a, b, c = f"{top}.a", f"{top}.inner.b", f"{top}.c"
    assert graph[a] == {b} and graph[b] == {c}
    assert cycles(graph) == [[a, b, c, a]]
    assert sorted(private) == [f"{top}/c.py:2: {a}._hidden", f"{top}/d.py:1: from {c} import _private"]


def test_no_import_cycle_among_the_project_modules():
    graph, _ = import_graph()
    assert len(graph) > 30  # the walker saw the packages
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_no_module_uses_a_private_name_of_another():
    _, private = import_graph()
    assert not private, "private names used across modules:\n" + "\n".join(private)
