"""Shared by the hierarchy tests: the height of two classes' lowest common ancestor by walking a ``ClassTree``'s
parent links, written apart from ``audit.analyses.semantics.hierarchy.lca_height`` to check it."""

from __future__ import annotations


def literal_lca(tree, a: int, b: int) -> int:
    """The LCA's height by walking parents: the ancestors of a's leaf, then b's leaf up until one of them."""
    above = set()
    node = tree.leaf[a]
    while node >= 0:
        above.add(node)
        node = tree.parent[node]
    node = tree.leaf[b]
    while node not in above:
        node = tree.parent[node]
    return tree.height[node]
