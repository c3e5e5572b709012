"""`audit hierarchy`: the class tree an audit uses, printed, and its LCA heights exported.

``mapped_classes`` reads the classes (a built-in label set's shipped mapping, or a user's class -> synset file
read against a WordNet dict folder) and keeps those with a synset; ``show`` prints the tree (rich) and the root's
split; ``export`` writes ``classes``, ``synsets`` (wnids) and ``lca_height`` to an ``.npz`` that ``np.load`` reads
without pickle. The tree is ``audit.analyses.semantics.hierarchy.build_tree``, the same the audit builds.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from rich.markup import escape
from rich.tree import Tree

from audit.analyses.semantics import wordnet as wn
from audit.analyses.semantics.hierarchy import ClassTree, build_tree, lca_height, top_split
from audit.errors import AuditError


def mapped_classes(labelset: str | None, class_synsets: Path | None, wordnet: Path | None):
    """The mapping (``ClassSynsets``) of a built-in label set or of a class file; a label set without a
    hierarchy, or fewer than two mapped classes, is an ``AuditError``."""
    if class_synsets is None:
        found = wn.load_builtin(labelset)
        if found is None:
            raise AuditError(f"the label set {labelset!r} has no WordNet hierarchy ({wn.no_hierarchy_reason(labelset)}); "
                             "give a class -> synset file with --class-synsets FILE --wordnet DIR")
    else:
        found = wn.load_class_synsets(class_synsets, wordnet)
    if len(found.mapped) < wn.MIN_MAPPED:
        raise AuditError(f"only {len(found.mapped)} of {len(found.classes)} classes map to a synset: a hierarchy "
                         f"needs {wn.MIN_MAPPED}")
    return found


def tree_of(found) -> tuple[list[str], list[str], ClassTree]:
    """The mapped classes, their wnids and their tree."""
    kept = found.mapped
    classes, wnids = [found.classes[i] for i in kept], [found.wnids[i] for i in kept]
    try:
        return classes, wnids, build_tree(found.graph.hypernyms, wnids)
    except ValueError as exc:
        raise AuditError(f"cannot build the class tree: {exc}") from None


def show(found, console) -> None:
    """The classes left out, the tree (each node with its synset and height), and one line on its shape."""
    unmapped = list(found.unmapped.items())
    if unmapped:
        left = ", ".join(f"{name} ({why})" for name, why in unmapped[:5])
        console.print(f"[yellow]left out, not mapped to a synset:[/] {escape(left)}"
                      + (f" and {len(unmapped) - 5} more" if len(unmapped) > 5 else ""))
    classes, _, tree = tree_of(found)
    names = found.graph.names

    def label(node: int) -> str:
        synset = tree.synset[node]
        if tree.leaf_class[node] >= 0:
            return f"[bold]{escape(classes[tree.leaf_class[node]])}[/bold]  {escape(names.get(synset, synset))} {synset}"
        return f"{escape(names.get(synset, synset))} {synset}  [dim]height {tree.height[node]}[/dim]"

    view = Tree(label(tree.root))
    stack = [(tree.root, view)]
    while stack:
        node, branch = stack.pop()
        for child in tree.children[node]:
            stack.append((child, branch.add(label(child))))
    console.print(view)
    groups = "; ".join(f"{escape(names.get(tree.synset[n], tree.synset[n]))}: {len(c)}" for n, c in top_split(tree))
    console.print(f"{len(classes)} classes, {len(tree.parent) - len(classes)} inner nodes, height "
                  f"{tree.height[tree.root]}; the root splits into {groups or 'nothing (one class)'}")


def export(found) -> bytes:
    """The ``.npz`` bytes of ``classes``, ``synsets`` and ``lca_height`` (classes x classes, integers)."""
    classes, wnids, tree = tree_of(found)
    buffer = io.BytesIO()
    np.savez(buffer, classes=np.array(classes, dtype=str), synsets=np.array(wnids, dtype=str),
             lca_height=lca_height(tree))
    return buffer.getvalue()
