"""Benchmark: the class hierarchy at 1000 classes (target: the tree and all 499,500 LCA heights well under 1 s).

A synthetic WordNet-like graph: 3000 inner nodes, each with one or two hypernyms among the earlier ones, and 1000
classes with one to three hypernyms each. Prints the wall time of ``build_tree``, ``lca_height``, the top-k distance
and random-wrong baseline of 50,000 samples, and ``wu_palmer_matrix`` (the graph measure, a pair loop).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_hierarchy.py [--classes 1000] [--inner 3000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from audit.analyses.semantics.hierarchy import (
    build_tree, hierarchical_distance_topk, lca_height, random_wrong_baseline, wu_palmer_matrix,
)


def synthetic_graph(classes: int, inner: int, seed: int = 0) -> tuple[dict, list[str]]:
    rng = np.random.default_rng(seed)
    graph = {f"i{k}": tuple(f"i{j}" for j in rng.choice(k, size=min(k, rng.integers(1, 3)), replace=False))
             for k in range(1, inner)}
    names = [f"c{k}" for k in range(classes)]
    for name in names:
        graph[name] = tuple(f"i{j}" for j in rng.choice(inner, size=rng.integers(1, 4), replace=False))
    return graph, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--inner", type=int, default=3000)
    args = parser.parse_args()
    graph, names = synthetic_graph(args.classes, args.inner)
    t0 = time.perf_counter()
    tree = build_tree(graph, names)
    t1 = time.perf_counter()
    lca = lca_height(tree)
    t_lca = time.perf_counter() - t1
    rng = np.random.default_rng(1)
    labels = rng.integers(0, args.classes, size=50_000)
    logits = rng.normal(size=(50_000, args.classes)).astype(np.float32)
    t2 = time.perf_counter()
    hierarchical_distance_topk(lca, logits, labels, 5)
    random_wrong_baseline(lca, labels)
    t3 = time.perf_counter()
    wu_palmer_matrix(graph, names)
    t4 = time.perf_counter()
    pairs = args.classes * (args.classes - 1) // 2
    print(f"{args.classes} classes ({pairs:,} pairs), tree of {len(tree.parent)} nodes, height "
          f"{tree.height[tree.root]}")
    print(f"build_tree {t1 - t0:.3f} s, lca_height {t_lca:.3f} s, top-5 distance + baseline of 50,000 samples "
          f"{t3 - t2:.3f} s, wu_palmer_matrix {t4 - t3:.3f} s")


if __name__ == "__main__":
    main()
